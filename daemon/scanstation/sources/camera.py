"""The camera source: frames to Scans with the behaviour of an industrial fixed reader.

Threads and tasks, and who calls what:

- a grabber thread reads the backend (picamera2 / OpenCV / files, see frames.py) and keeps
  only the latest frame in a one-slot mailbox (a replay instead waits until its frame is
  taken, so no frame is skipped); it wakes the event loop with ``call_soon_threadsafe``;
- the event loop hands frames to a pool of decoder threads (zxing-cpp releases the GIL, so
  every core decodes) and takes the results back in frame order, so presence tracking sees
  time run forwards; a decoder thread measures the quality indicators of the codes likely to
  be reported right after its decode, and wakes the loop itself when it is done;
- a frame whose scene did not change since the last decoded one is not decoded again (its
  codes are the same): an idle lane costs almost nothing;
- `ReaderLogic` (pure, clock passed in) turns per-frame codes into reads: presence-based
  duplicate suppression in continuous mode, read windows in the trigger modes, no-reads when
  a window closes without a code;
- an emitter task hands each Scan to the pipeline and, once it is durable, calls the
  good-read / no-read feedback hooks.

`trigger()` may be called from any thread (HTTP handlers, MQTT commands, gpiozero callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from scanstation.barcode.decode import DecodedCode, DecodeOptions, Frame, decode_frame, to_gray
from scanstation.barcode.quality import Quality
from scanstation.barcode.quality import measure as measure_quality
from scanstation.config import CameraSourceConfig
from scanstation.model import CaptureType, Emit, Scan
from scanstation.sources.base import CameraStats, SourceHealth
from scanstation.sources.frames import (
    CameraError,
    FrameBackend,
    encode_jpeg,
    make_backend,
    sharpness,
    thumbnail,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Feedback = Callable[[Scan], object]
"""A good-read / no-read hook: called with the Scan once it is durable; may be async."""

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
EMIT_ATTEMPTS = 3
# A code must be gone this long before "another code came between" may report it again;
# shorter gaps are a decoder missing one frame, not the code leaving the view.
MIN_ABSENCE_S = 0.3
# Thumbnail pixels (each averages a 16×16 block) that must change for a "new" scene.
CHANGE_LEVEL = 10
CHANGE_FRACTION = 1 / 1000


def bundled_samples_dir() -> Path:
    """The sample frames shipped with the package (what ``scanstation demo`` replays)."""
    return Path(str(resources.files("scanstation") / "data" / "samples"))


def demo_source_config(name: str = "cam0", fps: float = 1.0) -> CameraSourceConfig:
    """A camera source that replays the bundled samples forever (``scanstation demo``)."""
    return CameraSourceConfig(
        type="camera",
        name=name,
        backend="file",
        device=str(bundled_samples_dir()),
        fps=fps,
        loop=True,
    )


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One grabbed frame with what the grabber thread already worked out about it."""

    gray: Frame
    """The frame in grayscale, the only copy kept: a colour frame from OpenCV is converted in
    the grabber thread and dropped there (previews and no-read images are grey)."""
    thumb: Frame
    """An 80-pixel-wide summary used to notice that nothing changed."""
    index: int
    """Frames grabbed before this one since the source started."""
    t: float
    """Source clock when it was grabbed (monotonic seconds)."""


# ---------------------------------------------------------------------------------------------
# Reader behaviour (pure: times are passed in).


@dataclass(frozen=True, slots=True)
class Read:
    """A code to report."""

    code: DecodedCode
    t: float
    """When the frame it was read in was grabbed (source clock)."""
    trigger: str
    """``continuous``, ``software`` or ``gpio``: what asked for this read."""
    window: int = 0
    """The read window it closed (counted from 1 per source); 0 in continuous mode."""
    window_codes: int = 1
    """Distinct codes the window read: the read-rate statistics wait for all of them."""
    frame: CameraFrame | None = field(default=None, compare=False, repr=False)
    """The frame it was read in (its quality indicators are measured on it)."""
    measured: bool = field(default=False, compare=False, repr=False)
    """True when `quality` was already measured (by the decoder thread, right after the
    decode); otherwise the emitter measures it."""
    quality: Quality | None = field(default=None, compare=False, repr=False)
    """The read's quality indicators when `measured` (None: the outline was unusable)."""


