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
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import aiosqlite

from scanstation.model import (
    Capture,
    CaptureMode,
    CaptureStatus,
    CaptureType,
    Product,
    Proposal,
    Session,
    SessionStatus,
    build_capture,
    new_public_id,
)
from scanstation.store.errors import (
    Conflict,
    DatabaseDamaged,
    NotFound,
    StorageFull,
    StoreError,
    is_damage,
    is_disk_full,
)
from scanstation.store.files import private_files
from scanstation.store.rows import (
    _JSON_PRODUCT_FIELDS,
    CAPTURE_COLUMNS,
    CAPTURE_FROM,
    MQTT_DESTINATION,
    PRODUCT_COLUMNS,
    PRODUCT_FIELDS,
    PROPOSAL_COLUMNS,
    SESSION_COLUMNS,
    SESSION_RANGE_TERM,
    UNFINISHED_STATUSES,
    UNFINISHED_TERM,
    CaptureOutcome,
    ColumnTexts,
    NewCapture,
    OutboxEvent,
    _admit,
    _CaptureInsert,
    _insert_captures,
    insert_rows,
    period_of_captures,
    product_completeness,
    row_to_capture,
    row_to_product,
    row_to_proposal,
    row_to_session,
    time_ordered_public_id,
)
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


def _dumps(value: dict[str, Any]) -> str:
    """JSON of a column's object; the common empty one without the encoder."""
    return json.dumps(value) if value else "{}"


def _same_handler(op: object, first: Batchable) -> bool:
    return isinstance(op, Batchable) and op.handler is first.handler


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated ids as inclusive (low, high) runs of consecutive ids."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return ranges


async def _resolve_in_catalog(
    db: aiosqlite.Connection, outcomes: Sequence[CaptureOutcome]
) -> list[CaptureOutcome]:
    """Outcomes whose GTIN is a catalog product: COMPLETED with it (FAILED ones stay)."""
    wanted = sorted({o.gtin for o in outcomes if o.gtin and o.status is not CaptureStatus.FAILED})
    if not wanted:
        return list(outcomes)
    marks = ",".join("?" * len(wanted))
    rows = await db.execute_fetchall(
        f"SELECT gtin, id FROM products WHERE gtin IN ({marks})", wanted
    )
    catalog = {str(r[0]): int(r[1]) for r in rows}
    return [
        dataclasses.replace(o, status=CaptureStatus.COMPLETED, product_id=catalog[o.gtin])
        if o.gtin in catalog and o.status is not CaptureStatus.FAILED
        else o
        for o in outcomes
    ]


async def _finished_in_memory(
    db: aiosqlite.Connection,
    outcomes: Sequence[CaptureOutcome],
    held: dict[int, Capture],
    now: float,
) -> list[Capture]:
    """The captures as ``finish_captures`` just wrote them, from what the caller held: only
    the products they now name are read (public id and name), in one statement."""
    product_ids = sorted({o.product_id for o in outcomes if o.product_id is not None})
    products: dict[int, tuple[str, str]] = {}
    if product_ids:
        marks = ",".join("?" * len(product_ids))
        rows = await db.execute_fetchall(
            f"SELECT id, public_id, name FROM products WHERE id IN ({marks})", product_ids
        )
        products = {int(r[0]): (str(r[1]), str(r[2])) for r in rows}
    captures = []
    for o in sorted(outcomes, key=lambda o: o.capture_id):
        product_public_id, product_name = products.get(o.product_id or 0, ("", ""))
        captures.append(
            dataclasses.replace(
                held[o.capture_id],
                status=o.status,
                gtin=o.gtin,
                gs1_dl_data=dict(o.gs1_dl_data or {}),
                product_public_id=product_public_id,
                product_name=product_name,
                error_message=o.error_message,
                checks=dict(o.checks or {}),
                qr_analysis=o.qr_analysis,
                processed_at=now,
            )
        )
    return captures


