"""GPIO feedback and conveyor I/O through gpiozero: LEDs, buzzer, reject output, photo-eye, button.

Who calls what, from which thread:

- ``good_read`` / ``no_read`` run on the event loop, once a scan is durable (through
  ``feedback_emit``, or a camera's ``on_good_read`` / ``on_no_read`` hooks); LED and buzzer
  patterns then play in gpiozero's own blink threads, so the loop never sleeps on a pin;
- ``on_capture`` is a ``Pipeline.on_finished`` hook (event loop): it pulses the reject
  output for rejected items, timed from the read, and plays the alert for expired or
  recalled items;
- the photo-eye and the session button are watched by gpiozero's threads: the photo-eye
  calls its listeners (a camera's thread-safe ``trigger()``) right there, for the lowest
  latency; button presses are handed to the loop with ``call_soon_threadsafe`` and run the
  async session callbacks there.

gpiozero is imported only when a GpioIO is made, so a station without GPIO never loads it.
Tests swap the pins for gpiozero's MockFactory (``Device.pin_factory = MockFactory()``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scanstation.config import BeepPattern, GpioConfig, RejectReason
from scanstation.hw import HardwareError
from scanstation.model import Capture, CaptureStatus, Emit, Scan

log = logging.getLogger(__name__)

Clock = Callable[[], float]
SessionCallback = Callable[[], Awaitable[object]]
TriggerListener = Callable[[], object]

TRIGGER_MEMORY_S = 30.0
"""How far back a capture is matched to the photo-eye trigger that opened its read window."""

STALE_FEEDBACK_S = 30.0
"""A capture finished this long after its read (resumed after a restart, retried later) gets
no LED, buzzer or reject: nobody is standing at the lane waiting for it any more."""


class GpioError(HardwareError):
    """A pin that cannot be used; the message names the pin, its function and what to check."""


@dataclass
class GpioCounters:
    """What the I/O did since start (for health, telemetry and the tests)."""

    good_reads: int = 0
    """Good-read feedback played."""
    no_reads: int = 0
    """No-read feedback played."""
    alerts: int = 0
    """Expired or recalled items signalled."""
    rejects: int = 0
    """Reject pulses sent."""
    missed_rejects: int = 0
    """Rejects due but skipped: the capture finished after the item had passed the gate."""
    triggers: int = 0
    """Photo-eye triggers handed to the listeners."""
    ignored_edges: int = 0
    """Photo-eye edges dropped by the debounce."""
    short_presses: int = 0
    long_presses: int = 0


def is_no_read(metadata: Mapping[str, Any]) -> bool:
    """True for the no-read frames a camera stores (metadata ``noread = "true"``).

    >>> is_no_read({"noread": "true", "trigger": "gpio"})
    True
    >>> is_no_read({"content_type": "GS1"})
    False
    """
    return str(metadata.get("noread", "")).lower() == "true"


def reject_reasons(capture: Capture) -> frozenset[RejectReason]:
    """Every reason a conveyor would reject this item (the config picks which ones count)."""
    reasons: set[RejectReason] = set()
    if is_no_read(capture.metadata):
        reasons.add("no_read")
    elif capture.status is CaptureStatus.NOT_FOUND:
        reasons.add("not_found")
    if capture.status is CaptureStatus.FAILED:
        reasons.add("failed")
    if capture.checks.get("expired"):
        reasons.add("expired")
    if capture.checks.get("recalled"):
        reasons.add("recalled")
    return frozenset(reasons)


class EdgeDebouncer:
    """Photo-eye debounce: an activation counts only after `window_s` without any edge.

    Every edge (rising or falling) restarts the quiet period, so the chatter at both ends
    of an item (beam broken, beam restored) opens one read window, not several. Pure: the
    caller passes the time.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last_edge = float("-inf")
        self._lock = threading.Lock()

    def edge(self, t: float, active: bool) -> bool:
        """Record an edge at `t`; True when it is an activation to act on."""
        with self._lock:
            quiet = t - self._last_edge >= self.window_s
            self._last_edge = t
            return active and quiet

    def release(self, t: float) -> bool:
        """Record a deactivation at `t`; True when it is a release to act on (the object
        has passed: the beam is restored after a quiet period, not chattering)."""
        with self._lock:
            quiet = t - self._last_edge >= self.window_s
            self._last_edge = t
            return quiet


