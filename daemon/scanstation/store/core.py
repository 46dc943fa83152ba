"""SQLite storage on aiosqlite: schema migrations, one group-committing writer, readers.

Every write goes through one writer task that gathers the writes queued within a few
milliseconds into one transaction (group commit) and commits with ``synchronous=FULL``, so a
write whose future has resolved is on disk: a capture acknowledged to its source (HTTP 201,
a beep) survives a power cut. Reads use a second connection; WAL lets them run beside the
writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self, cast

import aiosqlite

from scanstation.store.errors import DatabaseDamaged, StorageFull, is_damage, is_disk_full
from scanstation.store.files import private_files
from scanstation.store.rows import MQTT_DESTINATION
from scanstation.store.schema import MIGRATIONS, SCHEMA_VERSION
from scanstation.store.writer import (
    Batchable,
    NotDurable,
    SyncConnection,
    T,
    WriteOp,
    WriteQueue,
    run_now,
)

log = logging.getLogger(__name__)


PAGE_SIZE = 512
"""Page size of a new database: a commit writes every page it touched whole to the WAL, and a
capture's commit touches ~17 b-tree pages, most of them for a few bytes each: at a lane's rate
512 B pages write ~30% fewer bytes than 1 KiB ones and ~1/4 of 4 KiB ones (bench wear)."""
WAL_AUTOCHECKPOINT_BYTES = 4 << 20
"""Checkpoint once the WAL holds this many bytes of pages (SQLite's default of 1,000 4 KiB
pages): a page written by many commits is copied to the database once per checkpoint."""


def _same_handler(op: object, first: Batchable) -> bool:
    return isinstance(op, Batchable) and op.handler is first.handler


_Queued = WriteOp[Any] | Batchable | NotDurable
"""What the writer's queues hold: a write op, a Batchable, or a write op not made durable."""