@dataclass(frozen=True, slots=True)
class NoRead:
    """A read window closed without a code."""

    frame: CameraFrame | None
    """The sharpest frame seen in the window (None if the camera delivered none)."""
    opened_at: float
    closed_at: float
    trigger: str


@dataclass
class _Window:
    opened_at: float
    closes_at: float
    number: int = 0
    best: CameraFrame | None = None
    best_sharpness: float = -1.0


class Presence:
    """Presence-based duplicate suppression, as industrial fixed readers do it.

    A code in view is reported once. It is reported again after it has been out of view for
    `window_s`, or when it comes back after another code was reported in between (the next
    item in a checkout lane may carry the same code twice in a row, with a different item
    between them).

    >>> p = Presence(2.0)
    >>> [c for c in p.observe(0.0, [("EAN13", "4006381333931")])]
    [('EAN13', '4006381333931')]
    >>> p.observe(0.1, [("EAN13", "4006381333931")])
    []
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last_seen: dict[tuple[str, str], float] = {}
        self._last_report_at = -math.inf

    def would_report(self, t: float, key: tuple[str, str]) -> bool:
        """Whether `key` seen at `t` would be reported, as the state stands: a hint that
        reads only, so a decoder thread may ask it while the event loop observes (frames
        still in flight ahead of this one are not counted yet)."""
        seen = self._last_seen.get(key)
        return (
            seen is None
            or t - seen >= self.window_s
            or (self._last_report_at > seen and t - seen >= min(MIN_ABSENCE_S, self.window_s))
        )

    def observe(self, t: float, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The keys among `keys` (seen at time `t`) that should be reported now."""
        report = []
        for key in dict.fromkeys(keys):
            seen = self._last_seen.get(key)
            if (
                seen is None
                or t - seen >= self.window_s
                or (self._last_report_at > seen and t - seen >= min(MIN_ABSENCE_S, self.window_s))
            ):
                report.append(key)
            self._last_seen[key] = t
        if report:
            self._last_report_at = t
        # Forget codes gone longer than the window: they would be reported anyway.
        stale = [k for k, seen in self._last_seen.items() if t - seen > self.window_s]
        for key in stale:
            del self._last_seen[key]
        return report


