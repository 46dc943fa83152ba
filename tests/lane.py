"""A conveyor lane for the tests: a triggered camera reading the bundled sample files at
scripted times, in the real daemon (``app.run``), with the test's clock.

The camera is the daemon's CameraSource on a FakeCamera fed with sample images; each frame
is grabbed at the time the script gives it, so a window with nothing in it closes exactly
when the script says. ``Lane.window(name)`` runs one trigger window on one sample file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from scanstation import app
from scanstation.barcode.decode import load_image
from scanstation.config import CameraSourceConfig, Config, parse_config
from scanstation.sources.camera import CameraSource, bundled_samples_dir
from scanstation.sources.frames import FakeCamera

SAMPLES = bundled_samples_dir()


class Clock:
    """The camera's monotonic clock, moved by the frames as they are grabbed."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t


def lane_config(tmp_path: Path, **sections: Any) -> Config:
    return parse_config(
        {
            "device": {"id": "lane-7"},
            "storage": {"path": str(tmp_path / "var")},
            "http": {"bind": f"127.0.0.1:{free_port()}"},
            "classifier": {"enabled": False},
            "qr_analysis": {"enabled": False},
            **sections,
        },
        environ={},
    )


def triggered_camera(
    clock: Clock, name: str = "lane", read_window_ms: int = 1000
) -> tuple[CameraSource, FakeCamera]:
    cam = FakeCamera(on_frame=clock.set)
    source = CameraSource(
        CameraSourceConfig(
            type="camera",
            name=name,
            trigger="software",
            read_window_ms=read_window_ms,
            backend="file",
        ),
        backend=cam,
        clock=clock,
    )
    return source, cam


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text parsed as Prometheus parses it: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Lane:
    daemon: Any
    source: CameraSource
    cam: FakeCamera
    clock: Clock
    t: float = 0.0
    opened: list[float] = field(default_factory=list)

    def windows(self) -> int:
        report = self.daemon.read_stats.reports().get(self.source.name)
        return sum(report.totals.values()) if report else 0

    def show(self, name: str) -> None:
        """What the camera sees during the window just opened, then an empty lane after it."""
        t = self.clock.t
        self.cam.push(load_image(SAMPLES / name), at=t + 0.1)
        self.cam.push(load_image(SAMPLES / "07-empty.jpg"), at=t + 1.5)

    async def window(self, name: str) -> None:
        """One trigger window on sample ``name``; returns once the read rate counted it."""
        before = self.windows()
        self.t += 10.0
        self.clock.set(self.t)
        self.source.trigger()
        self.show(name)
        await until(lambda: self.windows() == before + 1)


@contextlib.asynccontextmanager
async def running_lane(config: Config) -> AsyncIterator[Lane]:
    clock = Clock()
    source, cam = triggered_camera(clock)
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        app.run(config, stop, on_ready=ready.set_result, extra_sources=[source])
    )
    try:
        daemon = await asyncio.wait_for(ready, 20)
        yield Lane(daemon, source, cam, clock)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
