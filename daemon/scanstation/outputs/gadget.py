"""USB HID keyboard gadget: type reads into a POS as a keyboard wedge does, via /dev/hidgN.

A Pi in USB device mode (firmware-config/usb-gadget.sh) shows the host a boot keyboard; each
8-byte write to /dev/hidg0 is one input report: modifier bits, a reserved byte, up to six
key usages. The text is turned into key presses with the same layout tables the HID
*source* uses to read guns (hw/keymaps.py, from xkb-data), for the layout the *host* is
set to, so a German POS gets ``z`` from the key labelled Z on its keyboard. GS (ASCII 29) is
Ctrl + the key right of P, as GS1-aware POS software expects, or Alt+0029 or a visible
substitute.

Writes are non-blocking: the gadget takes one report per host poll (1 ms at high speed),
and the writer waits for POLLOUT on the event loop, never in a thread. The host's LED
report (Caps Lock) is read back so that letters come out in the right case.

:func:`reports_to_events` is the host's side: it turns reports back into evdev key events,
which the HID source's decoder reads back to text (the tests and the bench use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Literal, NoReturn

from scanstation.config import KeyboardGadgetOutputConfig
from scanstation.hw import keymaps
from scanstation.hw.keymaps import GS, KeyEvent, Stroke
from scanstation.outputs.base import LiveRead, LiveSink, OutputError

log = logging.getLogger(__name__)

REPORT_LENGTH = 8
LED_CAPS_LOCK = 0x02
NO_KEYS = bytes(REPORT_LENGTH)

# Modifier keys -> bit in the report's first byte (HID Usage Tables, keyboard page 0xE0..0xE7).
MODIFIER_BITS: dict[int, int] = {
    keymaps.KEY_LEFTCTRL: 0x01,
    keymaps.KEY_LEFTSHIFT: 0x02,
    keymaps.KEY_LEFTALT: 0x04,
    keymaps.KEY_LEFTMETA: 0x08,
    keymaps.KEY_RIGHTCTRL: 0x10,
    keymaps.KEY_RIGHTSHIFT: 0x20,
    keymaps.KEY_RIGHTALT: 0x40,
    keymaps.KEY_RIGHTMETA: 0x80,
}

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_EVDEV_LETTERS = {
    "a": keymaps.KEY_A, "b": keymaps.KEY_B, "c": keymaps.KEY_C, "d": keymaps.KEY_D,
    "e": keymaps.KEY_E, "f": keymaps.KEY_F, "g": keymaps.KEY_G, "h": keymaps.KEY_H,
    "i": keymaps.KEY_I, "j": keymaps.KEY_J, "k": keymaps.KEY_K, "l": keymaps.KEY_L,
    "m": keymaps.KEY_M, "n": keymaps.KEY_N, "o": keymaps.KEY_O, "p": keymaps.KEY_P,
    "q": keymaps.KEY_Q, "r": keymaps.KEY_R, "s": keymaps.KEY_S, "t": keymaps.KEY_T,
    "u": keymaps.KEY_U, "v": keymaps.KEY_V, "w": keymaps.KEY_W, "x": keymaps.KEY_X,
    "y": keymaps.KEY_Y, "z": keymaps.KEY_Z,
}  # fmt: skip

# evdev key code -> HID usage (keyboard page 0x07); the inverse of Linux's hid-input table.
HID_USAGES: dict[int, int] = {
    **{_EVDEV_LETTERS[letter]: 0x04 + i for i, letter in enumerate(_LETTERS)},
    **{keymaps.KEY_1 + i: 0x1E + i for i in range(9)},  # 1..9
    keymaps.KEY_0: 0x27,
    keymaps.KEY_ENTER: 0x28,
    keymaps.KEY_ESC: 0x29,
    keymaps.KEY_BACKSPACE: 0x2A,
    keymaps.KEY_TAB: 0x2B,
    keymaps.KEY_SPACE: 0x2C,
    keymaps.KEY_MINUS: 0x2D,
    keymaps.KEY_EQUAL: 0x2E,
    keymaps.KEY_LEFTBRACE: 0x2F,
    keymaps.KEY_RIGHTBRACE: 0x30,
    # 0x31 (US \) and 0x32 (ISO #, left of Enter) are the same key to Linux and Windows.
    keymaps.KEY_BACKSLASH: 0x31,
    keymaps.KEY_SEMICOLON: 0x33,
    keymaps.KEY_APOSTROPHE: 0x34,
    keymaps.KEY_GRAVE: 0x35,
    keymaps.KEY_COMMA: 0x36,
    keymaps.KEY_DOT: 0x37,
    keymaps.KEY_SLASH: 0x38,
    keymaps.KEY_CAPSLOCK: 0x39,
    **{keymaps.FUNCTION_KEYS[f"F{n}"]: 0x39 + n for n in range(1, 13)},  # F1 0x3A .. F12 0x45
    keymaps.KEY_NUMLOCK: 0x53,
    keymaps.KEY_KPSLASH: 0x54,
    keymaps.KEY_KPASTERISK: 0x55,
    keymaps.KEY_KPMINUS: 0x56,
    keymaps.KEY_KPPLUS: 0x57,
    keymaps.KEY_KPENTER: 0x58,
    **{keymaps.KEY_KP1 + i: 0x59 + i for i in range(3)},  # KP1..KP3
    **{keymaps.KEY_KP4 + i: 0x5C + i for i in range(3)},  # KP4..KP6
    **{keymaps.KEY_KP7 + i: 0x5F + i for i in range(3)},  # KP7..KP9
    keymaps.KEY_KP0: 0x62,
    keymaps.KEY_KPDOT: 0x63,
    keymaps.KEY_102ND: 0x64,  # the ISO key left of Z (< > on de, \ | on uk)
    **{keymaps.FUNCTION_KEYS[f"F{n}"]: 0x68 + n - 13 for n in range(13, 25)},  # F13..F24
}
EVDEV_CODES: dict[int, int] = {usage: code for code, usage in HID_USAGES.items()}
EVDEV_MODIFIERS: dict[int, int] = {bit: code for code, bit in MODIFIER_BITS.items()}

GsMode = Literal["ctrl", "alt", "text", "drop"]
Terminator = Literal["enter", "tab", "none"]


class GadgetError(OutputError):
    """The gadget cannot be written; the message names the device and what to check."""


def report(modifiers: int = 0, *usages: int) -> bytes:
    """One boot-keyboard input report: modifier bits, reserved, up to six key usages."""
    return bytes((modifiers, 0, *usages, *([0] * (6 - len(usages)))))


def stroke_reports(stroke: Stroke) -> list[bytes]:
    """The reports of one stroke: modifiers down, key(s) down and up, everything up.

    Modifiers get a report of their own before the key, as a real keyboard's do: some hosts
    (KVMs, older POS terminals) miss a Shift that arrives with its key.
    """
    modifiers = 0
    for key in stroke.modifiers:
        modifiers |= MODIFIER_BITS[key]
    out = [report(modifiers)] if modifiers else []
    for i, code in enumerate((stroke.code, *stroke.more)):
        if i:
            out.append(report(modifiers))  # release the previous keypad digit, Alt stays down
        out.append(report(modifiers, HID_USAGES[code]))
    out.append(NO_KEYS)
    return out


def encode(
    layout: keymaps.Layout | str,
    text: str,
    *,
    gs: GsMode = "ctrl",
    gs_text: str = "",
    terminator: Terminator = "enter",
    caps_lock: bool = False,
) -> list[bytes]:
    """The reports that type ``text`` on a host set to ``layout``, then the terminator.

    >>> [r.hex() for r in encode("us", "A", terminator="none")]
    ['0200000000000000', '0200040000000000', '0000000000000000']
    """
    name = layout if isinstance(layout, str) else layout.name
    mode: keymaps.GsMode = "ctrl"
    if gs == "drop":
        text = text.replace(GS, "")
    else:
        mode = gs
    out = [r for ch in text for r in _char_reports(name, ch, mode, gs_text, caps_lock)]
    if terminator == "enter":
        out.extend(stroke_reports(Stroke(keymaps.KEY_ENTER)))
    elif terminator == "tab":
        out.extend(stroke_reports(Stroke(keymaps.KEY_TAB)))
    return out


@functools.lru_cache(maxsize=4096)
def _char_reports(
    layout: str, ch: str, gs: keymaps.GsMode, gs_text: str, caps_lock: bool
) -> tuple[bytes, ...]:
    """The reports of one character (each is typed on its own: dead keys end with it)."""
    strokes = keymaps.strokes(layout, ch, gs=gs, gs_text=gs_text, caps_lock=caps_lock)
    return tuple(r for stroke in strokes for r in stroke_reports(stroke))


def reports_to_events(
    reports: Iterable[bytes], *, start: float = 0.0, interval: float = 0.001
) -> list[KeyEvent]:
    """What a Linux host makes of the reports: evdev key events, one report per ``interval``.

    Within a report, modifiers go down first and come up last (the order hid-input reports
    them in), so the HID source's KeystrokeDecoder reads the text back.
    """
    events: list[KeyEvent] = []
    held_mods, held_keys = 0, set[int]()
    for n, raw in enumerate(reports):
        if len(raw) != REPORT_LENGTH:
            raise GadgetError(f"report {raw.hex()!r}: expected {REPORT_LENGTH} bytes")
        t = round(start + n * interval, 6)
        mods, keys = raw[0], {k for k in raw[2:] if k}
        changes: list[tuple[int, int]] = []
        changes += [
            (EVDEV_MODIFIERS[b], 1) for b in EVDEV_MODIFIERS if mods & b and not held_mods & b
        ]
        changes += [(EVDEV_CODES[k], 0) for k in sorted(held_keys - keys)]
        changes += [(EVDEV_CODES[k], 1) for k in sorted(keys - held_keys)]
        changes += [
            (EVDEV_MODIFIERS[b], 0) for b in EVDEV_MODIFIERS if held_mods & b and not mods & b
        ]
        for code, value in changes:
            events.append((t, keymaps.EV_KEY, code, value))
            events.append((t, keymaps.EV_SYN, keymaps.SYN_REPORT, 0))
        held_mods, held_keys = mods, keys
    return events


def split_reports(data: bytes) -> list[bytes]:
    """Bytes read from the far side of a gadget stand-in, cut into reports."""
    return [data[i : i + REPORT_LENGTH] for i in range(0, len(data), REPORT_LENGTH)]


class HidGadget:
    """/dev/hidgN (or a file or pty standing in for it), written without blocking the loop."""

    def __init__(self, path: str, write_timeout: float = 1.0) -> None:
        self.path = path
        self.write_timeout = write_timeout
        self.fd: int | None = None
        self.caps_lock = False
        """The host's Caps Lock, from its LED output report (False until it sends one)."""
        self._reading = False

    def open(self) -> None:
        if self.fd is not None:
            return
        flags = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            try:
                self.fd = os.open(self.path, os.O_RDWR | flags)
            except PermissionError:
                self.fd = os.open(self.path, os.O_WRONLY | flags)
        except FileNotFoundError:
            raise GadgetError(
                f"{self.path} does not exist: the USB keyboard gadget is not set up "
                "(run firmware-config/usb-gadget.sh; see firmware-config/usb-gadget.md)"
            ) from None
        except OSError as exc:
            raise GadgetError(f"cannot open {self.path}: {exc.strerror}") from None
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(self.fd, self._read_leds)
            self._reading = True
        except (PermissionError, OSError, ValueError):
            self._reading = False  # a regular file stands in for the device: no LED reports

    def close(self) -> None:
        if self.fd is None:
            return
        if self._reading:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

    def _read_leds(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The host went away (or the stand-in's other end closed): stop listening.
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False
            return
        self.caps_lock = bool(data[-1] & LED_CAPS_LOCK)

    def send_now(self, reports: Sequence[bytes]) -> list[bytes]:
        """Write reports while the device takes them at once; returns what is left over.

        Raises GadgetError like :meth:`send`. A real gadget takes one report per host poll,
        so typically the first key goes out here and the rest through :meth:`send`.
        """
        if self.fd is None:
            return list(reports)
        for n, raw in enumerate(reports):
            try:
                written = os.write(self.fd, raw)
            except BlockingIOError:
                return list(reports[n:])
            except OSError as exc:
                self._broken(exc)
            if written < len(raw):
                return [raw[written:], *reports[n + 1 :]]
        return []

    def _broken(self, exc: OSError) -> NoReturn:
        self.close()
        hint = (
            "the host is not connected or has not configured the keyboard"
            if exc.errno in (errno.ESHUTDOWN, errno.EPIPE, errno.ENODEV, errno.EIO)
            else exc.strerror
        )
        raise GadgetError(f"writing to {self.path} failed: {hint}") from None

    async def send(self, reports: Sequence[bytes]) -> None:
        """Write every report in order; raises GadgetError when the host does not take them."""
        self.open()
        assert self.fd is not None
        fd = self.fd
        for raw in reports:
            view = memoryview(raw)
            while view:
                try:
                    written = os.write(fd, view)
                except BlockingIOError:
                    await self._writable(fd)
                    continue
                except OSError as exc:
                    self._broken(exc)
                view = view[written:]

    async def _writable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            await asyncio.wait_for(ready, self.write_timeout)
        except TimeoutError:
            raise GadgetError(
                f"{self.path}: the host took no key report for {self.write_timeout:.1f} s "
                "(asleep, or not reading the keyboard)"
            ) from None
        finally:
            loop.remove_writer(fd)


class KeyboardGadgetSink(LiveSink):
    """A ``[[outputs]] type = "keyboard_gadget"``: types each read into the host."""

    config: KeyboardGadgetOutputConfig

    def __init__(self, config: KeyboardGadgetOutputConfig) -> None:
        super().__init__(config)
        keymaps.get_layout(config.layout)
        self.gadget = HidGadget(config.device, config.write_timeout_ms / 1000)

    def reports(self, text: str) -> list[bytes]:
        return encode(
            self.config.layout,
            text,
            gs=self.config.gs,
            gs_text=self.config.gs_text,
            terminator=self.config.terminator,
            caps_lock=self.gadget.caps_lock,
        )

    async def run(self) -> None:
        try:
            try:
                self.gadget.open()
                self.state = "ok"
            except GadgetError as exc:
                self.state = "device missing"
                self.fail(str(exc))
            while True:
                read = await self.queue.get()
                self.busy = True
                try:
                    # A remainder is the rest of a read already half typed: finish it.
                    if read.remainder or not self.stale(read):
                        await self.write(read)
                finally:
                    self.busy = False
                    self.queue.task_done()
        finally:
            self.gadget.close()

    def try_now(self, read: LiveRead) -> bool:
        if self.gadget.fd is None:
            return False
        try:
            left = self.gadget.send_now(self.reports(read.text))
        except GadgetError as exc:
            self._not_typed(read, exc)
            return True
        if left:
            self.queue.put_nowait(replace(read, remainder=tuple(left)))
        else:
            self.written(read)
        return True

    async def write(self, read: LiveRead) -> None:
        try:
            await self.gadget.send(read.remainder or self.reports(read.text))
        except GadgetError as exc:
            self._not_typed(read, exc)
            with contextlib.suppress(GadgetError, OSError):
                await self.gadget.send([NO_KEYS])  # never leave a key held down on the host
            return
        self.written(read)

    def _not_typed(self, read: LiveRead, exc: GadgetError) -> None:
        self.counters.dropped += 1
        self.state = "error"
        self.fail(f"{exc}; read {read.capture.public_id} not typed")