class ReaderLogic:
    """Continuous reading with presence, or trigger windows with no-reads; pure and clock-free."""

    def __init__(self, trigger_mode: str, read_window_s: float, dedup_window_s: float) -> None:
        self.trigger_mode = trigger_mode
        self.read_window_s = read_window_s
        self.presence = Presence(dedup_window_s)
        self.window: _Window | None = None
        self.triggers = 0
        self.windows = 0

    @property
    def continuous(self) -> bool:
        return self.trigger_mode == "continuous"

    def trigger(self, t: float) -> None:
        """Open a read window at `t` (a trigger during an open window extends it)."""
        self.triggers += 1
        if self.window is not None:
            self.window.closes_at = t + self.read_window_s
        else:
            self.windows += 1
            self.window = _Window(t, t + self.read_window_s, self.windows)

    def release(self, t: float) -> None:
        """End the open window at `t` (the photo-eye cleared): it closes on the next look."""
        w = self.window
        if w is not None and t < w.closes_at:
            w.closes_at = max(t, w.opened_at)

    def wants(self, t: float) -> bool:
        """Whether a frame grabbed at `t` should be decoded."""
        if self.continuous:
            return True
        w = self.window
        return w is not None and w.opened_at <= t < w.closes_at

    def may_report(self, t: float, code: DecodedCode) -> bool:
        """Whether `code`, read in a frame grabbed at `t`, is likely to be reported: a hint
        for a decoder thread (reads only; `observe` decides)."""
        if not code.text:
            return False
        if self.continuous:
            return self.presence.would_report(t, code.key)
        w = self.window
        return w is not None and w.opened_at <= t

    def observe(self, frame: CameraFrame, codes: Sequence[DecodedCode]) -> list[Read | NoRead]:
        """What to report for `codes`, read in `frame` (frames arrive in grab order)."""
        codes = [c for c in codes if c.text]
        if self.continuous:
            keys = self.presence.observe(frame.t, [c.key for c in codes])
            by_key = {c.key: c for c in codes}
            return [Read(by_key[k], frame.t, "continuous", frame=frame) for k in keys]
        events: list[Read | NoRead] = list(self.expire(frame.t))
        w = self.window
        if w is None or frame.t < w.opened_at:
            return events
        if codes:
            # Good read: the window ends on the first frame with codes; all of them count.
            self.window = None
            unique = {c.key: c for c in codes}
            return [
                *events,
                *(
                    Read(c, frame.t, self.trigger_mode, w.number, len(unique), frame)
                    for c in unique.values()
                ),
            ]
        score = sharpness(frame.gray)
        if score > w.best_sharpness:
            w.best, w.best_sharpness = frame, score
        return events

    def expire(self, t: float, latest: CameraFrame | None = None) -> list[NoRead]:
        """Close the window if it ended by `t`: a no-read with its sharpest frame."""
        w = self.window
        if w is None or t < w.closes_at:
            return []
        self.window = None
        return [NoRead(w.best or latest, w.opened_at, w.closes_at, self.trigger_mode)]


# ---------------------------------------------------------------------------------------------
# The grabber thread and its one-frame mailbox.


class _Mailbox:
    """Frames from the grabber. A live camera keeps only the newest (an older one is
    overwritten: lag stays under a frame); a replay keeps a few and waits when they are
    not taken, so no frame is skipped."""

    def __init__(
        self,
        live: bool,
        wake: Callable[[], None],
        depth: int = 1,
        on_drop: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.live = live
        self.on_drop = on_drop
        self.depth = 1 if live else max(1, depth)
        self._wake = wake
        self._cond = threading.Condition()
        self._frames: deque[CameraFrame] = deque()
        self.error: BaseException | None = None
        self.ended = False

    def put(self, frame: CameraFrame, stop: threading.Event) -> None:
        with self._cond:
            if self.live:
                waiting = bool(self._frames)
                if waiting:
                    self.on_drop(len(self._frames))
                    self._frames.clear()
            else:
                while len(self._frames) >= self.depth and not stop.is_set():
                    self._cond.wait(0.05)
                waiting = bool(self._frames)  # after the wait: what the loop has yet to see
            self._frames.append(frame)
        if not waiting:
            # Frames were already waiting: the loop has been woken for them. Waking it once
            # per frame would flood it when a camera delivers faster than frames are taken.
            self._wake()

    def finish(self, error: BaseException | None) -> None:
        with self._cond:
            self.error = error
            self.ended = True
        self._wake()

    @property
    def holds_frame(self) -> bool:
        with self._cond:
            return bool(self._frames)

    def take(self) -> CameraFrame | None:
        with self._cond:
            frame = self._frames.popleft() if self._frames else None
            self._cond.notify_all()
            return frame

    def clear(self) -> None:
        """Drop what is held (at shutdown, to unblock a replay grabber)."""
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()


def _grab(
    backend: FrameBackend,
    mailbox: _Mailbox,
    stop: threading.Event,
    clock: Clock,
    first_index: int,
    on_frame: Callable[[CameraFrame], None],
) -> None:
    """Grabber thread body: read, convert to gray, summarise, post; until stopped or lost."""
    index = first_index
    try:
        while not stop.is_set():
            image = backend.read()
            if image is None:
                mailbox.finish(None)
                return
            t = clock()
            gray = to_gray(image)
            del image  # a BGR frame goes here: only the gray one is kept
            frame = CameraFrame(gray=gray, thumb=thumbnail(gray), index=index, t=t)
            index += 1
            on_frame(frame)
            mailbox.put(frame, stop)
        mailbox.finish(None)
    except BaseException as exc:
        mailbox.finish(exc)


def _scene_changed(a: Frame, b: Frame) -> bool:
    if a.shape != b.shape:
        return True
    diff = cv2.absdiff(a, b)
    return int(np.count_nonzero(diff > CHANGE_LEVEL)) >= max(2, int(a.size * CHANGE_FRACTION))


@dataclass(frozen=True, slots=True)
class _Decoded:
    """What a decoder thread hands back for one frame."""

    codes: list[DecodedCode]
    quality: dict[tuple[str, str], Quality | None]
    """The quality indicators of the codes the reader is likely to report, measured in the
    decoder thread on the frame they were read in (by key; a code missing here is measured
    by the emitter if it is reported after all)."""


@dataclass
class _Pending:
    frame: CameraFrame
    codes: Future[_Decoded] | None
    """None: the frame is not decoded (no trigger window open). A decoder thread's own
    future: it wakes the event loop itself when done (one hop, no asyncio future chained)."""


@dataclass
class _Counters:
    frames: int = 0
    decoded_frames: int = 0
    skipped_frames: int = 0
    dropped_frames: int = 0
    decodes: int = 0
    reads: int = 0
    no_reads: int = 0
    reconnects: int = 0
    grab_times: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))


