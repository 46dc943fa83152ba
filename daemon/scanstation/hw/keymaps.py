"""Keyboard layouts for barcode guns: evdev key codes + modifiers -> characters, and back.

A USB barcode gun is a keyboard: it turns each character of the code into the key presses
that type that character *on the keyboard layout it was programmed for* (its "keyboard
country"). We read the key presses ourselves (the device is grabbed), so the station's own
console layout plays no part: what matters is that ``layout`` here matches the scanner's.

The tables follow the Windows layouts of each country (kbdus, kbduk, kbdgr, kbdfr, kbdsp,
kbdit), because that is what scanner manufacturers design their keyboard-country tables
against: the dead keys, the AltGr level and the Ctrl rows are those of Windows.

Control characters (the GS that separates GS1 fields, RS and EOT of ISO 15434 envelopes) are
typed as Ctrl + a key. Windows puts them at fixed physical positions, whatever the
layout: GS (0x1D) is Ctrl + the key right of P (evdev ``KEY_RIGHTBRACE``: ``]`` on us/uk, ``+``
on de/es/it, ``$`` on fr), ESC Ctrl + the key left of it, FS Ctrl + the ``\\``/``#`` key, RS
Ctrl + Shift + 6; letters give 0x01..0x1A by the letter the key types on the layout (on fr
Ctrl + the key labelled A, physical Q, is 0x01). See docs/scanners.md.

Two pure functions are the whole interface: :func:`get_layout` gives a :class:`Layout` whose
:meth:`Layout.char` the decoder asks, and :func:`keystrokes` types a text the way a scanner
would (the inverse, used to build test recordings and benchmarks).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

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
LayoutName = Literal["us", "uk", "de", "fr", "es", "it"]
LAYOUT_NAMES: tuple[LayoutName, ...] = ("us", "uk", "de", "fr", "es", "it")

# Levels of a key: what it types alone, with Shift, with AltGr, with AltGr + Shift.
BASE, SHIFT, ALTGR, ALTGR_SHIFT = 0, 1, 2, 3
_NONE = "\0"  # a level that types nothing

# Dead keys compose with the next letter (Windows DEADTRANS tables); followed by a space
# they type themselves. These are the accents the layouts below use.
_COMBINING = {
    "^": "\u0302",
    "`": "\u0300",
    "´": "\u0301",
    "¨": "\u0308",
    "~": "\u0303",
}

_QWERTY_ROWS = {
    KEY_Q: "q",
    KEY_W: "w",
    KEY_E: "e",
    KEY_R: "r",
    KEY_T: "t",
    KEY_Y: "y",
    KEY_U: "u",
    KEY_I: "i",
    KEY_O: "o",
    KEY_P: "p",
    KEY_A: "a",
    KEY_S: "s",
    KEY_D: "d",
    KEY_F: "f",
    KEY_G: "g",
    KEY_H: "h",
    KEY_J: "j",
    KEY_K: "k",
    KEY_L: "l",
    KEY_Z: "z",
    KEY_X: "x",
    KEY_C: "c",
    KEY_V: "v",
    KEY_B: "b",
    KEY_N: "n",
    KEY_M: "m",
}


class KeymapError(HardwareError, ValueError):
    """A layout name or a character a layout cannot type; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Layout:
    """One keyboard layout: which character each key types at each level."""

    name: str
    """Short name: us, uk, de, fr, es or it."""
    keys: Mapping[int, tuple[str, str, str, str]]
    """evdev key code -> characters at (base, shift, altgr, altgr+shift); "" types nothing."""
    dead: frozenset[tuple[int, int]]
    """(key code, level) pairs that are dead keys: they wait for the next key."""
    caps: frozenset[int]
    """Keys that Caps Lock affects (it swaps their base and shift levels)."""
    keypad_decimal: str = "."
    """What the keypad's decimal key types with Num Lock on (de: ',')."""
    control: Mapping[int, str] = field(default_factory=dict)
    """Ctrl + key -> control character, besides the letters (GS is Ctrl + KEY_RIGHTBRACE)."""

    def char(self, code: int, level: int, caps_lock: bool = False) -> tuple[str, bool]:
        """The character ``code`` types at ``level`` and whether it is a dead key.

        Caps Lock swaps base and shift on the keys it affects; ``""`` means nothing is typed.

        >>> get_layout("de").char(KEY_Y, BASE)
        ('z', False)
        >>> get_layout("de").char(KEY_9, ALTGR)
        (']', False)
        >>> get_layout("fr").char(KEY_1, BASE, caps_lock=True)
        ('1', False)
        """
        chars = self.keys.get(code)
        if chars is None:
            return "", False
        if caps_lock and code in self.caps and level in (BASE, SHIFT):
            level = SHIFT if level == BASE else BASE
        return chars[level], (code, level) in self.dead

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


