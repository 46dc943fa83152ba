"""The collector's PostgreSQL schema: versioned migrations, monthly partitions, retention."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5C0_11EC7
"""Advisory lock key held while migrating or creating partitions (collectors start together)."""

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    -- One row per capture event. PostgreSQL requires a partitioned table's unique key to
    -- hold the partition key, so the key is (device_id, seq, created): created is part of the
    -- station's immutable event, so a redelivered or replayed event collides with its row.
    CREATE TABLE capture_events (
        device_id text NOT NULL,
        seq bigint NOT NULL,
        event_id text NOT NULL,
        public_id text NOT NULL DEFAULT '',
        status text NOT NULL DEFAULT '',
        raw_value text NOT NULL DEFAULT '',
        gtin text NOT NULL DEFAULT '',
        site text NOT NULL DEFAULT '',
        created timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        payload jsonb NOT NULL,
        UNIQUE (device_id, seq, created)
    ) PARTITION BY RANGE (created);
    CREATE INDEX capture_events_site_created ON capture_events (site, created);
    CREATE INDEX capture_events_created ON capture_events (created);
    CREATE INDEX capture_events_gtin_created ON capture_events (gtin, created);
    CREATE INDEX capture_events_device_created ON capture_events (device_id, created);
    CREATE TABLE stations (
        device_id text PRIMARY KEY,
        state text NOT NULL DEFAULT 'unknown',
        version text NOT NULL DEFAULT '',
        site text NOT NULL DEFAULT '',
        location jsonb,
        started_at timestamptz,
        last_seen timestamptz,
        last_seq bigint NOT NULL DEFAULT 0,
        telemetry jsonb,
        telemetry_at timestamptz,
        contiguous_seq bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE noreads (
        event_id text PRIMARY KEY,
        device_id text NOT NULL,
        site text NOT NULL DEFAULT '',
        received_at timestamptz NOT NULL,
        payload jsonb NOT NULL
    );
    CREATE INDEX noreads_device_received ON noreads (device_id, received_at);
    CREATE TABLE alerts (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        device_id text NOT NULL,
        kind text NOT NULL,
        origin text NOT NULL,
        received_at timestamptz NOT NULL,
        payload jsonb NOT NULL,
        -- Sent on to MQTT ({prefix}/_fleet/alerts) and the webhook by the healing collector.
        published_at timestamptz
    );
    CREATE INDEX alerts_received ON alerts (received_at);
    CREATE INDEX alerts_unpublished ON alerts (id) WHERE published_at IS NULL;
    -- Ranges a station said it no longer holds (pruned before a collector saw them).
    CREATE TABLE seq_lost (
        device_id text NOT NULL,
        from_seq bigint NOT NULL,
        to_seq bigint NOT NULL,
        noticed timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (device_id, from_seq)
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply the migrations this database lacks (one transaction each); returns the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database has collector schema version {version}, newer than this "
                f"scanstation understands ({SCHEMA_VERSION}); upgrade scanstation"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("collector: migrating the database to schema version %d", number)
            conn.execute(script)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
            version = number
    return version


def month_of(when: datetime) -> tuple[int, int]:
    when = when.astimezone(UTC)
    return when.year, when.month


def partition_name(year: int, month: int) -> str:
    return f"capture_events_y{year:04d}m{month:02d}"


def _bounds(year: int, month: int) -> tuple[str, str]:
    upper = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01 00:00:00+00", f"{upper[0]:04d}-{upper[1]:02d}-01 00:00:00+00"


def existing_partitions(conn: psycopg.Connection[Any]) -> set[tuple[int, int]]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'capture_events'"
    ).fetchall()
    months = set()
    for (name,) in rows:
        text = str(name)
        if text.startswith("capture_events_y") and len(text) == len("capture_events_y0000m00"):
            months.add((int(text[16:20]), int(text[21:23])))
    return months


def create_partitions(conn: psycopg.Connection[Any], months: set[tuple[int, int]]) -> None:
    """Create the monthly partitions named (in their own transaction, under the lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for year, month in sorted(months):
            low, high = _bounds(year, month)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} "
                f"PARTITION OF capture_events FOR VALUES FROM ('{low}') TO ('{high}')"
            )


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=retention_days)


def drop_old_partitions(
    conn: psycopg.Connection[Any], retention_days: int, now: datetime | None = None
) -> list[str]:
    """Drop the monthly partitions wholly older than ``retention_days``; returns their names."""
    cutoff = retention_cutoff(retention_days, now)
    dropped = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for year, month in sorted(existing_partitions(conn)):
            upper = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
            if upper <= cutoff:
                name = partition_name(year, month)
                conn.execute(f"DROP TABLE IF EXISTS {name}")
                dropped.append(name)
    for name in dropped:
        log.info("collector: dropped partition %s (older than %d days)", name, retention_days)
    return dropped
