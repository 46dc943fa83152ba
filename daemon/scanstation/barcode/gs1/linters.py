"""Content checks on one component of an AI value: check digits, dates, code lists, coupons.

Each check takes the component's text and returns None when it is fine, else the reason
(worded like GS1's Barcode Syntax Engine, so messages can be compared with its verdicts).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable

from scanstation.barcode.gs1.codes import ISO3166_ALPHA2, ISO3166_NUMERIC, ISO4217_NUMERIC
from scanstation.barcode.gtin import check_digit

Linter = Callable[[str], str | None]

DIGITS = frozenset("0123456789")
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_CSET82 = frozenset(CSET82)
_CSET39 = frozenset("#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CSET64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_CSET32 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83)
_HEX = frozenset("0123456789abcdefABCDEF")
_IMPORTER_INDEX = frozenset("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
_GCP_MIN_LENGTH = 4

NON_DIGIT = "A non-digit character was found where a digit is expected."
ILLEGAL_MONTH = "The date contains an illegal month of the year."
ILLEGAL_DAY = "The date contains an illegal day of the month."


def is_digits(value: str) -> bool:
    """True for a non-empty string of ASCII digits only (str.isdigit accepts other scripts)."""
    return bool(value) and DIGITS.issuperset(value)


def check_digit_ok(value: str) -> bool:
    """The GS1 mod-10 check digit (last digit) of an all-digit value is right."""
    return is_digits(value) and check_digit(value[:-1]) == int(value[-1])


def cset_numeric(value: str) -> str | None:
    return None if DIGITS.issuperset(value) else NON_DIGIT


def cset82(value: str) -> str | None:
    if _CSET82.issuperset(value):
        return None
    return "A non-CSET 82 character was found where a CSET 82 character is expected."


def cset39(value: str) -> str | None:
    if _CSET39.issuperset(value):
        return None
    return "A non-CSET 39 character was found where a CSET 39 character is expected."


def cset64(value: str) -> str | None:
    body = value.rstrip("=")
    pads = len(value) - len(body)
    if pads > 2 or (pads and len(value) % 3):
        return "Incorrect number of CSET 64 pad characters."
    if not _CSET64.issuperset(body):
        return "A non-CSET 64 character was found where a CSET 64 character is expected."
    return None


def csum(value: str) -> str | None:
    if not is_digits(value):
        return NON_DIGIT
    return None if check_digit_ok(value) else "The numeric check digit is incorrect."


def csumalpha(value: str) -> str | None:
    if len(value) < 2:
        return (
            "The component is too short to perform an alphanumeric check character pair "
            "calculation."
        )
    body = value[:-2]
    if len(body) > len(_PRIMES) or not _CSET82.issuperset(body):
        return "The alphanumeric check-character pair are incorrect."
    total = (
        sum(CSET82.index(char) * _PRIMES[len(body) - 1 - i] for i, char in enumerate(body)) % 1021
    )
    if value[-2:] != _CSET32[total >> 5] + _CSET32[total & 31]:
        return "The alphanumeric check-character pair are incorrect."
    return None


def gcppos1(value: str) -> str | None:
    if len(value) < _GCP_MIN_LENGTH:
        return "The component is shorter than the minimum length GS1 Company Prefix."
    if not is_digits(value[:_GCP_MIN_LENGTH]):
        return "The GS1 Company Prefix is invalid."
    return None


def gcppos2(value: str) -> str | None:
    return gcppos1(value[1:])


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _date(value: str, *, day_zero: bool, four_digit_year: bool) -> str | None:
    size = 8 if four_digit_year else 6
    if len(value) != size or not is_digits(value):
        return NON_DIGIT if not DIGITS.issuperset(value) else "The date is the wrong length."
    year = int(value[: size - 4])
    month, day = int(value[-4:-2]), int(value[-2:])
    if not 1 <= month <= 12:
        return ILLEGAL_MONTH
    if day == 0 and day_zero:
        return None
    # Two-digit years: GS1's engine counts YY % 4 == 0 as a leap year (00 is 2000).
    leap_year = year if four_digit_year else 2000 + year
    if not 1 <= day <= _days_in_month(leap_year, month):
        return ILLEGAL_DAY
    return None


def yymmd0(value: str) -> str | None:
    return _date(value, day_zero=True, four_digit_year=False)


def yymmdd(value: str) -> str | None:
    return _date(value, day_zero=False, four_digit_year=False)


def yyyymmd0(value: str) -> str | None:
    return _date(value, day_zero=True, four_digit_year=True)


def yyyymmdd(value: str) -> str | None:
    return _date(value, day_zero=False, four_digit_year=True)


def _two_digits(value: str, top: int, what: str) -> str | None:
    if not is_digits(value):
        return NON_DIGIT
    return None if int(value) <= top else f"The time contains an illegal {what}."


def hh(value: str) -> str | None:
    return _two_digits(value, 23, "hour")


def mi(value: str) -> str | None:
    return _two_digits(value, 59, "minute")


def ss(value: str) -> str | None:
    return _two_digits(value, 59, "seconds")


def hhmi(value: str) -> str | None:
    return hh(value[:2]) or mi(value[2:])


def iso3166(value: str) -> str | None:
    if value in ISO3166_NUMERIC:
        return None
    return "A valid ISO 3166 three-digit country code is required."


def iso3166999(value: str) -> str | None:
    if value == "999" or value in ISO3166_NUMERIC:
        return None
    return 'A valid ISO 3166 three-digit country code or "999" is required.'


def iso3166alpha2(value: str) -> str | None:
    if value in ISO3166_ALPHA2:
        return None
    return "A valid ISO 3166 two-character country code is required."


def iso4217(value: str) -> str | None:
    if value in ISO4217_NUMERIC:
        return None
    return "A valid ISO 4217 three-digit currency code is required."


def iso5218(value: str) -> str | None:
    if value in ("0", "1", "2", "9"):
        return None
    return "A valid ISO/IEC 5218 biological sex code required."


def iban(value: str) -> str | None:
    # The shortest IBANs (Norway) have 15 characters.
    if len(value) < 15:
        return "The IBAN is too short."
    if not all(c.isascii() and (c.isdigit() or c.isupper()) for c in value):
        return "The IBAN contains an invalid character."
    if value[:2] not in ISO3166_ALPHA2:
        return "The IBAN must start with a valid ISO 3166 two-character country code."
    if not is_digits(value[2:4]):
        return "The IBAN is invalid since the check characters are incorrect."
    rearranged = value[4:] + value[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    if int(number) % 97 != 1:
        return "The IBAN is invalid since the check characters are incorrect."
    return None


def pcenc(value: str) -> str | None:
    i = value.find("%")
    while i != -1:
        if len(value) < i + 3 or not _HEX.issuperset(value[i + 1 : i + 3]):
            return 'The input contains an invalid percent hex-encoding "%hh" sequence.'
        i = value.find("%", i + 3)
    return None


def nonzero(value: str) -> str | None:
    return "A non-zero value is required." if value.strip("0") == "" else None


def zero(value: str) -> str | None:
    return None if value == "0" else "A zero is required."


def yesno(value: str) -> str | None:
    return None if value in ("0", "1") else 'A "0" or "1" is required.'


def winding(value: str) -> str | None:
    if value in ("0", "1", "9"):
        return None
    return 'The winding direction must be either "0", "1" or "9".'


def nozeroprefix(value: str) -> str | None:
    return "A zero prefix is not permitted." if len(value) > 1 and value[0] == "0" else None


def hasnondigit(value: str) -> str | None:
    return "A non-digit character is required." if is_digits(value) else None


def hyphen(value: str) -> str | None:
    return None if set(value) <= {"-"} else "Only hyphens are permitted."


def latitude(value: str) -> str | None:
    if is_digits(value) and int(value) <= 1800000000:
        return None
    return 'The latitude is outside of the range "0000000000" to "1800000000".'


def longitude(value: str) -> str | None:
    if is_digits(value) and int(value) <= 3600000000:
        return None
    return 'The longitude is outside of the range "0000000000" to "3600000000".'


def pieceoftotal(value: str) -> str | None:
    if not is_digits(value) or len(value) % 2:
        return NON_DIGIT
    half = len(value) // 2
    piece, total = int(value[:half]), int(value[half:])
    if piece == 0:
        return "The piece number must not have a value of zero."
    if total == 0:
        return "The piece total must not have a value of zero."
    if piece > total:
        return "The piece number must not exceed the piece total."
    return None


def importeridx(value: str) -> str | None:
    return (
        None if _IMPORTER_INDEX.issuperset(value) else "The Importer Index is an invalid character."
    )


def posinseqslash(value: str) -> str | None:
    pos, slash, end = value.partition("/")
    if not slash or not is_digits(pos) or not is_digits(end):
        return 'The data must have the format "<pos>/<end>".'
    if pos[0] == "0" or end[0] == "0":
        return "A zero prefix is not permitted."
    if int(pos) > int(end):
        return "The position number must not exceed the end number."
    return None


def mediatype(value: str) -> str | None:
    # AIDC media types 01-10 are assigned; 80-99 are for company-internal use.
    if is_digits(value) and (1 <= int(value) <= 10 or 80 <= int(value) <= 99):
        return None
    return "A valid AIDC media type is required."


def packagetype(value: str) -> str | None:
    # UN/ECE Recommendation 21 package type codes: 1-3 alphanumerics (list not kept on device).
    return None if value.isalnum() and value.isascii() else "A valid package type is required."


class _Cursor:
    """Walks a coupon string field by field (variable-length indicators, fixed fields)."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def peek(self) -> str:
        return self.data[self.pos]

    def take(self, n: int) -> str | None:
        if len(self.data) - self.pos < n:
            return None
        part = self.data[self.pos : self.pos + n]
        self.pos += n
        return part


