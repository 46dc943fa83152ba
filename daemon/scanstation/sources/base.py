"""The small contract every source implements, and its health report."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from scanstation.model import Emit

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from scanstation.config import CameraSourceConfig


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

    _logged: tuple[str, str] = field(default=("", ""), repr=False, compare=False)

    def set_state(self, state: str, detail: str = "") -> None:
        """Change state; the log says why a source waits, once per cause, and when it is back.

        A source that retries every few seconds sets the same state and detail each time: only
        a change is logged (a crash is logged by the supervisor, with its traceback).
        """
        previous = self.state
        if state != previous:
            self.since = time.time()
        self.state = state
        self.detail = detail
        if state == "reconnecting" and (state, detail) != self._logged:
            log.warning("source %s (%s) is waiting: %s", self.name, self.kind, detail or state)
            self._logged = (state, detail)
        elif state == "running" and previous == "reconnecting":
            log.info("source %s (%s) is running again: %s", self.name, self.kind, detail)
            self._logged = (state, detail)


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


@dataclass(frozen=True, slots=True)
class CameraStats:
    """Counters of one camera source, for telemetry and /metrics."""

    frames: int
    """Frames grabbed from the backend."""
    decoded_frames: int
    """Frames actually handed to the decoder."""
    skipped_frames: int
    """Frames not decoded because the scene had not changed (or no trigger window was open)."""
    dropped_frames: int
    """Live frames replaced by a newer one before a decoder was free (the reader kept up if 0)."""
    decodes: int
    """Codes found, summed over decoded frames."""
    reads: int
    """Scans reported (after duplicate suppression)."""
    no_reads: int
    """Trigger windows that closed without a code."""
    triggers: int
    """Read windows opened (software or GPIO)."""
    reconnects: int
    """Times the camera was lost and reopened."""
    fps: float
    """Frames grabbed per second, over the last few seconds."""
    decode_ms: float
    """Median decode time per decoded frame, over the last 100 frames."""
    latency_ms_median: float
    """Median time from frame grabbed to capture durable, over the last 200 reads."""
    latency_ms_p99: float
    """99th percentile of the same."""


@runtime_checkable
class Preview(Protocol):
    """A source that can show what it sees: the newest frame as JPEG (None before the first).

    The web UI's snapshot and MJPEG routes accept any source that has this method, sync (run
    in a thread: JPEG encoding takes milliseconds) or async.
    """

    def latest_jpeg(self) -> bytes | Awaitable[bytes | None] | None: ...


@runtime_checkable
class FrameStream(Protocol):
    """A preview source that also streams new frames itself, at most ``max_fps`` a second."""

    def mjpeg_frames(self, max_fps: float = 10.0) -> AsyncIterator[bytes]: ...
