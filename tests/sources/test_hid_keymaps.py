"""Keyboard layouts checked against the published key positions, and the encoder's inverse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hid_recordings import GS, hand_typed

from scanstation.barcode.scantext import ScanText
from scanstation.hw import keymaps
from scanstation.sources.hid import DecoderSettings, KeystrokeDecoder, decode_recording


def decode(layout: str, *chords: str, **options: object) -> list[tuple[str, str]]:
    events = hand_typed(*chords)
    outcomes = decode_recording(events, DecoderSettings(layout=layout, **options))  # type: ignore[arg-type]
    return [(o.symbology_identifier, o.raw_value) for o in outcomes if isinstance(o, ScanText)]


# Written by hand from the layouts' published key positions (xkb-data's symbols/de, fr, es,
# it, gb; the same keys as Windows' kbdgr, kbdfr, kbdsp, kbdit, kbduk for everything here
# but fr's ~), not from keymaps.py: each line is what a user would press on that keyboard.
HAND_TYPED = [
    # de QWERTZ: Y and Z swapped, ] is AltGr+9, - right of the dot key, / is Shift+7,
    # GS is Ctrl + the "+" key (right of Ü), which Windows' kbdgr maps to 0x1D.
    (
        "de",
        [
            "AltGr+9",
            "D",
            "2",
            "0",
            "1",
            "Y",
            "Z",
            "SLASH",
            "Shift+7",
            "AltGr+Q",
            "Ctrl+RIGHTBRACE",
            "2",
            "1",
            "Enter",
        ],
        ("]d2", "01zy-/@" + GS + "21"),
    ),
    # de dead keys: ^ then space types ^, ´ then e types é, Shift+´ (`) then a types à.
    ("de", ["GRAVE", "SPACE", "EQUAL", "E", "Shift+EQUAL", "A", "Enter"], ("", "^éà")),
    # fr AZERTY: digits need Shift, A is the key labelled Q in qwerty, M is right of L,
    # ] is AltGr + the ")" key, / is Shift + ":", - is the 6 key, ~ is Shift + the ² key
    # (xkb; Windows has a dead ~ on AltGr+2, which xkb types as ~ at once).
    (
        "fr",
        [
            "AltGr+MINUS",
            "D",
            "Shift+2",
            "Shift+0",
            "Shift+1",
            "Q",
            "SEMICOLON",
            "Shift+DOT",
            "6",
            "Shift+GRAVE",
            "W",
            "Enter",
        ],
        ("]d2", "01am/-~z"),
    ),
    # fr GS: Ctrl + the "$" key (right of the ^ dead key).
    ("fr", ["Shift+1", "Ctrl+RIGHTBRACE", "Shift+2", "Enter"], ("", "1" + GS + "2")),
    # es: ] is AltGr + the "+" key, ñ right of L, - right of the dot key, ^ is Shift + the
    # ` dead key then space, [ is AltGr + that dead key, # is AltGr+3, @ is AltGr+2.
    (
        "es",
        [
            "AltGr+RIGHTBRACE",
            "SEMICOLON",
            "SLASH",
            "Shift+LEFTBRACE",
            "SPACE",
            "AltGr+LEFTBRACE",
            "AltGr+3",
            "AltGr+2",
            "Enter",
        ],
        ("", "]ñ-^[#@"),
    ),
    # it: ] is AltGr + "+", [ AltGr + è, @ AltGr + ò, # AltGr + à, { AltGr+Shift + è;
    # no ~ key at all, so the scanner sends Alt+0126.
    (
        "it",
        [
            "AltGr+LEFTBRACE",
            "AltGr+RIGHTBRACE",
            "AltGr+SEMICOLON",
            "AltGr+APOSTROPHE",
            "AltGr+Shift+LEFTBRACE",
            "Alt+KP0+KP1+KP2+KP6",
            "Enter",
        ],
        ("", "[]@#{~"),
    ),
    # uk: " is Shift+2, @ is Shift + the ' key, # has its own key, £ Shift+3, \ left of Z.
    (
        "uk",
        ["Shift+2", "Shift+APOSTROPHE", "BACKSLASH", "Shift+3", "102ND", "Enter"],
        ("", '"@#£\\'),
    ),
    # us: ] and GS share the key right of P.
    ("us", ["RIGHTBRACE", "Shift+C", "1", "Ctrl+RIGHTBRACE", "Enter"], ("", "]C1" + GS)),
]


@pytest.mark.parametrize(("layout", "chords", "expected"), HAND_TYPED)
def test_keymaps_published_key_positions_decode(
    layout: str, chords: list[str], expected: tuple[str, str]
) -> None:
    assert decode(layout, *chords, aim_identifier=expected[0] != "") == [expected]


PLAIN_CHORDS = [c for c in HAND_TYPED if not any("Alt+" in k or "Ctrl+" in k for k in c[1])]


@pytest.mark.parametrize(("layout", "chords", "expected"), PLAIN_CHORDS)
def test_keymaps_encoder_types_like_the_published_layout(
    layout: str, chords: list[str], expected: tuple[str, str]
) -> None:
    """The encoder (used for the recordings) picks exactly the keys a person would."""
    text = expected[0] + expected[1]
    typed = [e for e in keymaps.keystrokes(layout, text, terminator="enter") if e[1] == 1]
    by_hand = [e for e in hand_typed(*chords) if e[1] == 1]
    assert [(c, v) for _, _, c, v in typed] == [(c, v) for _, _, c, v in by_hand]


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("0029", GS),  # "Alt mode" scanners send GS like this
        ("29", GS),
        ("0128", "€"),  # Windows-1252 with a leading 0
        ("128", "Ç"),  # code page 437 without
        ("0126", "~"),
        ("8364", "€"),  # above 255: a Unicode code point
        ("0", ""),
    ],
)
def test_keymaps_alt_codes(digits: str, expected: str) -> None:
    assert keymaps.alt_code_char(digits) == expected


def test_keymaps_caps_lock_inverts_shift_on_letters_only() -> None:
    assert decode("us", "CAPSLOCK", "A", "Shift+B", "1", "Shift+1", "Enter") == [("", "Ab1!")]


def test_keymaps_caps_lock_on_french_digits_row_follows_xkb() -> None:
    """xkb's fr: Caps Lock capitalises é and à on the digit row and leaves & alone."""
    assert decode("fr", "CAPSLOCK", "1", "2", "Q", "Enter") == [("", "&ÉA")]


