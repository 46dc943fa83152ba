"""The writer's unit of work: a write op, or a Batchable sharing statements with its neighbours;
and how the writer thread runs them (SyncConnection, run_now)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")


WriteOp = Callable[[aiosqlite.Connection], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Batchable:
    """A write that shares its statements with like writes next to it in the same group.

    ``handler(db, items)`` runs once for a run of neighbouring Batchables with the same
    handler and returns one result per item: a thread hop per group instead of per write.
    """

    handler: Callable[[aiosqlite.Connection, list[Any]], Awaitable[list[Any]]]
    item: Any


@dataclass(frozen=True, slots=True)
class NotDurable:
    """A write whose loss in a power cut costs nothing but a repeat (a delivered outbox row
    marked or deleted: the event is sent again, and consumers de-duplicate by event_id).

    A group made only of such writes commits without its fsync (``synchronous=NORMAL``,
    still atomic and never corrupting in WAL mode); its frames reach the disk with the next
    durable commit's fsync, in the same pages of the WAL, instead of an fsync of their own.
    """

    op: WriteOp[Any]


class SyncConnection:
    """What a write op sees as its connection inside the writer thread.

    The same coroutine methods as ``aiosqlite.Connection`` (execute, executemany,
    execute_fetchall), but each runs the statement at once on the thread's own sqlite3
    connection and never suspends: the writer runs a whole group — BEGIN, every op, COMMIT —
    in one hop to its thread instead of one hop per statement.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self._db.executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, parameters).fetchall()


def run_now(awaitable: Awaitable[T]) -> T:
    """The result of a write op's coroutine, run to its end on this thread.

    A write op may await only its connection (which never suspends); one awaiting anything
    else would need the event loop, from the writer thread: it is refused.
    """
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()
    raise RuntimeError("a write op may await only its database connection")