_Queued = WriteOp[Any] | Batchable | NotDurable
"""What the writer's queues hold: a write op, a Batchable, or a write op not made durable."""

EventMaker = Callable[[Capture, int, ColumnTexts | None], tuple[str, str]]
"""A finished capture's event: (event_id, JSON text) from the capture, its sequence number
and the JSON of its columns as written for its row (None: not at hand, serialise them)."""
_MQTT_ONLY = frozenset((MQTT_DESTINATION,))
DestinationsOf = Callable[[Capture], Sequence[str]]
"""Extra outbox destinations of a finished capture (webhook outputs), besides MQTT."""

_OUTBOX_INSERT = "INSERT INTO outbox (id, destination, topic, event_id, seq, payload, created)"
_SCAN_EVENT_INSERT = (
    "INSERT INTO scan_events (capture_id, gtin, time, device_id, source, site, "
    "lat, lon, batch, serial, expiry)"
)
_SCAN_EVENT_UPSERT = (
    # A retried capture is still one scan: its analytics row is replaced.
    " ON CONFLICT(capture_id) DO UPDATE SET gtin = excluded.gtin, "
    "batch = excluded.batch, serial = excluded.serial, expiry = excluded.expiry"
)
_CAPTURE_INSERT = (
    "INSERT INTO captures (id, session_id, public_id, status, capture_type, raw_value, "
    "gtin, symbology, symbology_identifier, source, error_message, created, modified, "
    "processed_at, gs1_dl_data, product_id, uploaded_image_key, qr_analysis, metadata, checks)"
)


