"""The ui_sessions table: logged-in web UI sessions, kept as digests of their cookies."""

from __future__ import annotations

from typing import Any

import aiosqlite

from scanstation.store.database import Store

UI_SESSION_COLUMNS = (
    "token_sha256, csrf_token, password_tag, created, last_seen, remote, user_agent"
)
"""The columns, in the order ``load`` returns them and ``insert`` takes them."""


async def load(store: Store, *, idle_before: float, created_before: float) -> list[tuple[Any, ...]]:
    """Deletes the sessions idle since ``idle_before`` or created before ``created_before``,
    then returns every remaining row."""

    async def prune(db: aiosqlite.Connection) -> None:
        await db.execute(
            "DELETE FROM ui_sessions WHERE last_seen < ? OR created < ?",
            (idle_before, created_before),
        )

    await store.write(prune)
    rows = await store.fetchall(f"SELECT {UI_SESSION_COLUMNS} FROM ui_sessions")
    return [tuple(r) for r in rows]


async def insert(store: Store, row: tuple[Any, ...]) -> None:
    """One new session row, in UI_SESSION_COLUMNS order."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            f"INSERT INTO ui_sessions ({UI_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row
        )

    await store.write(op)


async def touch(store: Store, digest: str, now: float) -> None:
    """Records a session's last use."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            "UPDATE ui_sessions SET last_seen = ? WHERE token_sha256 = ?", (now, digest)
        )

    await store.write(op)


async def delete(store: Store, digests: list[str]) -> None:
    """Deletes ended sessions."""
    params = [(d,) for d in digests]

    async def op(db: aiosqlite.Connection) -> None:
        await db.executemany("DELETE FROM ui_sessions WHERE token_sha256 = ?", params)

    await store.write(op)
