"""The collector's schema and batch storage against a real PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from postgres import pg_dsn_fixture, pg_server_fixture  # noqa: F401 (fixtures)
from scanstation.collector.healer import gaps_above, subtract
from scanstation.collector.schema import (
    SCHEMA_VERSION,
    drop_old_partitions,
    existing_partitions,
    migrate,
)
from scanstation.collector.sink import Message, Sink


def capture(
    device: str, seq: int, created: str = "2026-12-03T10:00:00.000Z", **extra: Any
) -> Message:
    body = {
        "public_id": f"p{seq}",
        "status": "COMPLETED",
        "raw_value": "4006381333931",
        "gtin": "04006381333931",
        "created": created,
        "schema": "scanstation.capture/1",
        "event_id": f"{device}-{seq}",
        "seq": seq,
        "device_id": device,
        "site": "store-7",
        **extra,
    }
    return Message(f"scanstation/{device}/captures", json.dumps(body).encode(), time.time())


@pytest.fixture
def conn(pg_dsn: str) -> Any:
    with psycopg.connect(pg_dsn) as c:
        migrate(c)
        yield c


def test_migrations_create_the_schema_once(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as c:
        assert migrate(c) == SCHEMA_VERSION
        assert migrate(c) == SCHEMA_VERSION  # a second collector starting finds it done
        tables = {
            r[0]
            for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert {"stations", "noreads", "alerts", "schema_migrations", "seq_lost"} <= tables
        kind = c.execute("SELECT relkind FROM pg_class WHERE relname = 'capture_events'").fetchone()
        assert kind == ("p",)  # partitioned
        versions = c.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_batch_is_stored_once_and_duplicates_are_ignored(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    first = sink.store([capture("lane-01", s) for s in range(1, 6)])
    assert (first.stored, first.duplicates, first.rejected) == (5, 0, 0)
    # Redelivery of 3..5 plus the new 6, and a duplicate inside the batch itself.
    again = sink.store([capture("lane-01", s) for s in (3, 4, 5, 6, 6)])
    assert (again.stored, again.duplicates) == (1, 4)
    rows = conn.execute(
        "SELECT seq, event_id, status, gtin, site, payload->>'public_id' FROM capture_events "
        "ORDER BY seq"
    ).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0][1:] == ("lane-01-1", "COMPLETED", "04006381333931", "store-7", "p1")
    station = conn.execute("SELECT device_id FROM stations").fetchall()
    assert station == [("lane-01",)]


def test_monthly_partitions_are_made_on_demand_and_dropped_after_retention(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    sink.store(
        [
            capture("lane-01", 1, "2026-11-30T23:59:59.000Z"),
            capture("lane-01", 2, "2026-12-01T00:00:00.000Z"),
            capture("lane-01", 3, "2027-01-15T08:00:00+01:00"),
        ]
    )
    assert existing_partitions(conn) == {(2026, 11), (2026, 12), (2027, 1)}
    where = conn.execute(
        "SELECT seq, tableoid::regclass::text FROM capture_events ORDER BY seq"
    ).fetchall()
    assert where == [
        (1, "capture_events_y2026m11"),
        (2, "capture_events_y2026m12"),
        (3, "capture_events_y2027m01"),
    ]
    conn.commit()
    dropped = drop_old_partitions(conn, 30, now=datetime(2027, 1, 20, tzinfo=UTC))
    assert dropped == ["capture_events_y2026m11"]
    assert [r[0] for r in conn.execute("SELECT seq FROM capture_events ORDER BY seq")] == [2, 3]


def test_events_older_than_the_retention_are_not_stored(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=30)
    result = sink.store(
        [
            capture("lane-01", 1, "2001-01-01T00:00:00Z"),
            capture("lane-01", 2, datetime.now(UTC).isoformat()),
        ]
    )
    assert (result.stored, result.expired) == (1, 1)
    assert existing_partitions(conn) == {(datetime.now(UTC).year, datetime.now(UTC).month)}


def test_bad_messages_are_counted_not_stored(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    bad = [
        Message("scanstation/lane-01/captures", b"not json", time.time()),
        Message("scanstation/lane-01/captures", b"[1, 2]", time.time()),
        capture("lane-01", 0),  # seq must be >= 1
        capture("lane-01", 1, device_id="lane-02"),  # publishing under another's name
        Message("other/lane-01/captures", b"{}", time.time()),
        Message("scanstation/lane-01/alerts", b'{"no": "event id"}', time.time()),
        # The collectors' own fleet alerts come back on the alerts subscription.
        Message("scanstation/_fleet/alerts", b'{"event_id": "offline:x:1"}', time.time()),
    ]
    result = sink.store([*bad, capture("lane-01", 2)])
    assert (result.stored, result.rejected) == (1, 7)


def test_postgresql_refuses_what_python_refused_when_it_takes_the_columns_out(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    assert sink.store([capture("lane-01", 1)]).stored == 1  # the month's partition exists now
    deep = capture("lane-01", 9, nested=json.loads("[" * 40 + "]" * 40))
    bad = [
        capture("lane-01", 2.0),  # type: ignore[arg-type]  (a float seq)
        capture("lane-01", "3"),  # type: ignore[arg-type]  (a string seq)
        capture("lane-01", 4, "now"),  # PostgreSQL would read it; not an ISO time
        capture("lane-01", 5, device_id=7),
        capture("lane-01", 6, event_id=""),
        capture("lane-01", 7, created=None),  # type: ignore[arg-type]
        capture("lane-01", 10**20),  # beyond bigint
        deep,  # nested deeper than the JSON limits allow
        Message("scanstation/lane-01/captures", b'{"seq": 1, "x": "\xff"}', time.time()),
        Message("scanstation/lane-01/captures", b'"a string"', time.time()),
        Message("scanstation/lane-01/captures", b"null", time.time()),
        capture("lane-01", 11, device_id=None),
        capture("lane-01", True),  # type: ignore[arg-type]
    ]
    naive = capture("lane-01", 10, "2026-12-03T10:00:00")  # no offset: UTC
    bom = Message(  # Python's parser accepts a byte order mark; so does the collector
        "scanstation/lane-01/captures", b"\xef\xbb\xbf" + capture("lane-01", 12).payload, 0.0
    )
    result = sink.store([*bad, naive, bom, capture("lane-01", 1)])
    assert (result.stored, result.duplicates, result.rejected) == (2, 1, len(bad))
    assert result.devices == {"lane-01"}
    rows = conn.execute("SELECT seq, created FROM capture_events ORDER BY seq").fetchall()
    assert rows == [
        (1, datetime(2026, 12, 3, 10, tzinfo=UTC)),
        (10, datetime(2026, 12, 3, 10, tzinfo=UTC)),
        (12, datetime(2026, 12, 3, 10, tzinfo=UTC)),
    ]


def test_a_batch_postgresql_refuses_is_checked_in_python_and_its_valid_events_stored(
    conn: Any,
) -> None:
    sink = Sink(conn, "scanstation", retention_days=30)
    now = datetime.now(UTC).isoformat()
    assert sink.store([capture("lane-01", 1, now)]).stored == 1
    result = sink.store(
        [
            capture("lane-01", 2, now),
            Message("scanstation/lane-01/captures", b'{"seq": 3, "not json', time.time()),
            capture("lane-01", 4, "2026-02-30T00:00:00Z"),  # no such day
            capture("lane-01", 5, "2001-01-01T00:00:00Z"),  # older than the retention
            capture("lane-01", 1, now),  # a redelivery
            capture("lane-01", 6, now),
        ]
    )
    assert (result.stored, result.duplicates, result.rejected, result.expired) == (2, 1, 2, 1)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM capture_events ORDER BY seq")]
    assert seqs == [1, 2, 6]
    # The next clean batch takes the quick way again and counts the same.
    again = sink.store([capture("lane-01", 5, "2001-01-01T00:00:00Z"), capture("lane-01", 7, now)])
    assert (again.stored, again.expired, again.rejected) == (1, 1, 0)


def test_presence_telemetry_noreads_and_alerts_land_in_their_tables(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    now = time.time()
    sink.store(
        [
            Message(
                "scanstation/lane-01/status",
                json.dumps(
                    {
                        "state": "online",
                        "version": "1.2",
                        "site": "s7",
                        "started_at": "2026-12-03T08:00:00Z",
                        "last_seq": 40,
                    }
                ).encode(),
                now,
            ),
            Message(
                "scanstation/lane-01/telemetry",
                json.dumps(
                    {"version": "1.2", "site": "s7", "last_seq": 42, "outbox": {"depth": 3}}
                ).encode(),
                now + 1,
            ),
            Message("scanstation/lane-01/noreads", b'{"event_id": "n1", "source": "cam0"}', now),
            Message(
                "scanstation/lane-01/alerts",
                b'{"event_id": "a1", "kind": "recalled", "gtin": "04006381333931"}',
                now,
            ),
        ]
    )
    station = conn.execute(
        "SELECT state, version, site, last_seq, telemetry->'outbox'->>'depth' FROM stations"
    ).fetchone()
    assert station == ("online", "1.2", "s7", 42, "3")
    # An older status (a late retained copy) never lowers the last seq.
    sink.store(
        [Message("scanstation/lane-01/status", b'{"state": "offline", "last_seq": 10}', now + 2)]
    )
    assert conn.execute("SELECT state, last_seq FROM stations").fetchone() == ("offline", 42)
    assert conn.execute("SELECT event_id, device_id FROM noreads").fetchall() == [("n1", "lane-01")]
    assert conn.execute("SELECT event_id, kind, origin FROM alerts").fetchall() == [
        ("a1", "recalled", "station")
    ]


def test_gaps_and_the_tail_are_found_above_the_complete_prefix(conn: Any) -> None:
    sink = Sink(conn, "scanstation", retention_days=36500)
    sink.store([capture("lane-01", s) for s in (1, 2, 3, 7, 8, 12)])
    conn.commit()
    gaps, highest = gaps_above(conn, "lane-01", 0, last_seq=15)
    assert (gaps, highest) == ([(4, 6), (9, 11), (13, 15)], 12)
    conn.execute("INSERT INTO seq_lost (device_id, from_seq, to_seq) VALUES ('lane-01', 9, 11)")
    gaps, _ = gaps_above(conn, "lane-01", 3, last_seq=12)
    assert gaps == [(4, 6)]
    assert subtract([(1, 10)], [(3, 4), (8, 20)]) == [(1, 2), (5, 7)]
