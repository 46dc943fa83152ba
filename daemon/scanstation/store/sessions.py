"""Sessions: create, read, end and expire them; the capture counts of one."""

from __future__ import annotations

import json
import time
from typing import Any

import aiosqlite

from scanstation.model import CaptureMode, Session, SessionStatus, new_public_id
from scanstation.store.core import StoreCore
from scanstation.store.errors import Conflict, NotFound
from scanstation.store.rows import SESSION_COLUMNS, SESSION_RANGE_TERM, row_to_session


class SessionStore(StoreCore):
    """The sessions table: a session is ACTIVE until ended or idle past its timeout."""

    async def create_session(
        self,
        *,
        capture_mode: CaptureMode = CaptureMode.BOTH,
        metadata: dict[str, Any] | None = None,
        source: str = "",
    ) -> Session:
        now = time.time()
        public_id = new_public_id()
        meta = json.dumps(metadata or {})

        async def op(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "INSERT INTO sessions (public_id, status, capture_mode, source, metadata, "
                "created, modified) VALUES (?, 'ACTIVE', ?, ?, ?, ?, ?)",
                (public_id, capture_mode.value, source, meta, now, now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        session_id = await self.write(op)
        return Session(
            id=session_id,
            public_id=public_id,
            status=SessionStatus.ACTIVE,
            capture_mode=capture_mode,
            created=now,
            modified=now,
            metadata=metadata or {},
            capture_count=0,
            photo_count=0,
            source=source,
        )

    async def get_session(self, public_id: str) -> Session:
        row = await self.fetchone(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE public_id = ?", (public_id,)
        )
        if row is None:
            raise NotFound("session", public_id)
        return row_to_session(row)

    async def list_sessions(
        self, *, status: SessionStatus | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Session], int]:
        where, params = ("WHERE status = ?", [status.value]) if status else ("", [])
        rows = await self.fetchall(
            f"SELECT {SESSION_COLUMNS} FROM sessions {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        total = await self.fetchone(f"SELECT COUNT(*) FROM sessions {where}", params)
        return [row_to_session(r) for r in rows], int(total[0]) if total else 0

    async def end_session(self, public_id: str) -> Session:
        now = time.time()

        async def op(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'COMPLETED', modified = ?, ended = ? "
                "WHERE public_id = ? AND status = 'ACTIVE'",
                (now, now, public_id),
            )
            return cursor.rowcount

        if await self.write(op) == 0:
            session = await self.get_session(public_id)  # raises NotFound
            raise Conflict(
                f"session {public_id!r} is {session.status.value}; only an ACTIVE session can "
                "be ended"
            )
        return await self.get_session(public_id)

    async def expire_idle_sessions(self, idle_timeout: float) -> list[str]:
        """Mark ACTIVE sessions idle longer than ``idle_timeout`` seconds EXPIRED."""
        now = time.time()

        async def op(db: aiosqlite.Connection) -> list[str]:
            rows = await db.execute_fetchall(
                "UPDATE sessions SET status = 'EXPIRED', modified = ?, ended = ? "
                "WHERE status = 'ACTIVE' AND modified < ? RETURNING public_id",
                (now, now, now - idle_timeout),
            )
            return [r[0] for r in rows]

        return await self.write(op)

    async def latest_active_session(self, source: str | None = None) -> Session | None:
        where, params = ("AND source = ?", [source]) if source is not None else ("", [])
        row = await self.fetchone(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'ACTIVE' {where} "
            "ORDER BY id DESC LIMIT 1",
            params,
        )
        return row_to_session(row) if row else None

    async def session_capture_counts(self, session_id: int) -> dict[str, int]:
        """Status name → number of captures of one session (row id), statuses present only."""
        rows = await self.fetchall(
            "SELECT c.status, COUNT(*) FROM sessions s JOIN captures c "
            f"ON {SESSION_RANGE_TERM} AND c.session_id = s.id WHERE s.id = ? GROUP BY c.status",
            (session_id,),
        )
        return {str(r[0]): int(r[1]) for r in rows}