def _coupon_vli_field(
    cur: _Cursor, name: str, allowed: str, offset: int, range_text: str, *, gcp: bool
) -> str | None:
    """A variable-length indicator digit followed by that many (+offset) digits."""
    if not cur.more():
        return f"The coupon's {name} VLI is missing."
    vli = cur.peek()
    if vli not in allowed:
        return f"The coupon's {name} VLI must be {range_text}."
    cur.pos += 1
    # For the 2nd/3rd purchase GCP a VLI of 9 means "no GCP" (the GCP fields allow 0-6 or 9).
    length = 0 if gcp and vli == "9" else int(vli) + offset
    field = cur.take(length)
    if field is None:
        return f"The coupon's {name} is shorter than what is indicated by its VLI."
    if gcp and length and gcppos1(field):
        return "The GS1 Company Prefix is invalid."
    return None


def _coupon_purchase(cur: _Cursor, ordinal: str) -> str | None:
    error = _coupon_vli_field(
        cur, f"{ordinal} purchase Requirement", "12345", 0, '"1" to "5"', gcp=False
    )
    if error:
        return error
    if not cur.more():
        return f"The coupon's {ordinal} purchase Requirement Code is missing."
    if cur.peek() not in "012349":
        return f'The coupon\'s {ordinal} purchase Requirement Code must be "0" to "4" or "9".'
    cur.pos += 1
    if cur.take(3) is None:
        return (
            f"The coupon's {ordinal} purchase Family Code is shorter than the required "
            "three digits."
        )
    return None


