"""Fuzzing the HID keystroke decoder: any event stream, any recording line, any settings.

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies every test's max_examples.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

hid = pytest.importorskip(
    "scanstation.sources.hid", reason="SKIPPED: the HID decoder (sources/hid.py) is not there yet"
)
keymaps = pytest.importorskip("scanstation.hw.keymaps")
devices = pytest.importorskip("scanstation.commands.devices")

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))
LAYOUTS = ["us", "uk", "de", "fr", "es", "it"]
GS = "\x1d"


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=500,
        suppress_health_check=[HealthCheck.too_slow],
    )


def check_outcomes(outcomes: list[object]) -> None:
    for outcome in outcomes:
        assert isinstance(outcome, hid.ScanText | hid.DroppedScan)
        if isinstance(outcome, hid.ScanText):
            assert isinstance(outcome.raw_value, str)
            # No ended_at >= started_at here: evdev stamps events with CLOCK_REALTIME, which
            # an NTP step can move backwards, and the decoder reports the times it was given.
        else:
            assert outcome.reason


def _timeline(
    start: float, steps: list[tuple[float, int, int, int]]
) -> list[tuple[float, int, int, int]]:
    events, t = [], start
    for gap, type_, code, value in steps:
        t += gap
        events.append((t, type_, code, value))
    return events


# Events a broken or hostile keyboard could send: any key, any value, odd timing (even
# going back in time).
event_streams = st.builds(
    _timeline,
    st.floats(0, 1e6, allow_nan=False),
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.001, 0.002, 0.03, 0.2, 5.0, -0.5]),
            st.sampled_from([0, 1, 1, 1, 4, -1, 40]),
            st.integers(0, 130) | st.sampled_from([-10, 2**16, 183, 194, 248]),
            st.sampled_from([0, 1, 1, 2, -3, 5]),
        ),
        max_size=120,
    ),
)


@st.composite
def decoder_settings(draw: st.DrawFn) -> object:
    return hid.DecoderSettings(
        layout=draw(st.sampled_from(LAYOUTS)),
        prefix=draw(st.sampled_from(["", "]", "@@", "\x02"])),
        suffix=draw(st.sampled_from(["", "#", "\x03"])),
        terminator=draw(st.sampled_from(["enter", "tab", "none"])),
        inter_key_timeout=draw(st.sampled_from([0.05, 0.001, 10.0])),
        gs_substitutes=tuple(draw(st.lists(st.sampled_from(["<GS>", "^", "|"]), max_size=2))),
        function_keys=draw(st.sampled_from([{}, {"F8": GS}, {"F1": "", "F24": "long text"}])),
        aim_identifier=draw(st.booleans()),
        min_length=draw(st.integers(1, 4)),
    )


@given(event_streams, decoder_settings())
@fuzz(400)
def test_fuzz_hid_decoder_any_event_stream(
    events: list[tuple[float, int, int, int]], s: object
) -> None:
    decoder = hid.KeystrokeDecoder(s)
    started = time.perf_counter()
    outcomes = decoder.feed_all(events)
    outcomes += decoder.reset("unplugged", 0.0)
    assert time.perf_counter() - started < 0.5
    check_outcomes(outcomes)
    assert not decoder.pending


# Text a GS1 label or a QR code carries: printable ASCII and GS.
label_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just(GS), min_size=1, max_size=60
)


@given(st.sampled_from(LAYOUTS), label_text, st.sampled_from(["ctrl", "alt"]), st.booleans())
@fuzz(400)
def test_fuzz_hid_decoder_reads_back_what_a_scanner_types(
    layout: str, text: str, gs: str, caps_lock: bool
) -> None:
    """Type a text the way a scanner on that layout would; the decoder gives it back."""
    events = keymaps.keystrokes(layout, text, gs=gs, caps_lock=caps_lock)
    if caps_lock:  # the station sees Caps Lock go on before the scan
        caps = keymaps.KEY_CAPSLOCK
        events = [(0.0, keymaps.EV_KEY, caps, 1), (0.0, keymaps.EV_KEY, caps, 0), *events]
    decoder = hid.KeystrokeDecoder(hid.DecoderSettings(layout=layout, aim_identifier=False))
    outcomes = decoder.feed_all(events)
    assert [o.raw_value for o in outcomes if isinstance(o, hid.ScanText)] == [text]


json_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=5)
    | st.lists(st.integers(), max_size=2)
)
recording_lines = (
    st.text(max_size=80)
    | st.fixed_dictionaries(dict.fromkeys(("t", "type", "code", "value"), json_values)).map(
        json.dumps
    )
    | st.dictionaries(
        st.sampled_from(["t", "type", "code", "value", "x"]), json_values, max_size=5
    ).map(json.dumps)
    | st.sampled_from(
        ["[]", "1", '"t"', "[" * 5000, '{"t": 1e999, "type": 1, "code": 2, "value": 1}']
    )
)


@given(st.lists(recording_lines, max_size=5))
@fuzz(400)
def test_fuzz_hid_read_recording_only_raises_recording_error(lines: list[str]) -> None:
    try:
        events = devices.read_recording(lines, "fuzz.jsonl")
    except devices.RecordingError as exc:
        refusal = str(exc)
    else:
        assert all(len(e) == 4 for e in events)
        return
    assert "fuzz.jsonl, line " in refusal


@given(
    layout=st.text(max_size=4) | st.sampled_from(LAYOUTS),
    timeout=st.floats(allow_nan=True, allow_infinity=True),
    function_keys=st.dictionaries(st.text(max_size=4), st.text(max_size=3), max_size=2),
    substitutes=st.lists(st.text(max_size=3), max_size=2),
)
@fuzz(300)
def test_fuzz_hid_settings_refuse_clearly(
    layout: str, timeout: float, function_keys: dict[str, str], substitutes: list[str]
) -> None:
    refusal = "accepted"
    try:
        hid.DecoderSettings(
            layout=layout,
            inter_key_timeout=timeout,
            function_keys=function_keys,
            gs_substitutes=tuple(substitutes),
        )
    except ValueError as exc:  # HidError and KeymapError are ValueErrors naming the value
        refusal = str(exc)
    assert refusal


@pytest.mark.parametrize(
    "line",
    [
        '{"t": 1, "type": 1e999, "code": 2, "value": 1}',  # found by the fuzzer: OverflowError
        "[" * 5000,  # found by the fuzzer: RecursionError
    ],
)
def test_read_recording_refuses_hostile_lines(line: str) -> None:
    with pytest.raises(devices.RecordingError, match="line 1: "):
        devices.read_recording([line], "hostile.jsonl")