class StoreCore:
    """The connection, the writer task with group commit, the reader: what the table groups'
    methods (sessions, captures, outbox, catalog) build on; ``Store`` joins them."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "full",
        commit_interval_ms: float = 0.0,
        max_batch: int = 512,
    ) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.commit_interval = commit_interval_ms / 1000
        self.max_batch = max_batch
        self._writer: sqlite3.Connection | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "store-writer")
        self._reader: aiosqlite.Connection | None = None
        self._queue: WriteQueue[tuple[_Queued, asyncio.Future[Any]]] = WriteQueue(8192)
        self._urgent: WriteQueue[tuple[_Queued, asyncio.Future[Any]]] = WriteQueue(8192)
        """Capture inserts: taken into each group before any other write."""
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by open()
        self.commits = 0
        self.writes = 0
        self.outbox_changed = asyncio.Event()
        self._outbox_signals: dict[str, asyncio.Event] = {}
        """Set after a commit that added outbox rows; the publisher clears it and drains."""
        self.full_since: float | None = None
        """Epoch seconds of the first write refused for a full disk; None once one succeeds."""

    # ---- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        # Created 0700 (an existing folder is the daemon's to tighten: store.files.private_dir).
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The writer is a plain sqlite3 connection used only on its own thread: a group
        # commit is one hop to that thread (see _transaction), not one per statement.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "store-writer")
        loop = self._loop = asyncio.get_running_loop()
        try:
            self._writer = await loop.run_in_executor(self._executor, self._open_writer)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._reader = await self._connect()
        self._reader.row_factory = sqlite3.Row  # rows index by position and by column name
        private_files(self.path)
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    def _open_writer(self) -> sqlite3.Connection:
        # isolation_level=None: the writer issues BEGIN IMMEDIATE / COMMIT itself.
        private_files(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        try:
            for pragma in self._pragmas():
                db.execute(pragma)
            # In pages of this database's own size (an existing one keeps the size it has).
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_BYTES // page_size}")
            self._migrate(db)
            # The schema is read in full here, so a damaged file is found at start.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            if is_damage(exc):
                raise DatabaseDamaged(self.path, str(exc)) from None
            raise
        except BaseException:
            db.close()
            raise
        return db

    def _pragmas(self) -> list[str]:
        return [
            # Only a new database takes it (an existing one keeps its page size): a commit
            # writes every page it touched whole to the WAL, so small pages are what keeps
            # the bytes per capture — SD card wear — low (docs/benchmarks.md, bench wear).
            f"PRAGMA page_size={PAGE_SIZE}",
            "PRAGMA journal_mode=WAL",
            f"PRAGMA journal_size_limit={WAL_AUTOCHECKPOINT_BYTES}",
            f"PRAGMA synchronous={self.synchronous}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ]

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
        try:
            for pragma in self._pragmas():
                await db.execute(pragma)
        except sqlite3.DatabaseError as exc:
            # Closed here, or aiosqlite's thread would keep the process alive after the error.
            await db.close()
            if is_damage(exc):
                raise DatabaseDamaged(self.path, str(exc)) from None
            raise
        except BaseException:
            await db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA user_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this scanstation "
                f"understands ({SCHEMA_VERSION}); upgrade scanstation"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migrating %s to schema version %d", self.path, number)
            # executescript commits first, so run the DDL and the version bump as one script.
            db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};COMMIT;")

    async def close(self) -> None:
        """Finish every queued write, then close both connections."""
        if self._writer_task is not None:
            await self._urgent.join()
            await self._queue.join()
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            writer = self._writer
            await asyncio.get_running_loop().run_in_executor(self._executor, writer.close)
            self._executor.shutdown(wait=False)
        self._reader = self._writer = None

    async def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy the WAL into the database now, on the writer's thread between groups
        (``mode``: PASSIVE, FULL, RESTART or TRUNCATE); SQLite's (busy, WAL pages, pages
        checkpointed). The writer checkpoints by itself every WAL_AUTOCHECKPOINT_BYTES."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"checkpoint mode {mode!r} is not PASSIVE, FULL, RESTART or TRUNCATE")
        writer = self._writer
        if writer is None:
            raise RuntimeError("the store is not open")

        def run() -> tuple[int, int, int]:
            row = writer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def page_size(self) -> int:
        """The database's page size in bytes."""
        row = await self.fetchone("PRAGMA page_size")
        return int(row[0]) if row else 0

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the writer ----------------------------------------------------------------------

    async def write(
        self, op: WriteOp[T] | Batchable, *, urgent: bool = False, durable: bool = True
    ) -> T:
        """Run ``op`` inside the next group-committed transaction; return once it is durable.

        ``urgent`` (capture inserts, which a source waits on): the op joins the next group
        ahead of the others, so a walk's large terminal write never keeps it out of a group.
        ``durable=False``: return once committed (visible, survives the process being
        killed); a power cut may undo it until the next durable commit (see NotDurable).
        """
        if self._writer_task is None:
            raise RuntimeError("the store is not open")
        # The loop the store was opened on (asyncio.get_running_loop makes a system call
        # on every call on Python 3.11: getpid, to notice a fork).
        future: asyncio.Future[T] = self._loop.create_future()
        queued: WriteOp[Any] | Batchable | NotDurable = op
        if not durable:
            assert not isinstance(op, Batchable), "a Batchable is always durable"
            queued = NotDurable(op)
        queue = self._urgent if urgent else self._queue
        if len(queue.items) < queue.maxsize:  # put_nowait, inline: the hot path
            queue.items.append((queued, future))
            queue._unfinished += 1
        else:
            await queue.put((queued, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        queue, urgent = self._queue, self._urgent
        while True:
            if not queue.items and not urgent.items:
                self._wake.clear()
                await self._wake.wait()
                if self.commit_interval:
                    await asyncio.sleep(self.commit_interval)
            batch = urgent.take(self.max_batch)
            from_urgent = len(batch)
            if from_urgent < self.max_batch and queue.items:
                batch += queue.take(self.max_batch - from_urgent)
            try:
                await self._commit_batch(batch)
            finally:
                urgent.done(from_urgent)
                queue.done(len(batch) - from_urgent)

    async def _commit_batch(self, batch: list[tuple[_Queued, asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._transaction, ops)
        except Exception as exc:  # any op failing rolls the whole group back
            if is_disk_full(exc):
                # Every op of the group would fail the same way: refuse them all at once.
                if self.full_since is None:
                    self.full_since = time.time()
                    log.error("storage full: writes to %s are refused (%s)", self.path, exc)
                full = StorageFull(self.path.parent, str(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(full)
                return
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            # Re-run each op in its own transaction so only the failing one fails.
            for item in batch:
                await self._commit_batch([item])
            return
        if self.full_since is not None:
            log.warning("storage writable again after %.0f s", time.time() - self.full_since)
            self.full_since = None
        self.commits += 1
        self.writes += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _transaction(self, ops: list[WriteOp[Any] | Batchable | NotDurable]) -> list[Any]:
        """One group on the writer thread: BEGIN IMMEDIATE, every op, COMMIT (or ROLLBACK)."""
        db = self._writer
        assert db is not None
        conn = cast(aiosqlite.Connection, SyncConnection(db))
        results: list[Any] = []
        lazy = self.synchronous in ("FULL", "EXTRA") and all(
            isinstance(op, NotDurable) for op in ops
        )
        if lazy:
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            index = 0
            while index < len(ops):
                op = ops[index]
                if isinstance(op, Batchable):
                    end = index + 1
                    while end < len(ops) and _same_handler(ops[end], op):
                        end += 1
                    items = [cast(Batchable, b).item for b in ops[index:end]]
                    results.extend(run_now(op.handler(conn, items)))
                    index = end
                else:
                    inner = op.op if isinstance(op, NotDurable) else op
                    results.append(run_now(inner(conn)))
                    index += 1
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            if lazy:
                db.execute(f"PRAGMA synchronous={self.synchronous}")
        return results

    # ---- reads ---------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        assert self._reader is not None, "the store is not open"
        return list(await self._reader.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def ping(self) -> bool:
        """True when the reader answers (an empty query: nothing reaches the SD card)."""
        return await self.fetchone("SELECT 1") is not None

    async def ping_writer(self) -> bool:
        """True when the writer task commits and the reader answers; an empty transaction."""

        async def select_one(db: aiosqlite.Connection) -> None:
            await db.execute("SELECT 1")

        await self.write(select_one)
        return await self.ping()

    # ---- outbox signals (set after a commit; each drainer clears its own) ----------------

    def outbox_signal(self, destination: str) -> asyncio.Event:
        """Set after a commit that added rows for ``destination``; its drainer clears it."""
        if destination == MQTT_DESTINATION:
            return self.outbox_changed
        return self._outbox_signals.setdefault(destination, asyncio.Event())

    def _signal_outbox(self, destinations: Iterable[str]) -> None:
        for destination in set(destinations):
            self.outbox_signal(destination).set()
