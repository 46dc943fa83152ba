"""The keystroke decoder: framing, terminators, timeouts, GS substitutes, function keys."""

from __future__ import annotations

import pytest
from test_hid_recordings import GS, hand_typed

from scanstation.barcode.scantext import ScanText
from scanstation.config import HidSourceConfig
from scanstation.hw import keymaps
from scanstation.sources.hid import (
    DecoderSettings,
    DroppedScan,
    HidError,
    KeystrokeDecoder,
    Outcome,
    decode_recording,
)


def scans(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(o.symbology_identifier, o.raw_value) for o in outcomes if isinstance(o, ScanText)]


def drops(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(o.text, o.reason) for o in outcomes if isinstance(o, DroppedScan)]


def test_hid_decoder_whole_scan_value() -> None:
    events = keymaps.keystrokes("us", "]E09506000134352", start=100.0, key_interval=0.002)
    assert decode_recording(events, DecoderSettings()) == [
        ScanText(
            raw_value="9506000134352",
            symbology_identifier="]E0",
            started_at=100.0,
            ended_at=100.032,
            keystrokes=18,  # 16 characters, Shift for the E, and Enter
        )
    ]


def test_hid_decoder_symbology_name_from_aim_identifier() -> None:
    (scan,) = decode_recording(keymaps.keystrokes("us", "]d2010950600013435"), DecoderSettings())
    assert isinstance(scan, ScanText)
    assert scan.symbology == "DataMatrix"


@pytest.mark.parametrize(
    ("typed", "prefix", "suffix", "expected"),
    [
        ("#]C1123!", "#", "!", [("]C1", "123")]),
        ("STX:4006381333931:ETX", "STX:", ":ETX", [("", "4006381333931")]),
    ],
)
def test_hid_decoder_prefix_and_suffix_are_stripped(
    typed: str, prefix: str, suffix: str, expected: list[tuple[str, str]]
) -> None:
    outcomes = decode_recording(
        keymaps.keystrokes("de", typed), DecoderSettings(layout="de", prefix=prefix, suffix=suffix)
    )
    assert scans(outcomes) == expected


def test_hid_decoder_scan_without_the_prefix_is_dropped_with_reason() -> None:
    outcomes = decode_recording(
        keymaps.keystrokes("us", "4006381333931"), DecoderSettings(prefix="#")
    )
    assert drops(outcomes) == [("4006381333931", "does not start with the prefix '#'")]


def test_hid_decoder_tab_terminator_keeps_enter_as_newline() -> None:
    events = keymaps.keystrokes("us", "line1\nline2", terminator="tab")
    assert scans(decode_recording(events, DecoderSettings(terminator="tab"))) == [
        ("", "line1\nline2")
    ]


def test_hid_decoder_no_terminator_ends_scans_by_pause() -> None:
    events = keymaps.keystrokes("us", "4006381333931", terminator="none") + keymaps.keystrokes(
        "us", "9506000134352", terminator="none", start=0.5
    )
    outcomes = decode_recording(events, DecoderSettings(terminator="none"))
    assert scans(outcomes) == [("", "4006381333931"), ("", "9506000134352")]


def test_hid_decoder_no_terminator_suffix_ends_scan_at_once() -> None:
    decoder = KeystrokeDecoder(DecoderSettings(terminator="none", suffix="$$"))
    outcomes = []
    for event in keymaps.keystrokes("us", "4006381333931$$", terminator="none"):
        outcomes += decoder.feed(*event)
    assert scans(outcomes) == [("", "4006381333931")]  # no poll needed
    assert decoder.deadline is None


def test_hid_decoder_human_typing_is_dropped_and_scan_after_it_is_read() -> None:
    human = keymaps.keystrokes("us", "abc", key_interval=0.15)  # 150 ms a key
    scanner = keymaps.keystrokes("us", "4006381333931", start=2.0)
    outcomes = decode_recording(human + scanner, DecoderSettings())
    assert scans(outcomes) == [("", "4006381333931")]
    reasons = drops(outcomes)
    assert [text for text, _ in reasons] == ["a", "b", "c"]
    assert reasons[0][1] == (
        "no Enter within 50 ms (pause of 150 ms): typed by hand, or a scanner slower than "
        "inter_key_timeout_ms"
    )


