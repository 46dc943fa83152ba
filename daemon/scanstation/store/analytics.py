"""Analytics over the scan events: counts per GTIN and per batch, recall tracking, completeness.

Every report is a function over an open Store returning frozen dataclasses.
Times are seconds since the epoch; [since, until) filters on the scan time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanstation.barcode.interpret import InterpretError, RecallList
from scanstation.store import Store
from scanstation.store.errors import StoreError
from scanstation.store.rows import (
    PRODUCT_COLUMNS,
    PRODUCT_FIELDS,
    period_of_captures,
    row_to_product,
)

COMPLETENESS_BUCKETS = ((0, 24), (25, 49), (50, 74), (75, 99), (100, 100))


class ReportError(StoreError):
    """A report that cannot be made; the message names the input and what was expected."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_report", message)


@dataclass(frozen=True, slots=True)
class GtinCount:
    """How often one GTIN was scanned in the period."""

    gtin: str
    """GTIN-14."""
    product_name: str
    """Name in the local catalog ("" when the GTIN is not in it)."""
    in_catalog: bool
    completeness: int | None
    """Catalog completeness 0–100, None when the GTIN is not in the catalog."""
    scans: int
    batches: int
    """Distinct non-empty batch/lot numbers (AI 10) seen."""
    devices: int
    """Distinct stations that scanned it."""
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class BatchCount:
    """Scans of one batch/lot of one GTIN: where and when it passed (recall tracking)."""

    gtin: str
    batch: str
    """AI 10 batch/lot ("" for scans without one: a plain EAN, or a label without AI 10)."""
    expiry: str
    """AI 17 as scanned (YYMMDD), the latest one seen for the batch."""
    scans: int
    serials: int
    """Distinct serial numbers (AI 21): individual items seen."""
    sites: tuple[str, ...]
    devices: tuple[str, ...]
    sources: tuple[str, ...]
    first_seen: float
    last_seen: float
    recalled: bool = False
    """True when the recall list names this batch, or the whole GTIN."""


@dataclass(frozen=True, slots=True)
class RecallReport:
    """Scanned batches that the recall list names."""

    recall_list: str
    """The file the recall entries came from."""
    entries: int
    """GTINs on the recall list."""
    hits: tuple[BatchCount, ...]
    """Batches scanned in the period that are recalled, most scanned first."""

    @property
    def scans(self) -> int:
        return sum(hit.scans for hit in self.hits)


@dataclass(frozen=True, slots=True)
class ProductCompleteness:
    """One catalog product: how complete its record is and how much that matters."""

    gtin: str
    name: str
    completeness: int
    """0–100 (store.product_completeness: filled catalog fields, the name counting double)."""
    missing: tuple[str, ...]
    """Catalog fields still empty."""
    scans: int
    """Scans in the period: the most scanned incomplete products are worth fixing first."""


@dataclass(frozen=True, slots=True)
class CompletenessReport:
    """The product completeness report of the local catalog."""

    products: int
    average: float
    """Mean completeness over the catalog (0 when it is empty)."""
    complete: int
    """Products at 100."""
    buckets: dict[str, int]
    """Completeness range ("0-24", …, "100") → number of products."""
    missing_fields: dict[str, int]
    """Catalog field → products missing it, most often missing first."""
    rows: tuple[ProductCompleteness, ...]
    """Incomplete products, most scanned first, then complete ones."""
    not_in_catalog: tuple[GtinCount, ...] = field(default=())
    """GTINs scanned in the period that the catalog does not know, most scanned first."""


def _period(since: float | None, until: float | None, table: str = "") -> tuple[str, list[float]]:
    """SQL conditions for [since, until) on scan_events (``table``: its alias, if any).

    Without bounds none (a full scan beats any index); with them a range of the events' row
    ids (scan_events keeps no time index of its own: one page fewer written per capture).
    """
    prefix = f"{table}." if table else ""
    return period_of_captures(since, until, f"{prefix}capture_id", f"{prefix}time")


async def gtin_counts(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    only_unknown: bool = False,
) -> list[GtinCount]:
    """Scans per GTIN in [since, until), most scanned first."""
    period, params = _period(since, until, "e")
    rows = await store.fetchall(
        "SELECT e.gtin, COALESCE(p.name, ''), p.id IS NOT NULL, p.completeness, e.scans, "
        "e.batches, e.devices, e.first_seen, e.last_seen FROM (SELECT gtin, COUNT(*) AS scans, "
        "COUNT(DISTINCT NULLIF(batch, '')) AS batches, COUNT(DISTINCT device_id) AS devices, "
        f"MIN(time) AS first_seen, MAX(time) AS last_seen FROM scan_events e WHERE {period} "
        "AND gtin != '' GROUP BY gtin) e LEFT JOIN products p ON p.gtin = e.gtin "
        + ("WHERE p.id IS NULL " if only_unknown else "")
        + "ORDER BY e.scans DESC, e.gtin LIMIT ?",
        (*params, -1 if limit is None else limit),
    )
    return [
        GtinCount(
            gtin=r[0],
            product_name=r[1],
            in_catalog=bool(r[2]),
            completeness=r[3],
            scans=r[4],
            batches=r[5],
            devices=r[6],
            first_seen=r[7],
            last_seen=r[8],
        )
        for r in rows
    ]


