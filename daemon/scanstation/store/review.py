"""Reads and writes the review API and the dashboard need beyond the Store's own methods."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiosqlite

from scanstation.model import Proposal, ProposalStatus
from scanstation.store import Conflict, NotFound, Store
from scanstation.store.rows import (
    PRODUCT_COLUMNS,
    PROPOSAL_COLUMNS,
    period_of_captures,
    row_to_product,
    row_to_proposal,
)


async def get_proposal(store: Store, public_id: str) -> Proposal:
    row = await store.fetchone(
        f"SELECT {PROPOSAL_COLUMNS} FROM proposals pr JOIN captures c ON c.id = pr.capture_id "
        "WHERE pr.public_id = ?",
        (public_id,),
    )
    if row is None:
        raise NotFound("proposal", public_id)
    return row_to_proposal(row)


async def review_proposal(store: Store, public_id: str, status: ProposalStatus) -> Proposal:
    """Mark a proposal ACCEPTED or REJECTED (a reviewer may change their mind)."""
    now = time.time()

    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute(
            "UPDATE proposals SET status = ?, reviewed_at = ? WHERE public_id = ?",
            (status.value, now, public_id),
        )
        return cursor.rowcount

    if await store.write(op) == 0:
        raise NotFound("proposal", public_id)
    return await get_proposal(store, public_id)


async def capture_ids(store: Store, public_id: str) -> tuple[int, str, int | None, str]:
    """(row id, gtin, product row id, uploaded image key) of a capture; NotFound if absent."""
    row = await store.fetchone(
        "SELECT id, gtin, product_id, uploaded_image_key FROM captures WHERE public_id = ?",
        (public_id,),
    )
    if row is None:
        raise NotFound("capture", public_id)
    return int(row[0]), str(row[1]), row[2], str(row[3])


async def attach_gtin(store: Store, capture_id: int, gtin: str) -> None:
    """Give a capture the GTIN of the product it was applied to, so walking it again
    reaches that product (the value's own GTIN, if it has one, still decides)."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("UPDATE captures SET gtin = ? WHERE id = ?", (gtin, capture_id))

    await store.write(op)


async def product_by_public_id(store: Store, public_id: str) -> Any:
    row = await store.fetchone(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE public_id = ?", (public_id,)
    )
    if row is None:
        raise NotFound("product", public_id)
    return row_to_product(row)


async def product_by_row_id(store: Store, product_id: int) -> Any:
    row = await store.fetchone(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?", (product_id,)
    )
    if row is None:
        raise Conflict(f"the capture's product (row {product_id}) no longer exists")
    return row_to_product(row)


async def search_products(
    store: Store,
    *,
    query: str = "",
    max_completeness: int | None = None,
    order: str = "gtin",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Any], int]:
    clauses: list[str] = []
    params: list[Any] = []
    if query:
        clauses.append("(gtin LIKE ? OR name LIKE ? OR brand LIKE ?)")
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses[-1] = clauses[-1].replace("LIKE ?", "LIKE ? ESCAPE '\\'")
        params += [like, like, like]
    if max_completeness is not None:
        clauses.append("completeness <= ?")
        params.append(max_completeness)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order_by = {
        "gtin": "gtin",
        "name": "name COLLATE NOCASE, gtin",
        "completeness": "completeness, gtin",
        "-completeness": "completeness DESC, gtin",
        "-modified": "modified DESC, id DESC",
    }[order]
    rows = await store.fetchall(
        f"SELECT {PRODUCT_COLUMNS} FROM products {where} ORDER BY {order_by} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    total = await store.fetchone(f"SELECT COUNT(*) FROM products {where}", params)
    return [row_to_product(r) for r in rows], int(total[0]) if total else 0


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The figures of GET /stats, read in one pass."""

    scans_today: int
    """Captures created since local midnight."""
    captures_total: int
    by_status: dict[str, int]
    """Every capture ever, by status."""
    today_by_status: dict[str, int]
    top_products: list[dict[str, Any]]
    """GTINs scanned most in the last 7 days: gtin, name, scans."""
    products_total: int
    completeness_average: float | None
    completeness_buckets: dict[str, int]
    """Products by completeness band: 0-24, 25-49, 50-74, 75-99, 100."""
    per_hour: list[dict[str, Any]]
    """The last 24 hours, oldest first: hour start (epoch s) and captures."""
    sessions_active: int
    proposals_pending: int


async def dashboard(store: Store, *, midnight: float, now: float) -> Dashboard:
    by_status = await store.status_counts()
    today = {
        r[0]: int(r[1])
        for r in await store.fetchall(
            # "+status": group after the range scan on captures_created, not by walking the
            # whole status index (3× slower with 100,000 captures).
            "SELECT status, COUNT(*) FROM captures WHERE created >= ? GROUP BY +status",
            (midnight,),
        )
    }
    week, week_params = period_of_captures(now - 7 * 86400, None, "capture_id", "time")
    top = await store.fetchall(
        # Count first, then name the ten winners (not a product lookup per scan).
        "SELECT t.gtin, COALESCE(p.name, ''), t.n, p.gtin IS NOT NULL FROM (SELECT gtin, "
        "COUNT(*) AS n "
        f"FROM scan_events WHERE {week} GROUP BY gtin ORDER BY n DESC, gtin LIMIT 10) t "
        "LEFT JOIN products p ON p.gtin = t.gtin ORDER BY t.n DESC, t.gtin",
        week_params,
    )
    completeness = await store.fetchone(
        "SELECT COUNT(*), AVG(completeness), "
        "SUM(completeness < 25), SUM(completeness >= 25 AND completeness < 50), "
        "SUM(completeness >= 50 AND completeness < 75), "
        "SUM(completeness >= 75 AND completeness < 100), SUM(completeness = 100) FROM products"
    )
    assert completeness is not None
    hour = 3600.0
    first_hour = (now // hour) * hour - 23 * hour
    hourly = {
        int(r[0]): int(r[1])
        for r in await store.fetchall(
            "SELECT CAST((created - ?) / 3600 AS INTEGER) AS h, COUNT(*) FROM captures "
            "WHERE created >= ? GROUP BY h",
            (first_hour, first_hour),
        )
    }
    active = await store.fetchone("SELECT COUNT(*) FROM sessions WHERE status = 'ACTIVE'")
    pending = await store.fetchone("SELECT COUNT(*) FROM proposals WHERE status = 'PENDING'")
    bands = ("0-24", "25-49", "50-74", "75-99", "100")
    return Dashboard(
        scans_today=sum(today.values()),
        captures_total=sum(by_status.values()),
        by_status=by_status,
        today_by_status=today,
        top_products=[
            {"gtin": r[0], "name": r[1], "scans": int(r[2]), "in_catalog": bool(r[3])} for r in top
        ],
        products_total=int(completeness[0]),
        completeness_average=round(float(completeness[1]), 1)
        if completeness[1] is not None
        else None,
        completeness_buckets={b: int(completeness[i + 2] or 0) for i, b in enumerate(bands)},
        per_hour=[{"hour": first_hour + h * hour, "captures": hourly.get(h, 0)} for h in range(24)],
        sessions_active=int(active[0]) if active else 0,
        proposals_pending=int(pending[0]) if pending else 0,
    )