def test_hid_decoder_poll_drops_scan_that_never_ends() -> None:
    decoder = KeystrokeDecoder(DecoderSettings())
    for event in keymaps.keystrokes("us", "40063", terminator="none", start=10.0):
        assert decoder.feed(*event) == []
    assert decoder.deadline == pytest.approx(10.008 + 0.05)
    assert decoder.poll(10.04) == []
    (dropped,) = decoder.poll(10.2)
    assert isinstance(dropped, DroppedScan)
    assert (dropped.text, dropped.at) == ("40063", 10.2)
    assert decoder.deadline is None


def test_hid_decoder_reset_drops_partial_scan() -> None:
    decoder = KeystrokeDecoder(DecoderSettings())
    for event in keymaps.keystrokes("us", "400", terminator="none"):
        decoder.feed(*event)
    assert decoder.reset("the device went away mid-scan", 1.0) == [
        DroppedScan(reason="the device went away mid-scan", text="400", at=1.0)
    ]
    assert decode_recording(keymaps.keystrokes("us", "123", start=2.0), decoder.settings) == [
        ScanText("123", "", 2.0, 2.006, 4)
    ]


def test_hid_decoder_lone_enter_is_not_a_scan() -> None:
    assert decode_recording(hand_typed("Enter", "Enter"), DecoderSettings()) == []


@pytest.mark.parametrize(
    ("function_keys", "expected"),
    [({"F8": GS}, "10ABC" + GS + "21X"), ({}, "10ABC21X")],
)
def test_hid_decoder_function_key_mapping(function_keys: dict[str, str], expected: str) -> None:
    events = hand_typed(
        "1", "0", "Shift+A", "Shift+B", "Shift+C", "F8", "2", "1", "Shift+X", "Enter"
    )
    outcomes = decode_recording(events, DecoderSettings(function_keys=function_keys))
    assert scans(outcomes) == [("", expected)]


@pytest.mark.parametrize("substitute", ["<GS>", "{GS}", "^]", "@"])
def test_hid_decoder_gs_substitutes_become_gs(substitute: str) -> None:
    text = "]C1" + "0109506000134352" + "10ABC" + substitute + "21X"
    outcomes = decode_recording(
        keymaps.keystrokes("fr", text), DecoderSettings(layout="fr", gs_substitutes=(substitute,))
    )
    assert scans(outcomes) == [("]C1", "0109506000134352" + "10ABC" + GS + "21X")]


def test_hid_decoder_aim_identifier_kept_when_switched_off() -> None:
    outcomes = decode_recording(
        keymaps.keystrokes("us", "]C1123"), DecoderSettings(aim_identifier=False)
    )
    assert scans(outcomes) == [("", "]C1123")]


def test_hid_decoder_min_length_drops_stray_keys() -> None:
    outcomes = decode_recording(
        keymaps.keystrokes("us", "x") + keymaps.keystrokes("us", "12345678", start=1),
        DecoderSettings(min_length=4),
    )
    assert scans(outcomes) == [("", "12345678")]
    assert drops(outcomes) == [("x", "1 characters, fewer than min_length=4")]


def test_hid_decoder_autorepeat_and_syn_events_are_ignored() -> None:
    events = hand_typed("1")
    events.insert(1, (0.0005, keymaps.EV_KEY, keymaps.KEY_1, 2))  # a held key repeating
    events.insert(1, (0.0005, keymaps.EV_MSC, 4, 0x7001E))
    events += hand_typed("Enter", start=0.003)
    assert scans(decode_recording(events, DecoderSettings())) == [("", "1")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"function_keys": {"F25": GS}}, "unknown function key 'F25'; expected F1 to F24"),
        ({"gs_substitutes": ("",)}, "a GS substitute is empty"),
        ({"layout": "dvorak"}, "unknown keyboard layout 'dvorak'"),
        ({"inter_key_timeout": 0}, "inter-key timeout 0 s must be above 0"),
    ],
)
def test_hid_decoder_settings_errors_name_the_value(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises((HidError, keymaps.KeymapError), match=message):
        DecoderSettings(**options)  # type: ignore[arg-type]


def test_hid_decoder_settings_from_config() -> None:
    config = HidSourceConfig(
        type="hid",
        name="gun1",
        layout="fr",
        gs_substitutes=["<GS>"],
        function_keys={"F8": GS},
        prefix="#",
        terminator="tab",
        inter_key_timeout_ms=80,
    )
    assert DecoderSettings.from_config(config) == DecoderSettings(
        layout="fr",
        prefix="#",
        terminator="tab",
        inter_key_timeout=0.08,
        gs_substitutes=("<GS>",),
        function_keys={"F8": GS},
    )