class PressTracker:
    """Session button: tells short presses from long ones and drops contact bounce.

    Fed by gpiozero's pressed / held / released callbacks; pure apart from its state.
    """

    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self._pressed_at: float | None = None
        self._held = False
        self._lock = threading.Lock()

    def pressed(self, t: float) -> None:
        with self._lock:
            self._pressed_at = t
            self._held = False

    def held(self) -> Literal["long"] | None:
        """The button has been down for the long-press time: a long press, once."""
        with self._lock:
            if self._pressed_at is None or self._held:
                return None
            self._held = True
            return "long"

    def released(self, t: float) -> Literal["short"] | None:
        """A release ends a short press unless it was bounce or the press was already long."""
        with self._lock:
            pressed_at, self._pressed_at = self._pressed_at, None
            if pressed_at is None or self._held:
                return None
            return "short" if t - pressed_at >= self.debounce_s else None


def _gpio_hint(error: Exception) -> str:
    """What to do about a pin that gpiozero refused, by the kind of refusal."""
    match type(error).__name__:
        case "BadPinFactory":
            return (
                "No GPIO pin library could be loaded: on a Raspberry Pi install python3-lgpio "
                "(firmware-config/provision.sh does); on another machine remove the [gpio] "
                'pins or set [gpio] pin_factory = "mock"'
            )
        case "GPIOPinInUse":
            return "Another device in this configuration already uses the pin"
    return (
        "Check that the pin is free (no overlay such as 1-Wire, SPI or I2C, no other "
        "program) and that the service user is in the gpio group"
    )


