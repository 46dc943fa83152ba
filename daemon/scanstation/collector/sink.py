"""One transaction per batch of MQTT messages: captures, presence, telemetry, noreads, alerts.

Captures go through COPY into a temporary staging table and one ``INSERT … SELECT … ON
CONFLICT DO NOTHING`` (duplicates, redeliveries and replays are ignored by the unique key);
presence and telemetry are folded to the newest per station before their upsert. Nothing
here acknowledges anything: the consumer acks a batch after ``store`` returns (the COMMIT).

A capture's payload is parsed once, by PostgreSQL (into jsonb), not first in Python too: the
INSERT takes its columns out of it and checks them (an integer seq ≥ 1, an event_id, an ISO
created time, the topic's device_id), and counts what it refused. Python only checks what
PostgreSQL does not: the size, the nesting depth (when the brackets could exceed it) and
UTF-8. When PostgreSQL refuses the batch (a payload that is not JSON, or a month without its
partition yet), the batch is done again the careful way: each capture parsed and checked in
Python (``loads_limited``), the partitions made, and only the valid ones sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from scanstation.collector.schema import (
    create_partitions,
    existing_partitions,
    month_of,
    retention_cutoff,
)
from scanstation.jsonlimits import MAX_DEPTH, JsonLimitError, loads_limited

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024

KINDS = ("captures", "status", "telemetry", "noreads", "alerts")
"""The station topics a collector subscribes to (``{prefix}/+/{kind}``)."""

NOT_STATIONS = frozenset({"_fleet"})
"""Names under the prefix that are not stations: the collectors' own ``_fleet/alerts``."""

_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"

# A JSON integer's text is its digits: a string ("5"), a float (5.0), true or null is not.
_SEQ = "CASE WHEN (payload->'seq')::text ~ '^[1-9][0-9]{0,17}$' THEN (payload->>'seq')::bigint END"
_CREATED = (
    f"CASE WHEN jsonb_typeof(payload->'created') = 'string' AND payload->>'created' ~ '{_ISO}' "
    "THEN (payload->>'created')::timestamptz END"
)
# A payload that is not an object has no keys: its seq is NULL. jsonb equality compares
# types too: a device_id of 7 is not "7", and null is no device.
_VALID = (
    "payload->>'event_id' <> '' AND jsonb_typeof(payload->'event_id') = 'string' "
    "AND (payload->'device_id' IS NULL OR payload->'device_id' = to_jsonb(device_id))"
)

INSERT_CAPTURES = f"""
INSERT INTO capture_events (device_id, seq, event_id, public_id, status, raw_value, gtin, site,
  created, received_at, payload)
SELECT device_id, seq, left(payload->>'event_id', 128),
  left(COALESCE(payload->>'public_id', ''), 64), left(COALESCE(payload->>'status', ''), 32),
  left(COALESCE(payload->>'raw_value', ''), 4096), left(COALESCE(payload->>'gtin', ''), 14),
  left(COALESCE(payload->>'site', ''), 256), created, to_timestamp(received), payload
FROM (SELECT device_id, received, payload, {_SEQ} AS seq, {_CREATED} AS created
      FROM capture_raw WHERE {_VALID}) AS staged
WHERE seq IS NOT NULL AND created >= %(cutoff)s
ON CONFLICT DO NOTHING
"""
"""The captures of ``capture_raw`` checked, their columns taken out, inserted once."""

COUNT_CAPTURES = f"""
SELECT count(*), count(*) FILTER (WHERE created < %(cutoff)s), array_agg(DISTINCT device_id)
FROM (SELECT device_id, {_SEQ} AS seq, {_CREATED} AS created
      FROM capture_raw WHERE {_VALID}) AS staged
WHERE seq IS NOT NULL AND created IS NOT NULL
"""
"""What a batch that did not store every capture held: valid ones, expired ones, stations."""

