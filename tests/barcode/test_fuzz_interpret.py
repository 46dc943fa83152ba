"""Fuzzing the interpreter: real GS1 data, mutated GS1 data and Digital Links never crash it.

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies every test's max_examples; CI runs
the default, a long run sets e.g. 50. docs/security.md records the counts of the last long run.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

from biip.checksums import gs1_standard_check_digit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanstation.barcode.interpret import Interpretation, interpret

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))
GS = "\x1d"


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=500,  # ms per input: a hang or a quadratic blow-up fails the test
        suppress_health_check=[HealthCheck.too_slow],
    )


def check(result: Interpretation, raw: str, started: float) -> None:
    assert time.perf_counter() - started < 0.5
    document = result.to_json()
    assert json.loads(json.dumps(document)) == document
    assert document["input"] == raw
    assert result.kind in ("gtin", "gs1", "digital_link", "url", "text")
    assert result.valid == (not result.errors)
    assert result.gtin == "" or (len(result.gtin) == 14 and result.gtin.isdigit())


def with_check_digit(digits: str) -> str:
    return digits + str(gs1_standard_check_digit(digits))


gtin14s = st.text("0123456789", min_size=13, max_size=13).map(with_check_digit)

# (AI, value strategy, variable length?) for AIs that checkout lanes meet.
ELEMENTS = [
    ("01", gtin14s, False),
    ("10", st.text("0123456789ABCDEFXYZ-./", min_size=1, max_size=20), True),
    ("21", st.text("0123456789abcdefXYZ-./!%", min_size=1, max_size=20), True),
    ("17", st.dates().map(lambda d: d.strftime("%y%m%d")), False),
    ("15", st.dates().map(lambda d: d.strftime("%y%m%d")), False),
    ("11", st.dates().map(lambda d: d.strftime("%y%m%d")), False),
    ("3103", st.text("0123456789", min_size=6, max_size=6), False),
    ("30", st.text("0123456789", min_size=1, max_size=8), True),
    ("37", st.text("0123456789", min_size=1, max_size=8), True),
    ("240", st.text("0123456789ABC", min_size=1, max_size=30), True),
]


@st.composite
def element_strings(draw: st.DrawFn) -> tuple[str, str]:
    """A GS1 element string: (raw as a scanner sends it with ]C1/]d2/]Q3, its GTIN)."""
    gtin = draw(gtin14s)
    parts = [("01", gtin, False)]
    for ai, values, variable in draw(
        st.lists(st.sampled_from(ELEMENTS[1:]), max_size=4, unique_by=lambda e: e[0])
    ):
        parts.append((ai, draw(values), variable))
    text = ""
    for index, (ai, value, variable) in enumerate(parts):
        text += ai + value
        if variable and index < len(parts) - 1:
            text += GS
    prefix = draw(st.sampled_from(["]C1", "]d2", "]Q3", "]e0", "]J1"]))
    return prefix + text, gtin


@given(element_strings())
@fuzz(300)
def test_fuzz_interpret_real_element_strings(sample: tuple[str, str]) -> None:
    raw, gtin = sample
    started = time.perf_counter()
    result = interpret(raw)
    check(result, raw, started)
    if result.valid:  # a made-up date such as 17 = 000230 may be refused, nothing else
        assert (result.kind, result.gtin, result.ais["01"]) == ("gs1", gtin, gtin)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A real element string or Digital Link with a few characters inserted, deleted or changed."""
    raw = draw(
        element_strings().map(lambda s: s[0])
        | gtin14s.map(lambda g: f"https://id.gs1.org/01/{g}/10/ABC?17=270101")
    )
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.characters() | st.sampled_from([GS, "(", ")", "%", "/", "?", "]", "0"]))
        if action == "insert":
            raw = raw[:position] + char + raw[position:]
        elif action == "delete":
            raw = raw[:position] + raw[position + 1 :]
        else:
            raw = raw[:position] + char + raw[position + 1 :]
    return raw


@given(mutated(), st.lists(st.sampled_from(["<GS>", "^", "|", "~", "\\x1d"]), max_size=2))
@fuzz(500)
def test_fuzz_interpret_mutated_gs1_never_crashes(raw: str, substitutes: list[str]) -> None:
    started = time.perf_counter()
    check(interpret(raw, gs_substitutes=substitutes), raw, started)


segments = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
).map(lambda s: quote(s, safe=""))


@st.composite
def digital_links(draw: st.DrawFn) -> str:
    host = draw(
        st.sampled_from(["id.gs1.org", "example.com", "127.0.0.1:8080", "xn--bcher-kva.example"])
    )
    path = draw(st.sampled_from(["", "/", "/some/prefix"]))
    path += f"/01/{draw(gtin14s | st.text('0123456789', max_size=16))}"
    for _ in range(draw(st.integers(0, 3))):
        ai = draw(st.sampled_from(["10", "21", "22", "235", "17", "99", "x", ""]))
        path += f"/{ai}/{draw(segments)}"
    query = "&".join(
        f"{draw(st.sampled_from(['17', '3103', '15', 'linkType', '', '10', '01']))}"
        f"={draw(segments)}"
        for _ in range(draw(st.integers(0, 3)))
    )
    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://"]))
    fragment = draw(st.sampled_from(["", "#top", "#"]))
    return scheme + host + path + (f"?{query}" if query else "") + fragment


@given(digital_links())
@fuzz(500)
def test_fuzz_interpret_digital_links(raw: str) -> None:
    started = time.perf_counter()
    result = interpret(raw)
    check(result, raw, started)
    assert result.kind in ("digital_link", "url")
    if result.kind == "digital_link" and result.valid:
        assert result.ais["01"] == result.gtin


@given(st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
@fuzz(300)
def test_fuzz_interpret_raw_bytes_never_crash(raw: str) -> None:
    """What a misconfigured serial scanner sends: any byte, as Latin-1 text."""
    started = time.perf_counter()
    check(interpret(raw), raw, started)
