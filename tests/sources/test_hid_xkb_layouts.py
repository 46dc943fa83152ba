"""Scans typed on xkb layouts beyond the classic six replay to exactly the scanned text.

The recordings are made here, from the installed xkb-data, through libxkbcommon's own state
machine and Compose table (the ``xkbcommon`` binding): for each character, the test asks xkb
which key and modifiers type it (or which dead key then space or key composes it), then
turns those presses into evdev events. The decoder under test never sees xkb: it reads the
table shipped in scanstation/data, so a wrong table entry shows up as a wrong character.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from scanstation.barcode.scantext import ScanText
from scanstation.sources.hid import DecoderSettings, decode_recording

xkb_module = pytest.importorskip(
    "xkbcommon.xkb",
    reason="SKIPPED LOUDLY: the xkbcommon binding is missing (pip install -e '.[test]' with "
    "libxkbcommon-dev; scripts/test.sh installs it), so the xkb recordings cannot be made",
)
xkb = xkb_module
XKB_RULES = Path("/usr/share/X11/xkb/rules/evdev.xml")
COMPOSE = Path("/usr/share/X11/locale/en_US.UTF-8/Compose")
if not XKB_RULES.exists() or not COMPOSE.exists():
    pytest.skip(
        "SKIPPED LOUDLY: xkb-data or the X11 Compose table (libx11-data) is not installed; "
        "scripts/test.sh installs them",
        allow_module_level=True,
    )

# evdev codes, written out here rather than taken from the decoder's module.
LEFTSHIFT, RIGHTALT, LEFTCTRL, CAPSLOCK, ENTER, SPACE, RIGHTBRACE = 42, 100, 29, 58, 28, 57, 27
EV_SYN, EV_KEY = 0, 1
GS = "\x1d"
DOWN, UP = xkb.KeyDirection.XKB_KEY_DOWN, xkb.KeyDirection.XKB_KEY_UP
MODIFIER_SETS = [(), (LEFTSHIFT,), (RIGHTALT,), (RIGHTALT, LEFTSHIFT)]
NOT_TEXT = {1, 14, 15, 28, 29, 42, 54, 56, 58, 69, 70, 96, 97, 100}  # Esc, BS, Tab, Enter, mods

# What scanners send, per the issue: a GTIN, GS1-128 with GS as Ctrl+], a mixed-case Code 128
# with punctuation, and a URL with ~ ? = & % # _ -.
TEXTS = {
    "gtin": "]E09506000134352",
    "gs1-128": "]C1010950600013435210AB-12/x" + GS + "21Zz9",
    "code128": "]C0ZyXw-Vu.Ts/Rq+Po%Nm$Lk:Ji;Hg!Fe*Dc(Ba)",
    "url": "]Q1https://example.com/~user/a_b-c?x=1&y=%20z#frag",
}
# Twenty layouts and variants beyond us, uk, de, fr, es and it, as xkb spells them.
LAYOUTS = [
    "ch(fr)",
    "ch",
    "be",
    "se",
    "no",
    "dk",
    "fi",
    "cz",
    "pl",
    "pt",
    "br",
    "tr",
    "hu",
    "nl",
    "us(intl)",
    "gb(extd)",
    "latam",
    "ca",
    "sk",
    "hr",
    "is",
]


@dataclass(frozen=True)
class Press:
    code: int
    modifiers: tuple[int, ...] = ()


class XkbTypist:
    """Types text on one xkb layout the way a scanner does, asking libxkbcommon directly."""

    context = xkb.Context()
    compose_table = context.compose_table_new_from_buffer(COMPOSE.read_bytes(), "en_US.UTF-8")

    def __init__(self, name: str, *, caps_lock: bool = False) -> None:
        layout, _, variant = name.rstrip(")").partition("(")
        self.keymap = self.context.keymap_new_from_names(
            rules="evdev", model="pc105", layout=layout, variant=variant or None
        )
        self.caps_lock = caps_lock
        self.direct: dict[str, Press] = {}
        self.dead: list[tuple[int, Press]] = []
        for modifiers in MODIFIER_SETS:
            for code in range(1, 89):
                if code in NOT_TEXT:
                    continue
                sym, text = self._type(code, modifiers)
                press = Press(code, modifiers)
                if xkb.keysym_get_name(sym).startswith("dead_"):
                    self.dead.append((sym, press))
                elif text and all(ord(c) >= 32 for c in text):
                    self.direct.setdefault(text, press)

    def _type(self, code: int, modifiers: tuple[int, ...]) -> tuple[int, str]:
        state = self.keymap.state_new()
        if self.caps_lock:
            state.update_key(CAPSLOCK + 8, DOWN)
            state.update_key(CAPSLOCK + 8, UP)
        for modifier in modifiers:
            state.update_key(modifier + 8, DOWN)
        return state.key_get_one_sym(code + 8), state.key_get_string(code + 8)

    def _composes(self, dead_sym: int, press: Press) -> str:
        sym, _ = self._type(press.code, press.modifiers)
        state = self.compose_table.compose_state_new()
        state.feed(dead_sym)
        state.feed(sym)
        if state.get_status() == xkb.ComposeStatus.XKB_COMPOSE_COMPOSED:
            return str(state.get_utf8())
        return ""

    def dead_then_space(self, ch: str) -> list[Press]:
        for dead_sym, dead in self.dead:
            if self._composes(dead_sym, Press(SPACE)) == ch:
                return [dead, Press(SPACE)]
        return []

    def presses(self, ch: str) -> list[Press]:
        if ch == GS:
            return [Press(RIGHTBRACE, (LEFTCTRL,))]  # Ctrl + the key right of P
        if ch in self.direct:
            return [self.direct[ch]]
        if by_dead_key := self.dead_then_space(ch):
            return by_dead_key
        for dead_sym, dead in self.dead:
            for press in self.direct.values():
                if self._composes(dead_sym, press) == ch:
                    return [dead, press]
        raise LookupError(f"xkb layout has no key for {ch!r}")

    def events(
        self, text: str, presses: list[Press] | None = None
    ) -> list[tuple[float, int, int, int]]:
        """The events of one scan of ``text`` (or of the given presses), then Enter."""
        if presses is None:
            presses = [Press(CAPSLOCK)] if self.caps_lock else []
            for ch in text:
                presses.extend(self.presses(ch))
        presses = [*presses, Press(ENTER)]
        out: list[tuple[float, int, int, int]] = []
        t = 0.0
        for press in presses:
            for code in (*press.modifiers, press.code):
                out += [(t, EV_KEY, code, 1), (t, EV_SYN, 0, 0)]
            t += 0.001
            for code in (press.code, *reversed(press.modifiers)):
                out += [(t, EV_KEY, code, 0), (t, EV_SYN, 0, 0)]
            t += 0.001
        return out


def replay(layout: str, events: list[tuple[float, int, int, int]]) -> list[str]:
    outcomes = decode_recording(events, DecoderSettings(layout=layout))
    return [o.symbology_identifier + o.raw_value for o in outcomes if isinstance(o, ScanText)]


@pytest.mark.parametrize("kind", sorted(TEXTS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_xkb_recording_replays_to_the_scanned_text(layout: str, kind: str) -> None:
    text = TEXTS[kind]
    assert replay(layout, XkbTypist(layout).events(text)) == [text]


@pytest.mark.parametrize("layout", ["ch(fr)", "cz", "tr", "be", "us(intl)", "latam"])
def test_xkb_recording_with_caps_lock_on_replays_to_the_scanned_text(layout: str) -> None:
    """The scanner knows Caps Lock is on and types accordingly; xkb says which keys it needs."""
    text = TEXTS["code128"]
    assert replay(layout, XkbTypist(layout, caps_lock=True).events(text)) == [text]


def test_xkb_dead_key_and_space_gives_the_compose_result() -> None:
    """On us(intl) ' " ` ~ ^ are dead keys: a scanner sends each followed by space."""
    typist = XkbTypist("us(intl)")
    accents = "'\"`~^"
    presses = [p for ch in "]C0" for p in typist.presses(ch)]
    for ch in accents:
        by_dead_key = typist.dead_then_space(ch)
        assert by_dead_key, f"{ch!r} is not a dead key on us(intl)"
        presses += by_dead_key
    events = typist.events("", presses)
    assert sum(1 for e in events if e[1] == EV_KEY and e[2] == SPACE and e[3] == 1) == 5
    assert replay("us(intl)", events) == ["]C0" + accents]


