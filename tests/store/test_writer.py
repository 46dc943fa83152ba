"""The writer's queue and its multi-row inserts."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import pytest

from scanstation.model import CaptureType
from scanstation.store import NewCapture, Store
from scanstation.store.rows import insert_rows
from scanstation.store.writer import SyncConnection, WriteQueue, run_now


async def test_write_queue_is_bounded_in_order_and_joins() -> None:
    queue: WriteQueue[int] = WriteQueue(3)
    for i in range(3):
        queue.put_nowait(i)
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(3)
    blocked = [asyncio.create_task(queue.put(n)) for n in (3, 4)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in blocked)
    assert len(queue) == 3
    assert queue.take(2) == [0, 1]  # room for both waiting putters
    await asyncio.gather(*blocked)
    assert list(queue.items) == [2, 3, 4]
    joined = asyncio.create_task(queue.join())
    await asyncio.sleep(0)
    queue.done(2)
    await asyncio.sleep(0)
    assert not joined.done()  # 3 of 5 items still not done
    assert queue.take(10) == [2, 3, 4]
    queue.done(3)
    await asyncio.wait_for(joined, 1)


async def test_write_queue_a_cancelled_putter_hands_its_room_on() -> None:
    queue: WriteQueue[int] = WriteQueue(1)
    queue.put_nowait(0)
    first = asyncio.create_task(queue.put(1))
    second = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    queue.take(1)  # wakes the first putter ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
    assert list(queue.items) == [2]


@pytest.mark.parametrize("width", [4, 20, 60])
@pytest.mark.parametrize("count", [0, 1, 3, 64, 255, 256, 257, 700])
def test_insert_rows_inserts_every_row_in_order(count: int, width: int) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    columns = ", ".join(f"c{i}" for i in range(width))
    db.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {columns})")
    rows = [
        (i + 1, *(f"v{i}" if c % 3 == 0 else i / 3 if c % 3 == 1 else None for c in range(width)))
        for i in range(count)
    ]
    conn = SyncConnection(db)
    run_now(insert_rows(conn, f"INSERT INTO t (id, {columns})", width + 1, rows))  # type: ignore[arg-type]
    assert db.execute(f"SELECT id, {columns} FROM t ORDER BY rowid").fetchall() == rows


async def test_a_group_larger_than_any_chunk_keeps_counts_and_order(store: Store) -> None:
    session = await store.create_session()
    created = await asyncio.gather(
        *(
            store.add_capture(
                session.public_id, NewCapture(CaptureType.BARCODE, str(i)), idle_timeout=1e12
            )
            for i in range(600)
        )
    )
    assert [c.id for c in created] == list(range(1, 601))
    assert await store.status_counts() == {"PENDING": 600}
    stored = await store.get_captures_by_id([c.id for c in created])
    assert [c.raw_value for c in stored] == [str(i) for i in range(600)]
    assert (await store.get_session(session.public_id)).capture_count == 600
    listed, total = await store.list_captures(session_public_id=session.public_id, limit=1)
    assert total == 600
    assert listed[0].id == 600


def test_capture_public_ids_decode_to_uuid7_of_now() -> None:
    from scanstation.model import PUBLIC_ID_ALPHABET
    from scanstation.store.rows import time_ordered_public_id

    for _ in range(2000):
        before = time.time_ns() // 1_000_000
        public_id = time_ordered_public_id()
        after = time.time_ns() // 1_000_000
        number = 0
        for char in public_id:  # base 57, most significant digit first
            number = number * 57 + PUBLIC_ID_ALPHABET.index(char)
        assert (number >> 76) & 0xF == 7  # version 7
        assert (number >> 62) & 0x3 == 0b10  # RFC 9562 variant
        assert before <= number >> 80 <= after


def test_build_outcome_is_the_dataclass_with_every_field_set() -> None:
    from scanstation.model import CaptureStatus
    from scanstation.store import CaptureOutcome, build_outcome

    values = (7, CaptureStatus.FAILED, "g", {"01": "x"}, 3, "e", {"c": 1}, {"q": 2}, {"s": 3}, {})
    assert len(values) == len(dataclasses.fields(CaptureOutcome))
    built = build_outcome(*values)
    assert type(built) is CaptureOutcome
    assert built == CaptureOutcome(*values)
    assert [getattr(built, f.name) for f in dataclasses.fields(CaptureOutcome)] == list(values)
