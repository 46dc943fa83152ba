"""Shared fixtures: a config on tmp_path, a real Store and Pipeline, the HTTP app, a daemon."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from scanstation.bus import EventBus
from scanstation.config import Config, parse_config
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.server import make_app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCANSTATION = [sys.executable, "-m", "scanstation"]


def shared_path(*parts: str) -> Path:
    """A file under ../shared; skips the test loudly when the folder is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"SKIPPED (data-driven): {path} is not present beside the project")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def factory(**sections: Any) -> Config:
        data: dict[str, Any] = {
            "device": {"id": "test-01", "site": "lab"},
            "storage": {"path": str(tmp_path / "var")},
            "http": {"bind": f"127.0.0.1:{free_port()}"},
        }
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        return parse_config(data, "<test>", environ={})

    return factory


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    async with Store(config.db_path) as s:
        yield s


@pytest.fixture
async def pipeline(store: Store, config: Config) -> AsyncIterator[Pipeline]:
    p = Pipeline(store, config, bus=EventBus())
    task = asyncio.create_task(p.run())
    yield p
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def api_key(config: Config) -> str:
    return ApiKeyStore(config.api_keys_path).create(label="test")


@pytest.fixture
async def client(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline, api_key: str
) -> TestClient[Any, Any]:
    app = make_app(Services(config, store, pipeline, pipeline.bus))
    return await aiohttp_client(app, headers={"X-API-Key": api_key})


async def wait_for_status(
    client: TestClient[Any, Any], capture_id: str, wanted: set[str], timeout: float = 1.0
) -> dict[str, Any]:
    """Poll a capture until its status is one of ``wanted`` (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get(f"/scanner/api/v1/captures/{capture_id}")
        body: dict[str, Any] = await resp.json()
        if body["status"] in wanted or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.01)


@dataclass
class DaemonProcess:
    """`scanstation run --config FILE` in a subprocess, reachable over HTTP."""

    config_path: Path
    url: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 15.0, preexec: Callable[[], None] | None = None) -> None:
        """``preexec``: run in the child before the daemon starts (umask, resource limits)."""
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*SCANSTATION, "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")},
            preexec_fn=preexec,  # only umask and setrlimit: safe before exec
        )
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daemon did not answer: {self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns how long the stop took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - started


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def factory(extra_toml: str = "") -> DaemonProcess:
        port = free_port()
        config_path = tmp_path / "scanstation.toml"
        config_path.write_text(
            f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "var"}"\n'
            f'[http]\nbind = "127.0.0.1:{port}"\n{extra_toml}'
        )
        daemon = DaemonProcess(config_path, f"http://127.0.0.1:{port}", log_path=tmp_path / "d.log")
        started.append(daemon)
        return daemon

    yield factory
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