# ---------------------------------------------------------------------------------------------
# The source.


class CameraSource:
    """A camera as a scan source (see the module docstring for the threads involved)."""

    def __init__(
        self,
        config: CameraSourceConfig,
        *,
        backend: FrameBackend | None = None,
        clock: Clock = time.monotonic,
        on_good_read: Feedback | None = None,
        on_no_read: Feedback | None = None,
        decode_options: DecodeOptions | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.health = SourceHealth(name=config.name, kind="camera")
        self.backend = backend or make_backend(config)
        self.clock = clock
        self.on_good_read = on_good_read
        self.on_no_read = on_no_read
        self.options = decode_options or DecodeOptions(
            formats=tuple(config.formats),
            roi=config.roi,
            try_invert=config.try_invert,
            retries=config.retries,
        )
        self.threads = config.decode_threads or os.cpu_count() or 1
        self.reader = ReaderLogic(
            config.trigger, config.read_window_ms / 1000.0, config.dedup_window_s
        )
        self._counters = _Counters()
        self._trigger_lock = threading.Lock()
        self._pending_triggers: list[tuple[bool, float]] = []
        """(opens, time): triggers (True) and releases (False), in the order they came."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kicked = False
        """Set on the event loop by a wake-up (new frame, trigger, decode done), cleared by the
        stream before it looks at what is there."""
        self._waiter: asyncio.Future[None] | None = None
        self._latest: CameraFrame | None = None
        self._shown: tuple[CameraFrame, list[DecodedCode]] | None = None
        """The newest frame through the reader and the codes found in it: the preview draws
        a code's outline on the very frame it was found in (on a newer frame, where the
        label has moved on or the scene changed, the box would sit beside the code)."""
        self._jpeg_cache: tuple[int, bytes] | None = None
        self._encoding = False
        self._next_index = 0
        self._last_counted: Future[_Decoded] | None = None

    # -- public API ---------------------------------------------------------------------------

    async def autofocus(self) -> None:
        """Run one autofocus cycle (picamera2 modules with autofocus; a no-op elsewhere)."""
        cycle = getattr(self.backend, "autofocus", None)
        if callable(cycle):
            await asyncio.to_thread(cycle)

    def trigger(self) -> None:
        """Open a read window now (software trigger or photo-eye); safe from any thread."""
        t = self.clock()
        with self._trigger_lock:
            self._pending_triggers.append((True, t))
        self._notify()

    def release(self) -> None:
        """End the open read window now (the object has passed); safe from any thread."""
        t = self.clock()
        with self._trigger_lock:
            self._pending_triggers.append((False, t))
        self._notify()

    def stats(self) -> CameraStats:
        """A snapshot of the counters (for telemetry and /metrics); cheap, any thread."""
        c = self._counters
        times = list(c.grab_times)
        fps = (
            (len(times) - 1) / (times[-1] - times[0])
            if len(times) > 1 and times[-1] > times[0]
            else 0.0
        )
        latency = sorted(c.latency_ms)
        p99 = latency[min(len(latency) - 1, math.ceil(0.99 * len(latency)) - 1)] if latency else 0.0
        return CameraStats(
            frames=c.frames,
            decoded_frames=c.decoded_frames,
            skipped_frames=c.skipped_frames,
            dropped_frames=c.dropped_frames,
            decodes=c.decodes,
            reads=c.reads,
            no_reads=c.no_reads,
            triggers=self.reader.triggers,
            reconnects=c.reconnects,
            fps=round(fps, 2),
            decode_ms=round(statistics.median(c.decode_ms), 2) if c.decode_ms else 0.0,
            latency_ms_median=round(statistics.median(latency), 2) if latency else 0.0,
            latency_ms_p99=round(p99, 2),
        )

    def latest_jpeg(self, overlay: bool = True) -> bytes | None:
        """The newest frame as JPEG (codes outlined when `overlay`), or None before the first frame.

        Encoding takes 3–5 ms at 720p. Called from a thread, it encodes there. Called on the
        event loop, it never blocks it: it hands out the previous JPEG (at most a few frames
        old) and encodes the newest one in a worker thread for the next call.
        """
        shown = self._shown
        frame = shown[0] if shown is not None else self._latest
        if frame is None:
            return None
        cached = self._jpeg_cache
        if cached is not None and cached[0] == frame.index:
            return cached[1]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._encode_preview(frame, overlay)
        if cached is None:
            return self._encode_preview(frame, overlay)  # the very first one: once
        if not self._encoding:
            self._encoding = True
            job = loop.run_in_executor(None, self._encode_preview, frame, overlay)
            job.add_done_callback(self._encoded)
        return cached[1]

    def _encoded(self, job: asyncio.Future[bytes]) -> None:
        self._encoding = False
        if not job.cancelled() and job.exception() is not None:
            log.warning("camera %s: preview encoding failed: %s", self.name, job.exception())

    def _encode_preview(self, frame: CameraFrame, overlay: bool) -> bytes:
        image: Frame = frame.gray
        shown = self._shown
        codes = shown[1] if shown is not None and shown[0] is frame else []
        if overlay and codes:
            # Colour only for the outlines, in a copy made for this JPEG alone.
            image = np.asarray(cv2.cvtColor(frame.gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
            for code in codes:
                cv2.polylines(
                    image, [np.array(code.position, dtype=np.int32)], True, (0, 200, 0), 3
                )
        data = encode_jpeg(image, self.config.jpeg_quality)
        cached = self._jpeg_cache
        if cached is None or cached[0] < frame.index:
            self._jpeg_cache = (frame.index, data)
        return data

    async def mjpeg_frames(self, max_fps: float = 10.0) -> AsyncIterator[bytes]:
        """JPEG frames for an MJPEG stream: each new frame, at most `max_fps` a second."""
        interval = 1.0 / max_fps
        last_index = -1
        while True:
            frame = self._latest
            if frame is not None and frame.index != last_index:
                last_index = frame.index
                data = await asyncio.to_thread(self.latest_jpeg)
                if data is not None:
                    yield data
            await asyncio.sleep(interval)

    # -- the run loop -------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        """Read until cancelled (or until a replay ends), reopening a lost camera with backoff."""
        self._loop = asyncio.get_running_loop()
        self._kicked = False
        outbox: asyncio.Queue[Read | NoRead] = asyncio.Queue(maxsize=64)
        executor = ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix=f"decode-{self.name}"
        )
        try:
            async with asyncio.TaskGroup() as group:
                emitter = group.create_task(self._emit_loop(emit, outbox))
                await self._camera_loop(executor, outbox)
                await outbox.join()
                emitter.cancel()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            if self.health.state not in ("stopped", "failed"):
                self.health.set_state("stopped")

    async def _camera_loop(
        self, executor: ThreadPoolExecutor, outbox: asyncio.Queue[Read | NoRead]
    ) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                await asyncio.to_thread(self.backend.open)
                self.health.set_state("running", f"{self.backend.kind} {self.config.device}")
                backoff = BACKOFF_FIRST_S
                try:
                    await self._stream(executor, outbox)
                finally:
                    await asyncio.to_thread(self.backend.close)
                self.health.set_state("stopped", "replay finished")
                return
            except Exception as exc:
                # CameraError is the expected case; anything else is retried the same way
                # rather than taking the daemon down (it is logged with its traceback).
                if not isinstance(exc, CameraError):
                    log.exception("camera %s: unexpected error", self.name)
                self.health.errors += 1
                self._counters.reconnects += 1
                delay = backoff * (1 + random.uniform(-0.2, 0.2))
                self.health.set_state("reconnecting", f"{exc}; retrying in {delay:.1f} s")
                log.warning("camera %s: %s; retrying in %.1f s", self.name, exc, delay)
                await asyncio.to_thread(self.backend.close)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _notify(self, _done: object = None) -> None:
        """Wake the stream (any thread): a frame came, a trigger, or a decode finished."""
        loop = self._loop
        # Reading the flag from another thread is a benign race (at worst one extra wake-up);
        # it keeps a camera that delivers faster than the loop turns from flooding the loop.
        if loop is None or self._kicked or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
            loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        self._kicked = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _until_kicked(self, within: float | None) -> None:
        """Until a wake-up since the stream last looked, or `within` seconds (None: no limit).

        A plain future resolved by the wake-up itself: no task per wait, and not
        ``asyncio.wait_for`` (before Python 3.12 it can swallow a cancellation that arrives
        as the wait ends, which a camera delivering frames fast makes likely, gh-86296).
        """
        if self._kicked:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if within is None else loop.call_later(within, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _on_drop(self, count: int) -> None:
        self._counters.dropped_frames += count  # grabber thread, the only writer

    def _on_grab(self, frame: CameraFrame) -> None:
        # Grabber thread: counters are single-writer ints; the preview wants every frame.
        self._counters.frames += 1
        self._counters.grab_times.append(time.monotonic())
        self._latest = frame
        self._next_index = frame.index + 1

    async def _stream(
        self, executor: ThreadPoolExecutor, outbox: asyncio.Queue[Read | NoRead]
    ) -> None:
        """Frames in, reads out, until a replay ends; raises CameraError when the camera is lost."""
        live = self.backend.live
        # A replay keeps a few frames ready and a few more decoding than there are threads,
        # which hides the hand-over latency between threads; a live camera keeps neither,
        # since a queued frame is an old frame.
        mailbox = _Mailbox(live, self._notify, depth=self.threads, on_drop=self._on_drop)
        in_flight = self.threads if live else 2 * self.threads
        stop = threading.Event()
        grabber = threading.Thread(
            target=_grab,
            args=(self.backend, mailbox, stop, self.clock, self._next_index, self._on_grab),
            name=f"grab-{self.name}",
            daemon=True,
        )
        grabber.start()
        pending: deque[_Pending] = deque()
        reference: tuple[Frame, Future[_Decoded]] | None = None
        stall_after = max(5.0, 20.0 / self.config.fps)
        last_frame_at = time.monotonic()
        try:
            while True:
                # Cleared before looking, so a frame posted meanwhile still wakes the wait below.
                self._kicked = False
                # Fill the decoder pool with the newest frames.
                while len(pending) < in_flight:
                    frame = mailbox.take()
                    if frame is None:
                        break
                    last_frame_at = time.monotonic()
                    self._take_triggers()
                    if not self.reader.wants(frame.t):
                        self._counters.skipped_frames += 1
                        pending.append(_Pending(frame, None))
                        continue
                    if (
                        self.config.skip_static
                        and reference is not None
                        and not _scene_changed(reference[0], frame.thumb)
                    ):
                        # Same scene as the last decoded frame: same codes, no decode.
                        self._counters.skipped_frames += 1
                        pending.append(_Pending(frame, reference[1]))
                        continue
                    future = executor.submit(self._work, frame)
                    future.add_done_callback(self._notify)
                    self._counters.decoded_frames += 1
                    reference = (frame.thumb, future)
                    pending.append(_Pending(frame, future))
                # Hand on, in frame order, every result that is ready; then refill the pool.
                if pending and (pending[0].codes is None or pending[0].codes.done()):
                    while pending and (pending[0].codes is None or pending[0].codes.done()):
                        item = pending.popleft()
                        decoded = self._codes_of(item)
                        for event in self.reader.observe(item.frame, decoded.codes):
                            if isinstance(event, Read) and event.code.key in decoded.quality:
                                quality = decoded.quality[event.code.key]
                                event = replace(event, measured=True, quality=quality)
                            await outbox.put(event)
                    continue
                if pending:
                    # A result or a new frame, whichever comes first (awaiting only the
                    # result would decode one frame at a time); every decode in flight
                    # wakes the stream when it is done.
                    await self._until_kicked(None if len(pending) >= in_flight else 1.0)
                    continue
                self._take_triggers()
                for event in self.reader.expire(self.clock(), self._latest):
                    await outbox.put(event)
                if mailbox.ended and not mailbox.holds_frame:
                    if mailbox.error is not None:
                        raise _as_camera_error(mailbox.error)
                    # The replay is over: a window still open closes as it would have.
                    for event in self.reader.expire(math.inf, self._latest):
                        await outbox.put(event)
                    return
                if self.backend.live and time.monotonic() - last_frame_at > stall_after:
                    raise CameraError(
                        f"no frame from camera {self.config.device!r} for {stall_after:.0f} s"
                    )
                if mailbox.holds_frame:
                    continue
                # Short while a window is open, so that it closes on time.
                await self._until_kicked(0.02 if self.reader.window else 0.5)
        finally:
            stop.set()
            mailbox.clear()  # unblock a replay grabber waiting for room
            for item in pending:
                if item.codes is not None:
                    item.codes.cancel()
            if grabber.is_alive():
                await asyncio.to_thread(grabber.join, 1.0)

    def _codes_of(self, item: _Pending) -> _Decoded:
        """The codes of a pending frame, in frame order; a failed decode counts as none."""
        if item.codes is None:
            self._shown = (item.frame, [])  # not decoded (outside a read window): no boxes
            return _NOTHING
        try:
            decoded = item.codes.result()  # done: the stream only takes finished frames
        except Exception as exc:
            self.health.errors += 1
            log.warning("camera %s: decoding frame %d failed: %s", self.name, item.frame.index, exc)
            return _NOTHING
        if item.codes is not self._last_counted:
            self._last_counted = item.codes
            self._counters.decodes += len(decoded.codes)
        self._shown = (item.frame, decoded.codes)
        return decoded

    def _take_triggers(self) -> None:
        with self._trigger_lock:
            triggers, self._pending_triggers = self._pending_triggers, []
        for opens, t in triggers:
            if opens:
                self.reader.trigger(t)
            else:
                self.reader.release(t)

    def _work(self, frame: CameraFrame) -> _Decoded:
        """Decoder thread: the frame's codes, then the quality indicators of those the
        reader is likely to report, on the same thread (no hand-over between the decode and
        the measure; a code already in view is not measured again)."""
        codes = self._decode(frame)
        quality: dict[tuple[str, str], Quality | None] = {}
        if self.config.quality:
            for code in codes:
                if code.key not in quality and self.reader.may_report(frame.t, code):
                    quality[code.key] = measure_quality(frame.gray, code)
        return _Decoded(codes, quality)

    def _decode(self, frame: CameraFrame) -> list[DecodedCode]:
        """Decoder thread: one frame through zxing-cpp (the GIL is released while it works)."""
        started = time.perf_counter()
        codes = decode_frame(frame.gray, self.options)
        self._counters.decode_ms.append((time.perf_counter() - started) * 1000)
        return codes

    async def _emit_loop(self, emit: Emit, outbox: asyncio.Queue[Read | NoRead]) -> None:
        """Hands reads and no-reads to the pipeline in order; feedback once each is durable."""
        while True:
            event = await outbox.get()
            try:
                scan = await self._to_scan(event)
                if not await self._emit_with_retries(emit, scan):
                    continue
                if isinstance(event, Read):
                    self._counters.reads += 1
                    self.health.scans += 1
                    self.health.last_scan_at = scan.read_at
                    self._counters.latency_ms.append((self.clock() - event.t) * 1000)
                    await _call_hook(self.on_good_read, scan)
                else:
                    self._counters.no_reads += 1
                    await _call_hook(self.on_no_read, scan)
            finally:
                outbox.task_done()

    async def _emit_with_retries(self, emit: Emit, scan: Scan) -> bool:
        """Emit `scan`, retrying a failing pipeline briefly: a code still in view is not
        reported again, so a read dropped here would be lost. False if it never went through."""
        for attempt in range(EMIT_ATTEMPTS):
            try:
                await emit(scan)
                return True
            except Exception as exc:
                # A failing pipeline must not stop the camera; the error is visible in health.
                self.health.errors += 1
                self.health.detail = f"emit failed: {exc}"
                log.warning("camera %s: could not hand over a scan: %s", self.name, exc)
                if attempt + 1 < EMIT_ATTEMPTS:
                    await asyncio.sleep(0.05 * 2**attempt)
        log.error(
            "camera %s: dropped %r after %d attempts", self.name, scan.raw_value, EMIT_ATTEMPTS
        )
        return False

    async def _to_scan(self, event: Read | NoRead) -> Scan:
        if isinstance(event, Read):
            code = event.code
            metadata = {"content_type": code.content_type, "decode": code.method}
            if event.trigger != "continuous":
                metadata["trigger"] = event.trigger
                metadata["window"] = str(event.window)
                metadata["window_codes"] = str(event.window_codes)
            quality = event.quality
            if self.config.quality and not event.measured and event.frame is not None:
                quality = await asyncio.to_thread(measure_quality, event.frame.gray, code)
            if self.config.quality and quality is not None:
                metadata.update(quality.as_metadata())
            return Scan(
                source=self.name,
                raw_value=code.text,
                symbology_identifier=code.symbology_identifier,
                symbology=code.format,
                capture_type=CaptureType.BARCODE,
                metadata=metadata,
            )
        image = None
        if event.frame is not None:
            image = await asyncio.to_thread(encode_jpeg, event.frame.gray, self.config.jpeg_quality)
        return Scan(
            source=self.name,
            raw_value="",
            capture_type=CaptureType.IMAGE,
            image=image,
            image_ext="jpg",
            metadata={
                "noread": "true",
                "trigger": event.trigger,
                "window_ms": str(round((event.closed_at - event.opened_at) * 1000)),
            },
        )


_NOTHING = _Decoded([], {})


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _as_camera_error(error: BaseException) -> CameraError:
    if isinstance(error, CameraError):
        return error
    return CameraError(f"camera backend failed: {type(error).__name__}: {error}")


async def _call_hook(hook: Feedback | None, scan: Scan) -> None:
    if hook is None:
        return
    try:
        result = hook(scan)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # Feedback (LEDs, buzzer) failing must not lose reads.
        log.exception("feedback hook %r failed", hook)


__all__ = [
    "CameraError",
    "CameraFrame",
    "CameraSource",
    "CameraStats",
    "NoRead",
    "Presence",
    "Read",
    "ReaderLogic",
    "bundled_samples_dir",
    "demo_source_config",
]
