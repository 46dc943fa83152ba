"""Property tests: no input string crashes or hangs the interpreter."""

from __future__ import annotations

import datetime as dt
import json
import time

from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message
from hypothesis import given, settings
from hypothesis import strategies as st

from scanstation.barcode.interpret import Interpretation, RecallList, interpret

GS = "\x1d"
AIM_IDS = ["", "]C1", "]d2", "]Q3", "]e0", "]J1", "]E0", "]E4", "]d1", "]Q1", "]J0", "]z1", "]A0"]
GS1_ALPHABET = "0123456789" * 4 + GS + "()^\\|]%/?&=#+ -ABCxyz"
RECALLS = RecallList({"09506000134352": None, "04006381333931": frozenset({"A1"})})


def _check(result: Interpretation, raw: str) -> None:
    document = result.to_json()
    json.dumps(document)  # what `scanstation parse` prints must always serialise
    assert document["input"] == raw
    assert result.valid == (not result.errors)
    assert result.kind in ("gtin", "gs1", "digital_link", "url", "text")
    if result.gtin:
        assert len(result.gtin) == 14
        assert result.gtin.isdigit()
        assert result.valid
    if not result.valid:
        assert result.ais == {}
        assert result.error_message


@settings(max_examples=400, deadline=1000)
@given(raw=st.text(max_size=300), sym=st.sampled_from(["", "]C1", "]Q1", "x", "]", "]C1X"]))
def test_interpret_any_text_never_crashes(raw: str, sym: str) -> None:
    _check(interpret(raw, symbology_identifier=sym), raw)


@settings(max_examples=600, deadline=1000)
@given(
    prefix=st.sampled_from(AIM_IDS),
    body=st.text(alphabet=GS1_ALPHABET, max_size=120),
    subs=st.lists(st.text(max_size=3), max_size=2),
    today=st.none() | st.dates(),
)
def test_interpret_gs1_like_data_never_crashes(
    prefix: str, body: str, subs: list[str], today: dt.date | None
) -> None:
    raw = prefix + body
    _check(interpret(raw, gs_substitutes=subs, today=today, recalls=RECALLS), raw)


@settings(max_examples=400, deadline=1000)
@given(
    scheme=st.sampled_from(["https://", "HTTP://", "http://", "HtTpS://"]),
    domain=st.sampled_from(["id.gs1.org", "a", "", "$a", "[::1]"]),
    path=st.lists(
        st.sampled_from(["01", "09506000134352", "10", "ABC", "21", "00", "99", "", "x%2F", "%00"]),
        max_size=8,
    ),
    query=st.text(alphabet="0123456789=&ABC%+", max_size=30),
)
def test_interpret_digital_link_like_urls_never_crash(
    scheme: str, domain: str, path: list[str], query: str
) -> None:
    raw = f"{scheme}{domain}/{'/'.join(path)}?{query}"
    _check(interpret(raw), raw)


def test_interpret_huge_input_returns_quickly() -> None:
    raw = "]C1" + "01" * 500_000
    started = time.perf_counter()
    result = interpret(raw)
    assert time.perf_counter() - started < 0.5
    assert not result.valid


def test_interpret_long_gs1_message_is_linear() -> None:
    raw = "]C1" + (GS + "99" + "A" * 90) * 40
    started = time.perf_counter()
    result = interpret(raw)
    assert time.perf_counter() - started < 0.5
    assert result.valid


# Valid GS1 messages built from AIs with simple formats: our reading must match biip's, and
# the element string, the bracketed form and the Digital Link of one item must agree.
def _gtin14(payload: str) -> str:
    return payload + str(gs1_standard_check_digit(payload))


CSET82_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
dates = st.builds(
    lambda y, m, d: f"{y:02d}{m:02d}{d:02d}",
    st.integers(0, 99),
    st.integers(1, 12),
    st.integers(0, 28),
)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "10": st.text(CSET82_SAFE, min_size=1, max_size=20),
        "11": dates,
        "15": dates,
        "17": dates,
        "21": st.text(CSET82_SAFE, min_size=1, max_size=20),
        "3103": st.text("0123456789", min_size=6, max_size=6),
        "30": st.text("0123456789", min_size=1, max_size=8),
        "240": st.text(CSET82_SAFE, min_size=1, max_size=30),
    },
)


@settings(max_examples=300, deadline=1000)
@given(payload=st.text("0123456789", min_size=13, max_size=13), extra=attributes)
def test_interpret_valid_messages_read_alike_in_every_form(
    payload: str, extra: dict[str, str]
) -> None:
    ais = {"01": _gtin14(payload), **extra}
    fixed = {"01", "11", "15", "17", "3103"}
    element = "".join(ai + v + ("" if ai in fixed else GS) for ai, v in ais.items()).rstrip(GS)
    bracketed = "".join(f"({ai}){v}" for ai, v in ais.items())
    path = "".join(f"/{ai}/{ais[ai]}" for ai in ("01", "10", "21") if ai in ais)
    query = "&".join(f"{ai}={v}" for ai, v in ais.items() if ai not in ("01", "10", "21"))
    link = f"https://example.com/shop{path}" + (f"?{query}" if query else "")

    from_scan = interpret("]d2" + element)
    assert from_scan.valid, from_scan.errors
    assert from_scan.ais == ais
    biip_ais = {es.ai.ai: es.value for es in GS1Message.parse(element).element_strings}
    assert biip_ais == ais
    assert interpret(bracketed, symbology_identifier="]C1").ais == ais
    from_link = interpret(link)
    assert (from_link.kind, from_link.valid) == ("digital_link", True)
    assert from_link.ais == ais
