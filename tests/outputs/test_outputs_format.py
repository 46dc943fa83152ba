"""Outputs, the pure parts: templates, GTIN-only and HRI modes, match rules, key reports."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanstation.barcode.format import FormatError, FormatFields, Formatter, compile_template
from scanstation.barcode.match import MatchError, compile_rules
from scanstation.barcode.scantext import ScanText
from scanstation.config import ConfigError, MatchRules, parse_config
from scanstation.outputs.gadget import encode, reports_to_events
from scanstation.sources.hid import DecoderSettings, KeystrokeDecoder

LAYOUT_NAMES = ("us", "uk", "de", "fr", "es", "it")  # the six layouts the gadget always knew
GS = "\x1d"
DATAMATRIX = FormatFields(
    raw=f"010950600013435217270101{GS}10ABC123",
    gtin="09506000134352",
    ais={"01": "09506000134352", "17": "270101", "10": "ABC123"},
    symbology="DataMatrix",
    symbology_identifier="]d2",
    source="cam0",
    status="NOT_FOUND",
)
EAN13 = FormatFields(
    raw="4006381333931",
    gtin="04006381333931",
    ais={"01": "04006381333931"},
    symbology="EAN13",
    symbology_identifier="]E0",
)
UPCA = FormatFields(raw="012345678905", gtin="00012345678905", ais={"01": "00012345678905"})
EAN8 = FormatFields(raw="96385074", gtin="00000096385074", ais={"01": "00000096385074"})
TEXT = FormatFields(raw="LOYALTY-4711", symbology="Code128", symbology_identifier="]C0")


# ---- templates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("{raw}", DATAMATRIX, f"010950600013435217270101{GS}10ABC123"),
        ("{gtin}|{ai[10]}|{ai[17]}|{ai[21]}", DATAMATRIX, "09506000134352|ABC123|270101|"),
        ("{symbology_identifier}{raw}", EAN13, "]E04006381333931"),
        ("{gtin13}", EAN13, "4006381333931"),
        ("{item}", UPCA, "012345678905"),
        ("{item}", EAN8, "96385074"),
        ("{hri}", DATAMATRIX, "(01)09506000134352(17)270101(10)ABC123"),
        ("{{{source}}} {status}", DATAMATRIX, "{cam0} NOT_FOUND"),
        ("{raw_value}", TEXT, "LOYALTY-4711"),
        ("{gtin}", TEXT, ""),
    ],
)
def test_template_renders_fields(template: str, fields: FormatFields, expected: str) -> None:
    assert compile_template(template).render(fields) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{gtn}", "unknown field 'gtn' at position 0; expected one of raw, raw_value, gtin"),
        ("{ai}", "{ai} at position 0 needs an Application Identifier of 2 to 4 digits"),
        ("{ai[x1]}", "{ai[x1]} at position 0 needs an Application Identifier"),
        ("{gtin[1]}", "only ai takes a key"),
        ("A{raw", "'{' at position 1 is never closed"),
        ("raw}", "single '}' at position 3"),
        ("{raw.__class__}", "unknown field 'raw.__class__'"),
    ],
)
def test_template_bad_names_what_is_wrong(template: str, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        compile_template(template)
    assert message in str(caught.value)
    assert repr(template) in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "fields", "expected"),
    [
        ({"mode": "gtin"}, EAN13, "4006381333931"),
        ({"mode": "gtin"}, DATAMATRIX, "9506000134352"),
        ({"mode": "gtin", "gtin_digits": 14}, DATAMATRIX, "09506000134352"),
        ({"mode": "gtin", "gtin_digits": 13}, DATAMATRIX, "9506000134352"),
        ({"mode": "gtin", "gtin_digits": 14}, EAN13, "04006381333931"),
        ({"mode": "gtin"}, TEXT, "LOYALTY-4711"),
        ({"mode": "gtin", "no_gtin": "skip"}, TEXT, None),
        ({"mode": "hri"}, DATAMATRIX, "(01)09506000134352(17)270101(10)ABC123"),
        ({"mode": "hri"}, EAN13, "(01)04006381333931"),
        ({"prefix": "<", "suffix": ">", "aim_prefix": True}, EAN13, "<]E04006381333931>"),
    ],
)
def test_formatter_modes(settings: dict[str, Any], fields: FormatFields, expected: str) -> None:
    assert Formatter.build(format="{raw}", **settings).text(fields) == expected


def test_formatter_from_event_matches_from_capture_fields() -> None:
    event = {
        "raw_value": DATAMATRIX.raw,
        "gtin": DATAMATRIX.gtin,
        "gs1_dl_data": dict(DATAMATRIX.ais),
        "symbology": "DataMatrix",
        "symbology_identifier": "]d2",
        "source": "cam0",
        "status": "NOT_FOUND",
    }
    assert FormatFields.from_event(event) == DATAMATRIX


def test_config_bad_template_fails_at_load_naming_output() -> None:
    data = {"outputs": [{"type": "serial", "port": "/dev/ttyUSB0", "format": "{gtin} {lot}"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "lane.toml", environ={})
    message = str(caught.value)
    assert "lane.toml" in message
    assert "outputs.0.serial.format" in message
    assert "unknown field 'lot'" in message


# ---- match rules -------------------------------------------------------------------------


def _input(fields: FormatFields) -> FormatFields:
    return FormatFields(
        raw=fields.raw,
        gtin=fields.gtin,
        ais=fields.ais,
        symbology=fields.symbology,
        symbology_identifier=fields.symbology_identifier,
    )


@pytest.mark.parametrize(
    ("rules", "fields", "reason"),
    [
        ({}, TEXT, ""),
        ({"symbologies": ["DataMatrix"]}, DATAMATRIX, ""),
        ({"symbologies": ["data-matrix"]}, DATAMATRIX, ""),
        ({"symbologies": ["]E"]}, EAN13, ""),
        ({"symbologies": ["]E0", "QRCode"]}, DATAMATRIX, "symbology DataMatrix is not one of"),
        ({"kinds": ["gs1"]}, DATAMATRIX, ""),
        ({"kinds": ["gs1", "digital_link"]}, EAN13, "data format gtin is not one of"),
        ({"gtin_prefixes": ["400"]}, EAN13, ""),
        ({"gtin_prefixes": ["0400"]}, EAN13, ""),
        ({"gtin_prefixes": ["590"]}, EAN13, "GTIN 04006381333931 does not start with 590"),
        ({"gtin_prefixes": ["400"]}, TEXT, "GTIN none does not start with 400"),
        ({"pattern": r"LOYALTY-\d+"}, TEXT, ""),
        ({"pattern": r"\d{13}"}, TEXT, "does not match the pattern"),
        ({"require_ais": ["17"]}, DATAMATRIX, ""),
        ({"require_ais": ["17"]}, EAN13, "lacks GS1 AI 17"),
    ],
)
def test_match_rules_accept_or_say_why(
    rules: dict[str, Any], fields: FormatFields, reason: str
) -> None:
    got = compile_rules(MatchRules(**rules)).reason(_input(fields))
    assert (got == "") if not reason else (reason in got)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"pattern": "[0-9"}, "match pattern '[0-9' is not a regular expression"),
        ({"gtin_prefixes": ["40a"]}, "match gtin_prefixes entry '40a': expected 1 to 14 digits"),
        ({"require_ais": ["1"]}, "match require_ais entry '1'"),
        ({"symbologies": ["]"]}, "match symbology ']'"),
    ],
)
def test_match_rules_bad_fail_at_config_load(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"outputs": [{"type": "serial", "port": "x", "match": rules}]}, environ={})
    assert message in str(caught.value)
    with pytest.raises(MatchError):
        compile_rules(MatchRules.model_construct(**{**MatchRules().model_dump(), **rules}))


# ---- keyboard reports --------------------------------------------------------------------


def _type_back(layout: str, reports: list[bytes], caps_lock: bool = False) -> list[str]:
    decoder = KeystrokeDecoder(DecoderSettings(layout=layout, aim_identifier=False))
    decoder.caps_lock = caps_lock
    out = decoder.feed_all(reports_to_events(reports))
    assert all(isinstance(o, ScanText) for o in out), out
    return [o.raw_value for o in out if isinstance(o, ScanText)]


TEXTS = [
    "4006381333931",
    f"010950600013435217270101{GS}10ABC123{GS}21S/00-7",
    "Hello, World! #42 @home [x] {y} ~z_ 100% & 'q' \"w\" <a>b|c\\d;e:f=g+h*i?j",
    "yzYZ qQ aA mM wW",
    "äöüß é à ç ñ €",
]


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("text", TEXTS)
def test_gadget_reports_type_back_exactly(layout: str, text: str) -> None:
    assert _type_back(layout, encode(layout, text)) == [text]


@pytest.mark.parametrize("layout", ["us", "de"])
def test_gadget_reports_respect_host_caps_lock(layout: str) -> None:
    text = "Lot abc-DEF 123"
    assert _type_back(layout, encode(layout, text, caps_lock=True), caps_lock=True) == [text]
    assert _type_back(layout, encode(layout, text), caps_lock=True) != [text]


def test_gadget_gs_modes() -> None:
    text = f"0109506000134352{GS}10A"
    ctrl = encode("us", text, terminator="none")
    assert bytes.fromhex("0100000000000000") in ctrl  # Left Ctrl down alone
    assert bytes.fromhex("0100300000000000") in ctrl  # Ctrl + ] (usage 0x30)
    assert _type_back("us", encode("us", text, gs="alt")) == [text]
    assert _type_back("de", encode("de", text, gs="text", gs_text="<GS>")) == [
        text.replace(GS, "<GS>")
    ]
    assert _type_back("us", encode("us", text, gs="drop")) == [text.replace(GS, "")]


def test_gadget_reports_are_boot_keyboard_reports() -> None:
    reports = encode("de", "z1", terminator="enter")
    assert [r.hex() for r in reports] == [
        "00001c0000000000",  # de z is the key labelled Z: usage 0x1C (US y)
        "0000000000000000",
        "00001e0000000000",
        "0000000000000000",
        "0000280000000000",  # Enter
        "0000000000000000",
    ]


@settings(max_examples=150, deadline=None)
@given(
    layout=st.sampled_from(LAYOUT_NAMES),
    text=st.text(
        alphabet=st.characters(
            min_codepoint=32, max_codepoint=0x24F, categories=["L", "N", "P", "S", "Zs"]
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_gadget_reports_type_back_any_text(layout: str, text: str) -> None:
    assert _type_back(layout, encode(layout, text)) == [text]


@pytest.mark.parametrize(
    "module",
    [
        "barcode.format",
        "barcode.match",
        "outputs.gadget",
        "outputs.serial_out",
        "outputs.webhook",
    ],
)
def test_outputs_docstring_examples_hold(module: str) -> None:
    found = doctest.testmod(importlib.import_module(f"scanstation.{module}"))
    assert found.failed == 0
    assert found.attempted > 0
