"""scanstation.barcode.gtin gives biip's results without importing biip (its prefix table).

biip stays the reference: every function is compared with the biip call it replaces, over
every leading-digit pattern and random values, and the daemon's imports are checked for biip.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_element_strings import GS1ElementString
from biip.gtin import Gtin
from biip.rcn import Rcn
from biip.upc import Upc

from scanstation.barcode.gtin import (
    GtinError,
    check_digit,
    expiry_date,
    gtin_14,
    rcn_usage,
    upce_gtin_14,
)

DAEMON = Path(__file__).resolve().parents[2] / "daemon"


def _values() -> list[str]:
    """GTIN-shaped strings: every 4-digit start of each length, zero padding, bad checks."""
    rng = random.Random(15)
    out: list[str] = []
    for length in (8, 12, 13, 14):
        for start in range(0, 10000, 7):
            body = f"{start:04d}" + "".join(rng.choice("0123456789") for _ in range(length))
            body = body[: length - 1]
            good = body + str(gs1_standard_check_digit(body))
            out += [good, good.zfill(14), body + str((int(good[-1]) + 3) % 10)]
    out += ["00000000", "00000000000000", " 4006381333931 ", "400638133393a", "123", "0" * 9]
    return out


def _biip(call: object, value: str) -> tuple[str, object]:
    try:
        return "ok", call(value)  # type: ignore[operator]
    except ParseError as exc:
        return "error", str(exc)


def _ours(call: object, value: str) -> tuple[str, object]:
    try:
        return "ok", call(value)  # type: ignore[operator]
    except GtinError as exc:
        return "error", str(exc)


def test_check_digit_is_biips() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        payload = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        assert check_digit(payload) == gs1_standard_check_digit(payload)
    with pytest.raises(ValueError, match="'12a'"):
        check_digit("12a")


def test_gtin_14_and_its_errors_are_biips() -> None:
    for value in _values():
        assert _ours(gtin_14, value) == _biip(lambda v: Gtin.parse(v).as_gtin_14(), value), value


def test_restricted_circulation_usage_is_biips() -> None:
    def biip_usage(value: str) -> str | None:
        gtin = Gtin.parse(value)
        return gtin.usage.value if isinstance(gtin, Rcn) and gtin.usage else None

    seen = set()
    for value in _values():
        ours, theirs = _ours(rcn_usage, value), _biip(biip_usage, value)
        assert ours == theirs, value
        seen.add(ours[1] if ours[0] == "ok" else "error")
    assert seen == {None, "geo", "company", "error"}  # every verdict was exercised


def test_upce_expansion_is_biips() -> None:
    rng = random.Random(2)
    values = [f"{n:08d}" for n in range(0, 10**8, 99_991)]
    values += ["".join(rng.choice("0123456789") for _ in range(8)) for _ in range(3000)]
    payloads = [rng.choice("01") + f"{rng.randrange(10**6):06d}" for _ in range(500)]
    values += [payload + str(check) for payload in payloads for check in range(10)]
    values += ["04252614", "12345670", "2345678x"]
    valid = 0
    for value in values:
        ours = _ours(upce_gtin_14, value)
        assert ours == _biip(lambda v: Upc.parse(v).as_gtin_14(), value), value
        valid += ours[0] == "ok"
    assert valid >= 500  # one check digit of ten for each payload
    assert upce_gtin_14("04252614") == "00042100005264"
    with pytest.raises(GtinError, match="'1234567' as UPC-E: Expected 8 digits, got 7"):
        upce_gtin_14("1234567")  # 6 and 7 digits (no check digit) are not scanned


def test_ai17_dates_are_biips() -> None:
    def biip_date(value: str) -> dt.date | None:
        try:
            return GS1ElementString.parse("17" + value).date
        except (ParseError, ValueError):
            return None

    days = (0, 1, 28, 29, 30, 31, 32)
    values = [f"{y:02d}{m:02d}{d:02d}" for y in range(100) for m in range(14) for d in days]
    for value in values:
        assert expiry_date(value) == biip_date(value), value
    assert expiry_date("270200") == dt.date(2027, 2, 28)
    assert expiry_date("12345") is None


def test_the_daemon_never_imports_biip() -> None:
    """biip's import builds its GS1 Company Prefix table (~20 MB resident): not in the daemon.
    Nor do the app, the web server and the sources without a camera load OpenCV, numpy or
    Pillow (~30 MB): a camera, a photo or a thumbnail brings them in when they come; nor
    prometheus-client and tomlkit (~2.6 MB), which the first scrape of /metrics and the first
    settings change bring in."""
    code = (
        "import sys, json\n"
        "import scanstation.app, scanstation.cli, scanstation.web.server\n"
        "import scanstation.web.routes, scanstation.web.routes.settings\n"
        "import scanstation.services.catalog, scanstation.sources.objects\n"
        "from scanstation.barcode.interpret import interpret\n"
        "r = interpret(']E0' + '4006381333931')\n"
        "heavy = {'biip', 'cv2', 'numpy', 'PIL', 'prometheus_client', 'tomlkit'}\n"
        "print(json.dumps({'gtin': r.gtin, 'loaded': sorted(m for m in sys.modules"
        " if m.split('.')[0] in heavy)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(DAEMON), "PATH": "/usr/bin:/bin"},
    )
    result = json.loads(out.stdout)
    assert result == {"gtin": "04006381333931", "loaded": []}
