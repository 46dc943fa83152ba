"""The one in-process Station of the tests: a real Store and Pipeline on a temporary directory,
with the MQTT link and/or the HTTP server when a test needs them.

``running_station(config)`` runs the pipeline and the MQTT link (the MQTT tests);
``running_station(config, mqtt=False, http="tcp")`` serves the API on a free loopback port
(the browser tests); ``http="client"`` gives an aiohttp TestClient instead (the API fuzzer).
A test that already has a store and a pipeline (conftest's fixtures) passes them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from scanstation.bus import EventBus
from scanstation.config import Config, MatchRules, parse_config
from scanstation.model import Capture, CaptureType
from scanstation.outputs import Outputs
from scanstation.pipeline import Pipeline
from scanstation.publish.mqtt import MqttLink
from scanstation.readstats import ReadStats
from scanstation.services.noreads import NoReadRing
from scanstation.sources.base import SourceHealth
from scanstation.store import NewCapture, Store
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import API_BASE, Services
from scanstation.web.server import make_app

COMMAND_TOKEN = "test-command-token-0123456789"
"""The secret in every test station's ``[mqtt] command_token_file``."""

BEARER = f"Bearer {COMMAND_TOKEN}"


def station_config(storage: Path, port: int, device_id: str = "lane-01", **mqtt: Any) -> Config:
    token_file = storage.parent / f"{storage.name}-command-token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(COMMAND_TOKEN + "\n")
    mqtt.setdefault("command_token_file", str(token_file))
    return parse_config(
        {
            "device": {"id": device_id, "site": "store-7"},
            "storage": {"path": str(storage)},
            "mqtt": {"host": "127.0.0.1", "port": port, **mqtt},
        },
        "<test>",
        environ={},
    )


@dataclass
class Station:
    config: Config
    store: Store
    pipeline: Pipeline
    link: MqttLink = None  # type: ignore[assignment]  # set when the station runs the link
    """The MQTT link (``mqtt=True``)."""
    url: str = ""
    """http://127.0.0.1:PORT when the API is served on a socket (``http="tcp"``)."""
    client: TestClient[Any, Any] | None = None
    """The aiohttp test client on the app (``http="client"``)."""
    api_key: str = ""
    """An API key for the HTTP side (created when HTTP is on)."""
    outputs: Outputs | None = None
    """The outputs (``outputs=True``): keyboard gadget, serial, webhooks."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(capture public id, why) of every reject the outputs asked for."""
    triggered: list[str] = field(default_factory=list)
    session_id: str = ""
    read_stats: ReadStats = field(default_factory=ReadStats)
    """Read-rate statistics: fed by the outputs' verdicts, shown by /stats and /metrics."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """[pipeline, link] when the station runs them."""

    async def scan(self, *values: str, symbology_identifier: str = "") -> list[Capture]:
        """Captures from a barcode gun, walked to the end and handed to the outputs."""
        if not self.session_id:
            self.session_id = (await self.store.create_session()).public_id
        created = [
            await self.pipeline.create_capture(
                self.session_id,
                NewCapture(
                    CaptureType.BARCODE,
                    raw_value=v,
                    symbology_identifier=symbology_identifier,
                    source="gun1",
                ),
            )
            for v in values
        ]
        await self.pipeline.idle()
        if self.outputs is not None:
            await self.outputs.idle()
        return created

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call over the socket with the station's key; fails on a 4xx/5xx answer."""
        async with (
            aiohttp.ClientSession(headers={"X-API-Key": self.api_key}) as http,
            http.request(method, self.url + API_BASE + path, **kwargs) as resp,
        ):
            assert resp.status < 400, await resp.text()
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.text()

    async def capture(self, raw_value: str = "4006381333931", **metadata: Any) -> Capture:
        if not self.session_id:
            self.session_id = (await self.store.create_session()).public_id
        new = NewCapture(CaptureType.BARCODE, raw_value=raw_value, metadata=metadata or None)
        return await self.pipeline.create_capture(self.session_id, new)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def outbox_drained(store: Store, timeout: float = 10) -> None:
    """Wait until the outbox is empty (acknowledged rows are deleted a moment after PUBACK)."""
    deadline = time.monotonic() + timeout
    while (depth := (await store.outbox_stats())[0]) != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"the outbox still holds {depth} events after {timeout} s")
        await asyncio.sleep(0.02)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_station(
    config: Config,
    *,
    mqtt: bool = True,
    http: Literal["tcp", "client"] | None = None,
    store: Store | None = None,
    pipeline: Pipeline | None = None,
    triggers: Mapping[str, Callable[[], None]] | None = None,
    telemetry: Callable[[], dict[str, Any]] | None = None,
    sources: Mapping[str, SourceHealth] | None = None,
    previews: Mapping[str, object] | None = None,
    outputs: bool = False,
    match: MatchRules | None = None,
    noreads: NoReadRing | None = None,
) -> AsyncIterator[Station]:
    """A running station; what it opens (store, tasks, server) it closes on exit."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await stack.enter_async_context(Store(config.db_path))
        rejected: list[tuple[str, str]] = []
        read_stats = ReadStats()
        outs = None
        if outputs:
            outs = Outputs(
                config,
                store,
                reject=lambda capture, why: rejected.append((capture.public_id, why)),
                match=match,
                on_verdict=read_stats.on_capture,
            )
        own_pipeline = pipeline is None
        if pipeline is None:
            pipeline = Pipeline(
                store,
                config,
                bus=EventBus(),
                on_finished=[outs.on_capture] if outs else [],
                destinations=outs.destinations if outs else None,
            )
        station = Station(
            config, store, pipeline, outputs=outs, rejected=rejected, read_stats=read_stats
        )
        if own_pipeline:
            station.tasks.append(asyncio.create_task(pipeline.run()))
        if outs is not None:
            station.tasks.append(asyncio.create_task(outs.run()))
        if mqtt:
            default_triggers = {"cam0": lambda: station.triggered.append("cam0")}
            api_keys = ApiKeyStore(config.api_keys_path)
            station.link = MqttLink(
                config,
                store,
                pipeline,
                triggers=default_triggers if triggers is None else triggers,
                telemetry=telemetry,
                # As app.py wires it: the station's API keys authorise commands too.
                api_key_role=lambda token: getattr(api_keys.verify(token), "role", None),
            )
            station.tasks.append(asyncio.create_task(station.link.run()))
        try:
            if http is not None:
                station.api_key = ApiKeyStore(config.api_keys_path).create(label="test station")
                services = Services(
                    config, store, pipeline, pipeline.bus, dict(sources or {}),
                    read_stats=read_stats, noreads=noreads,
                )  # fmt: skip
                app = make_app(services, previews=previews)
                if http == "tcp":
                    runner = web.AppRunner(app, shutdown_timeout=1.0)
                    await runner.setup()
                    stack.push_async_callback(runner.cleanup)
                    port = _free_port()
                    await web.TCPSite(runner, "127.0.0.1", port).start()
                    station.url = f"http://127.0.0.1:{port}"
                else:
                    client: TestClient[Any, Any] = TestClient(TestServer(app))
                    await client.start_server()
                    stack.push_async_callback(client.close)
                    station.client = client
            yield station
        finally:
            for task in reversed(station.tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def stop_link(station: Station) -> float:
    """Cancel the link as the daemon's shutdown does; returns how long it took."""
    started = time.monotonic()
    task = station.tasks[-1]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return time.monotonic() - started
