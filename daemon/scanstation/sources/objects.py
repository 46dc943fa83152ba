"""One result per object: the cameras of a tunnel read into one object window.

A conveyor tunnel has two to four cameras looking at each object from different sides. Each
camera alone would report what it saw: the same label twice, or a no-read from the camera
that saw the blank side. ``ObjectWindow`` makes them one reader:

- ``trigger()`` (photo-eye or software, any thread) opens an object window and triggers every
  camera; each one decodes in its own grabber and decoder threads, so the cameras decode in
  parallel;
- each camera's outcome (the codes of its first good frame, or its no-read) goes into the
  window instead of to the pipeline; codes are deduplicated by symbology and value, and each
  remembers which cameras saw it;
- the window closes once every camera has reported, or after ``window_ms``: its result is one
  scan per distinct code (a capture set: ``window``, ``window_codes`` and ``cameras`` in their
  metadata, so the read rate counts the object once), or one no-read with the sharpest
  camera's no-read image (the first camera, in configured order, that has one).

A trigger while a window is open does not open another (the object is still passing).
``release()`` — the photo-eye clearing — ends every camera's read window at once, so the
object window closes as soon as the cameras have reported what they have.
Runs on the event loop; ``trigger`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scanstation.config import ObjectWindowConfig
from scanstation.model import CaptureType, Emit, Scan
from scanstation.sources.base import SourceHealth

if TYPE_CHECKING:  # the camera module imports OpenCV and numpy: only when a camera is set up
    from scanstation.sources.camera import CameraSource

log = logging.getLogger(__name__)

WINDOW_KEYS = ("window", "window_codes", "trigger")
"""A camera's own window metadata, replaced by the object window's."""


@dataclass
class _Object:
    number: int
    opened_at: float
    waiting: set[str]
    """Cameras that have not reported yet."""
    codes: dict[tuple[str, str], Scan] = field(default_factory=dict)
    seen_by: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    no_reads: dict[str, Scan] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class ObjectWindow:
    """Several cameras as one reader with one result per object (see the module docstring)."""

    def __init__(
        self,
        config: ObjectWindowConfig,
        cameras: Sequence[CameraSource],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not cameras:
            raise ValueError(f"object window {config.name!r} needs at least one camera")
        self.config = config
        self.name = config.name
        self.cameras = list(cameras)
        self.clock = clock
        self.health = SourceHealth(name=config.name, kind="object")
        self.windows = 0
        """Object windows opened since start."""
        self.late = 0
        """Camera reports that came after their object window had closed (dropped)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._results: asyncio.Queue[Scan] = asyncio.Queue(maxsize=64)
        self._object: _Object | None = None

    # -- any thread ------------------------------------------------------------------------

    def trigger(self) -> None:
        """Open an object window now (photo-eye or software); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("object window %s: trigger before it runs, ignored", self.name)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
            loop.call_soon_threadsafe(self._open)

    def release(self) -> None:
        """The object has passed (the photo-eye cleared): every camera ends its read window
        now, so the object window closes as soon as they have reported; any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._release)

    # -- the event loop --------------------------------------------------------------------

    def _release(self) -> None:
        if self._object is None:
            return
        for camera in self.cameras:
            camera.release()

    def _open(self) -> None:
        if self._object is not None:
            return  # the object is still passing: one window per object
        assert self._loop is not None
        self.windows += 1
        opened = _Object(self.windows, self.clock(), {c.name for c in self.cameras})
        opened.timer = self._loop.call_later(
            self.config.window_ms / 1000, self._expire, opened.number
        )
        self._object = opened
        for camera in self.cameras:
            camera.trigger()

    def _expire(self, number: int) -> None:
        current = self._object
        if current is not None and current.number == number:
            log.info(
                "object window %s #%d: closed after %d ms without %s",
                self.name,
                number,
                self.config.window_ms,
                ", ".join(sorted(current.waiting)),
            )
            self._close()

    def _collector(self, camera: str) -> Emit:
        async def collect(scan: Scan) -> Scan:
            current = self._object
            if current is None:
                self.late += 1
                log.debug(
                    "object window %s: %s reported after its window closed", self.name, camera
                )
                return scan
            if scan.metadata.get("noread") == "true":
                current.no_reads.setdefault(camera, scan)
                current.waiting.discard(camera)
            else:
                key = (scan.symbology, scan.raw_value)
                current.codes.setdefault(key, scan)
                cameras = current.seen_by.setdefault(key, [])
                if camera not in cameras:
                    cameras.append(camera)
                current.reads[camera] = current.reads.get(camera, 0) + 1
                if current.reads[camera] >= _int(scan.metadata.get("window_codes"), 1):
                    current.waiting.discard(camera)
            if not current.waiting:
                self._close()
            return scan

        return collect  # type: ignore[return-value]  # the camera only awaits it

    def _close(self) -> None:
        closed, self._object = self._object, None
        if closed is None:
            return
        if closed.timer is not None:
            closed.timer.cancel()
        for scan in self._result(closed):
            try:
                self._results.put_nowait(scan)
            except asyncio.QueueFull:
                self.health.errors += 1
                log.error("object window %s: results backed up, dropped %r", self.name, scan)

    def _result(self, closed: _Object) -> list[Scan]:
        trigger = self.config.trigger
        window_ms = str(round((self.clock() - closed.opened_at) * 1000))
        if not closed.codes:
            order = [c.name for c in self.cameras]
            images = [closed.no_reads[n] for n in order if n in closed.no_reads]
            image = next((s for s in images if s.image is not None), None)
            return [
                Scan(
                    source=self.name,
                    raw_value="",
                    capture_type=CaptureType.IMAGE,
                    image=image.image if image else None,
                    image_ext=image.image_ext if image else "jpg",
                    metadata={
                        "noread": "true",
                        "trigger": trigger,
                        "window": str(closed.number),
                        "window_ms": window_ms,
                        "cameras": ",".join(order),
                        **({"image_camera": image.source} if image else {}),
                    },
                )
            ]
        count = str(len(closed.codes))
        order = [c.name for c in self.cameras]
        results = []
        for key, scan in closed.codes.items():
            metadata = {k: v for k, v in scan.metadata.items() if k not in WINDOW_KEYS}
            metadata.update(
                {
                    "trigger": trigger,
                    "window": str(closed.number),
                    "window_codes": count,
                    "cameras": ",".join(n for n in order if n in closed.seen_by[key]),
                }
            )
            results.append(
                Scan(
                    source=self.name,
                    raw_value=scan.raw_value,
                    symbology_identifier=scan.symbology_identifier,
                    symbology=scan.symbology,
                    capture_type=scan.capture_type,
                    metadata=metadata,
                    read_at=scan.read_at,
                )
            )
        return results

    async def run(self, emit: Emit) -> None:
        """Run every camera into the window and hand each result to ``emit`` in order."""
        self._loop = asyncio.get_running_loop()
        self.health.set_state("running", ", ".join(c.name for c in self.cameras))
        try:
            async with asyncio.TaskGroup() as group:
                for camera in self.cameras:
                    group.create_task(camera.run(self._collector(camera.name)))
                group.create_task(self._emit_loop(emit))
        finally:
            self.health.set_state("stopped")

    async def _emit_loop(self, emit: Emit) -> None:
        while True:
            scan = await self._results.get()
            try:
                await emit(scan)
                if scan.raw_value:
                    self.health.scans += 1
                    self.health.last_scan_at = scan.read_at
            except Exception as exc:
                self.health.errors += 1
                self.health.detail = f"emit failed: {exc}"
                log.warning("object window %s: could not hand over a result: %s", self.name, exc)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
