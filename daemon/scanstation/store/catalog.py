"""The catalog: products by GTIN, field proposals, embeddings and reference photos."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from scanstation.model import Product, Proposal, new_public_id
from scanstation.store.core import StoreCore
from scanstation.store.errors import NotFound
from scanstation.store.rows import (
    _JSON_PRODUCT_FIELDS,
    PRODUCT_COLUMNS,
    PRODUCT_FIELDS,
    PROPOSAL_COLUMNS,
    product_completeness,
    row_to_product,
    row_to_proposal,
)


class CatalogStore(StoreCore):
    """The products, proposals, embeddings and reference_photos tables."""

    # ---- products ------------------------------------------------------------------------

    async def products_by_gtin(self, gtins: Iterable[str]) -> dict[str, tuple[int, str]]:
        """GTIN-14 → (product row id, name) for the GTINs that are in the catalog."""
        wanted = sorted({g for g in gtins if g})
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = await self.fetchall(
            f"SELECT gtin, id, name FROM products WHERE gtin IN ({marks})", wanted
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    async def get_product(self, gtin: str) -> Product:
        row = await self.fetchone(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE gtin = ?", (gtin,))
        if row is None:
            raise NotFound("product with GTIN", gtin)
        return row_to_product(row)

    async def list_products(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Product], int]:
        rows = await self.fetchall(
            f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        total = await self.fetchone("SELECT COUNT(*) FROM products")
        return [row_to_product(r) for r in rows], int(total[0]) if total else 0

    async def upsert_products(self, products: Sequence[dict[str, Any]]) -> int:
        """Insert or update catalog products by GTIN-14 (fields not given are kept)."""
        now = time.time()

        async def op(db: aiosqlite.Connection) -> int:
            for fields in products:
                gtin = fields["gtin"]
                existing = list(
                    await db.execute_fetchall(
                        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE gtin = ?", (gtin,)
                    )
                )
                merged: dict[str, Any] = {}
                if existing:
                    current = row_to_product(existing[0])
                    merged = {name: getattr(current, name) for name in PRODUCT_FIELDS}
                merged.update({k: v for k, v in fields.items() if k in PRODUCT_FIELDS})
                values = [
                    json.dumps(merged.get(name, json.loads(_JSON_PRODUCT_FIELDS[name])))
                    if name in _JSON_PRODUCT_FIELDS
                    else str(merged.get(name, "") or "")
                    for name in PRODUCT_FIELDS
                ]
                completeness = product_completeness(merged)
                cols = ", ".join(PRODUCT_FIELDS)
                marks = ", ".join("?" * len(PRODUCT_FIELDS))
                sets = ", ".join(f"{n} = excluded.{n}" for n in PRODUCT_FIELDS)
                await db.execute(
                    f"INSERT INTO products (public_id, gtin, {cols}, completeness, created, "
                    f"modified) VALUES (?, ?, {marks}, ?, ?, ?) ON CONFLICT(gtin) DO UPDATE SET "
                    f"{sets}, completeness = excluded.completeness, modified = excluded.modified",
                    (new_public_id(), gtin, *values, completeness, now, now),
                )
            return len(products)

        return await self.write(op)

    # ---- proposals -----------------------------------------------------------------------

    async def add_proposals(self, capture_id: int, drafts: Sequence[dict[str, Any]]) -> None:
        now = time.time()
        rows = [
            (
                new_public_id(),
                capture_id,
                d["field_name"],
                str(d.get("current_value", "")),
                str(d["proposed_value"]),
                float(d["confidence"]),
                d.get("reasoning", ""),
                d.get("source", ""),
                now,
            )
            for d in drafts
        ]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT INTO proposals (public_id, capture_id, field_name, current_value, "
                "proposed_value, confidence, reasoning, source, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self.write(op)

    async def list_proposals(self, capture_public_id: str) -> list[Proposal]:
        rows = await self.fetchall(
            f"SELECT {PROPOSAL_COLUMNS} FROM proposals pr JOIN captures c ON c.id = pr.capture_id "
            "WHERE c.public_id = ? ORDER BY pr.id",
            (capture_public_id,),
        )
        return [row_to_proposal(r) for r in rows]

    # ---- embeddings and reference photos (visual resolving) -----------------------------

    async def keep_embedding(self, capture_id: int, model: str, vector: bytes) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO embeddings (capture_id, model, vector) VALUES (?, ?, ?)",
                (capture_id, model, vector),
            )

        await self.write(op)

    async def add_reference_photo(self, product_id: int, capture_id: int) -> bool:
        """Make a capture's kept embedding a reference photo of a product (False: none kept)."""
        now = time.time()

        async def op(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "INSERT INTO reference_photos (product_id, capture_id, model, vector, created) "
                "SELECT ?, capture_id, model, vector, ? FROM embeddings WHERE capture_id = ? "
                "ON CONFLICT(capture_id) DO UPDATE SET product_id = excluded.product_id",
                (product_id, now, capture_id),
            )
            return cursor.rowcount

        return await self.write(op) > 0

    async def reference_photos(self, model: str) -> list[sqlite3.Row]:
        """(product public_id, name, row id, vector) of every reference made by ``model``;
        embeddings of different models are not comparable, so only one model's are given."""
        return await self.fetchall(
            "SELECT p.public_id, p.name, p.id, r.vector FROM reference_photos r "
            "JOIN products p ON p.id = r.product_id WHERE r.model = ? ORDER BY r.id",
            (model,),
        )
