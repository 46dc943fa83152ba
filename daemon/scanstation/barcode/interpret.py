"""Raw barcode value -> validated interpretation: GTIN-14, GS1 AIs, Digital Link, URL or text.

The verdicts follow GS1's Barcode Syntax Engine (see docs/gs1.md for the agreement figure).
GTIN, UPC-E, restricted-circulation and date arithmetic is scanstation.barcode.gtin (biip's
results without importing biip, whose GS1 Company Prefix table costs ~20 MB); the AI rules
biip lacks (companion AIs, forbidden pairs, repeats, country/currency codes, coupons ...)
come from GS1's Syntax Dictionary in scanstation.barcode.gs1.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from scanstation.barcode import BarcodeError
from scanstation.barcode.dlcompress import parse_compressed
from scanstation.barcode.gs1.engine import (
    GS,
    GS1Issue,
    check_associations,
    parse_bracketed,
    parse_digital_link,
    parse_element_string,
)
from scanstation.barcode.gs1.linters import check_digit_ok, is_digits
from scanstation.barcode.gtin import (
    GtinError,
    check_digit,
    expiry_date,
    gtin_14,
    rcn_usage,
    upce_gtin_14,
)
from scanstation.barcode.scantext import AIM_IDENTIFIER

__all__ = ["GS1Issue", "InterpretError", "Interpretation", "RecallList", "interpret"]

Kind = Literal["gtin", "gs1", "digital_link", "url", "text"]


class InterpretError(BarcodeError):
    """A recall list could not be read."""


@dataclass(frozen=True)
class Interpretation:
    """What a raw barcode value means, and whether it is valid. Treat as read-only."""

    input: str
    """The raw value as received (symbology identifier and separators included)."""

    valid: bool
    """False when the value claims to be GS1 (a GTIN, AI data, a Digital Link) and breaks a rule."""

    kind: Kind
    """gtin, gs1 (AI element strings), digital_link, url (any other http(s) URL) or text."""

    gtin: str
    """The GTIN-14 the value identifies (AI 01), or "" (also "" when invalid)."""

    ais: dict[str, str]
    """Application Identifier -> value, exactly as GS1's Barcode Syntax Engine reports them."""

    symbology_identifier: str
    """The AIM symbology identifier (e.g. "]C1"), from the value or given separately; or ""."""

    errors: tuple[GS1Issue, ...] = ()
    """Every rule the value breaks; empty when valid."""

    checks: dict[str, Any] = field(default_factory=dict)
    """Checkout-lane facts: expired, expiry, recalled, not_for_sale; restricted_circulation,
    rcn_usage and variable_measure when the GTIN is such a number."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object `scanstation parse` prints for this value."""
        return {
            "input": self.input,
            "valid": self.valid,
            "kind": self.kind,
            "gtin": self.gtin,
            "ais": dict(self.ais),
            "symbology_identifier": self.symbology_identifier,
            "errors": [{"ai": e.ai, "message": e.message} for e in self.errors],
            "checks": dict(self.checks),
        }

    @property
    def error_message(self) -> str:
        """One line joining the errors, for a capture's error_message."""
        return "; ".join(e.message for e in self.errors)


