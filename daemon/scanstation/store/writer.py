"""The writer's unit of work: a write op, or a Batchable sharing statements with its neighbours;
and how the writer thread runs them (SyncConnection, run_now)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiosqlite

T = TypeVar("T")
Item = TypeVar("Item")


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


class WriteQueue(Generic[Item]):
    """A bounded FIFO of writes waiting for the writer task: appended without a coroutine
    while there is room, taken a group at a time.

    What ``asyncio.Queue`` does for the writer (bounded, ``join``), at a fraction of its
    cost per write: a capture's insert passes through it on the hot path.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: deque[Item] = deque()
        self._space: deque[asyncio.Future[None]] = deque()
        self._unfinished = 0
        self._finished: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self.items)

    def full(self) -> bool:
        return len(self.items) >= self.maxsize

    def put_nowait(self, item: Item) -> None:
        """Append ``item``; asyncio.QueueFull when ``maxsize`` items wait already."""
        if len(self.items) >= self.maxsize:
            raise asyncio.QueueFull
        self.items.append(item)
        self._unfinished += 1

    async def put(self, item: Item) -> None:
        """Append ``item`` once there is room."""
        while len(self.items) >= self.maxsize:
            waiter = asyncio.get_running_loop().create_future()
            self._space.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if len(self.items) < self.maxsize:
                    self._wake_putters(1)  # the room it was woken for goes to the next
                raise
        self.items.append(item)
        self._unfinished += 1

    def take(self, limit: int) -> list[Item]:
        """Up to ``limit`` items from the front; their room goes to waiting putters."""
        items = self.items
        if len(items) <= limit:
            taken = list(items)
            items.clear()
        else:
            taken = [items.popleft() for _ in range(limit)]
        if self._space:
            self._wake_putters(len(taken))
        return taken

    def _wake_putters(self, count: int) -> None:
        space = self._space
        while count > 0 and space:
            waiter = space.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def done(self, count: int) -> None:
        """``count`` taken items are written (or failed): ``join`` returns once all are."""
        self._unfinished -= count
        if self._unfinished <= 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        """Return once every item put so far has been taken and marked done."""
        while self._unfinished > 0:
            if self._finished is None or self._finished.is_set():
                self._finished = asyncio.Event()
            await self._finished.wait()
