"""CSV exports of scan events (analytics) and of the product catalog."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from scanstation.payloads import iso
from scanstation.store import Store
from scanstation.store.rows import PRODUCT_FIELDS

SCAN_COLUMNS = (
    "time",
    "gtin",
    "device_id",
    "source",
    "site",
    "lat",
    "lon",
    "batch",
    "serial",
    "expiry",
    "capture_public_id",
)
PRODUCT_COLUMNS = ("gtin", "public_id", *PRODUCT_FIELDS, "completeness")

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP's CSV injection list)."""


def safe_cell(value: object) -> object:
    """A text cell a spreadsheet will not run: a leading = + - @ tab or CR gets a ``'``.

    Numbers are left alone (a negative longitude stays a number).

    >>> safe_cell("=1+2"), safe_cell("@SUM(A1)"), safe_cell("-12"), safe_cell(-0.5)
    ("'=1+2", "'@SUM(A1)", "'-12", -0.5)
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_row(values: Iterable[object]) -> list[object]:
    """Every cell of a CSV row through ``safe_cell``."""
    return [safe_cell(v) for v in values]


async def write_scans_csv(
    store: Store, out: TextIO, *, since: float | None = None, until: float | None = None
) -> int:
    writer = csv.writer(out)
    writer.writerow(SCAN_COLUMNS)
    rows = await store.scan_events(since=since, until=until)
    for row in rows:
        writer.writerow(safe_row([iso(row[0]), *row[1:]]))
    return len(rows)


async def write_products_csv(store: Store, out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(PRODUCT_COLUMNS)
    count, offset = 0, 0
    while True:
        products, _ = await store.list_products(limit=500, offset=offset)
        for p in products:
            values = [getattr(p, name) for name in PRODUCT_FIELDS]
            writer.writerow(
                safe_row(
                    [p.gtin, p.public_id]
                    + [json.dumps(v) if isinstance(v, dict | list) else v for v in values]
                    + [p.completeness]
                )
            )
        count += len(products)
        if len(products) < 500:
            return count
        offset += 500


AUDIT_CSV_COLUMNS = ("time", "actor", "action", "target", "outcome", "remote", "detail")


async def write_audit_csv(
    store: Store, out: TextIO, *, since: float | None = None, until: float | None = None
) -> int:
    """The audit log as CSV, oldest first (every cell safe for spreadsheets)."""
    from scanstation.store import audit

    writer = csv.writer(out)
    writer.writerow(AUDIT_CSV_COLUMNS)
    total, offset, pages = 0, 0, []
    while True:
        count, page = await audit.entries(
            store, limit=1000, offset=offset, since=since, until=until
        )
        pages.append(page)
        offset += len(page)
        if len(page) < 1000 or offset >= count:
            break
    for page in reversed(pages):
        for e in reversed(page):
            writer.writerow(
                safe_row(
                    [
                        iso(e.time),
                        e.actor,
                        e.action,
                        e.target,
                        e.outcome,
                        e.remote,
                        json.dumps(e.detail, ensure_ascii=False, sort_keys=True),
                    ]
                )
            )
            total += 1
    return total