def test_keymaps_windows_dead_tilde_on_french_still_decodes() -> None:
    """A scanner following Windows' fr sends AltGr+2 then space for ~; xkb types ~ at once."""
    assert decode("fr", "AltGr+2", "Q", "Enter") == [("", "~a")]


@pytest.mark.parametrize(("layout", "expected"), [("us", "12.9-+*/"), ("de", "12,9-+*/")])
def test_keymaps_numpad_keys_type_digits(layout: str, expected: str) -> None:
    chords = ["KP1", "KP2", "KPDOT", "KP9", "KPMINUS", "KPPLUS", "KPASTERISK", "KPSLASH", "KPENTER"]
    assert decode(layout, *chords) == [("", expected)]


def test_keymaps_numpad_digits_are_ignored_with_num_lock_off() -> None:
    assert decode("us", "NUMLOCK", "KP1", "1", "NUMLOCK", "KP2", "Enter") == [("", "12")]


def test_keymaps_ctrl_alt_is_altgr() -> None:
    """Some scanners reach the AltGr level with Ctrl+Alt, as Windows allows."""
    events = []
    t = 0.0
    for code, value in [
        (keymaps.KEY_LEFTCTRL, 1),
        (keymaps.KEY_LEFTALT, 1),
        (keymaps.KEY_9, 1),
        (keymaps.KEY_9, 0),
        (keymaps.KEY_LEFTALT, 0),
        (keymaps.KEY_LEFTCTRL, 0),
        (keymaps.KEY_ENTER, 1),
        (keymaps.KEY_ENTER, 0),
    ]:
        events.append((t, 1, code, value))
        t += 0.001
    (scan,) = decode_recording(events, DecoderSettings(layout="de"))
    assert isinstance(scan, ScanText)
    assert scan.raw_value == "]"


def test_keymaps_unknown_layout_names_the_closest_ones() -> None:
    with pytest.raises(keymaps.KeymapError, match=r"unknown keyboard layout 'ch\(fra\)'.*ch\(fr\)"):
        keymaps.get_layout("ch(fra)")
    with pytest.raises(keymaps.KeymapError, match=r"'cz\(qwerty\)x'.*closest: cz\(qwerty\)"):
        keymaps.get_layout("cz(qwerty)x")


@pytest.mark.parametrize(
    ("name", "xkb"), [("uk", "gb"), ("ch(de)", "ch"), ("de", "de"), ("ch(fr)", "ch(fr)")]
)
def test_keymaps_old_names_and_common_spellings_are_aliases(name: str, xkb: str) -> None:
    assert keymaps.get_layout(name).name == xkb


# Text a scanner may send: printable ASCII, GS, RS/EOT of ISO 15434, some accented letters.
SCANNED_TEXT = st.text(
    alphabet=st.sampled_from(
        [chr(c) for c in range(32, 127)] + [GS, "\x1e", "\x04", "é", "ä", "ñ", "£", "€", "ß"]
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: not s.startswith("]") and s.strip() != "")


@pytest.mark.parametrize("layout", keymaps.CLASSIC_LAYOUTS)
@pytest.mark.parametrize("gs", ["ctrl", "alt"])
@settings(max_examples=60, deadline=None)
@given(text=SCANNED_TEXT, caps_lock=st.booleans())
def test_keymaps_encoder_and_decoder_are_inverse(
    layout: str, gs: keymaps.GsMode, text: str, caps_lock: bool
) -> None:
    events = keymaps.keystrokes(layout, text, gs=gs, caps_lock=caps_lock)
    decoder = KeystrokeDecoder(DecoderSettings(layout=layout))
    decoder.caps_lock = caps_lock
    outcomes = decoder.feed_all(events)
    assert [o.raw_value for o in outcomes if isinstance(o, ScanText)] == [text]


def test_keymaps_unknown_layout_in_config_is_a_config_error_naming_the_closest() -> None:
    from scanstation.config import ConfigError, parse_config

    sources = [{"type": "hid", "name": "gun1", "device": "auto", "layout": "ch(fra)"}]
    with pytest.raises(
        ConfigError, match=r"sources.*unknown keyboard layout 'ch\(fra\)'.*ch\(fr\)"
    ):
        parse_config({"sources": sources}, environ={})
    config = parse_config({"sources": [{**sources[0], "layout": "latam"}]}, environ={})
    assert config.sources[0].layout == "latam"  # type: ignore[union-attr]
