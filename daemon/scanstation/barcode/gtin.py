"""GTIN arithmetic the interpreter needs: check digits, GTIN-14, UPC-E, RCN flags, AI 17 dates.

These are the parts of biip the daemon used (`Gtin.parse(...).as_gtin_14()`, `Rcn.usage`,
`Upc.parse(...).as_gtin_14()`, `GS1ElementString.parse("17" ...).date`), with the same
results and messages (tests/barcode/test_gtin.py checks them against biip value by value).
They live here because importing biip builds its GS1 Company Prefix table: about 5 MB of
JSON into nested dicts, +20 MB resident and more while it is built, for a field
(`company_prefix`, and `item_reference` derived from it) the daemon never reads. The
restricted-circulation verdicts come from the GS1 Prefix list (General Specifications
§1.4.2 and §1.4.3), which is small and fixed.
"""

from __future__ import annotations

import calendar
import datetime as dt

__all__ = ["GtinError", "check_digit", "expiry_date", "gtin_14", "rcn_usage", "upce_gtin_14"]


class GtinError(ValueError):
    """A value that is not a GTIN (or UPC-E): the message names the value and what is wrong."""


def check_digit(payload: str) -> int:
    """The GS1 mod-10 check digit of the digits before it (General Specifications §7.9.1)."""
    if not payload.isdecimal():
        raise ValueError(f"Expected numeric value, got {payload!r}.")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def _significant(value: str) -> str:
    """The GTIN-8/12/13/14 a zero-padded value stands for (as biip reads leading zeros)."""
    stripped = len(value.lstrip("0"))
    if len(value) in (12, 13, 14) and stripped in (9, 10, 11, 12):
        return value[-12:]  # a GTIN-12 keeps up to three leading zeros
    if len(value) >= 8 and stripped <= 8:
        return value[-8:]  # a GTIN-8 keeps all of them
    return value.lstrip("0")


def _checked(value: str, kind: str = "GTIN") -> str:
    value = value.strip()
    if len(value) not in (8, 12, 13, 14):
        raise GtinError(
            f"Failed to parse {value!r} as {kind}: "
            f"Expected 8, 12, 13, or 14 digits, got {len(value)}."
        )
    if not value.isdecimal():
        raise GtinError(f"Failed to parse {value!r} as {kind}: Expected a numerical value.")
    significant = _significant(value)
    expected = check_digit(significant[:-1])
    if int(significant[-1]) != expected:
        raise GtinError(
            f"Invalid {kind} check digit for {value!r}: "
            f"Expected {expected!r}, got {int(significant[-1])!r}."
        )
    return significant


def gtin_14(value: str) -> str:
    """A GTIN-8/12/13/14 (surrounding spaces allowed) as GTIN-14; GtinError when not one."""
    return _checked(value).zfill(14)


def rcn_usage(value: str) -> str | None:
    """``"geo"`` or ``"company"`` for a restricted circulation number, else None.

    GTIN-8 prefixes 0 and 2 are for use within a company; GTIN-12 number system 2 (GS1
    prefix 02) within a region, 4 (04) within a company; GTIN-13 prefixes 20–29 within a
    region. A GTIN-14 (packaging level) is never one. ``value`` may be zero-padded.
    """
    significant = _checked(value)
    first = significant[0]
    if len(significant) == 8:
        return "company" if first in "02" else None
    if len(significant) == 12:
        return {"2": "geo", "4": "company"}.get(first)
    if len(significant) == 13:
        return "geo" if first == "2" else None
    return None


def upce_gtin_14(value: str) -> str:
    """An 8-digit UPC-E (number system 0 or 1, with its check digit) expanded to GTIN-14."""
    value = value.strip()
    if len(value) != 8:
        raise GtinError(f"Failed to parse {value!r} as UPC-E: Expected 8 digits, got {len(value)}.")
    if not value.isdecimal():
        raise GtinError(f"Failed to parse {value!r} as UPC: Expected a numerical value.")
    if value[0] not in "01":
        raise GtinError(
            f"Invalid UPC-E number system for {value!r}: Expected 0 or 1, got {int(value[0])!r}."
        )
    last, given = value[6], int(value[7])
    if last in "012":
        upc_a = f"{value[:3]}{last}0000{value[3:6]}"
    elif last == "3":
        upc_a = f"{value[:4]}00000{value[4:6]}"
    elif last == "4":
        upc_a = f"{value[:5]}00000{value[5]}"
    else:
        upc_a = f"{value[:6]}0000{last}"
    expected = check_digit(upc_a)
    if given != expected:
        raise GtinError(
            f"Invalid UPC-E check digit for {value!r}: Expected {expected!r}, got {given!r}."
        )
    return gtin_14(f"{upc_a}{given}")


def expiry_date(yymmdd: str, *, today: dt.date | None = None) -> dt.date | None:
    """A GS1 date (YYMMDD, as AI 17) or None when it is not one; day 00 is the month's last.

    The century puts the year between 49 years back and 50 ahead (General Specifications
    §7.12).
    """
    if len(yymmdd) != 6 or not yymmdd.isdecimal():
        return None
    year, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    current = (today or dt.datetime.now(tz=dt.UTC).date()).year
    century = current - current % 100
    if 51 <= year - current % 100 <= 99:
        century -= 100
    elif -99 <= year - current % 100 <= -50:
        century += 100
    year += century
    if not 1 <= month <= 12:
        return None
    if day == 0:
        day = calendar.monthrange(year, month)[1]
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
