"""The small contract every source implements, and its health report."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from scanstation.model import Capture, Scan

if TYPE_CHECKING:
    from scanstation.config import CameraSourceConfig
    from scanstation.sources.camera import CameraStats

Emit = Callable[[Scan], Awaitable[Capture]]
"""Hands one Scan to the pipeline; returns once the capture is durable (safe to beep)."""


@dataclass
class SourceHealth:
    """What a source reports for status pages, telemetry and /metrics."""

    name: str
    kind: str
    state: str = "starting"
    """starting | running | reconnecting | stopped | failed"""
    detail: str = ""
    scans: int = 0
    errors: int = 0
    last_scan_at: float | None = None
    since: float = field(default_factory=time.time)

    def set_state(self, state: str, detail: str = "") -> None:
        if state != self.state:
            self.since = time.time()
        self.state = state
        self.detail = detail


class Source(Protocol):
    """A running input. ``run`` loops until cancelled, calling ``emit`` for every read.

    A source that loses its device reports ``reconnecting`` and retries with backoff;
    it never returns on a recoverable error.
    """

    name: str
    health: SourceHealth

    async def run(self, emit: Emit) -> None: ...


@runtime_checkable
class Camera(Source, Protocol):
    """What the daemon asks of a camera source besides reading: a trigger and its counters."""

    config: CameraSourceConfig

    def trigger(self) -> None:
        """Open a read window (trigger = software or gpio)."""

    def stats(self) -> CameraStats:
        """Frames, decodes, reads, no-reads, fps and decode time, for telemetry and /metrics."""
