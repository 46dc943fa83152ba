"""Recorded HID event streams for every layout decode to exactly the scanned text.

Also the helpers the other HID tests import: chords written by hand from the published
layouts, and the recorded-stream fixtures in tests/data/hid (regenerate them with
`python tests/sources/test_hid_recordings.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanstation.barcode.scantext import ScanText
from scanstation.commands.devices import hid_replay_main
from scanstation.hw import keymaps
from scanstation.hw.keymaps import EV_KEY, EV_SYN, KeyEvent
from scanstation.sources.hid import DecoderSettings, decode_recording

DATA = Path(__file__).resolve().parents[1] / "data" / "hid"

GS = "\x1d"
# A GS1 DataMatrix: GTIN, expiry, batch (variable length, so GS follows), serial.
GS1_DATAMATRIX = "]d2" + "0109506000134352" + "17270101" + "10ABC123" + GS + "21XY-9/Zz"
GS1_DATAMATRIX_VALUE = GS1_DATAMATRIX[3:]
# A Digital Link QR code with the punctuation that moves between layouts.
DIGITAL_LINK = (
    "]Q1https://id.gs1.org/01/09506000134352/10/AB_1?17=270101&x=[1]{2}~^`@#$%|\\;:'\",<.>!*()+="
)

_MODIFIERS = {
    "Shift": keymaps.KEY_LEFTSHIFT,
    "AltGr": keymaps.KEY_RIGHTALT,
    "Ctrl": keymaps.KEY_LEFTCTRL,
    "Alt": keymaps.KEY_LEFTALT,
}


def hand_typed(*chords: str, start: float = 0.0, interval: float = 0.002) -> list[KeyEvent]:
    """Events for chords written like a keyboard manual: "AltGr+9", "Shift+7", "Y", "Enter".

    Key names are evdev's without KEY_ (9, Y, RIGHTBRACE, 102ND, KP0, F8); "Alt+KP0+KP1" holds
    Alt over several keys.
    """
    events: list[KeyEvent] = []
    t = start
    for chord in chords:
        parts = chord.split("+")
        modifiers = [_MODIFIERS[p] for p in parts if p in _MODIFIERS]
        keys = [
            keymaps.FUNCTION_KEYS.get(p) or getattr(keymaps, f"KEY_{p.upper()}")
            for p in parts
            if p not in _MODIFIERS
        ]
        if chord == "+":
            raise ValueError("write the plus key as its name, e.g. RIGHTBRACE")
        for code in modifiers:
            events.append((round(t, 6), EV_KEY, code, 1))
        for code in keys:
            events += [(round(t, 6), EV_KEY, code, 1), (round(t, 6), EV_SYN, 0, 0)]
            t += interval / 2
            events += [(round(t, 6), EV_KEY, code, 0), (round(t, 6), EV_SYN, 0, 0)]
        for code in reversed(modifiers):
            events.append((round(t, 6), EV_KEY, code, 0))
        t += interval / 2
    return events


def recording_cases() -> dict[str, tuple[str, str, list[KeyEvent]]]:
    """File name -> (layout, scanned text, events) for every recorded stream in data/hid.

    The events come from keymaps.keystrokes (the encoder); the hand-typed tests check that
    encoder against the published layouts, so these files are not circular.
    """
    cases: dict[str, tuple[str, str, list[KeyEvent]]] = {}
    for layout in keymaps.CLASSIC_LAYOUTS:
        cases[f"{layout}-gs1-ctrl.jsonl"] = (
            layout,
            GS1_DATAMATRIX,
            keymaps.keystrokes(layout, GS1_DATAMATRIX, gs="ctrl"),
        )
        cases[f"{layout}-gs1-substitute.jsonl"] = (
            layout,
            GS1_DATAMATRIX,
            keymaps.keystrokes(layout, GS1_DATAMATRIX, gs="text", gs_text="<GS>"),
        )
        cases[f"{layout}-digital-link.jsonl"] = (
            layout,
            DIGITAL_LINK,
            keymaps.keystrokes(layout, DIGITAL_LINK),
        )
    cases["it-gs1-alt-codes.jsonl"] = (
        "it",
        GS1_DATAMATRIX,
        keymaps.keystrokes("it", GS1_DATAMATRIX, gs="alt"),
    )
    cases["de-caps-lock.jsonl"] = (
        "de",
        GS1_DATAMATRIX,
        hand_typed("CAPSLOCK")
        + keymaps.keystrokes("de", GS1_DATAMATRIX, caps_lock=True, start=0.01),
    )
    return cases


def write_jsonl(path: Path, events: list[KeyEvent]) -> None:
    lines = [json.dumps({"t": t, "type": ty, "code": c, "value": v}) for t, ty, c, v in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_jsonl(path: Path) -> list[KeyEvent]:
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            events.append((row["t"], row["type"], row["code"], row["value"]))
    return events


CASES = recording_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hid_recording_decodes_to_the_scanned_text(name: str) -> None:
    layout, text, _ = CASES[name]
    settings = DecoderSettings(layout=layout, gs_substitutes=("<GS>",))
    outcomes = decode_recording(read_jsonl(DATA / name), settings)
    assert [(o.raw_value, o.symbology_identifier) for o in outcomes if isinstance(o, ScanText)] == [
        (text[3:], text[:3])
    ]
    assert len(outcomes) == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_hid_recording_file_matches_the_encoder(name: str) -> None:
    """The committed files are what the encoder makes (regenerate when keymaps change)."""
    assert read_jsonl(DATA / name) == [tuple(e) for e in CASES[name][2]]


@pytest.mark.parametrize("layout", keymaps.CLASSIC_LAYOUTS)
def test_hid_recording_gs_sent_as_ctrl_is_gs_not_text(layout: str) -> None:
    """Without a substitute configured, '<GS>' stays text and Ctrl+] is the real GS."""
    settings = DecoderSettings(layout=layout)
    ctrl = decode_recording(read_jsonl(DATA / f"{layout}-gs1-ctrl.jsonl"), settings)
    visible = decode_recording(read_jsonl(DATA / f"{layout}-gs1-substitute.jsonl"), settings)
    assert [o.raw_value for o in ctrl if isinstance(o, ScanText)] == [GS1_DATAMATRIX_VALUE]
    assert [o.raw_value for o in visible if isinstance(o, ScanText)] == [
        GS1_DATAMATRIX_VALUE.replace(GS, "<GS>")
    ]


@pytest.mark.parametrize("layout", keymaps.CLASSIC_LAYOUTS)
def test_hid_recording_gs1_data_comes_out_right(layout: str) -> None:
    """The decoded scan, handed to the GS1 interpreter, gives the AIs that were encoded."""
    interpret_module = pytest.importorskip(
        "scanstation.barcode.interpret",
        reason="SKIPPED: scanstation.barcode.interpret is not there yet",
    )
    (scan,) = decode_recording(
        read_jsonl(DATA / f"{layout}-gs1-substitute.jsonl"),
        DecoderSettings(layout=layout, gs_substitutes=("<GS>",)),
    )
    assert isinstance(scan, ScanText)
    result = interpret_module.interpret(
        scan.raw_value, symbology_identifier=scan.symbology_identifier
    )
    assert (result.gtin, result.ais) == (
        "09506000134352",
        {"01": "09506000134352", "17": "270101", "10": "ABC123", "21": "XY-9/Zz"},
    )


def test_hid_recording_through_hid_replay_and_scanstation_parse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The user's path: `hid-replay` each recording, pipe the scans into `scanstation parse`."""
    values = []
    for layout in keymaps.CLASSIC_LAYOUTS:
        for gs in ("ctrl", "substitute"):
            argv = [str(DATA / f"{layout}-gs1-{gs}.jsonl"), "--layout", layout]
            assert hid_replay_main([*argv, "--gs-substitute", "<GS>"]) == 0
            row = json.loads(capsys.readouterr().out)
            values.append(row["symbology_identifier"] + row["raw_value"])
    result = subprocess.run(
        [sys.executable, "-m", "scanstation", "parse", "--stdin", "--today", "2026-11-23"],
        input="\n".join(values) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(p["valid"], p["gtin"], p["ais"]) for p in parsed] == [
        (
            True,
            "09506000134352",
            {"01": "09506000134352", "17": "270101", "10": "ABC123", "21": "XY-9/Zz"},
        )
    ] * 12


if __name__ == "__main__":  # regenerate tests/data/hid/*.jsonl
    sys.stdout.write("writing recordings\n")
    DATA.mkdir(parents=True, exist_ok=True)
    for name, (_, _, events) in recording_cases().items():
        write_jsonl(DATA / name, events)
        print(DATA / name)
