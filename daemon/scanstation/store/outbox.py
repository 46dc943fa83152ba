"""The outbox: events waiting for their destination (MQTT, webhooks), drained, settled,
replayed, pruned, dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from scanstation.model import new_public_id
from scanstation.store.core import StoreCore
from scanstation.store.rows import MQTT_DESTINATION, OutboxEvent, insert_rows


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated ids as inclusive (low, high) runs of consecutive ids."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return ranges


_OUTBOX_INSERT = "INSERT INTO outbox (id, destination, topic, event_id, seq, payload, created)"


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


class OutboxStore(StoreCore):
    """The outbox and outbox_dead tables (drained by the MQTT publisher and the webhooks)."""

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
