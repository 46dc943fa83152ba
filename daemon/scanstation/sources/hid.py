"""USB HID barcode guns: a pure keystroke decoder and the evdev source around it.

The decoder (:class:`KeystrokeDecoder`) turns a stream of evdev key events into scans:
the keyboard layout, Shift, Caps Lock, AltGr, dead keys, the numeric keypad, Alt+numpad
codes, Ctrl+] as GS, function-key mappings, prefix/suffix framing, the Enter or Tab
terminator, and an inter-key timeout that tells a scanner (a burst of keys a few
milliseconds apart) from a person typing. It is plain code: `scanstation hid-replay` and
the tests run it on recordings without any device.

The source (:class:`HidSource`) opens the scanner's evdev node (a stable
/dev/input/by-id path, or ``auto``), grabs it so its keystrokes never reach the console,
decodes, and hands every scan to the pipeline, one at a time and in order. When the device
goes away it reports ``reconnecting`` and opens it again when it is back, without a restart.
The devices come from a factory (``evdev.InputDevice`` by default; :class:`FakeInputBus`
in tests and benchmarks), so everything runs on machines without /dev/input.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from scanstation.barcode.scantext import ScanText, split_scan
from scanstation.hw import keymaps
from scanstation.hw.keymaps import (
    CTRL_KEYS,
    EV_KEY,
    FUNCTION_KEYS,
    KEY_BACKSPACE,
    KEY_CAPSLOCK,
    KEY_ENTER,
    KEY_ESC,
    KEY_KPDOT,
    KEY_KPENTER,
    KEY_LEFTALT,
    KEY_LEFTMETA,
    KEY_NUMLOCK,
    KEY_RIGHTALT,
    KEY_RIGHTMETA,
    KEY_TAB,
    KEYPAD_DIGITS,
    KEYPAD_OPERATORS,
    SHIFT_KEYS,
    KeyEvent,
)
from scanstation.model import Emit, Scan
from scanstation.sources import SourceError
from scanstation.sources.base import SourceHealth

if TYPE_CHECKING:
    from scanstation.config import HidSourceConfig

log = logging.getLogger(__name__)

Terminator = Literal["enter", "tab", "none"]

_MODIFIER_KEYS = frozenset(
    {*SHIFT_KEYS, *CTRL_KEYS, KEY_LEFTALT, KEY_RIGHTALT, KEY_LEFTMETA, KEY_RIGHTMETA}
)
_FUNCTION_KEY_NAMES = {code: name for name, code in FUNCTION_KEYS.items()}


class HidError(SourceError, ValueError):
    """A bad HID setting or recording; the message names the value and what was expected."""


@dataclass(frozen=True, slots=True)
class DecoderSettings:
    """How one scanner frames its scans (built from a HidSourceConfig or CLI options)."""

    layout: str = "us"
    """Keyboard layout the scanner is programmed for, as xkb spells it: de, ch(fr), us(intl)."""
    prefix: str = ""
    """Text every scan starts with (stripped); a scan without it is dropped."""
    suffix: str = ""
    """Text every scan ends with (stripped); a scan without it is dropped."""
    terminator: Terminator = "enter"
    """The key that ends a scan; ``none``: a pause of ``inter_key_timeout`` (or the suffix)."""
    inter_key_timeout: float = 0.05
    """Seconds: a longer pause between keys ends a scan (or drops it, with a terminator)."""
    gs_substitutes: tuple[str, ...] = ()
    """Visible stand-ins for GS that the scanner types, e.g. ``<GS>``; replaced by GS."""
    function_keys: Mapping[str, str] = field(default_factory=dict)
    """Function key name (F1..F24) to the text it stands for, e.g. ``{"F8": "\\x1d"}``."""
    aim_identifier: bool = True
    """Split a leading AIM symbology identifier (``]d2``) off into symbology_identifier."""
    min_length: int = 1
    """Scans shorter than this (after framing) are dropped as stray key presses."""

    def __post_init__(self) -> None:
        keymaps.get_layout(self.layout)  # raises KeymapError naming the known layouts
        unknown = sorted(set(self.function_keys) - set(FUNCTION_KEYS))
        if unknown:
            raise HidError(f"unknown function key {unknown[0]!r}; expected F1 to F24")
        if any(not s for s in self.gs_substitutes):
            raise HidError("a GS substitute is empty; expected visible text such as '<GS>'")
        if self.inter_key_timeout <= 0:
            raise HidError(
                f"inter-key timeout {self.inter_key_timeout!r} s must be above 0, e.g. 0.05"
            )

    @classmethod
    def from_config(cls, config: HidSourceConfig) -> DecoderSettings:
        """The decoder settings of a ``[[sources]] type = "hid"`` entry."""
        return cls(
            layout=config.layout,
            prefix=config.prefix,
            suffix=config.suffix,
            terminator=config.terminator,
            inter_key_timeout=config.inter_key_timeout_ms / 1000,
            gs_substitutes=tuple(config.gs_substitutes),
            function_keys=dict(config.function_keys),
            aim_identifier=config.aim_identifier,
            min_length=config.min_length,
        )


@dataclass(frozen=True, slots=True)
class DroppedScan:
    """Keystrokes that did not make a scan, and why (they are logged, never emitted)."""

    reason: str
    """What was wrong, in words a user can act on."""
    text: str
    """What had been typed so far."""
    at: float
    """Event time at which it was dropped."""


Outcome = ScanText | DroppedScan


class KeystrokeDecoder:
    """Turns evdev key events into scans; feed events in order, poll when idle.

    >>> decoder = KeystrokeDecoder(DecoderSettings(layout="de"))
    >>> events = keymaps.keystrokes("de", "]d2010950600013435210ABC\\x1d17270101")
    >>> [o.raw_value for e in events for o in decoder.feed(*e)]
    ['010950600013435210ABC\\x1d17270101']
    """

    def __init__(self, settings: DecoderSettings) -> None:
        self.settings = settings
        self.layout = keymaps.get_layout(settings.layout)
        self._held: set[int] = set()
        self.caps_lock = False
        self.num_lock = True  # scanners assume Num Lock on; a NUMLOCK press toggles it
        self._text: list[str] = []
        self._dead = ""
        self._alt_digits = ""
        self._started_at: float | None = None
        self._last_press: float | None = None
        self._presses = 0
        self._ignored: list[str] = []
        self._substitutes = sorted(settings.gs_substitutes, key=len, reverse=True)

    # -- public ---------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True while a scan is under way (typed text, a dead key or Alt digits waiting)."""
        return bool(self._text or self._dead or self._alt_digits)

    @property
    def deadline(self) -> float | None:
        """Event time at which :meth:`poll` ends or drops the pending scan, or None."""
        if not self.pending or self._last_press is None:
            return None
        return self._last_press + self.settings.inter_key_timeout

    def feed(self, t: float, type_: int, code: int, value: int) -> list[Outcome]:
        """Take one evdev event (time, type, code, value); return the scans it completes."""
        if type_ != EV_KEY:
            return []  # SYN reports and MSC scan codes carry nothing we need
        if value == 0:
            return self._release(t, code)
        if value != 1:
            return []  # autorepeat: a scanner never holds a key that long
        out: list[Outcome] = []
        if self.pending and self._last_press is not None:
            gap = t - self._last_press
            if gap > self.settings.inter_key_timeout:
                out.extend(self._end_by_pause(t, gap))
        self._last_press = t
        self._presses += 1
        out.extend(self._press(t, code))
        return out

    def feed_all(self, events: Iterable[KeyEvent]) -> list[Outcome]:
        """Feed a whole recording; a scan still pending at its end is ended by :meth:`poll`."""
        out: list[Outcome] = []
        last = 0.0
        for t, type_, code, value in events:
            out.extend(self.feed(t, type_, code, value))
            last = t
        out.extend(self.poll(last + self.settings.inter_key_timeout + 1.0))
        return out

    def poll(self, now: float) -> list[Outcome]:
        """End or drop the pending scan when no key came for the inter-key timeout."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        assert self._last_press is not None
        return self._end_by_pause(now, now - self._last_press)

    def reset(self, reason: str, at: float) -> list[Outcome]:
        """Forget all state (the device went away); a pending scan is dropped for ``reason``."""
        out: list[Outcome] = []
        if self.pending:
            out.append(self._drop(reason, at))
        self._held.clear()
        self._last_press = None
        return out

    # -- keys -----------------------------------------------------------------------------

    def _release(self, t: float, code: int) -> list[Outcome]:
        self._held.discard(code)
        if code in (KEY_LEFTALT, KEY_RIGHTALT) and self._alt_digits:
            digits, self._alt_digits = self._alt_digits, ""
            char = keymaps.alt_code_char(digits)
            if char:
                return self._append(t, char)
            self._ignored.append(f"Alt+{digits}")
        return []

    def _press(self, t: float, code: int) -> list[Outcome]:
        if code in _MODIFIER_KEYS:
            self._held.add(code)
            return []
        if code == KEY_CAPSLOCK:
            self.caps_lock = not self.caps_lock
            return []
        if code == KEY_NUMLOCK:
            self.num_lock = not self.num_lock
            return []
        held = self._held
        ctrl = bool(held & CTRL_KEYS)
        shift = bool(held & SHIFT_KEYS)
        # Windows treats Ctrl+Alt as AltGr; scanners use either to reach the third level.
        altgr = KEY_RIGHTALT in held or (ctrl and KEY_LEFTALT in held)
        alt = KEY_LEFTALT in held and not ctrl
        if alt and code in KEYPAD_DIGITS:
            self._alt_digits += KEYPAD_DIGITS[code]
            if self._started_at is None:
                self._started_at = t
            return []
        if alt or held & {KEY_LEFTMETA, KEY_RIGHTMETA}:
            self._ignored.append(f"shortcut key {code}")
            return []
        if ctrl and not altgr:
            char = self.layout.control_char(code)
            if char in ("\r", "\n") or code in (KEY_ENTER, KEY_KPENTER):
                return self._key_enter(t)
            if char == "\t" or code == KEY_TAB:
                return self._key_tab(t)
            if char:
                return self._append(t, char)
            self._ignored.append(f"Ctrl+key {code}")
            return []
        if code in (KEY_ENTER, KEY_KPENTER):
            return self._key_enter(t)
        if code == KEY_TAB:
            return self._key_tab(t)
        if code in _FUNCTION_KEY_NAMES:
            name = _FUNCTION_KEY_NAMES[code]
            text = self.settings.function_keys.get(name)
            if text is None:
                self._ignored.append(f"{name} (not in function_keys)")
                return []
            return self._append(t, text)
        if code in KEYPAD_DIGITS or code in KEYPAD_OPERATORS or code == KEY_KPDOT:
            if code in KEYPAD_OPERATORS:  # these type the same with Num Lock off
                return self._append(t, KEYPAD_OPERATORS[code])
            if not self.num_lock:
                self._ignored.append(f"keypad key {code} with Num Lock off")
                return []
            if code == KEY_KPDOT:
                return self._append(t, self.layout.keypad_decimal)
            return self._append(t, KEYPAD_DIGITS[code])
        if code == KEY_BACKSPACE:
            if self._text:
                self._text.pop()
            return []
        if code == KEY_ESC:
            return []
        level = (keymaps.ALTGR if altgr else keymaps.BASE) + (1 if shift else 0)
        char, dead = self.layout.char(code, level, self.caps_lock)
        if not char:
            self._ignored.append(f"key {code} at level {level}")
            return []
        if self._dead:
            accent, self._dead = self._dead, ""
            composed = keymaps.compose(accent, char)
            if composed is not None:
                return self._append(t, composed)
            out = self._append(t, keymaps.dead_key_text(accent))
            if dead:
                self._dead = char
                return out
            return out + self._append(t, char)
        if dead:
            self._dead = char
            if self._started_at is None:
                self._started_at = t
            return []
        return self._append(t, char)

    def _key_enter(self, t: float) -> list[Outcome]:
        if self.settings.terminator == "enter":
            return self._finish(t)
        return self._append(t, "\n")

    def _key_tab(self, t: float) -> list[Outcome]:
        if self.settings.terminator == "tab":
            return self._finish(t)
        return self._append(t, "\t")

    def _append(self, t: float, text: str) -> list[Outcome]:
        if self._started_at is None:
            self._started_at = t
        self._text.append(text)
        suffix = self.settings.suffix
        if (
            self.settings.terminator == "none"
            and suffix
            and "".join(self._text[-len(suffix) :]).endswith(suffix)
        ):
            return self._finish(t)
        return []

    # -- ending a scan --------------------------------------------------------------------

    def _end_by_pause(self, t: float, gap: float) -> list[Outcome]:
        if self.settings.terminator == "none":
            return self._finish(t)
        key = "Enter" if self.settings.terminator == "enter" else "Tab"
        return [
            self._drop(
                f"no {key} within {self.settings.inter_key_timeout * 1000:.0f} ms "
                f"(pause of {gap * 1000:.0f} ms): typed by hand, or a scanner slower than "
                "inter_key_timeout_ms",
                t,
            )
        ]

    def _take(self) -> tuple[str, float, int]:
        """Clear the scan state; return what was typed, when it started and how many keys."""
        if self._dead:
            self._text.append(keymaps.dead_key_text(self._dead))  # a dead key at the end
        text = "".join(self._text)
        started = self._started_at if self._started_at is not None else 0.0
        presses = self._presses
        self._text.clear()
        self._dead = ""
        self._alt_digits = ""
        self._started_at = None
        self._presses = 0
        self._ignored.clear()
        return text, started, presses

    def _drop(self, reason: str, at: float) -> DroppedScan:
        ignored = list(self._ignored)
        text, _, _ = self._take()
        if ignored:
            reason += f"; ignored: {', '.join(ignored[:5])}"
        log.debug("dropped keystrokes %r: %s", text, reason)
        return DroppedScan(reason=reason, text=text, at=at)

    def _finish(self, t: float) -> list[Outcome]:
        if not self.pending:
            self._take()  # a lone Enter: nothing was scanned
            return []
        ignored = list(self._ignored)
        text, started, presses = self._take()
        settings = self.settings
        if settings.prefix:
            if not text.startswith(settings.prefix):
                return [
                    self._dropped(f"does not start with the prefix {settings.prefix!r}", text, t)
                ]
            text = text[len(settings.prefix) :]
        if settings.suffix:
            if not text.endswith(settings.suffix):
                return [self._dropped(f"does not end with the suffix {settings.suffix!r}", text, t)]
            text = text[: -len(settings.suffix)]
        identifier, text = split_scan(text, settings.aim_identifier, self._substitutes)
        if len(text) < settings.min_length:
            return [
                self._dropped(
                    f"{len(text)} characters, fewer than min_length={settings.min_length}",
                    text,
                    t,
                )
            ]
        if ignored:
            log.debug("scan %r: ignored %s", text, ", ".join(ignored))
        return [
            ScanText(
                raw_value=text,
                symbology_identifier=identifier,
                started_at=started,
                ended_at=t,
                keystrokes=presses,
            )
        ]

    def _dropped(self, reason: str, text: str, at: float) -> DroppedScan:
        log.debug("dropped scan %r: %s", text, reason)
        return DroppedScan(reason=reason, text=text, at=at)


def decode_recording(events: Iterable[KeyEvent], settings: DecoderSettings) -> list[Outcome]:
    """Decode a whole recording (what `scanstation hid-replay` prints)."""
    return KeystrokeDecoder(settings).feed_all(events)


# --- Devices --------------------------------------------------------------------------------


class InputEventLike(Protocol):
    """What the source reads from a device (evdev.InputEvent has these)."""

    type: int
    code: int
    value: int

    def timestamp(self) -> float: ...


class InputDeviceLike(Protocol):
    """The part of evdev.InputDevice the source uses."""

    path: str
    name: str

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def close(self) -> None: ...

    def async_read_loop(self) -> AsyncIterator[InputEventLike]: ...


DeviceFactory = Callable[[str], InputDeviceLike]
"""Opens a device node by path; raises OSError (ENOENT, EACCES, ENODEV) when it cannot."""

BY_ID = Path("/dev/input/by-id")

# Words in the names of USB barcode scanners (device name or by-id link), and the USB vendor
# ids of the main makers: Honeywell/Metrologic, Hand Held Products, Zebra/Symbol, Datalogic,
# Newland, Opticon, Code Corp.
SCANNER_WORDS = re.compile(
    r"scan|barcode|bar_code|bar code|honeywell|metrologic|hand.?held|symbol|zebra|motorola"
    r"|datalogic|newland|opticon|zebex|unitech|netum|inateck|eyoyo|code.?corp",
    re.IGNORECASE,
)
SCANNER_VENDOR_IDS = frozenset({0x0C2E, 0x0536, 0x05E0, 0x05F9, 0x1EAB, 0x065A, 0x0D3B})


def looks_like_scanner(name: str, vendor: int | None = None) -> bool:
    """True when a device name (or by-id link name) or USB vendor id says barcode scanner.

    >>> looks_like_scanner("usb-Honeywell_Imaging___Mobility_1900-event-kbd")
    True
    >>> looks_like_scanner("AT Translated Set 2 keyboard")
    False
    """
    return bool(SCANNER_WORDS.search(name)) or (vendor is not None and vendor in SCANNER_VENDOR_IDS)


def open_evdev(path: str) -> InputDeviceLike:
    """The default device factory: evdev.InputDevice (imported here, so the module imports
    without evdev)."""
    try:
        import evdev
    except ImportError as exc:  # pragma: no cover - evdev is a Linux dependency
        raise OSError(errno.ENOSYS, "python-evdev is not installed (pip install evdev)") from exc
    device: InputDeviceLike = evdev.InputDevice(path)  # type: ignore[assignment]
    return device


def discover_scanners(by_id: Path = BY_ID) -> list[str]:
    """Keyboard-like /dev/input/by-id links whose name looks like a barcode scanner.

    Only the names of the links are used (no device is opened), so this never touches the
    station's real keyboard. A scanner whose name says nothing must be configured by path.
    """
    try:
        links = sorted(by_id.iterdir())
    except OSError:
        return []
    return [
        str(link)
        for link in links
        if link.name.endswith("-event-kbd") and looks_like_scanner(link.name)
    ]


def _describe_os_error(path: str, exc: OSError) -> str:
    hints = {
        errno.ENOENT: "not plugged in (waiting for it)",
        errno.ENODEV: "unplugged (waiting for it)",
        errno.EACCES: "permission denied: run as a member of the 'input' group",
        errno.EPERM: "permission denied: run as a member of the 'input' group",
        errno.EBUSY: "grabbed by another program (stop it, or set grab = false)",
        errno.ENOSYS: str(exc.strerror),
    }
    return f"{path}: {hints.get(exc.errno or 0, exc.strerror or str(exc))}"


# --- The source -----------------------------------------------------------------------------


class HidSource:
    """A USB HID barcode gun (or several, with ``device = "auto"``) read through evdev."""

    kind = "hid"

    def __init__(
        self,
        config: HidSourceConfig,
        *,
        device_factory: DeviceFactory | None = None,
        discover: Callable[[], list[str]] | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        rescan_interval: float = 2.0,
    ) -> None:
        self.config = config
        self.name = config.name
        self.settings = DecoderSettings.from_config(config)
        self.health = SourceHealth(name=config.name, kind=self.kind)
        self._open = device_factory or open_evdev
        self._discover = discover or discover_scanners
        self._backoff = (backoff_initial, backoff_max)
        self._rescan_interval = rescan_interval
        self._scans: asyncio.Queue[Scan] = asyncio.Queue()
        self._device_states: dict[str, tuple[str, str]] = {}
        self.dropped: list[DroppedScan] = []
        """Recent dropped keystrokes (the last 100), for status pages and tests."""

    async def run(self, emit: Emit) -> None:
        """Read until cancelled: open, grab, decode, emit; reopen devices that come back."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._emit_loop(emit))
                if self.config.device == "auto":
                    await self._auto_loop(tasks)
                else:
                    await self._device_loop(self.config.device)
        finally:
            self.health.set_state("stopped", self.health.detail)

    # -- devices --------------------------------------------------------------------------

    async def _auto_loop(self, tasks: asyncio.TaskGroup) -> None:
        running: dict[str, asyncio.Task[None]] = {}
        while True:
            found = set(self._discover())
            for path in sorted(found):
                if path not in running or running[path].done():
                    running[path] = tasks.create_task(self._device_loop(path))
            for path in list(running):
                state = self._device_states.get(path, ("", ""))[0]
                if path not in found and state != "open":
                    running.pop(path).cancel()
                    self._device_states.pop(path, None)
            if not running:
                self.health.set_state(
                    "reconnecting",
                    "no barcode scanner found in /dev/input/by-id; plug one in or set device "
                    "to its /dev/input/by-id path",
                )
            else:
                self._update_health()
            await asyncio.sleep(self._rescan_interval)

    async def _device_loop(self, path: str) -> None:
        delay, longest = self._backoff
        while True:
            try:
                device = self._open(path)
            except OSError as exc:
                self._set_device(path, "waiting", _describe_os_error(path, exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            try:
                if self.config.grab:
                    device.grab()
                delay = self._backoff[0]
                self._set_device(path, "open", f"{path}: reading {device.name!r}")
                log.info("%s: reading %s (%s)", self.name, path, device.name)
                await self._read(path, device)
            except OSError as exc:
                self._set_device(path, "lost", _describe_os_error(path, exc))
                log.warning("%s: %s", self.name, _describe_os_error(path, exc))
            finally:
                with contextlib.suppress(OSError):
                    if self.config.grab:
                        device.ungrab()
                with contextlib.suppress(OSError):
                    device.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _read(self, path: str, device: InputDeviceLike) -> None:
        """Decode one open device until it fails (raises the OSError that ended it)."""
        loop = asyncio.get_running_loop()
        events: deque[KeyEvent | OSError] = deque()
        wake = asyncio.Event()
        decoder = KeystrokeDecoder(self.settings)
        # The pump never gets cancelled mid-read (evdev's async iterator loses the batch it
        # was reading if its future is cancelled); the decoder waits on `wake` instead and
        # then takes every event that has arrived, so a burst costs one wake-up.
        pump = asyncio.create_task(self._pump(device, events, wake))
        last_t, last_loop = 0.0, loop.time()
        try:
            while True:
                if not events:
                    wake.clear()
                    deadline = decoder.deadline
                    timeout = None
                    if deadline is not None:
                        timeout = max(0.0, deadline - (last_t + loop.time() - last_loop))
                    try:
                        await asyncio.wait_for(wake.wait(), timeout)
                    except TimeoutError:
                        self._deliver(path, decoder.poll(last_t + loop.time() - last_loop))
                        continue
                while events:
                    item = events.popleft()
                    if isinstance(item, OSError):
                        at = last_t + loop.time() - last_loop
                        self._deliver(path, decoder.reset("the device went away mid-scan", at))
                        raise item
                    last_t = item[0]
                    self._deliver(path, decoder.feed(*item))
                last_loop = loop.time()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    @staticmethod
    async def _pump(
        device: InputDeviceLike, events: deque[KeyEvent | OSError], wake: asyncio.Event
    ) -> None:
        try:
            async for event in device.async_read_loop():
                if event.type == EV_KEY:
                    events.append((event.timestamp(), event.type, event.code, event.value))
                    wake.set()
        except OSError as exc:
            events.append(exc)
        else:
            events.append(OSError(errno.ENODEV, "the device stopped sending"))
        wake.set()

    def _deliver(self, path: str, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, DroppedScan):
                self.dropped = [*self.dropped[-99:], outcome]
                log.warning(
                    "%s: dropped keystrokes %r from %s: %s",
                    self.name,
                    outcome.text,
                    path,
                    outcome.reason,
                )
                continue
            self._scans.put_nowait(
                Scan(
                    source=self.name,
                    raw_value=outcome.raw_value,
                    symbology_identifier=outcome.symbology_identifier,
                    symbology=outcome.symbology,
                    metadata={"device": path},
                    read_at=outcome.ended_at if outcome.ended_at > 1e9 else time.time(),
                )
            )

    async def _emit_loop(self, emit: Emit) -> None:
        """Hand scans over one at a time, in order; each returns once it is durable."""
        while True:
            scan = await self._scans.get()
            try:
                await emit(scan)
            except Exception:
                self.health.errors += 1
                log.exception("%s: could not store scan %r", self.name, scan.raw_value)
                continue
            self.health.scans += 1
            self.health.last_scan_at = time.time()

    # -- health ---------------------------------------------------------------------------

    def _set_device(self, path: str, state: str, detail: str) -> None:
        self._device_states[path] = (state, detail)
        self._update_health()

    def _update_health(self) -> None:
        states = self._device_states.values()
        detail = "; ".join(d for _, d in states)
        if any(s == "open" for s, _ in states):
            self.health.set_state("running", detail)
        else:
            self.health.set_state("reconnecting", detail)


# --- Fakes: a device bus that behaves like the kernel's, for tests and benchmarks ------------


@dataclass(slots=True)
class FakeInputEvent:
    """An input event as evdev.InputEvent presents it."""

    sec: int
    usec: int
    type: int
    code: int
    value: int

    def timestamp(self) -> float:
        return self.sec + self.usec / 1_000_000


class FakeInputDevice:
    """One open handle on a fake device node, like evdev.InputDevice on a real one.

    Events typed while the handle is open arrive through :meth:`async_read_loop`; when the
    device is unplugged, reading raises OSError(ENODEV) and events not yet read are lost, as
    the kernel's evdev does.
    """

    def __init__(self, bus: FakeInputBus, path: str, name: str, generation: int) -> None:
        self.bus = bus
        self.path = path
        self.name = name
        self.generation = generation
        self.closed = False
        self._queue: asyncio.Queue[FakeInputEvent | None] = asyncio.Queue()

    def _alive(self) -> bool:
        return not self.closed and self.bus._generation.get(self.path) == self.generation

    def grab(self) -> None:
        if not self._alive():
            raise OSError(errno.ENODEV, "No such device")
        holder = self.bus.grabbed_by.get(self.path)
        if holder is not None and holder is not self and holder._alive():
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.bus.grabbed_by[self.path] = self
        self.bus.grab_count[self.path] = self.bus.grab_count.get(self.path, 0) + 1
        self.bus._changed()

    def ungrab(self) -> None:
        if self.bus.grabbed_by.get(self.path) is self:
            del self.bus.grabbed_by[self.path]
        if not self._alive():
            raise OSError(errno.ENODEV, "No such device")

    def close(self) -> None:
        self.closed = True
        if self.bus.grabbed_by.get(self.path) is self:
            del self.bus.grabbed_by[self.path]
        self._queue.put_nowait(None)
        self.bus._changed()

    async def async_read_loop(self) -> AsyncIterator[FakeInputEvent]:
        while True:
            if not self._alive():
                raise OSError(errno.ENODEV, "No such device")
            event = await self._queue.get()
            if event is None or not self._alive():
                raise OSError(errno.ENODEV, "No such device")
            yield event


class FakeInputBus:
    """Fake /dev/input: plug, unplug and type on fake scanners; :meth:`open` is the factory."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._generation: dict[str, int] = {}
        self._handles: list[FakeInputDevice] = []
        self.grabbed_by: dict[str, FakeInputDevice] = {}
        self.grab_count: dict[str, int] = {}
        """How many times each path was grabbed (a replug shows as one more)."""
        self._event = asyncio.Event()

    def plug(self, path: str, name: str = "Fake Barcode Scanner") -> None:
        """Make a device appear at ``path`` (a new kernel device each time)."""
        self._names[path] = name
        self._generation[path] = self._generation.get(path, 0) + 1
        self._changed()

    def unplug(self, path: str) -> None:
        """Make the device at ``path`` disappear; open handles fail with ENODEV."""
        self._names.pop(path, None)
        self._generation[path] = self._generation.get(path, 0) + 1
        self.grabbed_by.pop(path, None)
        for handle in self._handles:
            if handle.path == path:
                handle._queue.put_nowait(None)
        self._changed()

    def paths(self) -> list[str]:
        """The plugged-in devices (a ``discover`` function for HidSource)."""
        return sorted(self._names)

    def open(self, path: str) -> FakeInputDevice:
        """Open ``path`` like evdev.InputDevice(path) does."""
        if path not in self._names:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        handle = FakeInputDevice(self, path, self._names[path], self._generation[path])
        self._handles = [h for h in self._handles if h._alive()] + [handle]
        return handle

    def type(self, path: str, events: Iterable[KeyEvent], *, start: float | None = None) -> int:
        """Deliver recorded events to the device's readers; returns how many were delivered.

        Event times are offsets from ``start`` (default: now). Like the kernel, a grabbed
        device delivers only to the grabbing handle, and nobody gets events typed while the
        device has no reader.
        """
        base = time.time() if start is None else start
        holder = self.grabbed_by.get(path)
        readers = [holder] if holder is not None else list(self._handles)
        readers = [h for h in readers if h.path == path and h._alive()]
        count = 0
        for t, type_, code, value in events:
            stamp = base + t
            sec = int(stamp)
            event = FakeInputEvent(sec, round((stamp - sec) * 1_000_000), type_, code, value)
            for reader in readers:
                reader._queue.put_nowait(event)
            count += 1
        return count if readers else 0

    def _changed(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_grabbed(self, path: str, times: int = 1) -> None:
        """Wait until ``path`` has been grabbed ``times`` times in all and is grabbed now.

        Callers bound the wait with ``asyncio.timeout``.
        """
        while not (
            self.grab_count.get(path, 0) >= times
            and path in self.grabbed_by
            and self.grabbed_by[path]._alive()
        ):
            await self._event.wait()