def _make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory for [gpio] pin_factory (None: gpiozero's own choice)."""
    match name:
        case "auto":
            return None
        case "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        case "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        case "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        case "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory()
    raise GpioError(f"[gpio] pin_factory {name!r}: expected auto, lgpio, rpigpio, native or mock")


class GpioIO:
    """The station's GPIO: feedback outputs, the reject output, the photo-eye and the button."""

    def __init__(
        self,
        config: GpioConfig,
        *,
        pin_factory: Any = None,
        trigger_listeners: tuple[TriggerListener, ...] = (),
        release_listeners: tuple[TriggerListener, ...] = (),
        toggle_session: SessionCallback | None = None,
        new_session: SessionCallback | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.counters = GpioCounters()
        self.trigger_listeners: list[TriggerListener] = list(trigger_listeners)
        self.release_listeners: list[TriggerListener] = list(release_listeners)
        """Called when the photo-eye clears (the object has passed): object windows close."""
        self.toggle_session = toggle_session
        """Short press: start a session when none is active, else end it (async, on the loop)."""
        self.new_session = new_session
        """Long press: end the current session and start a new one (async, on the loop)."""
        self.clock = clock
        self.wall_clock = wall_clock
        self._debouncer = EdgeDebouncer(config.trigger_debounce_ms / 1000)
        self._presses = PressTracker(config.button_debounce_ms / 1000)
        self._trigger_times: deque[float] = deque(maxlen=256)
        self._trigger_times_lock = threading.Lock()
        self._tasks: set[asyncio.Task[object]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._rejected: OrderedDict[tuple[int, int], None] = OrderedDict()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # bound in run()

        factory = pin_factory if pin_factory is not None else _make_pin_factory(config.pin_factory)
        self._devices: list[Any] = []
        try:
            import gpiozero
        except ImportError as exc:  # pragma: no cover - gpiozero is a dependency
            raise GpioError(
                f"[gpio] pins are set but gpiozero cannot be imported ({exc}); "
                "install scanstation[pi]"
            ) from exc
        high = config.outputs_active_high
        self.good_read_led = self._open(
            "good_read", lambda pin: gpiozero.LED(pin, active_high=high, pin_factory=factory)
        )
        self.no_read_led = self._open(
            "no_read", lambda pin: gpiozero.LED(pin, active_high=high, pin_factory=factory)
        )
        self.buzzer = self._open(
            "buzzer", lambda pin: gpiozero.Buzzer(pin, active_high=high, pin_factory=factory)
        )
        self.reject = self._open(
            "reject_output",
            lambda pin: gpiozero.DigitalOutputDevice(
                pin, active_high=config.reject_active_high, pin_factory=factory
            ),
        )
        self.photo_eye = self._open(
            "trigger_input",
            lambda pin: gpiozero.DigitalInputDevice(
                pin, pull_up=config.trigger_pull_up, pin_factory=factory
            ),
        )
        self.button = self._open(
            "session_button",
            lambda pin: gpiozero.Button(
                pin,
                pull_up=config.button_pull_up,
                hold_time=config.long_press_s,
                pin_factory=factory,
            ),
        )
        if self.photo_eye is not None:
            self.photo_eye.when_activated = self._photo_eye_activated
            self.photo_eye.when_deactivated = self._photo_eye_deactivated
        if self.button is not None:
            self.button.when_pressed = self._button_pressed
            self.button.when_held = self._button_held
            self.button.when_released = self._button_released

    def _open(self, function: str, make: Callable[[int], Any]) -> Any:
        pin = getattr(self.config, function)
        if pin is None:
            return None
        try:
            device = make(pin)
        except Exception as exc:
            self.close()
            raise GpioError(
                f"[gpio] {function} = {pin}: cannot use GPIO{pin}: {type(exc).__name__}: {exc}. "
                + _gpio_hint(exc)
            ) from exc
        self._devices.append(device)
        return device

    # ---- feedback (event loop) ---------------------------------------------------------------

    def good_read(self, scan: Scan | None = None) -> None:
        """A read is durable: flash the good-read LED and beep (clears a no-read indication)."""
        self.counters.good_reads += 1
        if self.no_read_led is not None:
            self.no_read_led.off()
        if self.good_read_led is not None:
            self.good_read_led.blink(
                on_time=self.config.good_read_led_ms / 1000, off_time=0, n=1, background=True
            )
        self._beep(self.config.good_read_beep)

    def no_read(self, scan: Scan | None = None) -> None:
        """A read window closed without a code (or a capture was refused): no-read LED + beeps."""
        self.counters.no_reads += 1
        if self.good_read_led is not None:
            self.good_read_led.off()
        if self.no_read_led is not None:
            self.no_read_led.blink(
                on_time=self.config.no_read_led_ms / 1000, off_time=0, n=1, background=True
            )
        self._beep(self.config.no_read_beep)

    def alert(self) -> None:
        """An expired or recalled item: the no-read LED blinks with the alert beeps."""
        self.counters.alerts += 1
        on_ms, off_ms, count = self.config.alert_beep
        if self.good_read_led is not None:
            self.good_read_led.off()
        if self.no_read_led is not None and count > 0:
            self.no_read_led.blink(
                on_time=on_ms / 1000, off_time=off_ms / 1000, n=count, background=True
            )
        self._beep(self.config.alert_beep)

    def _beep(self, pattern: BeepPattern) -> None:
        on_ms, off_ms, count = pattern
        if self.buzzer is None or count == 0:
            return
        self.buzzer.blink(on_time=on_ms / 1000, off_time=off_ms / 1000, n=count, background=True)

    def feedback_emit(self, emit: Emit) -> Emit:
        """Wrap a source's emit: beep once the capture is durable, buzz no-read if refused.

        One place for every source (HID guns and serial scanners have no feedback hooks of
        their own); a camera's no-read frames (metadata noread) get the no-read pattern.
        """

        async def emit_with_feedback(scan: Scan) -> Capture:
            try:
                capture = await emit(scan)
            except Exception:
                self.no_read(scan)  # refused (disk full, …): the operator must notice
                raise
            if is_no_read(scan.metadata):
                self.no_read(scan)
            else:
                self.good_read(scan)
            return capture

        return emit_with_feedback

    # ---- conveyor reject and checkout alerts (Pipeline.on_finished, event loop) --------------

    async def on_capture(self, capture: Capture) -> None:
        """A capture reached its terminal status: reject and alert as configured."""
        if capture.revision > 1:
            return  # a retry, long after the item left the lane
        age = self.wall_clock() - capture.created
        if age > STALE_FEEDBACK_S:
            return
        if capture.checks.get("expired") or capture.checks.get("recalled"):
            self.alert()
        reasons = reject_reasons(capture) & frozenset(self.config.reject_on)
        if reasons:
            self.schedule_reject(capture, sorted(reasons))

    def schedule_reject(self, capture: Capture, reasons: Sequence[str]) -> bool:
        """Pulse the reject output when this capture's item reaches the gate (event loop).

        Also for other parts that reject an item (an output's match code). The gate is a
        fixed belt distance from the photo-eye, so the pulse is timed from the trigger that
        opened the read window (a no-read is stored only when the window closes), else from
        the read. Returns False when there is no reject output or the item is already past.
        """
        if self.reject is None:
            return False
        # One pulse per item: a NOT_FOUND read that an output's match code also rejects
        # must not pulse twice.
        key = (capture.id, capture.revision)
        if key in self._rejected:
            return True
        self._rejected[key] = None
        while len(self._rejected) > 1024:
            self._rejected.popitem(last=False)
        since = self.wall_clock() - self.reference_time(capture)
        wait = self.config.reject_delay_ms / 1000 - since
        why = ", ".join(reasons) or "rejected"
        if -wait * 1000 > self.config.reject_deadline_ms:
            self.counters.missed_rejects += 1
            log.warning(
                "reject of %s (%s) skipped: due %.0f ms ago, past reject_deadline_ms = %d",
                capture.public_id,
                why,
                -wait * 1000,
                self.config.reject_deadline_ms,
            )
            return False
        log.info("rejecting %s: %s", capture.public_id, why)
        if wait <= 0:
            self._pulse_reject()
            return True
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._pulse_reject()

        handle = asyncio.get_running_loop().call_later(wait, fire)
        self._timers.add(handle)
        return True

    def reference_time(self, capture: Capture) -> float:
        """When the item passed the reader: the photo-eye trigger of a gpio-triggered camera
        read (the latest at or before the capture), else the capture's creation time."""
        if capture.metadata.get("trigger") == "gpio":
            with self._trigger_times_lock:
                times = list(self._trigger_times)
            earlier = [
                t for t in times if capture.created - TRIGGER_MEMORY_S <= t <= capture.created
            ]
            if earlier:
                return max(earlier)
        return capture.created

    def _pulse_reject(self) -> None:
        if self.reject is None or self.reject.closed:
            return
        self.counters.rejects += 1
        self.reject.blink(
            on_time=self.config.reject_pulse_ms / 1000, off_time=0, n=1, background=True
        )

    # ---- inputs (gpiozero threads) ---------------------------------------------------------

    def _photo_eye_activated(self) -> None:
        if not self._debouncer.edge(self.clock(), active=True):
            self.counters.ignored_edges += 1
            return
        self.counters.triggers += 1
        with self._trigger_times_lock:
            self._trigger_times.append(self.wall_clock())
        for listener in list(self.trigger_listeners):
            try:
                listener()
            except Exception:
                log.exception("photo-eye listener %r failed", listener)

    def _photo_eye_deactivated(self) -> None:
        if not self._debouncer.release(self.clock()):
            return  # chatter: the beam is not clear for good yet
        for listener in list(self.release_listeners):
            try:
                listener()
            except Exception:
                log.exception("photo-eye release listener %r failed", listener)

    def _button_pressed(self) -> None:
        self._presses.pressed(self.clock())

    def _button_held(self) -> None:
        if self._presses.held() == "long":
            self.counters.long_presses += 1
            self._on_loop(self.new_session, "long press")

    def _button_released(self) -> None:
        if self._presses.released(self.clock()) == "short":
            self.counters.short_presses += 1
            self._on_loop(self.toggle_session, "short press")

    def _on_loop(self, callback: SessionCallback | None, what: str) -> None:
        loop = self._loop
        if callback is None:
            log.info("session button %s: no session callback is wired", what)
            return
        if loop is None or loop.is_closed():
            log.warning("session button %s before the daemon was running: ignored", what)
            return
        loop.call_soon_threadsafe(self._spawn, callback, what)

    def _spawn(self, callback: SessionCallback, what: str) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(callback())
        self._tasks.add(task)

        def done(finished: asyncio.Task[object]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and (exc := finished.exception()) is not None:
                log.error("session button %s failed: %s", what, exc, exc_info=exc)

        task.add_done_callback(done)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold the pins until cancelled (a TaskGroup task); outputs go off when it ends."""
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    async def idle(self) -> None:
        """Wait for session callbacks started by button presses (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """Switch every output off and release the pins (safe to call twice)."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for device in reversed(self._devices):
            try:
                if hasattr(device, "off") and not device.closed:
                    device.off()
                device.close()
            except Exception:
                log.exception("closing %r failed", device)
        self._devices.clear()

    @property
    def state(self) -> dict[str, Any]:
        """Counters and which functions are wired, for health pages and telemetry."""
        wired = [name for name in self.config.pin_names if getattr(self.config, name) is not None]
        return {"pins": wired, **asdict(self.counters)}


__all__ = [
    "EdgeDebouncer",
    "GpioCounters",
    "GpioError",
    "GpioIO",
    "PressTracker",
    "is_no_read",
    "reject_reasons",
]
