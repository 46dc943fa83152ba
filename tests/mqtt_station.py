"""An in-process station (store, pipeline, MQTT link) for the MQTT tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanstation.config import Config, parse_config
from scanstation.model import Capture, CaptureType
from scanstation.pipeline import Pipeline
from scanstation.publish.mqtt import MqttLink
from scanstation.store import NewCapture, Store
from scanstation.web.auth import ApiKeyStore

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
    link: MqttLink
    triggered: list[str] = field(default_factory=list)
    session_id: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

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


@asynccontextmanager
async def running_station(
    config: Config,
    *,
    triggers: Mapping[str, Callable[[], None]] | None = None,
    telemetry: Callable[[], dict[str, Any]] | None = None,
) -> AsyncIterator[Station]:
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config)
        station = Station(config, store, pipeline, None)  # type: ignore[arg-type]
        api_keys = ApiKeyStore(config.api_keys_path)
        default_triggers = {"cam0": lambda: station.triggered.append("cam0")}
        station.link = MqttLink(
            config,
            store,
            pipeline,
            triggers=default_triggers if triggers is None else triggers,
            telemetry=telemetry,
            # As app.py wires it: the station's API keys authorise commands too.
            api_key_valid=lambda token: api_keys.verify(token) is not None,
        )
        station.tasks = [
            asyncio.create_task(pipeline.run()),
            asyncio.create_task(station.link.run()),
        ]
        try:
            yield station
        finally:
            for task in reversed(station.tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def stop_link(station: Station) -> float:
    """Cancel the link as the daemon's shutdown does; returns how long it took."""
    started = time.monotonic()
    task = station.tasks[1]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return time.monotonic() - started
