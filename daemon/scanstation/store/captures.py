"""Captures: the PENDING insert (group-batched), reads, stage moves, retry, counts."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from scanstation.model import Capture, CaptureStatus, CaptureType, build_capture
from scanstation.store.core import StoreCore
from scanstation.store.errors import Conflict, NotFound, StoreError
from scanstation.store.rows import (
    CAPTURE_COLUMNS,
    CAPTURE_FROM,
    SESSION_RANGE_TERM,
    UNFINISHED_STATUSES,
    UNFINISHED_TERM,
    NewCapture,
    insert_rows,
    period_of_captures,
    row_to_capture,
    time_ordered_public_id,
)
from scanstation.store.writer import Batchable


async def _fetchall(
    db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


@dataclass(frozen=True, slots=True)
class _CaptureInsert:
    session_public_id: str
    now: float
    idle_timeout: float
    is_photo: bool
    row: tuple[Any, ...]
    """public_id, capture_type, raw_value, gtin, symbology, symbology_identifier, source,
    created, modified, gs1_dl_data, uploaded_image_key, metadata"""


async def _admit(
    db: aiosqlite.Connection, items: Sequence[tuple[str, float, float, bool]]
) -> list[tuple[int, int] | str]:
    """Admit captures into ACTIVE sessions, for one group of inserts: a few statements.

    ``items``: (session public id, now, idle timeout, is a photo) per capture. Returns each
    admitted capture's (session row id, new capture row id), or for a refused one its
    session's status ("" when the session does not exist), and counts the admitted ones on
    their sessions. A session idle past its timeout is marked EXPIRED here.
    """
    wanted = sorted({item[0] for item in items})
    marks = ",".join("?" * len(wanted))
    sessions: dict[str, list[Any]] = {
        r[0]: [r[1], r[2], r[3]]
        for r in await _fetchall(
            db,
            f"SELECT public_id, id, status, modified FROM sessions WHERE public_id IN ({marks})",
            wanted,
        )
    }
    # The single writer holds the write lock: ids can be assigned here, in order.
    next_id = int((await _fetchall(db, "SELECT COALESCE(MAX(id), 0) FROM captures"))[0][0]) + 1
    results: list[tuple[int, int] | str] = []
    touched: dict[str, list[Any]] = {}  # session public id -> [id, modified, captures, photos]
    expired: list[tuple[float, str]] = []
    for session_public_id, now, idle_timeout, is_photo in items:
        session = sessions.get(session_public_id)
        if session is None:
            results.append("")
            continue
        session_id, status, modified = session
        if status == "ACTIVE" and modified < now - idle_timeout:
            status = session[1] = "EXPIRED"
            expired.append((now, session_public_id))
        if status != "ACTIVE":
            results.append(status)
            continue
        session[2] = now
        count = touched.setdefault(session_public_id, [session_id, now, 0, 0])
        count[1] = now
        count[2] += 1
        count[3] += int(is_photo)
        results.append((session_id, next_id))
        next_id += 1
    if touched:
        await db.executemany(
            "UPDATE sessions SET modified = ?, capture_count = capture_count + ?, "
            "photo_count = photo_count + ? WHERE id = ?",
            [(m, n, p, sid) for sid, m, n, p in touched.values()],
        )
    if expired:
        await db.executemany(
            "UPDATE sessions SET status = 'EXPIRED', ended = ? "
            "WHERE public_id = ? AND status = 'ACTIVE'",
            expired,
        )
    return results


async def _insert_captures(
    db: aiosqlite.Connection, items: list[_CaptureInsert]
) -> list[int | str]:
    """Insert PENDING captures into ACTIVE sessions: a few statements for the whole group.

    Returns each capture's row id, or for a refused one its session's status ("" when the
    session does not exist).
    """
    admitted = await _admit(
        db, [(i.session_public_id, i.now, i.idle_timeout, i.is_photo) for i in items]
    )
    results: list[int | str] = []
    rows: list[tuple[Any, ...]] = []
    for item, admission in zip(items, admitted, strict=True):
        if isinstance(admission, str):
            results.append(admission)
            continue
        session_id, capture_id = admission
        rows.append((capture_id, session_id, *item.row))
        results.append(capture_id)
    if rows:
        await insert_rows(
            db,
            "INSERT INTO captures (id, session_id, public_id, status, capture_type, raw_value, "
            "gtin, symbology, symbology_identifier, source, created, modified, gs1_dl_data, "
            "uploaded_image_key, metadata)",
            15,
            [(*row[:3], "PENDING", *row[3:]) for row in rows],
        )
    return results


class CaptureStore(StoreCore):
    """The captures table: inserted PENDING, moved through the walk's stages, read back."""

    def new_capture(self, session_public_id: str, new: NewCapture) -> Capture:
        """The capture ``new`` becomes once stored, before it is: PENDING, its public id and
        time given, its row id 0 (the insert assigns it)."""
        now = time.time()
        return build_capture(
            id=0,
            # Time-ordered: the unique index on captures.public_id grows at its end instead
            # of taking a random page per capture (a page per commit, and per checkpoint).
            public_id=time_ordered_public_id(),
            session_public_id=session_public_id,
            status=CaptureStatus.PENDING,
            capture_type=new.capture_type,
            raw_value=new.raw_value,
            gtin=new.gtin,
            symbology=new.symbology,
            symbology_identifier=new.symbology_identifier,
            source=new.source,
            error_message="",
            created=now,
            processed_at=None,
            gs1_dl_data=new.gs1_dl_data or {},
            product_public_id="",
            product_name="",
            uploaded_image_key=new.uploaded_image_key,
            qr_analysis=None,
            metadata=new.metadata or {},
            checks={},
            revision=1,
        )

    async def add_capture(
        self,
        session_public_id: str,
        new: NewCapture,
        *,
        idle_timeout: float,
        pending: Capture | None = None,
    ) -> Capture:
        """Insert a PENDING capture into an ACTIVE session; durable when this returns.

        Raises NotFound for an unknown session and Conflict for one that is not ACTIVE
        (ended, or idle past ``idle_timeout`` — which marks it EXPIRED on the spot).
        ``pending``: the capture as ``new_capture`` made it, when the caller has it already.
        """
        c = pending or self.new_capture(session_public_id, new)
        insert = _CaptureInsert(
            session_public_id=session_public_id,
            now=c.created,
            idle_timeout=idle_timeout,
            is_photo=c.capture_type is CaptureType.IMAGE,
            row=(
                c.public_id,
                c.capture_type.value,
                c.raw_value,
                c.gtin,
                c.symbology,
                c.symbology_identifier,
                c.source,
                c.created,
                c.created,
                json.dumps(c.gs1_dl_data),
                c.uploaded_image_key,
                json.dumps(c.metadata),
            ),
        )
        result: int | str = await self.write(Batchable(_insert_captures, insert), urgent=True)
        if isinstance(result, str):
            raise self._refused(session_public_id, result)
        return dataclasses.replace(c, id=result)

    @staticmethod
    def _refused(session_public_id: str, status: str) -> StoreError:
        if not status:
            return NotFound("session", session_public_id, field="session_public_id")
        return Conflict(
            f"session {session_public_id!r} is {status}; captures can be added only to an "
            "ACTIVE session",
            field="session_public_id",
        )

    async def get_capture(self, public_id: str) -> Capture:
        row = await self.fetchone(
            f"SELECT {CAPTURE_COLUMNS} FROM {CAPTURE_FROM} WHERE c.public_id = ?", (public_id,)
        )
        if row is None:
            raise NotFound("capture", public_id)
        return row_to_capture(row)

    async def get_captures_by_id(self, ids: Sequence[int]) -> list[Capture]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self.fetchall(
            f"SELECT {CAPTURE_COLUMNS} FROM {CAPTURE_FROM} WHERE c.id IN ({marks}) ORDER BY c.id",
            list(ids),
        )
        return [row_to_capture(r) for r in rows]

    async def list_captures(
        self,
        *,
        session_public_id: str | None = None,
        status: CaptureStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Capture], int]:
        clauses: list[str] = []
        params: list[Any] = []
        if session_public_id is not None:
            clauses.append("s.public_id = ?")
            params.append(session_public_id)
            clauses.append(SESSION_RANGE_TERM)
        if status is not None:
            clauses.append("c.status = ?")
            params.append(status.value)
            if status.value in UNFINISHED_STATUSES:
                clauses.append(UNFINISHED_TERM)
        if since is not None:
            clauses.append("c.created >= ?")
            params.append(since)
        if until is not None:
            clauses.append("c.created < ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.fetchall(
            f"SELECT {CAPTURE_COLUMNS} FROM {CAPTURE_FROM} {where} "
            "ORDER BY c.id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        if not clauses or clauses == ["c.status = ?"]:  # counted by the triggers
            counts = await self.status_counts()
            total = counts.get(params[0], 0) if clauses else sum(counts.values())
            return [row_to_capture(r) for r in rows], total
        row = await self.fetchone(f"SELECT COUNT(*) FROM {CAPTURE_FROM} {where}", params)
        return [row_to_capture(r) for r in rows], int(row[0]) if row else 0

    async def unfinished_capture_ids(self) -> list[int]:
        """Captures left in progress (by a crash or stop): the pipeline walks them again."""
        rows = await self.fetchall(
            f"SELECT id FROM captures c WHERE {UNFINISHED_TERM} AND c.status != 'FAILED' "
            "ORDER BY id"
        )
        return [r[0] for r in rows]

    async def set_status(self, capture_ids: Iterable[int], status: CaptureStatus) -> None:
        """Move in-progress captures to the next stage (one statement for the whole batch)."""
        now = time.time()
        params = [(status.value, now, cid) for cid in capture_ids]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "UPDATE captures SET status = ?, modified = ? WHERE id = ?", params
            )

        await self.write(op)

    async def retry_capture(self, public_id: str) -> Capture:
        """FAILED or NOT_FOUND → PENDING with the revision bumped; otherwise Conflict."""
        now = time.time()

        async def op(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "UPDATE captures SET status = 'PENDING', revision = revision + 1, "
                "error_message = '', modified = ? "
                "WHERE public_id = ? AND status IN ('FAILED', 'NOT_FOUND')",
                (now, public_id),
            )
            return cursor.rowcount

        if await self.write(op) == 0:
            capture = await self.get_capture(public_id)  # raises NotFound
            raise Conflict(
                f"capture {public_id!r} is {capture.status.value}; only FAILED or NOT_FOUND "
                "captures can be retried"
            )
        return await self.get_capture(public_id)

    # ---- analytics -----------------------------------------------------------------------

    async def scan_events(
        self, *, since: float | None = None, until: float | None = None
    ) -> list[sqlite3.Row]:
        period, params = period_of_captures(since, until, "e.capture_id", "e.time")
        return await self.fetchall(
            "SELECT e.time, e.gtin, e.device_id, e.source, e.site, e.lat, e.lon, e.batch, "
            "e.serial, e.expiry, c.public_id FROM scan_events e "
            f"JOIN captures c ON c.id = e.capture_id WHERE {period} ORDER BY e.capture_id",
            params,
        )

    async def status_counts(self) -> dict[str, int]:
        """Captures by status (statuses with none left out), as the triggers count them."""
        rows = await self.fetchall(
            "SELECT substr(name, 10), value FROM counters "
            "WHERE name >= 'captures:' AND name < 'captures;' AND value > 0"
        )
        return {str(r[0]): int(r[1]) for r in rows}
