"""Fleet collectors for tests: a config, one collector in a thread, one as a real process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from scanstation.collector.consumer import Collector
from scanstation.config import Config, parse_config
from station import COMMAND_TOKEN

BROKER_CONF = "max_inflight_messages 1000\n"
"""Mosquitto's default sends 20 unacknowledged messages per client; a collector batches more."""


def collector_settings(
    tmp: Path, dsn: str, port: int, name: str = "collector-a", **collector: Any
) -> dict[str, Any]:
    token = tmp / "fleet-command-token"
    token.write_text(COMMAND_TOKEN + "\n")
    return {
        "device": {"id": name},
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": name},
        "collector": {
            "database": dsn,
            "command_token_file": str(token),
            "gap_grace_s": 1.0,
            "gap_check_interval_s": 0.5,
            "replay_interval_s": 3.0,
            **collector,
        },
    }


def collector_config(
    tmp: Path, dsn: str, port: int, name: str = "collector-a", **kw: Any
) -> Config:
    return parse_config(collector_settings(tmp, dsn, port, name, **kw), "<test>", environ={})


def write_toml(path: Path, settings: dict[str, Any]) -> Path:
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            text = (
                f'"{value}"'
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def collector_thread(config: Config) -> Iterator[Collector]:
    """A collector running in a thread of this process until the block ends."""
    collector = Collector(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            collector.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"collector {config.mqtt.client_id}")
    thread.start()
    try:
        if not collector.connected.wait(10):
            raise AssertionError(f"the collector did not connect: {errors}")
        time.sleep(0.3)  # the SUBACK
        yield collector
    finally:
        collector.stop.set()
        thread.join(15)
    if errors:
        raise errors[0]


class CollectorProcess:
    """``scanstation collector --config FILE`` as a child process (SIGKILL-able)."""

    def __init__(self, config_file: Path, log: Path) -> None:
        self.config_file = config_file
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scanstation",
                    "--log-level",
                    "INFO",
                    "collector",
                    "--config",
                    str(self.config_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def count(dsn: str, sql: str = "SELECT COUNT(*) FROM capture_events", *params: Any) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