def _layout(
    name: str,
    letters: Mapping[int, str],
    rows: Mapping[int, str],
    *,
    dead: Mapping[int, str] | None = None,
    extra_caps: frozenset[int] = frozenset(),
    keypad_decimal: str = ".",
    control: Mapping[int, str] | None = None,
) -> Layout:
    """Build a Layout from compact rows: each value lists base, shift, altgr, altgr+shift.

    ``dead`` maps a key to the levels (digits "0123") at which it is a dead key.
    """
    keys: dict[int, tuple[str, str, str, str]] = {}
    for code, letter in letters.items():
        keys[code] = (letter, letter.upper(), "", "")
    for code, spec in rows.items():
        levels = [("" if c == _NONE else c) for c in spec.ljust(4, _NONE)]
        keys[code] = (levels[0], levels[1], levels[2], levels[3])
    keys[KEY_SPACE] = (" ", " ", " ", " ")
    caps = {
        code
        for code, (base, shift, _, _) in keys.items()
        if base.isalpha() and len(base) == 1 and shift == base.upper() and base != shift
    }
    default_control = {
        KEY_LEFTBRACE: "\x1b",
        KEY_BACKSLASH: "\x1c",
        KEY_RIGHTBRACE: GS,
        KEY_6: "\x1e",
        KEY_MINUS: "\x1f",
    }
    return Layout(
        name=name,
        keys=keys,
        dead=frozenset(
            (code, int(level)) for code, levels in (dead or {}).items() for level in levels
        ),
        caps=frozenset(caps | extra_caps),
        keypad_decimal=keypad_decimal,
        control={**default_control, **(control or {})},
    )


_US = _layout(
    "us",
    _QWERTY_ROWS,
    {
        KEY_GRAVE: "`~",
        KEY_1: "1!",
        KEY_2: "2@",
        KEY_3: "3#",
        KEY_4: "4$",
        KEY_5: "5%",
        KEY_6: "6^",
        KEY_7: "7&",
        KEY_8: "8*",
        KEY_9: "9(",
        KEY_0: "0)",
        KEY_MINUS: "-_",
        KEY_EQUAL: "=+",
        KEY_LEFTBRACE: "[{",
        KEY_RIGHTBRACE: "]}",
        KEY_SEMICOLON: ";:",
        KEY_APOSTROPHE: "'\"",
        KEY_BACKSLASH: "\\|",
        KEY_102ND: "\\|",
        KEY_COMMA: ",<",
        KEY_DOT: ".>",
        KEY_SLASH: "/?",
    },
)

_UK = _layout(
    "uk",
    _QWERTY_ROWS,
    {
        KEY_GRAVE: "`¬¦",
        KEY_1: "1!",
        KEY_2: '2"',
        KEY_3: "3£",
        KEY_4: "4$€",
        KEY_5: "5%",
        KEY_6: "6^",
        KEY_7: "7&",
        KEY_8: "8*",
        KEY_9: "9(",
        KEY_0: "0)",
        KEY_MINUS: "-_",
        KEY_EQUAL: "=+",
        KEY_LEFTBRACE: "[{",
        KEY_RIGHTBRACE: "]}",
        KEY_SEMICOLON: ";:",
        KEY_APOSTROPHE: "'@",
        KEY_BACKSLASH: "#~",
        KEY_102ND: "\\|",
        KEY_COMMA: ",<",
        KEY_DOT: ".>",
        KEY_SLASH: "/?",
    },
    control={KEY_102ND: "\x1c"},
)