async def _insert_scan_events(db: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> None:
    await insert_rows(db, _SCAN_EVENT_INSERT, 11, rows, _SCAN_EVENT_UPSERT)


async def _take_outbox_ids(db: aiosqlite.Connection, count: int) -> int:
    """Reserve ``count`` outbox row ids; returns the first.

    Ids are never reused, even once every row is delivered and deleted (a drainer's "after
    id N" cursor never skips a new event): they come from counters 'outbox_id' — on the page
    a capture's commit writes anyway — and are above every id in the table.
    """
    rows = list(
        await db.execute_fetchall(
            "INSERT INTO counters (name, value) "
            "VALUES ('outbox_id', (SELECT COALESCE(MAX(id), 0) FROM outbox) + ?1) "
            "ON CONFLICT(name) DO UPDATE SET value = MAX(value + ?1, excluded.value) "
            "RETURNING value",
            (count,),
        )
    )
    return int(rows[0][0]) - count + 1


async def _insert_outbox(db: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows (destination, topic, event_id, seq, payload, created), ids given."""
    if not rows:
        return
    first = await _take_outbox_ids(db, len(rows))
    await insert_rows(db, _OUTBOX_INSERT, 7, [(first + n, *row) for n, row in enumerate(rows)])


async def _take_seqs(db: aiosqlite.Connection, count: int) -> int:
    """Reserve ``count`` capture event sequence numbers; returns the first."""
    rows = list(
        await db.execute_fetchall(
            "INSERT INTO counters (name, value) VALUES ('capture_seq', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value "
            "RETURNING value",
            (count,),
        )
    )
    return int(rows[0][0]) - count + 1


_TERMINAL_VALUES = tuple(s.value for s in CaptureStatus if s.terminal)
_TERMINAL_MARKS = ",".join("?" * len(_TERMINAL_VALUES))


def _terminal_rows(
    capture: Capture,
    outcome: CaptureOutcome,
    seq: int,
    make_event: EventMaker,
    scan_event_defaults: dict[str, Any],
    destinations: DestinationsOf | None,
    now: float,
    outbox: list[tuple[Any, ...]],
    analytics: list[tuple[Any, ...]],
    texts: ColumnTexts | None = None,
) -> frozenset[str]:
    """Append a finished capture's outbox rows (its event for every destination, then its
    alert) and its analytics row: each capture's rows together, in capture order. Returns
    the destinations written to."""
    event_id, text = make_event(capture, seq, texts)
    extra = destinations(capture) if destinations else ()
    written = _MQTT_ONLY
    outbox.append((MQTT_DESTINATION, "captures", event_id, seq, text, now))
    if extra:
        for destination in extra:
            outbox.append((destination, "captures", event_id, seq, text, now))
        written = written.union(extra)
    if outcome.alert is not None:
        alert = {**outcome.alert, "event_id": new_public_id()}
        outbox.append((MQTT_DESTINATION, "alerts", alert["event_id"], None, json.dumps(alert), now))
    if outcome.scan_event is not None:
        row = {**scan_event_defaults, **outcome.scan_event}
        analytics.append(
            (
                capture.id,
                row["gtin"],
                capture.created,
                row["device_id"],
                capture.source,
                row.get("site", ""),
                row.get("lat"),
                row.get("lon"),
                row.get("batch", ""),
                row.get("serial", ""),
                row.get("expiry", ""),
            )
        )
    return written


class _FinishedInsert(NamedTuple):
    """A capture whose walk was done before its insert: stored already terminal (a named
    tuple: made once per capture on the hot path, cheaper than a frozen dataclass)."""

    capture: Capture
    """As it would be stored PENDING (row id 0: assigned by the insert)."""
    outcome: CaptureOutcome
    idle_timeout: float
    make_event: EventMaker
    scan_event_defaults: dict[str, Any]
    destinations: DestinationsOf | None


async def _insert_finished(
    db: aiosqlite.Connection, items: list[_FinishedInsert]
) -> list[tuple[Capture, frozenset[str]] | str]:
    """Insert captures already terminal, with their events, alerts and analytics rows, for
    one group: the catalog is read once for the group's GTINs. Returns each capture as
    stored with the outbox destinations it wrote, or for a refused one its session's status
    ("" when the session does not exist)."""
    admitted = await _admit(
        db,
        [
            (
                i.capture.session_public_id,
                i.capture.created,
                i.idle_timeout,
                i.capture.capture_type is CaptureType.IMAGE,
            )
            for i in items
        ],
    )
    wanted = sorted(
        {
            i.outcome.gtin
            for i in items
            if i.outcome.gtin and i.outcome.status is not CaptureStatus.FAILED
        }
    )
    catalog: dict[str, tuple[int, str, str]] = {}
    if wanted:
        marks = ",".join("?" * len(wanted))
        rows = await db.execute_fetchall(
            f"SELECT gtin, id, public_id, name FROM products WHERE gtin IN ({marks})", wanted
        )
        catalog = {str(r[0]): (int(r[1]), str(r[2]), str(r[3])) for r in rows}
    count = sum(1 for a in admitted if not isinstance(a, str))
    seq = await _take_seqs(db, count) if count else 0
    now = time.time()
    results: list[tuple[Capture, frozenset[str]] | str] = []
    inserts: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    analytics: list[tuple[Any, ...]] = []
    for item, admission in zip(items, admitted, strict=True):
        if isinstance(admission, str):
            results.append(admission)
            continue
        session_id, capture_id = admission
        o, c = item.outcome, item.capture
        product_id, product_public_id, product_name = None, "", ""
        status = o.status
        if status is not CaptureStatus.FAILED and o.gtin in catalog:
            status = CaptureStatus.COMPLETED
            product_id, product_public_id, product_name = catalog[o.gtin]
        # Built field by field: dataclasses.replace costs more than the insert's own SQL.
        capture = build_capture(
            id=capture_id,
            public_id=c.public_id,
            session_public_id=c.session_public_id,
            status=status,
            capture_type=c.capture_type,
            raw_value=c.raw_value,
            gtin=o.gtin,
            symbology=c.symbology,
            symbology_identifier=c.symbology_identifier,
            source=c.source,
            error_message=o.error_message,
            created=c.created,
            processed_at=now,
            gs1_dl_data=dict(o.gs1_dl_data or {}),
            product_public_id=product_public_id,
            product_name=product_name,
            uploaded_image_key=c.uploaded_image_key,
            qr_analysis=o.qr_analysis,
            metadata=c.metadata,
            checks=dict(o.checks or {}),
            revision=c.revision,
        )
        # Each column's JSON is made once: for the row, and again in the event's text.
        gs1_text = _dumps(capture.gs1_dl_data)
        qr_text = json.dumps(o.qr_analysis) if o.qr_analysis is not None else None
        metadata_text = _dumps(c.metadata)
        checks_text = _dumps(capture.checks)
        inserts.append(
            (
                capture_id,
                session_id,
                c.public_id,
                status.value,
                c.capture_type.value,
                c.raw_value,
                o.gtin,
                c.symbology,
                c.symbology_identifier,
                c.source,
                o.error_message,
                c.created,
                now,
                now,
                gs1_text,
                product_id,
                c.uploaded_image_key,
                qr_text,
                metadata_text,
                checks_text,
            )
        )
        written = _terminal_rows(
            capture,
            o,
            seq,
            item.make_event,
            item.scan_event_defaults,
            item.destinations,
            now,
            outbox,
            analytics,
            (gs1_text, qr_text, metadata_text, checks_text),
        )
        seq += 1
        results.append((capture, written))
    if inserts:
        await insert_rows(db, _CAPTURE_INSERT, 20, inserts)
        await _insert_outbox(db, outbox)
        if analytics:
            await _insert_scan_events(db, analytics)
    return results


class Store:
    """The database: one writer task with group commit, one reader connection."""

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

    async def __aenter__(self) -> Store:
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

    # ---- sessions ------------------------------------------------------------------------

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

    # ---- captures ------------------------------------------------------------------------

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

    async def add_finished_capture(
        self,
        pending: Capture,
        outcome: CaptureOutcome,
        make_event: EventMaker,
        scan_event_defaults: dict[str, Any],
        destinations: DestinationsOf | None = None,
        *,
        idle_timeout: float,
    ) -> Capture:
        """Insert a capture already walked — terminal, with its outbox events, alert and
        analytics row — in one transaction; durable when this returns.

        ``pending`` is the capture as ``new_capture`` made it, ``outcome`` its terminal
        state (``capture_id`` is ignored: the insert assigns the row id). As in
        ``finish_captures(resolve=True)``, an outcome that is not FAILED and whose GTIN is a
        catalog product becomes COMPLETED with it: the catalog is read inside the write, once
        per group of inserts. Refusals as ``add_capture``.
        """
        item = _FinishedInsert(
            pending, outcome, idle_timeout, make_event, scan_event_defaults, destinations
        )
        result: tuple[Capture, frozenset[str]] | str = await self.write(
            Batchable(_insert_finished, item), urgent=True
        )
        if isinstance(result, str):
            raise self._refused(pending.session_public_id, result)
        capture, written = result
        if written is _MQTT_ONLY:
            self.outbox_changed.set()
        else:
            self._signal_outbox(written)
        return capture

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

    async def finish_captures(
        self,
        outcomes: Sequence[CaptureOutcome],
        make_event: EventMaker,
        scan_event_defaults: dict[str, Any],
        destinations: DestinationsOf | None = None,
        *,
        before: Sequence[Capture] | None = None,
        resolve: bool = False,
    ) -> list[Capture]:
        """Write terminal states, their capture events (outbox), analytics rows and alerts.

        One transaction: the outbox event of a capture exists exactly when its terminal
        status does. ``make_event(capture, seq)`` builds the event payload; it goes to MQTT
        and to each extra destination ``destinations(capture)`` names (webhook outputs).
        ``before``: the captures as the caller holds them (one per outcome); the finished
        captures are then built from them in memory instead of being read back.
        ``resolve``: look each GTIN up in the catalog inside the transaction — an outcome
        that is not FAILED and whose GTIN is a catalog product becomes COMPLETED with that
        product — so the walk needs no read of its own before this write.
        """
        now = time.time()
        held = {c.id: c for c in before} if before is not None else {}
        in_memory = before is not None and all(o.capture_id in held for o in outcomes)
        ids = [o.capture_id for o in outcomes]
        marks = ",".join("?" * len(ids))
        written: frozenset[str] = frozenset()

        async def op(db: aiosqlite.Connection) -> list[Capture]:
            nonlocal outcomes, ids, marks, written
            # A capture reaches its terminal status once: one walked twice (created while
            # the start-up resume read it as unfinished) gets no second event and no second
            # seq — consumers count on one gap-free seq per capture.
            waiting = {
                row[0]
                for row in await db.execute_fetchall(
                    f"SELECT id FROM captures WHERE id IN ({marks}) AND status NOT IN "
                    f"({_TERMINAL_MARKS})",
                    (*ids, *_TERMINAL_VALUES),
                )
            }
            if len(waiting) < len(outcomes):
                outcomes = [o for o in outcomes if o.capture_id in waiting]
                ids = [o.capture_id for o in outcomes]
                marks = ",".join("?" * len(ids))
                if not outcomes:
                    return []
            if resolve:
                outcomes = await _resolve_in_catalog(db, outcomes)
            updates = [
                (
                    o.status.value,
                    o.gtin,
                    json.dumps(o.gs1_dl_data or {}),
                    o.product_id,
                    o.error_message,
                    json.dumps(o.checks or {}),
                    json.dumps(o.qr_analysis) if o.qr_analysis is not None else None,
                    now,
                    now,
                    o.capture_id,
                )
                for o in outcomes
            ]
            await db.executemany(
                "UPDATE captures SET status = ?, gtin = ?, gs1_dl_data = ?, product_id = ?, "
                "error_message = ?, checks = ?, qr_analysis = ?, processed_at = ?, modified = ? "
                "WHERE id = ?",
                updates,
            )
            if in_memory:
                captures = await _finished_in_memory(db, outcomes, held, now)
            else:
                rows = await db.execute_fetchall(
                    f"SELECT {CAPTURE_COLUMNS} FROM {CAPTURE_FROM} WHERE c.id IN ({marks}) "
                    "ORDER BY c.id",
                    ids,
                )
                captures = [row_to_capture(r) for r in rows]
            seq = await _take_seqs(db, len(captures)) if captures else 0
            outbox: list[tuple[Any, ...]] = []
            analytics: list[tuple[Any, ...]] = []
            by_id = {o.capture_id: o for o in outcomes}
            for offset, capture in enumerate(captures):
                written |= _terminal_rows(
                    capture,
                    by_id[capture.id],
                    seq + offset,
                    make_event,
                    scan_event_defaults,
                    destinations,
                    now,
                    outbox,
                    analytics,
                )
            await _insert_outbox(db, outbox)
            if analytics:
                await _insert_scan_events(db, analytics)
            return captures

        captures = await self.write(op)
        self._signal_outbox(written)
        return captures

    async def add_outbox_event(
        self, topic: str, payload: dict[str, Any], destination: str = MQTT_DESTINATION
    ) -> str:
        """Queue a non-capture event (noreads, …) for MQTT (or another destination's
        drainer); returns its event_id."""
        await self.queue_outbox_event(topic, payload, destination)
        return str(payload["event_id"])

    def queue_outbox_event(
        self, topic: str, payload: dict[str, Any], destination: str = MQTT_DESTINATION
    ) -> asyncio.Future[None]:
        """`add_outbox_event` without waiting: the write is queued now, in call order (ahead
        of whatever is queued after this returns); the future resolves once it is durable.
        ``payload`` gets its ``event_id`` here."""
        if self._writer_task is None:
            raise RuntimeError("the store is not open")
        event_id = str(payload.setdefault("event_id", new_public_id()))
        text = json.dumps(payload)
        now = time.time()

        async def op(db: aiosqlite.Connection) -> None:
            await _insert_outbox(db, [(destination, topic, event_id, None, text, now)])

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))  # QueueFull only with 8,192 writes waiting
        self._wake.set()

        def written(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.outbox_signal(destination).set()

        future.add_done_callback(written)
        return future

    # ---- outbox (drained by the MQTT publisher) -------------------------------------------

    def outbox_signal(self, destination: str) -> asyncio.Event:
        """Set after a commit that added rows for ``destination``; its drainer clears it."""
        if destination == MQTT_DESTINATION:
            return self.outbox_changed
        return self._outbox_signals.setdefault(destination, asyncio.Event())

    def _signal_outbox(self, destinations: Iterable[str]) -> None:
        for destination in set(destinations):
            self.outbox_signal(destination).set()

    async def outbox_batch(
        self, after_id: int = 0, limit: int = 100, destination: str = MQTT_DESTINATION
    ) -> list[OutboxEvent]:
        rows = await self.fetchall(
            "SELECT id, topic, event_id, seq, payload, created, attempts FROM outbox "
            "WHERE destination = ? AND id > ? AND delivered < 0 ORDER BY id LIMIT ?",
            (destination, after_id, limit),
        )
        return [OutboxEvent(*row) for row in rows]

    async def outbox_delete(
        self, ids: Sequence[int], destination: str = MQTT_DESTINATION, *, keep: bool = False
    ) -> None:
        """Settle delivered rows of one destination: one ranged statement per run of ids.

        ``keep``: mark them delivered instead of deleting them (``[mqtt]
        keep_delivered_hours``: ``outbox.replay`` answers from them until they are pruned).
        The highest capture seq delivered to MQTT is counted (``published_seq``).
        """
        params = [(destination, low, high) for low, high in id_ranges(ids)]
        now = time.time()

        async def op(db: aiosqlite.Connection) -> None:
            if destination == MQTT_DESTINATION:
                await db.executemany(
                    "INSERT INTO counters (name, value) SELECT 'mqtt_published_seq', seq "
                    "FROM outbox WHERE destination = ? AND id BETWEEN ? AND ? "
                    "AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1 "
                    "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                    params,
                )
            if keep:
                await db.executemany(
                    "UPDATE outbox SET delivered = ? WHERE destination = ? "
                    "AND id BETWEEN ? AND ? AND delivered < 0",
                    [(now, *p) for p in params],
                )
            else:
                await db.executemany(
                    "DELETE FROM outbox WHERE destination = ? AND id BETWEEN ? AND ?", params
                )

        # Not durable: a power cut undoing it only sends these events again (consumers
        # de-duplicate by event_id), and a lane's PUBACKs cost no fsync of their own.
        await self.write(op, durable=False)

    async def outbox_replay(
        self, from_seq: int, to_seq: int, destination: str = MQTT_DESTINATION
    ) -> dict[str, int]:
        """Queue delivered capture events with seq in [from_seq, to_seq] to be sent again.

        The rows keep their event_id, seq and payload. Returns ``replayed`` (rows queued
        again), ``pending`` (rows of the range not yet delivered: they go out anyway) and
        ``unavailable`` (seqs of the range this outbox no longer holds: pruned, or never
        assigned).
        """

        async def op(db: aiosqlite.Connection) -> dict[str, int]:
            cursor = await db.execute(
                "UPDATE outbox SET delivered = -0.5 WHERE destination = ? "
                "AND topic = 'captures' AND seq BETWEEN ? AND ? AND delivered >= 0",
                (destination, from_seq, to_seq),
            )
            replayed = cursor.rowcount
            rows = await db.execute_fetchall(
                "SELECT COUNT(DISTINCT seq) FROM outbox WHERE destination = ? "
                "AND topic = 'captures' AND seq BETWEEN ? AND ?",
                (destination, from_seq, to_seq),
            )
            held = int(next(iter(rows))[0])
            return {
                "replayed": replayed,
                "pending": held - replayed,
                "unavailable": to_seq - from_seq + 1 - held,
            }

        result = await self.write(op)
        if result["replayed"]:
            self.outbox_signal(destination).set()
        return result

    async def outbox_prune_delivered(self, older_than: float) -> int:
        """Delete rows delivered before ``older_than`` (epoch seconds); returns how many."""

        async def op(db: aiosqlite.Connection) -> int:
            # Ids follow creation and a row is delivered after it is created: every row
            # delivered before the cut lies below the first row created after it. Reading up
            # to that row costs about the rows deleted, with no index on delivered to keep.
            # (A row dated in the future by a wrong clock is no bound: it would stop the prune.)
            rows = list(
                await db.execute_fetchall(
                    "SELECT id FROM outbox WHERE created >= ? AND created <= ? ORDER BY id LIMIT 1",
                    (older_than, time.time() + 86400),
                )
            )
            below = int(rows[0][0]) if rows else (1 << 62)
            cursor = await db.execute(
                "DELETE FROM outbox WHERE id < ? AND delivered >= 0 AND delivered < ?",
                (below, older_than),
            )
            return cursor.rowcount

        return await self.write(op, durable=False)  # undone by a power cut: pruned again

    async def published_seq(self) -> int:
        """The highest capture seq the broker acknowledged (0 before the first)."""
        row = await self.fetchone("SELECT value FROM counters WHERE name = 'mqtt_published_seq'")
        return int(row[0]) if row else 0

    async def outbox_stats(self, destination: str = MQTT_DESTINATION) -> tuple[int, float | None]:
        """(depth, created time of the oldest event or None) for one destination."""
        row = await self.fetchone(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE destination = ? AND delivered < 0",
            (destination,),
        )
        return (int(row[0]), row[1]) if row else (0, None)

    async def ping(self) -> bool:
        """True when the reader answers (an empty query: nothing reaches the SD card)."""
        return await self.fetchone("SELECT 1") is not None

    async def ping_writer(self) -> bool:
        """True when the writer task commits and the reader answers; an empty transaction."""

        async def select_one(db: aiosqlite.Connection) -> None:
            await db.execute("SELECT 1")

        await self.write(select_one)
        return await self.ping()

    async def session_capture_counts(self, session_id: int) -> dict[str, int]:
        """Status name → number of captures of one session (row id), statuses present only."""
        rows = await self.fetchall(
            "SELECT c.status, COUNT(*) FROM sessions s JOIN captures c "
            f"ON {SESSION_RANGE_TERM} AND c.session_id = s.id WHERE s.id = ? GROUP BY c.status",
            (session_id,),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def outbox_refused(self, row_id: int, error: str) -> None:
        """Count one refused delivery of an outbox event, and keep why."""

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, row_id),
            )

        await self.write(op, durable=False)  # a refusal lost to a power cut is counted again

    async def outbox_dead_letter(self, row_id: int, error: str) -> None:
        """Move an event its destination will never take to outbox_dead (kept for inspection).

        The dead row gets its own id (in outbox_dead's own sequence); dead rows stay.
        """
        now = time.time()

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO outbox_dead (destination, topic, event_id, seq, payload, "
                "created, attempts, last_error, died) "
                "SELECT destination, topic, event_id, seq, payload, created, attempts + 1, ?, ? "
                "FROM outbox WHERE id = ?",
                (error, now, row_id),
            )
            await db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

        await self.write(op)

    async def outbox_dead_count(self, destination: str = MQTT_DESTINATION) -> int:
        """Events of one destination in outbox_dead."""
        row = await self.fetchone(
            "SELECT COUNT(*) FROM outbox_dead WHERE destination = ?", (destination,)
        )
        return int(row[0]) if row else 0

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