async def batch_counts(
    store: Store,
    *,
    gtin: str | None = None,
    since: float | None = None,
    until: float | None = None,
    recalls: RecallList | None = None,
) -> list[BatchCount]:
    """Scans per (GTIN, batch) in [since, until), with where they were seen."""
    period, period_params = _period(since, until)
    where = f"WHERE {period} AND gtin != ''" + (" AND gtin = ?" if gtin else "")
    params = (*period_params, *([gtin] if gtin else []))
    # GROUP_CONCAT(DISTINCT …) only joins with ","; commas inside values travel as \x1f.
    rows = await store.fetchall(
        "SELECT gtin, batch, MAX(expiry), COUNT(*), COUNT(DISTINCT NULLIF(serial, '')), "
        "MIN(time), MAX(time), GROUP_CONCAT(DISTINCT REPLACE(site, ',', char(31))), "
        "GROUP_CONCAT(DISTINCT REPLACE(device_id, ',', char(31))), "
        "GROUP_CONCAT(DISTINCT REPLACE(source, ',', char(31))) "
        f"FROM scan_events {where} GROUP BY gtin, batch ORDER BY COUNT(*) DESC, gtin, batch",
        params,
    )
    return [
        BatchCount(
            gtin=r[0],
            batch=r[1],
            expiry=r[2] or "",
            scans=r[3],
            serials=r[4],
            sites=_names(r[7]),
            devices=_names(r[8]),
            sources=_names(r[9]),
            first_seen=r[5],
            last_seen=r[6],
            recalled=recalls.is_recalled(r[0], r[1] or None) if recalls else False,
        )
        for r in rows
    ]


def _names(joined: str | None) -> tuple[str, ...]:
    """Distinct names from GROUP_CONCAT, sorted, empty ones dropped.

    >>> _names("store-9,store-7,,Depot\x1f Hall 2")
    ('Depot, Hall 2', 'store-7', 'store-9')
    """
    parts = (part.replace("\x1f", ",") for part in (joined or "").split(","))
    return tuple(sorted(part for part in parts if part))


async def recall_report(
    store: Store,
    recall_list: Path,
    *,
    since: float | None = None,
    until: float | None = None,
) -> RecallReport:
    """Which recalled batches were scanned, how often, where and when."""
    try:
        recalls = RecallList.load(recall_list)
    except InterpretError as exc:
        raise ReportError(str(exc)) from None
    batches = await batch_counts(store, since=since, until=until, recalls=recalls)
    return RecallReport(str(recall_list), len(recalls), tuple(b for b in batches if b.recalled))


def _missing(product: Any) -> tuple[str, ...]:
    return tuple(name for name in PRODUCT_FIELDS if getattr(product, name) in (None, "", [], {}))


async def completeness_report(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> CompletenessReport:
    """Catalog completeness: summary, the products to fix first, and unknown scanned GTINs."""
    products = [
        row_to_product(r)
        for r in await store.fetchall(f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY gtin")
    ]
    period, params = _period(since, until)
    scans = {
        r[0]: r[1]
        for r in await store.fetchall(
            f"SELECT gtin, COUNT(*) FROM scan_events WHERE {period} GROUP BY gtin",
            params,
        )
    }
    rows = [
        ProductCompleteness(p.gtin, p.name, p.completeness, _missing(p), scans.get(p.gtin, 0))
        for p in products
    ]
    rows.sort(key=lambda r: (r.completeness >= 100, -r.scans, r.completeness, r.gtin))
    buckets = {
        (f"{low}-{high}" if low != high else str(low)): sum(
            1 for p in products if low <= p.completeness <= high
        )
        for low, high in COMPLETENESS_BUCKETS
    }
    missing_fields: dict[str, int] = {}
    for row in rows:
        for name in row.missing:
            missing_fields[name] = missing_fields.get(name, 0) + 1
    ordered_missing = dict(sorted(missing_fields.items(), key=lambda kv: (-kv[1], kv[0])))
    unknown = await gtin_counts(store, since=since, until=until, limit=limit, only_unknown=True)
    count = len(products)
    return CompletenessReport(
        products=count,
        average=round(sum(p.completeness for p in products) / count, 1) if count else 0.0,
        complete=sum(1 for p in products if p.completeness >= 100),
        buckets=buckets,
        missing_fields=ordered_missing,
        rows=tuple(rows if limit is None else rows[:limit]),
        not_in_catalog=tuple(unknown),
    )