class RecallList:
    """GTINs (optionally narrowed to batches) that must not be sold."""

    def __init__(self, entries: dict[str, frozenset[str] | None] | None = None) -> None:
        # gtin14 -> None (the whole GTIN is recalled) or the set of recalled batches
        self._entries: dict[str, frozenset[str] | None] = dict(entries or {})

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: str | Path) -> RecallList:
        """Read a CSV with a header `gtin,batch`; an empty batch recalls the whole GTIN."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"Cannot read recall list {str(path)!r}: {exc}"
            raise InterpretError(msg) from exc
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or "gtin" not in reader.fieldnames:
            msg = f"Recall list {str(path)!r}: expected a header line 'gtin,batch'"
            raise InterpretError(msg)
        whole: set[str] = set()
        batches: dict[str, set[str]] = {}
        for line_no, row in enumerate(reader, start=2):
            raw_gtin = (row.get("gtin") or "").strip()
            batch = (row.get("batch") or "").strip()
            if not raw_gtin:
                continue
            gtin14 = _gtin14_or_none(raw_gtin)
            if gtin14 is None:
                msg = (
                    f"Recall list {str(path)!r} line {line_no}: {raw_gtin!r} is not a GTIN "
                    "(expected 8, 12, 13 or 14 digits with a valid check digit)"
                )
                raise InterpretError(msg)
            if batch:
                batches.setdefault(gtin14, set()).add(batch)
            else:
                whole.add(gtin14)
        entries: dict[str, frozenset[str] | None] = {g: frozenset(b) for g, b in batches.items()}
        entries.update(dict.fromkeys(whole))
        return cls(entries)

    def is_recalled(self, gtin14: str, batch: str | None = None) -> bool:
        """True when the GTIN is recalled as a whole, or this batch of it is."""
        if gtin14 not in self._entries:
            return False
        batches = self._entries[gtin14]
        return batches is None or (batch is not None and batch in batches)


def _gtin14_or_none(value: str) -> str | None:
    try:
        return gtin_14(value)
    except GtinError:
        return None


# ---------------------------------------------------------------------------------------------
# The pure part: raw value -> Interpretation (cached, since scanners repeat themselves).

# ISO/IEC 15424 symbology characters ("X", other/unknown, is not accepted: GS1's engine
# rejects it and it tells nothing about the data).
_AIM_CODES = frozenset("ABCDEFGHIJKLMNOPQRSTUdeghopsz")
_AI_MODE = frozenset({"C1", "e0", "d2", "Q3", "J1", "z1"})
_URL_SCHEME = re.compile(r"^https?://", re.IGNORECASE)
_BRACKETED = re.compile(r"^\(\d")
_MAX_INPUT = 4096  # longer than any barcode; refuse early rather than spend time on it


def _result(
    raw: str,
    sym: str,
    kind: Kind,
    ais: list[tuple[str, str]] | None = None,
    errors: Sequence[GS1Issue] = (),
) -> Interpretation:
    ai_map = dict(ais or [])
    valid = not errors
    gtin = ai_map.get("01", "") if valid else ""
    checks: dict[str, Any] = {}
    if gtin:
        checks.update(_rcn_facts(gtin))
    return Interpretation(
        raw, valid, kind, gtin, ai_map if valid else {}, sym, tuple(errors), checks
    )


def _invalid(raw: str, sym: str, kind: Kind, message: str, ai: str = "") -> Interpretation:
    return _result(raw, sym, kind, errors=[GS1Issue(ai, message)])


@functools.lru_cache(maxsize=8192)
def _rcn_facts(gtin14: str) -> dict[str, Any]:
    """Flags for restricted-circulation numbers (GS1 prefixes) and variable measure GTIN-14s."""
    facts: dict[str, Any] = {}
    if gtin14.startswith("9"):
        # Indicator digit 9: a variable measure trade item (weighed or counted at sale).
        facts["variable_measure"] = True
    try:
        usage = rcn_usage(gtin14)
    except GtinError:
        return facts
    if usage:
        facts["restricted_circulation"] = True
        facts["rcn_usage"] = usage
    return facts


def _gs1(
    raw: str, sym: str, kind: Kind, ais: list[tuple[str, str]], errors: list[GS1Issue]
) -> Interpretation:
    if not errors:
        errors = check_associations(ais)
    return _result(raw, sym, kind, ais, errors)


def _ai_data(raw: str, sym: str, data: str) -> Interpretation:
    """AI-mode data: an element string with GS separators, or the bracketed HRI form."""
    if _BRACKETED.match(data):
        parsed = parse_bracketed(data)
    elif "^" in data:
        return _invalid(raw, sym, "gs1", "Scan data contains illegal ^ character")
    else:
        # A leading GS is a transmitted FNC1-in-first; a trailing one ends the last field.
        parsed = parse_element_string(data.strip(GS))
    return _gs1(raw, sym, "gs1", parsed.ais, parsed.errors)


def _gtin_digits(raw: str, sym: str, digits: str, *, upce: bool) -> Interpretation:
    """A bare GTIN-8/12/13/14 (or UPC-E) with its check digit, normalised to GTIN-14."""
    if not is_digits(digits) or len(digits) not in (8, 12, 13, 14):
        return _invalid(
            raw, sym, "gtin", f"{digits!r} is not a GTIN: expected 8, 12, 13 or 14 digits"
        )
    if len(digits) == 8 and upce:
        try:
            gtin14 = upce_gtin_14(digits)
        except GtinError as exc:
            return _invalid(raw, sym, "gtin", str(exc), "01")
        return _result(raw, sym, "gtin", [("01", gtin14)])
    if not check_digit_ok(digits):
        expected = check_digit(digits[:-1])
        message = f"Invalid GTIN check digit for {digits!r}: expected {expected}, got {digits[-1]}"
        return _invalid(raw, sym, "gtin", message, "01")
    return _result(raw, sym, "gtin", [("01", digits.zfill(14))])


def _eight_digits(raw: str, sym: str, digits: str) -> Interpretation:
    """8 digits without a symbology: a GTIN-8, else a UPC-E (number system 0 or 1)."""
    if check_digit_ok(digits):
        return _gtin_digits(raw, sym, digits, upce=False)
    if digits[0] in "01":
        return _gtin_digits(raw, sym, digits, upce=True)
    return _gtin_digits(raw, sym, digits, upce=False)


def _ean_upc(raw: str, sym: str, data: str) -> Interpretation:
    """]E0 (EAN-13, UPC-A, UPC-E as 13 digits, or 8-digit UPC-E) / ]E4 (EAN-8), maybe + CC."""
    primary_length = 8 if sym == "]E4" else 13
    primary, bar, composite = data.partition("|]e0")
    if sym == "]E0" and len(primary) == 8 and is_digits(primary):
        head = _gtin_digits(raw, sym, primary, upce=True)
    elif len(primary) < primary_length:
        return _invalid(raw, sym, "gtin", f"Primary scan data is too short for {sym}")
    elif len(primary) > primary_length:
        return _invalid(raw, sym, "gtin", f"Primary message is too long for {sym}")
    elif not is_digits(primary):
        return _invalid(raw, sym, "gtin", "Primary message may only contain digits")
    elif not check_digit_ok(primary):
        expected = check_digit(primary[:-1])
        message = (
            f"Invalid GTIN check digit for {primary!r}: expected {expected}, got {primary[-1]}"
        )
        return _invalid(raw, sym, "gtin", message, "01")
    else:
        head = _result(raw, sym, "gtin", [("01", primary.zfill(14))])
    if not bar or not head.valid:
        return head
    parsed = parse_element_string(composite)
    return _gs1(raw, sym, "gs1", [("01", head.ais["01"]), *parsed.ais], parsed.errors)


def _url(raw: str, sym: str, url: str) -> Interpretation:
    """A Digital Link (uncompressed or compressed) when it holds a GS1 key; else a plain URL."""
    if not url.startswith(("https://", "HTTPS://", "http://", "HTTP://")):
        # GS1 only accepts all-lower or all-upper schemes; other spellings are plain URLs.
        return _result(raw, sym, "url")
    parsed = parse_digital_link(url)
    if not parsed.keyed:
        compressed = parse_compressed(url)  # GS1's compressed form: /ARHKVAdpQg
        if compressed is None:
            return _result(raw, sym, "url")
        parsed = compressed
    return _gs1(raw, sym, "digital_link", parsed.ais, parsed.errors)


def _plain(raw: str, sym: str, data: str) -> Interpretation:
    """Data that is not AI data by its symbology: a URL or text."""
    if _URL_SCHEME.match(data):
        return _url(raw, sym, data)
    return _result(raw, sym, "text")


def _no_symbology(raw: str, data: str, gs_substitutes: tuple[str, ...]) -> Interpretation:
    """A value without an AIM prefix (typed, or a scanner that does not send one)."""
    for substitute in gs_substitutes:
        data = data.replace(substitute, GS)
    if _BRACKETED.match(data):
        return _ai_data(raw, "", data)
    if _URL_SCHEME.match(data):
        return _url(raw, "", data)
    if GS in data:
        # A leading GS stands for FNC1 in first position.
        return _ai_data(raw, "", data.lstrip(GS))
    if is_digits(data.strip(" \t")):
        data = data.strip(" \t")  # a typed GTIN with a stray space is still a GTIN
        if len(data) == 8:
            return _eight_digits(raw, "", data)
        if len(data) in (12, 13, 14):
            return _gtin_digits(raw, "", data, upce=False)
        if len(data) == 18:
            return _ai_data(raw, "", "00" + data)
        if len(data) > 14 and data[:2] in ("00", "01", "02"):
            return _ai_data(raw, "", data)
        if len(data) > 8:
            return _gtin_digits(raw, "", data, upce=False)
        return _result(raw, "", "text")
    if data[:2] in ("01", "02") and len(data) > 16 and is_digits(data[:16]):
        return _ai_data(raw, "", data)
    return _result(raw, "", "text")


def without_symbology_identifier(raw: str) -> str:
    """The value with its leading AIM symbology identifier (``]Q1`` …) removed, if any."""
    return raw[3:] if AIM_IDENTIFIER.match(raw) else raw


def interpret_value(
    raw: str, symbology_identifier: str, gs_substitutes: tuple[str, ...]
) -> Interpretation:
    """The pure part of `interpret` (no checks, no cache): what the value is, and if valid."""
    if len(raw) > _MAX_INPUT:
        return _invalid(
            raw, symbology_identifier, "text", f"Value is longer than {_MAX_INPUT} characters"
        )
    value = raw.strip("\r\n")
    if value.startswith("]"):
        if not AIM_IDENTIFIER.match(value):
            return _invalid(
                raw, "", "text", f"Missing or broken symbology identifier in {value[:3]!r}"
            )
        sym, data = value[:3], value[3:]
    elif AIM_IDENTIFIER.match(symbology_identifier) and len(symbology_identifier) == 3:
        sym, data = symbology_identifier, value
    else:
        return _no_symbology(raw, value, gs_substitutes)
    code = sym[1:]
    if sym[1] not in _AIM_CODES:
        return _invalid(raw, sym, "text", f"Unsupported symbology identifier {sym!r}")
    if code in _AI_MODE:
        for substitute in gs_substitutes:
            data = data.replace(substitute, GS)
        return _ai_data(raw, sym, data)
    if code in ("E0", "E4"):
        return _ean_upc(raw, sym, data)
    if code == "E3" and is_digits(data[:13]):
        # EAN-13/UPC-A with a 2- or 5-digit add-on (periodicals): the item is the first 13.
        return _ean_upc(raw, sym, data[:13])
    if code in ("I0", "I1") and len(data) == 14 and is_digits(data):
        return _gtin_digits(raw, sym, data, upce=False)
    if code in ("d1", "Q1", "J0"):
        # Non-GS1 2D symbols: only "\^..." escaping of a leading "^" differs from raw text.
        return _plain(raw, sym, data)
    return _plain(raw, sym, data)


# Scanners repeat themselves (the same products, the same labels): cache the pure part.
# Bounded so a Pi's memory stays small: 8,192 entries, values up to 200 characters.
_interpret_cached = functools.lru_cache(maxsize=8192)(interpret_value)
_CACHED_MAX_LENGTH = 200


# ---------------------------------------------------------------------------------------------
# The checkout-lane checks: depend on today and the recall list, so not cached with the rest.


@functools.lru_cache(maxsize=4096)
def _expiry_date(yymmdd: str) -> dt.date | None:
    """AI 17 as a date; day 00 means the last day of the month (biip's reading)."""
    return expiry_date(yymmdd)


def _with_checks(
    result: Interpretation, today: dt.date | None, recalls: RecallList | None
) -> Interpretation:
    if not result.valid or (today is None and recalls is None):
        return result
    checks = result.checks  # the caller's own copy (see interpret): filled in place
    not_for_sale = False
    expiry = result.ais.get("17")
    if today is not None and expiry:
        date = _expiry_date(expiry)
        if date is not None:
            checks["expiry"] = date.isoformat()
            checks["expired"] = date < today
            not_for_sale = not_for_sale or date < today
    if recalls is not None and result.gtin:
        recalled = recalls.is_recalled(result.gtin, result.ais.get("10"))
        checks["recalled"] = recalled
        not_for_sale = not_for_sale or recalled
    if "expired" in checks or "recalled" in checks:
        checks["not_for_sale"] = not_for_sale
    return result


def interpret(
    raw: str,
    *,
    symbology_identifier: str = "",
    gs_substitutes: Sequence[str] = (),
    today: dt.date | None = None,
    recalls: RecallList | None = None,
) -> Interpretation:
    """Interpret one raw barcode value; never raises on bad input.

    `symbology_identifier` is used when `raw` has no AIM prefix of its own (a prefix inside
    `raw` wins). `gs_substitutes` are the visible stand-ins for GS a HID scanner may be
    programmed to send. `today` (in the device's timezone) enables the expiry check,
    `recalls` the recall check; either sets checks["not_for_sale"].
    """
    given: object = raw  # typed as str, but a caller's bug must not crash a batch
    if not isinstance(given, str):
        return _invalid(repr(given), "", "text", f"Expected a string, got {type(given).__name__}")
    subs = tuple(s for s in gs_substitutes if isinstance(s, str) and s)
    if len(raw) <= _CACHED_MAX_LENGTH:
        # Hand out copies of the dicts: the cached original must not change under a caller.
        cached = _interpret_cached(raw, symbology_identifier, subs)
        result = Interpretation(
            cached.input,
            cached.valid,
            cached.kind,
            cached.gtin,
            dict(cached.ais),
            cached.symbology_identifier,
            cached.errors,
            dict(cached.checks),
        )
    else:
        result = interpret_value(raw, symbology_identifier, subs)
    return _with_checks(result, today, recalls)
