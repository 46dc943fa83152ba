"""The audit_log table: security-relevant actions (who, what, when, from where, outcome).

Written by the web layer (logins, failed logins, catalog imports) and by the command line
(users, roles, API keys, backups, restores); read by admins through the API and as CSV.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiosqlite

from scanstation.payloads import iso
from scanstation.store.database import Store

AUDIT_COLUMNS = ("id", "time", "actor", "action", "target", "outcome", "remote", "detail")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    time: float
    actor: str
    """Who acted: a user name, ``key:<id>`` for an API key, ``cli`` for the command line."""
    action: str
    """What: ``login``, ``user.add``, ``user.set-role``, ``api-key.create``, ``catalog.import``…"""
    target: str
    """What it was done to (a user name, a key id, a file), '' when nothing in particular."""
    outcome: str
    """``ok``, or ``refused`` (a failed login, a refused change)."""
    remote: str
    """The client address for HTTP requests, '' for the command line."""
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso(self.time),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "remote": self.remote,
            "detail": self.detail,
        }


async def record(
    store: Store,
    actor: str,
    action: str,
    *,
    target: str = "",
    outcome: str = "ok",
    remote: str = "",
    detail: dict[str, Any] | None = None,
    when: float | None = None,
) -> None:
    """Appends one entry (durable when this returns)."""
    row = (
        time.time() if when is None else when,
        actor[:100],
        action[:64],
        target[:200],
        outcome[:32],
        remote[:64],
        json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
    )

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT INTO audit_log (time, actor, action, target, outcome, remote, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    await store.write(op)


def _where(action: str | None, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if action:
        # 'user' matches user.add, user.remove, …
        clauses.append("(action = ? OR action LIKE ? ESCAPE '\\')")
        escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params += [action, escaped + ".%"]
    if since is not None:
        clauses.append("time >= ?")
        params.append(since)
    if until is not None:
        clauses.append("time < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def entries(
    store: Store,
    *,
    limit: int = 100,
    offset: int = 0,
    action: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> tuple[int, list[AuditEntry]]:
    """(how many match, the page of them newest first)."""
    where, params = _where(action, since, until)
    total = await store.fetchone(f"SELECT count(*) FROM audit_log{where}", params)
    rows = await store.fetchall(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log{where}"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return (int(total[0]) if total else 0), [_entry(r) for r in rows]


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6], json.loads(row[7])
    )
