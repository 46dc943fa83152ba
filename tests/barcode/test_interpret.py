"""The GS1 interpreter on real barcode values: GTINs, element strings, Digital Link, checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from scanstation.barcode.gs1.engine import GS1Issue
from scanstation.barcode.interpret import InterpretError, RecallList, interpret

GS = "\x1d"


def _json(
    raw: str,
    kind: str,
    ais: dict[str, str],
    *,
    sym: str = "",
    checks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "input": raw,
        "valid": True,
        "kind": kind,
        "gtin": ais.get("01", ""),
        "ais": ais,
        "symbology_identifier": sym,
        "errors": [],
        "checks": checks or {},
    }


@pytest.mark.parametrize(
    ("raw", "gtin14"),
    [
        ("4006381333931", "04006381333931"),  # EAN-13 typed or from a gun without AIM id
        ("036000291452", "00036000291452"),  # UPC-A
        ("96385074", "00000096385074"),  # EAN-8
        ("10012345678902", "10012345678902"),  # GTIN-14 (ITF-14 case code)
        ("04252614", "00042100005264"),  # UPC-E, expanded by biip
    ],
)
def test_interpret_gtin_normalises_to_gtin14(raw: str, gtin14: str) -> None:
    assert interpret(raw).to_json() == _json(raw, "gtin", {"01": gtin14})


@pytest.mark.parametrize(
    ("raw", "sym", "gtin14"),
    [
        ("]E04006381333931", "]E0", "04006381333931"),
        ("]E00036000291452", "]E0", "00036000291452"),  # UPC-A as zxing-cpp sends it: 13 digits
        ("]E004252614", "]E0", "00042100005264"),  # UPC-E transmitted as 8 digits
        ("]E496385074", "]E4", "00000096385074"),
        ("]E3978030640615712345", "]E3", "09780306406157"),  # with a 5-digit add-on
    ],
)
def test_interpret_ean_upc_symbology_identifiers(raw: str, sym: str, gtin14: str) -> None:
    assert interpret(raw).to_json() == _json(raw, "gtin", {"01": gtin14}, sym=sym)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("4006381333932", "Invalid GTIN check digit for '4006381333932': expected 1, got 2"),
        ("123456789", "'123456789' is not a GTIN: expected 8, 12, 13 or 14 digits"),
        ("]E04006381333932", "Invalid GTIN check digit for '4006381333932': expected 1, got 2"),
    ],
)
def test_interpret_gtin_errors_name_the_value(raw: str, message: str) -> None:
    result = interpret(raw)
    assert (result.valid, result.kind, result.gtin, result.error_message) == (
        False,
        "gtin",
        "",
        message,
    )


def test_interpret_restricted_circulation_number_is_flagged() -> None:
    result = interpret("2001234567893")  # GTIN-13 prefix 20: in-store number
    assert result.valid
    assert result.checks == {"restricted_circulation": True, "rcn_usage": "geo"}


@pytest.mark.parametrize(
    ("raw", "sym", "ais"),
    [
        (
            "]d2010950600013435217270101" + GS + "10ABC123",
            "]d2",
            {"01": "09506000134352", "17": "270101", "10": "ABC123"},
        ),
        (
            "]C100376104250021234569",  # SSCC on a pallet label
            "]C1",
            {"00": "376104250021234569"},
        ),
        (
            "]Q3011231231231233310ABC123" + GS + "99TESTING",
            "]Q3",
            {"01": "12312312312333", "10": "ABC123", "99": "TESTING"},
        ),
        (
            "]e00190012345678908310200175011100312",  # DataBar Expanded, fixed-length AIs
            "]e0",
            {"01": "90012345678908", "3102": "001750", "11": "100312"},
        ),
        (
            "]E00036000291452|]e01012A" + GS + "17270100",  # UPC-A + composite
            "]E0",
            {"01": "00036000291452", "10": "12A", "17": "270100"},
        ),
    ],
)
def test_interpret_element_strings(raw: str, sym: str, ais: dict[str, str]) -> None:
    # Indicator digit 9 marks a variable measure trade item (the DataBar case below).
    checks = {"variable_measure": True} if ais.get("01", "").startswith("9") else {}
    assert interpret(raw).to_json() == _json(raw, "gs1", ais, sym=sym, checks=checks)


def test_interpret_bracketed_hri_with_separate_symbology() -> None:
    # zxing-cpp's default text mode gives HRI and reports the symbology identifier apart.
    raw = "(01)09506000134352(17)270101(10)ABC123"
    result = interpret(raw, symbology_identifier="]d2")
    assert result.to_json() == _json(
        raw, "gs1", {"01": "09506000134352", "17": "270101", "10": "ABC123"}, sym="]d2"
    )


def test_interpret_prefix_in_raw_wins_over_given_symbology() -> None:
    result = interpret("]E04006381333931", symbology_identifier="]Q1")
    assert (result.symbology_identifier, result.kind, result.gtin) == (
        "]E0",
        "gtin",
        "04006381333931",
    )


@pytest.mark.parametrize("substitute", ["<GS>", "@@", "~"])
def test_interpret_gs_substitutes_from_hid_scanners(substitute: str) -> None:
    raw = f"]C1010950600013435210ABC{substitute}17270101"
    result = interpret(raw, gs_substitutes=[substitute])
    assert result.ais == {"01": "09506000134352", "10": "ABC", "17": "270101"}
    assert result.valid


def test_interpret_without_substitute_batch_swallows_the_rest() -> None:
    # Without the separator the batch (variable length) runs to the end: still valid GS1,
    # but the expiry date is part of the batch. This is why the substitute is configurable.
    result = interpret("]C1010950600013435210ABC<GS>17270101")
    assert result.ais == {"01": "09506000134352", "10": "ABC<GS>17270101"}


def test_interpret_element_string_without_symbology_identifier() -> None:
    result = interpret("0109506000134352" + GS + "10ABC" + GS + "17270101")
    assert result.to_json() == _json(
        result.input, "gs1", {"01": "09506000134352", "10": "ABC", "17": "270101"}
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            "(10)ABC123",
            GS1Issue("10", "Required AIs for AI (10) are not satisfied: 01,02,03,8006,8026"),
        ),
        (
            "(420)ABC(421)276ABC",  # two "ship to postal code" forms
            GS1Issue("420", "It is invalid to pair AI (420) with AI (421)"),
        ),
        (
            "(01)09506000134352(21)ABC123(235)XYZ",
            GS1Issue("21", "It is invalid to pair AI (21) with AI (235)"),
        ),
        (
            "(400)ABC(400)XYZ",
            GS1Issue("400", "Multiple instances of AI (400) have different values"),
        ),
        (
            "(01)09506000134352(422)999",
            GS1Issue(
                "422",
                "AI (422): A valid ISO 3166 three-digit country code is required. Got '999'.",
            ),
        ),
        (
            "(01)09506000134352(30)1(3932)040123",
            GS1Issue(
                "3932",
                "AI (3932): A valid ISO 4217 three-digit currency code is required. Got '040'.",
            ),
        ),
        (
            "(00)123456789012345670",
            GS1Issue(
                "00", "AI (00): The numeric check digit is incorrect. Got '123456789012345670'."
            ),
        ),
        (
            "(414)9520123456789",
            GS1Issue("414", "AI (414): The numeric check digit is incorrect. Got '9520123456789'."),
        ),
        (
            "(8003)112345678901281234567890123456",
            GS1Issue("8003", "AI (8003): A zero is required. Got '1'."),
        ),
        (
            "(01)09506000134352(17)270230",
            GS1Issue("17", "AI (17): The date contains an illegal day of the month. Got '270230'."),
        ),
        (
            "(01)09506000134352(10)AB C",
            GS1Issue(
                "10",
                "AI (10): A non-CSET 82 character was found where a CSET 82 character is "
                "expected. Got 'AB C'.",
            ),
        ),
    ],
)
def test_interpret_gs1_rules_biip_lacks(raw: str, error: GS1Issue) -> None:
    result = interpret(raw, symbology_identifier="]C1")
    assert (result.valid, result.kind, result.ais, result.errors) == (False, "gs1", {}, (error,))


@pytest.mark.parametrize(
    ("raw", "ais"),
    [
        ("(01)09506000134352(17)270200", {"01": "09506000134352", "17": "270200"}),  # day 00
        ("(01)09506000134352(17)280229", {"01": "09506000134352", "17": "280229"}),  # leap day
        ("(02)12345678901231(37)123(00)123456789012345675", None),
        ("(8030)DIGSIG(01)12345678901231(21)ABC123", None),
        ("(8013)1987654Ad4X4bL5ttr2310c2K", {"8013": "1987654Ad4X4bL5ttr2310c2K"}),  # GMN
        ("(415)5412345678908(8020)ABC(8007)GB82WEST12345698765432", None),  # IBAN
        ("(8110)012345612345611110123", {"8110": "012345612345611110123"}),  # coupon
        ("(01)09506000134352(422)276(3922)0299(30)2", None),  # country, price
        ("(8018)123456789012345675(7250)19991231(7252)2", None),  # person: birth date, sex
    ],
)
def test_interpret_valid_element_strings(raw: str, ais: dict[str, str] | None) -> None:
    result = interpret(raw, symbology_identifier="]C1")
    assert (result.valid, result.errors) == (True, ())
    if ais is not None:
        assert result.ais == ais


@pytest.mark.parametrize(
    ("raw", "sym", "ais"),
    [
        ("https://id.gs1.org/01/09506000134352", "", {"01": "09506000134352"}),
        (
            "HTTPS://brand.example.com/some/prefix/01/09506000134352/10/ABC%2F1?17=270101&x=y",
            "",
            {"01": "09506000134352", "10": "ABC/1", "17": "270101"},
        ),
        (
            "]Q1https://example.com/01/12312312312333?99=TEST",
            "]Q1",
            {"01": "12312312312333", "99": "TEST"},
        ),
        (
            "]d1https://a/414/9520123456788/254/32a%2Fb",
            "]d1",
            {"414": "9520123456788", "254": "32a/b"},
        ),
        ("]J0https://a/00/006141411234567890", "]J0", {"00": "006141411234567890"}),
    ],
)
def test_interpret_digital_link(raw: str, sym: str, ais: dict[str, str]) -> None:
    assert interpret(raw).to_json() == _json(raw, "digital_link", ais, sym=sym)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "https://example.com/01/9520123456788",
            "AI (01) value is too short: '9520123456788' has 13 characters, expected at least 14",
        ),
        (
            "https://id.gs1.org/01/09520123456788/10/ABC123?99=XYZ&99=XYZ",
            "AI (99) is duplicated",
        ),
        (
            "https://example.com/01/09520123456788?10=ABC123",
            "AI (10) from query params should be in the path info",
        ),
        (
            "https://a/01/12312312312333/99/ABC",
            "The AIs in the path are not a valid key-qualifier sequence for the key",
        ),
        ("https://a/01/12312312312333?99=", "AI (99) value query element is empty"),
        ("https://a/01/12312312312333?999=faux", "Unknown AI (999) in query parameters"),
    ],
)
def test_interpret_digital_link_errors(raw: str, message: str) -> None:
    result = interpret(raw)
    assert (result.valid, result.kind, result.error_message) == (False, "digital_link", message)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("https://example.com/promo?utm=qr", "url"),
        ("]Q1https://example.com/a/b", "url"),
        ("HtTpS://example.com/01/09506000134352", "url"),  # GS1 needs all-lower or all-upper
        ("Hello, world", "text"),
        ("]Q1TESTING", "text"),
        ("]A0CODE39-TEXT", "text"),
        ("12345", "text"),
        ("", "text"),
    ],
)
def test_interpret_plain_values_are_valid(raw: str, kind: str) -> None:
    result = interpret(raw)
    assert (result.valid, result.kind, result.ais, result.errors) == (True, kind, {}, ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("]C1", "The AI data is empty"),
        (
            "]C1" + "011234567890123",
            "AI (01) data is too short: '1234567890123', expected 14+ characters",
        ),
        ("]XX123", "Unsupported symbology identifier ']XX'"),
        ("]", "Missing or broken symbology identifier in ']'"),
        ("]C101123123123133^10ABC", "Scan data contains illegal ^ character"),
    ],
)
def test_interpret_broken_gs1_claims_are_invalid(raw: str, message: str) -> None:
    result = interpret(raw)
    assert (result.valid, result.error_message) == (False, message)


def test_interpret_error_message_joins_errors() -> None:
    result = interpret("(10)A(11)270101", symbology_identifier="]C1")
    assert result.error_message == (
        "Required AIs for AI (10) are not satisfied: 01,02,03,8006,8026; "
        "Required AIs for AI (11) are not satisfied: 01,02,03,8006,8026"
    )


LABEL = "]d2010950600013435217270200" + GS + "10LOT7"


@pytest.mark.parametrize(
    ("today", "checks"),
    [
        (
            dt.date(2027, 2, 28),
            {"expiry": "2027-02-28", "expired": False, "not_for_sale": False},
        ),
        (dt.date(2027, 3, 1), {"expiry": "2027-02-28", "expired": True, "not_for_sale": True}),
    ],
)
def test_interpret_expiry_check_day_00_is_last_day(today: dt.date, checks: dict[str, Any]) -> None:
    assert interpret(LABEL, today=today).checks == checks


def test_interpret_no_today_means_no_expiry_check() -> None:
    assert interpret(LABEL).checks == {}


@pytest.mark.parametrize(
    ("entries", "recalled"),
    [
        ({"09506000134352": None}, True),
        ({"09506000134352": frozenset({"LOT7"})}, True),
        ({"09506000134352": frozenset({"LOT8"})}, False),
        ({"04006381333931": None}, False),
    ],
)
def test_interpret_recall_check(entries: dict[str, frozenset[str] | None], recalled: bool) -> None:
    result = interpret(LABEL, today=dt.date(2026, 11, 23), recalls=RecallList(entries))
    assert result.checks == {
        "expiry": "2027-02-28",
        "expired": False,
        "recalled": recalled,
        "not_for_sale": recalled,
    }


def test_recall_list_load_reads_csv(tmp_path: Path) -> None:
    path = tmp_path / "recalls.csv"
    path.write_text("gtin,batch\n9506000134352,LOT7\n4006381333931,\n", encoding="utf-8")
    recalls = RecallList.load(path)
    assert [
        recalls.is_recalled("09506000134352", "LOT7"),
        recalls.is_recalled("09506000134352", "LOT8"),
        recalls.is_recalled("04006381333931", None),
        recalls.is_recalled("04006381333931", "ANY"),
        recalls.is_recalled("00000096385074", None),
    ] == [True, False, True, True, False]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("gtin,batch\n4006381333932,\n", "line 2: '4006381333932' is not a GTIN"),
        ("code,lot\n4006381333931,\n", "expected a header line 'gtin,batch'"),
    ],
)
def test_recall_list_load_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "recalls.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InterpretError, match=message):
        RecallList.load(path)


def test_recall_list_load_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InterpretError, match=r"nope\.csv"):
        RecallList.load(tmp_path / "nope.csv")


def test_interpret_typed_gtin_with_stray_spaces() -> None:
    assert interpret(" 4006381333931 ").gtin == "04006381333931"


def test_interpret_results_do_not_share_state() -> None:
    # Results are cached inside; a caller changing its copy must not change the next answer.
    first = interpret("]d2010950600013435217270101")
    first.ais["01"] = "tampered"
    first.checks["not_for_sale"] = True
    second = interpret("]d2010950600013435217270101")
    assert (second.ais, second.checks) == ({"01": "09506000134352", "17": "270101"}, {})