def _coupon_date(cur: _Cursor, what: str, short: str) -> tuple[str | None, str]:
    cur.pos += 1
    date = cur.take(6)
    if date is None:
        return f"The coupon's {what} date is too short {short} YYMMDD format.", ""
    if yymmdd(date):
        return f"The coupon's {what} date is invalid.", ""
    return None, date


def couponcode(value: str) -> str | None:
    """North American Coupon Code (AI 8110)."""
    if not DIGITS.issuperset(value):
        return NON_DIGIT
    cur = _Cursor(value)
    if not cur.more():
        return "The coupon's primary GS1 Company Prefix VLI is missing."
    if cur.peek() > "6":
        return 'The coupon\'s primary GS1 Company Prefix VLI must be "0" to "6".'
    error = _coupon_vli_field(
        cur, "primary GS1 Company Prefix", "0123456", 6, '"0" to "6"', gcp=True
    )
    if error:
        return error
    if cur.take(6) is None:
        return "The coupon's Offer Code is shorter than the required six digits."
    error = _coupon_vli_field(cur, "Save Value", "12345", 0, '"1" to "5"', gcp=False)
    if error:
        return error
    error = _coupon_purchase(cur, "primary")
    if error:
        return error
    if cur.more() and cur.peek() == "1":
        cur.pos += 1
        if not cur.more():
            return "The coupon's Additional Purchase Rules Code is missing."
        if cur.peek() > "3":
            return 'The coupon\'s Additional Purchase Rules Code must be "0" to "3".'
        cur.pos += 1
        error = _coupon_purchase(cur, "second") or _coupon_vli_field(
            cur, "second purchase GS1 Company Prefix", "01234569", 6, '"0" to "6" or "9"', gcp=True
        )
        if error:
            return error
    if cur.more() and cur.peek() == "2":
        cur.pos += 1
        error = _coupon_purchase(cur, "third") or _coupon_vli_field(
            cur, "third purchase GS1 Company Prefix", "01234569", 6, '"0" to "6" or "9"', gcp=True
        )
        if error:
            return error
    expiry = ""
    if cur.more() and cur.peek() == "3":
        error, expiry = _coupon_date(cur, "expiration", "for")
        if error:
            return error
    if cur.more() and cur.peek() == "4":
        error, start = _coupon_date(cur, "start", "to")
        if error:
            return error
        if expiry and start > expiry:
            return "The coupon's expiration date precede the start date."
    if cur.more() and cur.peek() == "5":
        cur.pos += 1
        error = _coupon_vli_field(cur, "Serial Number", "0123456789", 6, '"0" to "9"', gcp=False)
        if error:
            return error
    if cur.more() and cur.peek() == "6":
        cur.pos += 1
        error = _coupon_vli_field(cur, "Retailer GCP/GLN", "1234567", 6, '"1" to "7"', gcp=True)
        if error:
            return error
    if cur.more() and cur.peek() == "9":
        cur.pos += 1
        if not cur.more():
            return "The coupon's Save Value Code is missing."
        if cur.peek() not in "01256":
            return 'The coupon\'s Save Value Code must be "0", "1", "2", "5" or "6".'
        cur.pos += 1
        if not cur.more():
            return "The coupon's Save Value Applies to Item is missing."
        if cur.peek() > "2":
            return 'The coupon\'s Save Value Applies to Item must be "0" to "2".'
        cur.pos += 1
        if not cur.more():
            return "The coupon's Store Coupon Flag is missing."
        cur.pos += 1
        if not cur.more():
            return "The coupon's Don't Multiply Flag is missing."
        if cur.peek() not in "01":
            return 'The coupon\'s Don\'t Multiply Flag must be "0" or "1".'
        cur.pos += 1
    if cur.more():
        return "The coupon contains excess data after the recognised optional fields."
    return None


