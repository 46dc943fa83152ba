"""The station's health in one shape, for every place that reports it.

MQTT telemetry, the dashboard's /stats and the fleet all describe the same things: the
outbox, each source, the cameras' rate and the device's vital signs. Their figures are
gathered by the callers (from the store, the sources, the MQTT link); the shapes are made
here, once.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from scanstation.payloads import iso


class SourceReport(Protocol):
    """What a source's health record offers (sources.base.SourceHealth)."""

    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def scans(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def last_scan_at(self) -> float | None: ...
    @property
    def since(self) -> float: ...


class CameraRate(Protocol):
    """What a camera's counters offer (sources.base.CameraStats)."""

    @property
    def fps(self) -> float: ...
    @property
    def decode_ms(self) -> float: ...


def cpu_temperature() -> float | None:
    """The SoC temperature in °C from the kernel's first thermal zone (None off a Pi)."""
    try:
        text = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
        return round(int(text.strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def disk_free_mb(path: Path) -> float | None:
    """Free space in MB on the filesystem holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return round(shutil.disk_usage(candidate).free / 1e6, 1)
    return None


def vitals(storage: Path) -> dict[str, Any]:
    """The device's vital signs: SoC temperature and free space where the data lives."""
    return {"cpu_temp_c": cpu_temperature(), "disk_free_mb": disk_free_mb(storage)}


def outbox_report(depth: int, oldest_created: float | None, now: float) -> dict[str, Any]:
    """Events waiting in the outbox and the age of the oldest, in seconds (None when empty)."""
    age = round(max(now - oldest_created, 0.0), 1) if oldest_created is not None else None
    return {"depth": depth, "oldest_age_s": age}


def source_report(health: SourceReport) -> dict[str, Any]:
    """One source's state as the dashboard and telemetry show it."""
    return {
        "kind": health.kind,
        "state": health.state,
        "detail": health.detail,
        "scans": health.scans,
        "errors": health.errors,
        "last_scan_at": iso(health.last_scan_at),
        "since": iso(health.since),
    }


def camera_rate(cameras: Iterable[CameraRate]) -> dict[str, float | None]:
    """Frames/s summed over the cameras and the slowest median decode time (None: no camera)."""
    counters = list(cameras)
    if not counters:
        return {"fps": None, "decode_ms": None}
    return {
        "fps": round(sum(c.fps for c in counters), 1),
        "decode_ms": round(max(c.decode_ms for c in counters), 1),
    }