# German QWERTZ: Y and Z swapped; ] { } [ \ @ ~ | € on AltGr; ^ ´ ` are dead keys.
_DE = _layout(
    "de",
    {**_QWERTY_ROWS, KEY_Y: "z", KEY_Z: "y", KEY_SEMICOLON: "ö", KEY_APOSTROPHE: "ä"},
    {
        KEY_GRAVE: "^°",
        KEY_1: "1!",
        KEY_2: '2"²',
        KEY_3: "3§³",
        KEY_4: "4$",
        KEY_5: "5%",
        KEY_6: "6&",
        KEY_7: "7/{",
        KEY_8: "8([",
        KEY_9: "9)]",
        KEY_0: "0=}",
        KEY_MINUS: "ß?\\",
        KEY_EQUAL: "´`",
        KEY_Q: "qQ@",
        KEY_E: "eE€",
        KEY_M: "mMµ",
        KEY_LEFTBRACE: "üÜ",
        KEY_RIGHTBRACE: "+*~",
        KEY_BACKSLASH: "#'",
        KEY_102ND: "<>|",
        KEY_COMMA: ",;",
        KEY_DOT: ".:",
        KEY_SLASH: "-_",
    },
    dead={KEY_GRAVE: "0", KEY_EQUAL: "01"},
    keypad_decimal=",",
    control={KEY_MINUS: "", KEY_SLASH: "\x1f"},
)

# French AZERTY: A/Q and Z/W swapped, M right of L; digits need Shift (Caps Lock too);
# ~ and ` (AltGr+2, AltGr+7), ^ and ¨ are dead keys.
_FR = _layout(
    "fr",
    {
        **_QWERTY_ROWS,
        KEY_Q: "a",
        KEY_W: "z",
        KEY_A: "q",
        KEY_Z: "w",
        KEY_SEMICOLON: "m",
    },
    {
        KEY_GRAVE: "²",
        KEY_1: "&1",
        KEY_2: "é2~",
        KEY_3: '"3#',
        KEY_4: "'4{",
        KEY_5: "(5[",
        KEY_6: "-6|",
        KEY_7: "è7`",
        KEY_8: "_8\\",
        KEY_9: "ç9^",
        KEY_0: "à0@",
        KEY_MINUS: ")°]",
        KEY_EQUAL: "=+}",
        KEY_E: "eE€",
        KEY_LEFTBRACE: "^¨",
        KEY_RIGHTBRACE: "$£¤",
        KEY_APOSTROPHE: "ù%",
        KEY_BACKSLASH: "*µ",
        KEY_102ND: "<>",
        KEY_M: ",?",
        KEY_COMMA: ";.",
        KEY_DOT: ":/",
        KEY_SLASH: "!§",
    },
    dead={KEY_2: "2", KEY_7: "2", KEY_LEFTBRACE: "01"},
    extra_caps=frozenset({KEY_1, KEY_2, KEY_3, KEY_4, KEY_5, KEY_6, KEY_7, KEY_8, KEY_9, KEY_0}),
    control={KEY_MINUS: "", KEY_8: "\x1f"},
)

# Spanish: ñ right of L; [ ] { } on AltGr of the keys right of P and Ñ; ` ^ ´ ¨ ~ dead.
_ES = _layout(
    "es",
    {**_QWERTY_ROWS, KEY_SEMICOLON: "ñ"},
    {
        KEY_GRAVE: "ºª\\",
        KEY_1: "1!|",
        KEY_2: '2"@',
        KEY_3: "3·#",
        KEY_4: "4$~",
        KEY_5: "5%",
        KEY_6: "6&¬",
        KEY_7: "7/",
        KEY_8: "8(",
        KEY_9: "9)",
        KEY_0: "0=",
        KEY_MINUS: "'?",
        KEY_EQUAL: "¡¿",
        KEY_E: "eE€",
        KEY_LEFTBRACE: "`^[",
        KEY_RIGHTBRACE: "+*]",
        KEY_APOSTROPHE: "´¨{",
        KEY_BACKSLASH: "çÇ}",
        KEY_102ND: "<>",
        KEY_COMMA: ",;",
        KEY_DOT: ".:",
        KEY_SLASH: "-_",
    },
    dead={KEY_4: "2", KEY_LEFTBRACE: "01", KEY_APOSTROPHE: "01"},
    control={KEY_MINUS: "", KEY_SLASH: "\x1f"},
)