def couponposoffer(value: str) -> str | None:
    """Positive offer file coupon (AI 8112)."""
    if not DIGITS.issuperset(value):
        return NON_DIGIT
    cur = _Cursor(value)
    if not cur.more() or cur.peek() not in "01":
        return 'The coupon\'s Format Code must be "0" or "1".'
    cur.pos += 1
    error = _coupon_vli_field(cur, "Funder", "0123456", 6, '"0" to "6"', gcp=True)
    if error:
        return error
    if cur.take(6) is None:
        return "The coupon's Offer Code is shorter than the required six digits."
    error = _coupon_vli_field(cur, "Serial Number", "0123456789", 6, '"0" to "9"', gcp=False)
    if error:
        return error
    if cur.more():
        return "The coupon contains excess data after the recognised optional fields."
    return None


LINTERS: dict[str, Linter] = {
    "csum": csum,
    "csumalpha": csumalpha,
    "gcppos1": gcppos1,
    "gcppos2": gcppos2,
    "yymmd0": yymmd0,
    "yymmdd": yymmdd,
    "yyyymmd0": yyyymmd0,
    "yyyymmdd": yyyymmdd,
    "hh": hh,
    "mi": mi,
    "ss": ss,
    "hhmi": hhmi,
    "iso3166": iso3166,
    "iso3166999": iso3166999,
    "iso3166alpha2": iso3166alpha2,
    "iso4217": iso4217,
    "iso5218": iso5218,
    "iban": iban,
    "pcenc": pcenc,
    "nonzero": nonzero,
    "zero": zero,
    "yesno": yesno,
    "winding": winding,
    "nozeroprefix": nozeroprefix,
    "hasnondigit": hasnondigit,
    "hyphen": hyphen,
    "latitude": latitude,
    "longitude": longitude,
    "pieceoftotal": pieceoftotal,
    "importeridx": importeridx,
    "posinseqslash": posinseqslash,
    "mediatype": mediatype,
    "packagetype": packagetype,
    "couponcode": couponcode,
    "couponposoffer": couponposoffer,
}
"""Linter name (as the syntax table spells it) -> the check."""

CSET_LINTERS: dict[str, Linter] = {"N": cset_numeric, "X": cset82, "Y": cset39, "Z": cset64}
"""Component type -> its character-set check."""
