"""Keyboard layouts for barcode guns: evdev key codes + modifiers -> characters, and back.

A USB barcode gun is a keyboard: it turns each character of the code into the key presses
that type that character *on the keyboard layout it was programmed for* (its "keyboard
country"). We read the key presses ourselves (the device is grabbed), so the station's own
console layout plays no part: what matters is that ``layout`` here matches the scanner's.

Every layout comes from xkb-data, the keyboard definitions Linux ships: a table generated
from it at build time by scripts/gen_keyboard_layouts.py (libxkbcommon compiles each layout
and variant and says what every key types at each level, with Caps Lock off and on, and
which keys are dead; the dead-key sequences are the X11 Compose table's) ships in
scanstation/data/keyboard_layouts.json.gz. Names are xkb's: ``de``, ``ch(fr)``,
``us(intl)``; ``uk`` stays an alias of ``gb``. docs/scanners.md says why it is a shipped
table rather than a run-time read of /usr/share/X11/xkb.

Control characters (the GS that separates GS1 fields, RS and EOT of ISO 15434 envelopes) are
typed as Ctrl + a key. Scanners follow Windows there, which puts them at fixed physical
positions whatever the layout: GS (0x1D) is Ctrl + the key right of P (evdev
``KEY_RIGHTBRACE``: ``]`` on us/gb, ``+`` on de/es/it, ``$`` on fr), ESC Ctrl + the key
left of it, FS Ctrl + the ``\\``/``#`` key, RS Ctrl + 6; letters give 0x01..0x1A by the
letter the key types on the layout (on fr Ctrl + the key labelled A, physical Q, is 0x01).
See docs/scanners.md.

Two pure functions are the whole interface: :func:`get_layout` gives a :class:`Layout` whose
:meth:`Layout.char` the decoder asks, and :func:`keystrokes` types a text the way a scanner
would (the inverse, used by the keyboard-gadget output, benchmarks and test recordings).
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from scanstation.hw import HardwareError

# evdev key codes (linux/input-event-codes.h); repeated here so this module needs no evdev.
EV_SYN = 0
EV_KEY = 1
EV_MSC = 4
SYN_REPORT = 0

KEY_ESC = 1
KEY_1, KEY_2, KEY_3, KEY_4, KEY_5, KEY_6, KEY_7, KEY_8, KEY_9, KEY_0 = range(2, 12)
KEY_MINUS = 12
KEY_EQUAL = 13
KEY_BACKSPACE = 14
KEY_TAB = 15
KEY_Q, KEY_W, KEY_E, KEY_R, KEY_T, KEY_Y, KEY_U, KEY_I, KEY_O, KEY_P = range(16, 26)
KEY_LEFTBRACE = 26
KEY_RIGHTBRACE = 27
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_A, KEY_S, KEY_D, KEY_F, KEY_G, KEY_H, KEY_J, KEY_K, KEY_L = range(30, 39)
KEY_SEMICOLON = 39
KEY_APOSTROPHE = 40
KEY_GRAVE = 41
KEY_LEFTSHIFT = 42
KEY_BACKSLASH = 43
KEY_Z, KEY_X, KEY_C, KEY_V, KEY_B, KEY_N, KEY_M = range(44, 51)
KEY_COMMA = 51
KEY_DOT = 52
KEY_SLASH = 53
KEY_RIGHTSHIFT = 54
KEY_KPASTERISK = 55
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_NUMLOCK = 69
KEY_KP7, KEY_KP8, KEY_KP9 = 71, 72, 73
KEY_KPMINUS = 74
KEY_KP4, KEY_KP5, KEY_KP6 = 75, 76, 77
KEY_KPPLUS = 78
KEY_KP1, KEY_KP2, KEY_KP3 = 79, 80, 81
KEY_KP0 = 82
KEY_KPDOT = 83
KEY_102ND = 86
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_KPSLASH = 98
KEY_RIGHTALT = 100
KEY_LEFTMETA = 125
KEY_RIGHTMETA = 126

FUNCTION_KEYS: dict[str, int] = {
    **{f"F{n}": 58 + n for n in range(1, 11)},  # F1 = 59 .. F10 = 68
    "F11": 87,
    "F12": 88,
    **{f"F{n}": 170 + n for n in range(13, 25)},  # F13 = 183 .. F24 = 194
}
"""Function-key names (as used in ``function_keys`` config) to evdev codes."""

KEYPAD_DIGITS: dict[int, str] = {
    KEY_KP0: "0",
    KEY_KP1: "1",
    KEY_KP2: "2",
    KEY_KP3: "3",
    KEY_KP4: "4",
    KEY_KP5: "5",
    KEY_KP6: "6",
    KEY_KP7: "7",
    KEY_KP8: "8",
    KEY_KP9: "9",
}
KEYPAD_OPERATORS: dict[int, str] = {
    KEY_KPSLASH: "/",
    KEY_KPASTERISK: "*",
    KEY_KPMINUS: "-",
    KEY_KPPLUS: "+",
}
SHIFT_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
CTRL_KEYS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL})

GS = "\x1d"
ALIASES: dict[str, str] = {"uk": "gb", "ch(de)": "ch"}
"""Names the project used before it read xkb (uk), and spellings people use that xkb lacks."""
CLASSIC_LAYOUTS: tuple[str, ...] = ("us", "uk", "de", "fr", "es", "it")
"""The six names the hand-written tables had; they keep working (uk is xkb's gb)."""

# Levels of a key: what it types alone, with Shift, with AltGr, with AltGr + Shift.
BASE, SHIFT, ALTGR, ALTGR_SHIFT = 0, 1, 2, 3
_DEAD = "\0"  # in the table, a dead key is this prefix + its keysym name (dead_acute)
_TABLE = files("scanstation.data").joinpath("keyboard_layouts.json.gz")
_TEXT_KEYS_ORDER = (*range(2, 14), *range(16, 28), *range(30, 42), *range(43, 54), 57, 86)


class KeymapError(HardwareError, ValueError):
    """A layout name or a character a layout cannot type; the message says which and why."""


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """One keyboard layout: which character each key types at each level, from xkb-data."""

    name: str
    """The name as xkb spells it: de, ch(fr), us(intl)."""
    keys: Mapping[int, tuple[str, str, str, str]]
    """evdev key code -> text at (base, shift, altgr, altgr+shift); "" types nothing; a
    dead key is "\\0" + its keysym name."""
    caps_keys: Mapping[int, tuple[str, str, str, str]] = field(default_factory=dict)
    """The same for the keys that type otherwise with Caps Lock on (xkb's key types)."""
    keypad_decimal: str = "."
    """What the keypad's decimal key types with Num Lock on (de: ',')."""
    control: Mapping[int, str] = field(default_factory=dict)
    """Ctrl + key -> control character, besides the letters (GS is Ctrl + KEY_RIGHTBRACE)."""
    lookup: Mapping[tuple[int, int, bool], tuple[str, bool]] = field(default_factory=dict)
    """(code, level, caps lock) -> what :meth:`char` returns, filled by :func:`get_layout`."""

    def char(self, code: int, level: int, caps_lock: bool = False) -> tuple[str, bool]:
        """The text ``code`` types at ``level`` and whether it is a dead key.

        For a dead key the text is its keysym name (``dead_acute``), for :func:`compose`;
        ``""`` means nothing is typed.

        >>> get_layout("de").char(KEY_Y, BASE)
        ('z', False)
        >>> get_layout("de").char(KEY_9, ALTGR)
        (']', False)
        >>> get_layout("ch(fr)").char(KEY_EQUAL, BASE)
        ('dead_circumflex', True)
        >>> get_layout("fr").char(KEY_Q, BASE, caps_lock=True)
        ('A', False)
        """
        found = self.lookup.get((code, level, caps_lock))
        if found is not None:
            return found
        chars = (self.caps_keys.get(code) if caps_lock else None) or self.keys.get(code)
        if chars is None:
            return "", False
        text = chars[level]
        if text.startswith(_DEAD):
            return text[1:], True
        return text, False

    def control_char(self, code: int) -> str:
        """The control character Ctrl + ``code`` types, or ``""`` when it types none.

        >>> get_layout("fr").control_char(KEY_RIGHTBRACE) == GS
        True
        >>> get_layout("fr").control_char(KEY_Q)  # the key labelled A on AZERTY
        '\\x01'
        """
        if code in self.control:
            return self.control[code]
        base = self.keys.get(code, ("", "", "", ""))[BASE]
        if len(base) == 1 and "a" <= base <= "z":
            return chr(ord(base) - ord("a") + 1)
        return ""


@cache
def _table() -> dict[str, Any]:
    """The shipped table generated from xkb-data (scripts/gen_keyboard_layouts.py)."""
    data: dict[str, Any] = json.loads(gzip.decompress(_TABLE.read_bytes()))
    return data


def layout_names() -> list[str]:
    """Every layout the table knows, as xkb spells it, then the aliases."""
    table = _table()
    return sorted(table["layouts"]) + sorted(table["aliases"])


def _control(keys: Mapping[int, tuple[str, str, str, str]]) -> dict[int, str]:
    """Windows' fixed Ctrl positions, which scanners follow on every layout.

    GS is Ctrl + KEY_RIGHTBRACE (``]`` on us), ESC Ctrl + the key left of it, FS Ctrl + the
    backslash key, RS Ctrl + 6, US Ctrl + the key that types ``_`` (else ``-``) unshifted.
    """
    control = {
        KEY_LEFTBRACE: "\x1b",
        KEY_BACKSLASH: "\x1c",
        KEY_RIGHTBRACE: GS,
        KEY_6: "\x1e",
    }
    bases = {chars[BASE]: code for code, chars in reversed(list(keys.items()))}
    unit = bases.get("_", bases.get("-", KEY_MINUS))
    if unit not in control:
        control[unit] = "\x1f"
    return control


@cache
def get_layout(name: str) -> Layout:
    """The layout called ``name`` as xkb spells it (``de``, ``ch(fr)``, ``us(intl)``).

    Raises KeymapError naming the closest known names.

    >>> get_layout("uk").name
    'gb'
    """
    table = _table()
    key = table["aliases"].get(name, name)
    entry = table["layouts"].get(key)
    if entry is None:
        close = difflib.get_close_matches(name, layout_names(), n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "e.g. us, de, fr, ch(fr), us(intl)"
        raise KeymapError(
            f"unknown keyboard layout {name!r}; expected an xkb layout name as in "
            f"docs/scanners.md ({hint})"
        )

    def levels(raw: Mapping[str, list[str]]) -> dict[int, tuple[str, str, str, str]]:
        by_code = {int(code): chars for code, chars in raw.items()}
        return {
            code: (chars[0], chars[1], chars[2], chars[3])
            for code in sorted(by_code, key=_key_order)
            for chars in (by_code[code],)
        }

    keys = levels(entry["keys"])
    caps_keys = levels(entry["caps"])
    lookup: dict[tuple[int, int, bool], tuple[str, bool]] = {}
    for caps_lock, typed in ((False, keys), (True, {**keys, **caps_keys})):
        for code, chars in typed.items():
            for level, text in enumerate(chars):
                dead = text.startswith(_DEAD)
                lookup[code, level, caps_lock] = (text[1:] if dead else text, dead)
    return Layout(
        name=key,
        keys=keys,
        caps_keys=caps_keys,
        keypad_decimal=entry["keypad_decimal"],
        control=_control(keys),
        lookup=lookup,
    )


def _key_order(code: int) -> int:
    return _TEXT_KEYS_ORDER.index(code) if code in _TEXT_KEYS_ORDER else len(_TEXT_KEYS_ORDER)


def compose(dead: str, following: str) -> str | None:
    """What dead key ``dead`` (a keysym name) then ``following`` types, None if nothing.

    ``following`` is the text the next key types, or a dead key's keysym name; the
    sequences are the X11 Compose table's (en_US.UTF-8), as xkb-data's layouts expect. A
    space gives the accent on its own.

    >>> compose("dead_circumflex", "e"), compose("dead_acute", " "), compose("dead_tilde", "x")
    ('ê', "'", None)
    """
    result: str | None = _table()["compose"].get(f"{dead} {following}")
    return result


def dead_key_text(dead: str) -> str:
    """What a dead key types on its own (when the next key does not compose with it)."""
    return compose(dead, " ") or ""


def alt_code_char(digits: str) -> str:
    """The character Alt + keypad ``digits`` types on Windows.

    With a leading 0 the number is a Windows-1252 code (Alt+0128 is €); without, an OEM
    code page 437 code (Alt+156 is £). Values below 32 are the ASCII control characters in
    both (Alt+029 and Alt+0029 are GS, which is how "Alt mode" scanners send it). Values
    above 255 are taken as Unicode code points. Returns "" for a number that types nothing.

    >>> alt_code_char("0029") == GS, alt_code_char("0128"), alt_code_char("156")
    (True, '€', '£')
    """
    if not digits:
        return ""
    value = int(digits)
    if value == 0:
        return ""
    if value < 32 or value == 127:
        return chr(value)
    if value > 255:
        return chr(value) if value <= 0x10FFFF else ""
    raw = bytes([value])
    try:
        return raw.decode("cp1252") if digits.startswith("0") else raw.decode("cp437")
    except UnicodeDecodeError:
        return chr(value)  # cp1252's five undefined bytes: Windows passes them through


# --- The inverse: typing text the way a scanner does ------------------------------------

KeyEvent = tuple[float, int, int, int]
"""One input event as recorded: (seconds, type, code, value), evdev's numbers."""

GsMode = Literal["ctrl", "alt", "text"]


@dataclass(frozen=True, slots=True)
class Stroke:
    """One key press with the modifiers held around it."""

    code: int
    """evdev code of the key."""
    modifiers: tuple[int, ...] = ()
    """Modifier keys pressed before and released after it, in order."""
    more: tuple[int, ...] = ()
    """Further keys pressed while the modifiers stay down (the digits of an Alt code)."""


_MODIFIERS_FOR_LEVEL = {
    BASE: (),
    SHIFT: (KEY_LEFTSHIFT,),
    ALTGR: (KEY_RIGHTALT,),
    ALTGR_SHIFT: (KEY_RIGHTALT, KEY_LEFTSHIFT),
}


_PUNCTUATION_KEYS = frozenset(
    {
        KEY_MINUS,
        KEY_EQUAL,
        KEY_LEFTBRACE,
        KEY_RIGHTBRACE,
        KEY_SEMICOLON,
        KEY_APOSTROPHE,
        KEY_GRAVE,
        KEY_BACKSLASH,
        KEY_COMMA,
        KEY_DOT,
        KEY_SLASH,
    }
)


def _stroke_preference(key: tuple[int, int]) -> tuple[bool, int]:
    """Which key types a character first when several do: the one printed on keyboards.

    Base and Shift levels before AltGr; the ISO key left of Z after the others of its
    group (an ANSI keyboard, a US scanner's, has none); on the AltGr levels the punctuation
    keys before the number row and the letters (es: ] is AltGr + the + key, not AltGr+9).
    """
    code, level = key
    if level < ALTGR:
        return False, code == KEY_102ND
    rank = 0 if code in _PUNCTUATION_KEYS else 1 if code < KEY_Q else 2
    return True, rank if code != KEY_102ND else 3


@cache
def _strokes_for_char(layout: Layout, ch: str, caps_lock: bool) -> tuple[Stroke, ...]:
    """The key strokes that type ``ch`` on ``layout`` (plain, Shift, AltGr, dead keys).

    The first level that types it wins (base, Shift, AltGr, AltGr + Shift; the ISO key
    left of Z after the other keys of its level group), then a dead key and space, then a
    dead key and a key. Falls back to Alt + keypad (Windows-1252 code
    with a leading 0), as scanners do for characters the layout lacks.
    """
    if ch == "\t":
        return (Stroke(KEY_TAB),)
    if ch in ("\r", "\n"):
        return (Stroke(KEY_ENTER),)
    dead_keys: list[tuple[str, Stroke]] = []
    plain: list[tuple[str, Stroke]] = []
    order = sorted(
        ((code, level) for level in (BASE, SHIFT, ALTGR, ALTGR_SHIFT) for code in layout.keys),
        key=_stroke_preference,
    )
    for code, level in order:
        text, dead = layout.char(code, level, caps_lock)
        if not text:
            continue
        stroke = Stroke(code, _MODIFIERS_FOR_LEVEL[level])
        if dead:
            dead_keys.append((text, stroke))
            continue
        if text == ch:
            return (stroke,)
        if level in (BASE, SHIFT):
            plain.append((text, stroke))
    for accent, stroke in dead_keys:
        if compose(accent, " ") == ch:
            return (stroke, Stroke(KEY_SPACE))
    for accent, stroke in dead_keys:
        for text, letter in plain:
            if compose(accent, text) == ch:
                return (stroke, letter)
    return tuple(alt_code_strokes(ch))


def alt_code_strokes(ch: str) -> list[Stroke]:
    """Alt + keypad digits for ``ch``: Alt+0nnn (Windows-1252), or the code point above 255."""
    try:
        digits = f"0{ch.encode('cp1252')[0]:03d}"
    except UnicodeEncodeError:
        digits = f"0{ord(ch):03d}" if ord(ch) < 256 else str(ord(ch))
    keypad = {v: k for k, v in KEYPAD_DIGITS.items()}
    codes = [keypad[d] for d in digits]
    return [Stroke(codes[0], (KEY_LEFTALT,), tuple(codes[1:]))]


def strokes(
    layout: Layout | str,
    text: str,
    *,
    gs: GsMode = "ctrl",
    gs_text: str = "",
    caps_lock: bool = False,
) -> list[Stroke]:
    """The key strokes a scanner on ``layout`` sends to type ``text`` (no terminator).

    GS is sent as Ctrl + KEY_RIGHTBRACE (``gs="ctrl"``), Alt+0029 (``"alt"``) or as the
    visible substitute ``gs_text`` (``"text"``). With ``caps_lock`` the scanner knows Caps
    Lock is on and picks the keys that type ``text`` with it on, as scanners do.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    out: list[Stroke] = []
    for ch in text:
        if ch == GS:
            if gs == "ctrl":
                out.append(Stroke(KEY_RIGHTBRACE, (KEY_LEFTCTRL,)))
            elif gs == "alt":
                out.extend(alt_code_strokes(GS))
            else:
                out.extend(strokes(layout, gs_text, caps_lock=caps_lock))
            continue
        if ord(ch) < 32 and ch not in "\t\r\n":
            code = next((c for c, v in layout.control.items() if v == ch), None)
            if code is None:
                code = next((c for c in layout.keys if layout.control_char(c) == ch), None)
            if code is not None:
                out.append(Stroke(code, (KEY_LEFTCTRL,)))
            else:
                out.extend(alt_code_strokes(ch))
            continue
        out.extend(_strokes_for_char(layout, ch, caps_lock))
    return out


def key_events(
    stroke_list: list[Stroke], *, start: float = 0.0, key_interval: float = 0.002
) -> Iterator[KeyEvent]:
    """Turn strokes into evdev events (press, release, each followed by a SYN_REPORT).

    Each stroke takes ``key_interval`` seconds; modifiers go down before the key and up
    after it, as HID scanners report them.
    """
    t = start
    for stroke in stroke_list:
        for modifier in stroke.modifiers:
            yield (round(t, 6), EV_KEY, modifier, 1)
            yield (round(t, 6), EV_SYN, SYN_REPORT, 0)
        for i, code in enumerate((stroke.code, *stroke.more)):
            if i:
                t += key_interval / 2
            yield (round(t, 6), EV_KEY, code, 1)
            yield (round(t, 6), EV_SYN, SYN_REPORT, 0)
            t += key_interval / 2
            yield (round(t, 6), EV_KEY, code, 0)
            yield (round(t, 6), EV_SYN, SYN_REPORT, 0)
        for modifier in reversed(stroke.modifiers):
            yield (round(t, 6), EV_KEY, modifier, 0)
            yield (round(t, 6), EV_SYN, SYN_REPORT, 0)
        t += key_interval / 2


def keystrokes(
    layout: Layout | str,
    text: str,
    *,
    gs: GsMode = "ctrl",
    gs_text: str = "",
    terminator: Literal["enter", "tab", "none"] = "enter",
    start: float = 0.0,
    key_interval: float = 0.002,
    caps_lock: bool = False,
) -> list[KeyEvent]:
    """The events a scanner on ``layout`` produces for one scan of ``text``.

    >>> [e[2] for e in keystrokes("de", "z", terminator="none") if e[1] == EV_KEY]
    [21, 21]
    """
    stroke_list = strokes(layout, text, gs=gs, gs_text=gs_text, caps_lock=caps_lock)
    if terminator == "enter":
        stroke_list.append(Stroke(KEY_ENTER))
    elif terminator == "tab":
        stroke_list.append(Stroke(KEY_TAB))
    return list(key_events(stroke_list, start=start, key_interval=key_interval))