@pytest.mark.parametrize(
    ("layout", "text"),
    [("us(intl)", "]C0éüñ"), ("ch(fr)", "]C0àéèêç"), ("pt", "]C0ãõç"), ("cz", "]C0ěščřž")],
)
def test_xkb_accented_letters_replay(layout: str, text: str) -> None:
    assert replay(layout, XkbTypist(layout).events(text)) == [text]


def test_xkb_layouts_cover_at_least_fifteen_beyond_the_six() -> None:
    assert len(set(LAYOUTS) - {"us", "gb", "de", "fr", "es", "it"}) >= 15
    assert os.path.exists(XKB_RULES)


@pytest.mark.parametrize(
    ("layout", "setting"),
    [("de", "de"), ("fr", "fr"), ("cz", "cz"), ("be", "be"), ("ch(fr)", "ch"), ("tr", "tr")],
)
def test_xkb_calibration_scan_names_the_layout(layout: str, setting: str) -> None:
    """A scan of the calibration barcode, typed on ``layout``, gives its layout setting.

    ch(fr) and ch type every ASCII character on the same keys, so both decode it exactly
    and the shorter name is offered first.
    """
    from scanstation.commands.devices import CALIBRATION_TEXT, calibrate_layouts

    result = calibrate_layouts(XkbTypist(layout).events(CALIBRATION_TEXT))
    assert result.exact[0] == setting
    assert layout in result.exact
    assert "us" not in result.exact or layout == "us"
