"""SQLite storage: migrations, WAL, group commit, failure isolation, durability settings."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiosqlite
import pytest

from scanstation.model import CaptureStatus, CaptureType
from scanstation.store import SCHEMA_VERSION, Conflict, NewCapture, NotFound, Store


async def test_store_creates_schema_with_wal_and_version(tmp_path: Path) -> None:
    path = tmp_path / "db" / "scanstation.db"
    async with Store(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "sessions",
        "captures",
        "products",
        "proposals",
        "scan_events",
        "outbox",
        "outbox_dead",
    } <= tables


async def test_store_reopen_keeps_data_and_skips_migrations(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.db"
    async with Store(path) as store:
        session = await store.create_session()
    async with Store(path) as store:
        assert (await store.get_session(session.public_id)).public_id == session.public_id


async def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this scanstation"):
        async with Store(path):
            pass


async def test_store_group_commits_concurrent_writes(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        session = await store.create_session()
        commits_before = store.commits
        captures = await asyncio.gather(
            *(
                store.add_capture(
                    session.public_id,
                    NewCapture(CaptureType.BARCODE, raw_value=str(i)),
                    idle_timeout=60,
                )
                for i in range(500)
            )
        )
        assert len({c.public_id for c in captures}) == 500
        # Far fewer commits than writes: the writer gathered them into groups.
        assert store.commits - commits_before < 100
        assert (await store.get_session(session.public_id)).capture_count == 500


async def test_store_one_failing_write_does_not_fail_its_group(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:

        async def bad(db: aiosqlite.Connection) -> None:
            await db.execute("INSERT INTO nosuchtable VALUES (1)")

        async def good(db: aiosqlite.Connection) -> str:
            await db.execute("INSERT INTO counters (name, value) VALUES ('x', 1)")
            return "ok"

        results = await asyncio.gather(store.write(bad), store.write(good), return_exceptions=True)
        assert isinstance(results[0], sqlite3.OperationalError)
        assert results[1] == "ok"
        row = await store.fetchone("SELECT value FROM counters WHERE name = 'x'")
        assert row is not None
        assert row[0] == 1


async def test_store_capture_into_idle_session_expires_it(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        session = await store.create_session()
        await asyncio.sleep(0.05)
        with pytest.raises(Conflict, match="EXPIRED"):
            await store.add_capture(
                session.public_id, NewCapture(CaptureType.BARCODE, "1"), idle_timeout=0.01
            )
        assert (await store.get_session(session.public_id)).status.value == "EXPIRED"
        with pytest.raises(NotFound):
            await store.add_capture(
                "ZZZZZZZZZZZZZZZZZZZZZZ", NewCapture(CaptureType.BARCODE, "1"), idle_timeout=60
            )


async def test_store_expire_idle_sessions_sweep(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        idle = await store.create_session()
        await asyncio.sleep(0.05)
        fresh = await store.create_session()
        assert await store.expire_idle_sessions(0.03) == [idle.public_id]
        assert (await store.get_session(fresh.public_id)).status.value == "ACTIVE"


async def test_store_synchronous_full_by_default(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:

        async def synchronous(db: aiosqlite.Connection) -> int:
            # Write ops run on the writer's own connection: this is the setting commits use.
            rows = list(await db.execute_fetchall("PRAGMA synchronous"))
            return int(rows[0][0])

        assert await store.write(synchronous) == 2  # FULL


async def test_outbox_delete_removes_exactly_the_delivered_rows_by_range(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        for n in range(8):
            await store.add_outbox_event("noreads", {"n": n})
        ids = [e.id for e in await store.outbox_batch(0, 100)]
        delivered = [ids[0], ids[1], ids[2], ids[5], ids[6]]  # two runs: 3 and 2 rows
        await store.outbox_delete(delivered)
        left = [e.id for e in await store.outbox_batch(0, 100)]
        assert left == [ids[3], ids[4], ids[7]]
        await store.outbox_delete(left, destination="webhook:other")  # another destination's
        assert [e.id for e in await store.outbox_batch(0, 100)] == left


def test_id_ranges_groups_consecutive_ids() -> None:
    from scanstation.store.database import id_ranges

    assert id_ranges([7, 1, 2, 3, 9, 8, 3]) == [(1, 3), (7, 9)]
    assert id_ranges([]) == []


async def test_migration_5_carries_outbox_and_scan_events_over_and_never_reuses_an_id(
    tmp_path: Path,
) -> None:
    from scanstation.store.schema import MIGRATIONS

    path = tmp_path / "scanstation.db"
    old = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};COMMIT;")
    old.executescript(
        """
        INSERT INTO sessions (id, public_id, status, capture_mode, created, modified)
            VALUES (1, 'S', 'ACTIVE', 'both', 1, 1);
        INSERT INTO captures (id, public_id, session_id, status, capture_type, created, modified)
            VALUES (1, 'C1', 1, 'COMPLETED', 'BARCODE', 10, 10),
                   (2, 'C2', 1, 'NOT_FOUND', 'BARCODE', 20, 20);
        INSERT INTO scan_events (capture_id, gtin, time, device_id, source, batch)
            VALUES (1, '04006381333931', 10, 'd', 'hid', 'L1'),
                   (2, '09506000134352', 20, 'd', 'hid', '');
        INSERT INTO outbox (destination, topic, event_id, seq, payload, created)
            VALUES ('mqtt', 'captures', 'e1', 1, '{"n": 1}', 10),
                   ('mqtt', 'captures', 'e2', 2, '{"n": 2}', 20),
                   ('webhook:erp', 'captures', 'e2', 2, '{"n": 2}', 20),
                   ('mqtt', 'noreads', 'e3', NULL, '{"n": 3}', 30);
        UPDATE outbox SET delivered = 40 WHERE event_id = 'e1';
        -- A delivered last row deleted: its id (5) must not come back.
        INSERT INTO outbox (destination, topic, event_id, payload, created)
            VALUES ('mqtt', 'noreads', 'e4', '{}', 50);
        DELETE FROM outbox WHERE event_id = 'e4';
        """
    )
    before = old.execute(
        "SELECT id, destination, topic, event_id, seq, payload, created, delivered FROM outbox "
        "ORDER BY id"
    ).fetchall()
    analytics = old.execute("SELECT * FROM scan_events ORDER BY capture_id").fetchall()
    old.close()
    async with Store(path) as store:
        after = await store.fetchall(
            "SELECT id, destination, topic, event_id, seq, payload, created, delivered "
            "FROM outbox ORDER BY id"
        )
        # A waiting row's delivered is -0.5 now (NULL before): the same size as a time.
        assert [tuple(r) for r in after] == [
            (*row[:7], -0.5 if row[7] is None else row[7]) for row in before
        ]
        rows = await store.fetchall(
            "SELECT capture_id, capture_id, gtin, time, device_id, source, site, lat, lon, "
            "batch, serial, expiry FROM scan_events ORDER BY capture_id"
        )
        assert [tuple(r)[1:] for r in rows] == [tuple(r)[1:] for r in analytics]
        assert [e.event_id for e in await store.outbox_batch(0, 10)] == ["e2", "e3"]
        assert await store.status_counts() == {"COMPLETED": 1, "NOT_FOUND": 1}
        retried = await store.retry_capture("C2")
        assert await store.status_counts() == {"COMPLETED": 1, "PENDING": 1}
        assert await store.unfinished_capture_ids() == [retried.id]
        listed, total = await store.list_captures(status=CaptureStatus.COMPLETED)
        assert ([c.public_id for c in listed], total) == (["C1"], 1)
        listed, total = await store.list_captures(status=CaptureStatus.PENDING)
        assert ([c.public_id for c in listed], total) == (["C2"], 1)
        other = await store.create_session()
        await store.add_capture(
            other.public_id, NewCapture(CaptureType.BARCODE, "1"), idle_timeout=1e12
        )
        added = await store.add_capture(
            "S", NewCapture(CaptureType.BARCODE, "2"), idle_timeout=1e12
        )
        listed, total = await store.list_captures(session_public_id="S")
        assert ([c.public_id for c in listed], total) == ([added.public_id, "C2", "C1"], 3)
        assert await store.session_capture_counts(1) == {"COMPLETED": 1, "PENDING": 2}
        listed, total = await store.list_captures(session_public_id=other.public_id)
        assert total == len(listed) == 1
        assert (await store.outbox_replay(1, 1)) == {"replayed": 1, "pending": 0, "unavailable": 0}
        event = await store.add_outbox_event("noreads", {"n": 6})
        newest = await store.fetchone("SELECT id FROM outbox WHERE event_id = ?", (event,))
        assert newest is not None
        assert newest[0] == 6  # above the deleted 5
        await store.outbox_delete([6])
        await store.add_outbox_event("noreads", {"n": 7})
        ids = [e.id for e in await store.outbox_batch(0, 10)]
        assert ids == [1, 2, 4, 7]  # 6, delivered and deleted, is not given again
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_settling_delivered_rows_commits_without_an_fsync_of_its_own(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        seen: list[int] = []
        await store.add_outbox_event("noreads", {"n": 1})

        async def synchronous(db: aiosqlite.Connection) -> None:
            rows = list(await db.execute_fetchall("PRAGMA synchronous"))
            seen.append(int(rows[0][0]))

        await store.write(synchronous, durable=False)
        await store.write(synchronous)
        assert seen == [1, 2]  # NORMAL for the not-durable group, FULL again after it
        ids = [e.id for e in await store.outbox_batch(0, 10)]
        await store.outbox_delete(ids)
        assert await store.outbox_batch(0, 10) == []
        assert await store.published_seq() == 0


async def test_a_group_with_a_durable_write_commits_with_its_fsync(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        seen: list[int] = []

        async def synchronous(db: aiosqlite.Connection) -> None:
            rows = list(await db.execute_fetchall("PRAGMA synchronous"))
            seen.append(int(rows[0][0]))

        # Queued together: one group, FULL because one of its writes must be durable.
        await asyncio.gather(
            store.write(synchronous, durable=False), store.write(synchronous, durable=True)
        )
        assert seen == [2, 2]


async def test_prune_deletes_only_rows_delivered_before_the_cut(tmp_path: Path) -> None:
    async with Store(tmp_path / "scanstation.db") as store:
        for n in range(6):
            await store.add_outbox_event("noreads", {"n": n})
        ids = [e.id for e in await store.outbox_batch(0, 10)]
        await store.outbox_delete(ids[:4], keep=True)  # delivered now; 2 still wait
        assert await store.outbox_prune_delivered(time.time() - 60) == 0
        assert await store.outbox_prune_delivered(time.time() + 1) == 4
        assert [e.id for e in await store.outbox_batch(0, 10)] == ids[4:]
        assert await store.outbox_stats() == (2, pytest.approx(time.time(), abs=60))


def test_capture_public_ids_are_shortuuids_in_time_order() -> None:
    from scanstation.model import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH
    from scanstation.store.rows import time_ordered_public_id

    made = []
    for _ in range(3):
        made.append(time_ordered_public_id())
        time.sleep(0.002)  # a new millisecond: the order is by time, not chance
    assert made == sorted(made)
    assert len(set(made)) == 3
    assert all(len(i) == PUBLIC_ID_LENGTH and set(i) <= set(PUBLIC_ID_ALPHABET) for i in made)