REDO_CAREFULLY = (psycopg.errors.DataError, psycopg.errors.CheckViolation)
"""What PostgreSQL raises for a payload that is not JSON (or holds what jsonb cannot) and
for a month whose partition does not exist yet: the batch is done again the careful way."""


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as the consumer received it."""

    topic: str
    payload: bytes
    received: float
    """Epoch seconds of its arrival."""
    mid: int = 0
    qos: int = 0
    generation: int = 0
    """The connection it came on (acks of an older connection are not sent)."""


@dataclass
class BatchResult:
    stored: int = 0
    """Capture events inserted (new rows)."""
    duplicates: int = 0
    """Capture events already stored (redeliveries, replays)."""
    rejected: int = 0
    """Messages that are not station events (logged and acknowledged)."""
    expired: int = 0
    """Capture events older than the retention (not stored)."""
    devices: set[str] = field(default_factory=set)
    """Stations whose captures this batch held."""


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(device_id, kind) of ``{prefix}/{device_id}/{kind}``, None for any other topic."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    device, _, kind = topic[len(head) :].partition("/")
    if not device or kind not in KINDS or device in NOT_STATIONS:
        return None
    return device, kind


def _text(value: Any, limit: int = 4096) -> str:
    return "" if value is None else str(value)[:limit]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Sink:
    """Stores batches on one psycopg connection (one thread uses it)."""

    def __init__(self, conn: psycopg.Connection[Any], topic_prefix: str, retention_days: int):
        self.conn = conn
        self.prefix = topic_prefix
        self.retention_days = retention_days
        self._months: set[tuple[int, int]] = set()
        self._stations: set[str] = set()
        """Stations this sink has made sure have a row (added after the COMMIT)."""
        # A naive ISO time in a payload is UTC, as in Python's checks.
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS capture_raw ("
            "device_id text, received double precision, payload jsonb) ON COMMIT DELETE ROWS"
        )
        conn.commit()
        self._months |= existing_partitions(conn)
        conn.commit()

    def store(self, messages: Sequence[Message]) -> BatchResult:
        """Write every station event of ``messages`` in one transaction and COMMIT it."""
        try:
            return self._store(messages, careful=False)
        except REDO_CAREFULLY as exc:
            log.debug("collector: batch refused as it came (%s); checking each capture", exc)
            return self._store(messages, careful=True)

    def _store(self, messages: Sequence[Message], careful: bool) -> BatchResult:
        result = BatchResult()
        captures: list[tuple[str, float, str]] = []
        presence: dict[str, tuple[Any, ...]] = {}
        telemetry: dict[str, tuple[Any, ...]] = {}
        noreads: list[tuple[Any, ...]] = []
        alerts: list[tuple[Any, ...]] = []
        cutoff = retention_cutoff(self.retention_days)
        months: set[tuple[int, int]] = set()
        for message in messages:
            where = split_topic(self.prefix, message.topic)
            if where is None:
                result.rejected += 1
                continue
            device, kind = where
            if kind == "captures" and not careful:
                row = self._raw_capture(device, message)
                if row is None:
                    result.rejected += 1
                else:
                    captures.append(row)
                continue
            try:
                body = loads_limited(message.payload, max_bytes=MAX_MESSAGE_BYTES)
            except JsonLimitError as exc:
                log.warning("collector: %s: not a station event: %s", message.topic, exc)
                result.rejected += 1
                continue
            if not isinstance(body, dict):
                log.warning("collector: %s: the payload is not a JSON object", message.topic)
                result.rejected += 1
                continue
            received = datetime.fromtimestamp(message.received, UTC)
            if kind == "captures":
                created = self._capture_created(device, body)
                if created is None:
                    log.warning(
                        "collector: %s: a capture event needs an integer seq, an event_id "
                        "and an ISO created time",
                        message.topic,
                    )
                    result.rejected += 1
                    continue
                if created < cutoff:
                    result.expired += 1
                    continue
                months.add(month_of(created))
                captures.append((device, message.received, _json(message)))
            elif kind == "status":
                presence[device] = (
                    device,
                    _text(body.get("state"), 16) or "unknown",
                    _text(body.get("version"), 64),
                    _text(body.get("site"), 256),
                    _time(body.get("started_at")),
                    received,
                    _seq(body.get("last_seq")),
                )
            elif kind == "telemetry":
                telemetry[device] = (
                    device,
                    _text(body.get("version"), 64),
                    _text(body.get("site"), 256),
                    received,
                    _seq(body.get("last_seq")),
                    message.payload.decode("utf-8", "replace"),
                )
            elif kind == "noreads":
                event_id = _text(body.get("event_id"), 128)
                if not event_id:
                    result.rejected += 1
                    continue
                noreads.append(
                    (event_id, device, _text(body.get("site"), 256), received, _json(message))
                )
            else:
                event_id = _text(body.get("event_id"), 128)
                if not event_id:
                    result.rejected += 1
                    continue
                found = body.get("checks")
                checks: dict[str, Any] = found if isinstance(found, dict) else {}
                named = [k for k in ("recalled", "expired") if checks.get(k)]
                kind_name = _text(body.get("kind") or "+".join(named) or "alert", 64)
                alerts.append((event_id, device, kind_name, "station", received, _json(message)))
        if months - self._months:
            self._months |= existing_partitions(self.conn)
            self.conn.commit()
            if months - self._months:
                create_partitions(self.conn, months - self._months)
                self._months |= months
        with self.conn.transaction(), self.conn.cursor() as cur:
            if captures:
                with cur.copy("COPY capture_raw (device_id, received, payload) FROM STDIN") as copy:
                    for row in captures:
                        copy.write_row(row)
                cur.execute(INSERT_CAPTURES, {"cutoff": cutoff})
                stored = max(cur.rowcount, 0)
                valid, expired, devices = len(captures), 0, {c[0] for c in captures}
                if stored < len(captures):  # duplicates, expired or refused: which?
                    cur.execute(COUNT_CAPTURES, {"cutoff": cutoff})
                    counts = cur.fetchone()
                    assert counts is not None
                    valid, expired, devices = counts
                if valid < len(captures):
                    log.warning(
                        "collector: %d capture events refused: each needs an integer seq "
                        ">= 1, an event_id, an ISO created time and its topic's device_id",
                        len(captures) - valid,
                    )
                result.rejected += len(captures) - valid
                result.expired += expired
                result.stored = stored
                result.duplicates = valid - expired - stored
                result.devices = set(devices or ())
                # A station known from its captures before its presence: a row to heal from.
                if result.devices - self._stations:
                    cur.executemany(
                        "INSERT INTO stations (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                        [(d,) for d in sorted(result.devices - self._stations)],
                    )
            # Telemetry first: a presence message of the same batch has the last word.
            if telemetry:
                cur.executemany(
                    "INSERT INTO stations AS s (device_id, state, version, site, last_seen, "
                    "last_seq, telemetry, telemetry_at) VALUES (%s, 'online', %s, %s, %s, "
                    "COALESCE(%s, 0), %s::jsonb, %s) "
                    "ON CONFLICT (device_id) DO UPDATE SET state = 'online', "
                    "version = COALESCE(NULLIF(excluded.version, ''), s.version), "
                    "site = excluded.site, "
                    "last_seen = GREATEST(s.last_seen, excluded.last_seen), "
                    "last_seq = GREATEST(s.last_seq, excluded.last_seq), "
                    "telemetry = excluded.telemetry, telemetry_at = excluded.telemetry_at",
                    [(*telemetry[d], telemetry[d][3]) for d in sorted(telemetry)],
                )
            if presence:
                cur.executemany(
                    "INSERT INTO stations AS s (device_id, state, version, site, started_at, "
                    "last_seen, last_seq) VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, 0)) "
                    "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, "
                    "version = COALESCE(NULLIF(excluded.version, ''), s.version), "
                    "site = excluded.site, started_at = excluded.started_at, "
                    "last_seen = GREATEST(s.last_seen, excluded.last_seen), "
                    "last_seq = GREATEST(s.last_seq, excluded.last_seq)",
                    [presence[d] for d in sorted(presence)],
                )
            if noreads:
                cur.executemany(
                    "INSERT INTO noreads (event_id, device_id, site, received_at, payload) "
                    "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    noreads,
                )
            if alerts:
                cur.executemany(
                    "INSERT INTO alerts (event_id, device_id, kind, origin, received_at, "
                    "payload) VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    alerts,
                )
        self._stations |= result.devices
        return result

    def _raw_capture(self, device: str, message: Message) -> tuple[str, float, str] | None:
        """The COPY row of a capture for PostgreSQL to parse and check, None if Python's own
        limits refuse it (size, nesting, UTF-8)."""
        raw = message.payload
        if len(raw) > MAX_MESSAGE_BYTES or raw.startswith(b"\xef\xbb\xbf"):
            return self._checked_raw(device, message)
        # Fewer brackets than the depth limit cannot nest deeper than it.
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
            return self._checked_raw(device, message)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("collector: %s: not a station event: not UTF-8", message.topic)
            return None
        # jsonb has no NUL character: a station's \u0000 would fail the whole batch.
        return device, message.received, text.replace("\\u0000", "")

    def _checked_raw(self, device: str, message: Message) -> tuple[str, float, str] | None:
        try:
            body = loads_limited(message.payload, max_bytes=MAX_MESSAGE_BYTES)
        except JsonLimitError as exc:
            log.warning("collector: %s: not a station event: %s", message.topic, exc)
            return None
        if not isinstance(body, dict):
            log.warning("collector: %s: the payload is not a JSON object", message.topic)
            return None
        return device, message.received, _json(message)

    def _capture_created(self, device: str, body: dict[str, Any]) -> datetime | None:
        """The created time of a valid capture event, None if it is not one."""
        seq = body.get("seq")
        event_id = body.get("event_id")
        created = _time(body.get("created"))
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return None
        if not isinstance(event_id, str) or not event_id or created is None:
            return None
        if body.get("device_id", device) != device:
            return None  # a station publishing under another's name
        return created


def _seq(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _json(message: Message) -> str:
    """The payload as jsonb takes it: without a UTF-8 byte order mark (Python's parser
    accepts one, PostgreSQL's does not) and without \\u0000 (jsonb has no NUL)."""
    text = message.payload.decode("utf-8", "replace").removeprefix("\ufeff")
    return text.replace("\\u0000", "")