# Italian: no dead keys, and no ~ or ` at all (scanners send those as Alt+numpad codes).
_IT = _layout(
    "it",
    _QWERTY_ROWS,
    {
        KEY_GRAVE: "\\|",
        KEY_1: "1!",
        KEY_2: '2"',
        KEY_3: "3£",
        KEY_4: "4$",
        KEY_5: "5%",
        KEY_6: "6&",
        KEY_7: "7/",
        KEY_8: "8(",
        KEY_9: "9)",
        KEY_0: "0=",
        KEY_MINUS: "'?",
        KEY_EQUAL: "ì^",
        KEY_E: "eE€",
        KEY_LEFTBRACE: "èé[{",
        KEY_RIGHTBRACE: "+*]}",
        KEY_SEMICOLON: "òç@",
        KEY_APOSTROPHE: "à°#",
        KEY_BACKSLASH: "ù§",
        KEY_102ND: "<>",
        KEY_COMMA: ",;",
        KEY_DOT: ".:",
        KEY_SLASH: "-_",
    },
    control={KEY_MINUS: "", KEY_SLASH: "\x1f"},
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (_US, _UK, _DE, _FR, _ES, _IT)}


def get_layout(name: str) -> Layout:
    """The layout called ``name``; raises KeymapError naming the known ones.

    >>> get_layout("fr").name
    'fr'
    """
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeymapError(
            f"unknown keyboard layout {name!r}; expected one of {', '.join(LAYOUT_NAMES)}"
        ) from None


def compose(accent: str, following: str) -> str | None:
    """The character a dead ``accent`` followed by ``following`` types, None if none.

    A space gives the accent itself; a letter the precomposed accented letter when Unicode
    has one (as Windows' DEADTRANS tables do).

    >>> compose("^", "e"), compose("´", " "), compose("~", "x")
    ('ê', '´', None)
    """
    if following == " ":
        return accent
    combining = _COMBINING.get(accent)
    if combining is None or not following.isalpha():
        return None
    composed = unicodedata.normalize("NFC", following + combining)
    return composed if len(composed) == 1 else None


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


def _strokes_for_char(layout: Layout, ch: str) -> list[Stroke]:
    """The key strokes that type ``ch`` on ``layout`` (plain, Shift, AltGr, dead + space).

    Falls back to Alt + keypad (Windows-1252 code with a leading 0), as scanners do for
    characters the layout lacks.
    """
    if ch == "\t":
        return [Stroke(KEY_TAB)]
    if ch in ("\r", "\n"):
        return [Stroke(KEY_ENTER)]
    modifiers_for = {
        BASE: (),
        SHIFT: (KEY_LEFTSHIFT,),
        ALTGR: (KEY_RIGHTALT,),
        ALTGR_SHIFT: (KEY_RIGHTALT, KEY_LEFTSHIFT),
    }
    for level in (BASE, SHIFT, ALTGR, ALTGR_SHIFT):
        for code, chars in layout.keys.items():
            if chars[level] == ch:
                stroke = Stroke(code, modifiers_for[level])
                if (code, level) in layout.dead:
                    return [stroke, Stroke(KEY_SPACE)]  # dead key + space types the accent
                return [stroke]
    for code, level in sorted(layout.dead, key=lambda d: (d[1], d[0])):
        accent = layout.keys[code][level]
        for letter_code, chars in layout.keys.items():
            for letter_level in (BASE, SHIFT):
                letter = chars[letter_level]
                dead_letter = (letter_code, letter_level) in layout.dead
                if letter and not dead_letter and compose(accent, letter) == ch:
                    return [
                        Stroke(code, modifiers_for[level]),
                        Stroke(letter_code, modifiers_for[letter_level]),
                    ]
    return alt_code_strokes(ch)


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
    Lock is on and inverts Shift on the keys Caps Lock affects, as scanners do.
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
        for stroke in _strokes_for_char(layout, ch):
            if caps_lock and stroke.code in layout.caps and KEY_RIGHTALT not in stroke.modifiers:
                mods = tuple(m for m in stroke.modifiers if m not in SHIFT_KEYS)
                if KEY_LEFTSHIFT not in stroke.modifiers:
                    mods = (KEY_LEFTSHIFT, *mods)
                stroke = Stroke(stroke.code, mods)
            out.append(stroke)
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
