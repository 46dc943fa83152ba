"""Seq gaps and lost tails: found in capture_events, asked for with ``outbox.replay``.

One collector of a group heals at a time (it holds a PostgreSQL advisory lock on its own
connection; another takes over when that connection dies). Per station it reads the seqs
above ``stations.contiguous_seq`` (everything below is known complete), finds the holes and
the tail up to the ``last_seq`` the station reported in its status or telemetry, and asks the
station for each range that stayed open ``gap_grace_s`` (messages in flight with the other
collectors are not gaps). A station that answers that it no longer holds a range (pruned
after ``keep_delivered_hours``) gets the range recorded in ``seq_lost`` and never asked again.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from typing import TYPE_CHECKING, Any

import psycopg

from scanstation.collector import CollectorError
from scanstation.collector.alerts import publish_pending, raise_alerts
from scanstation.collector.consumer import connect_database, read_secret
from scanstation.collector.schema import drop_old_partitions

if TYPE_CHECKING:
    from scanstation.collector.consumer import Collector

log = logging.getLogger(__name__)

HEAL_LOCK = 0x5C0_11EC8
RETENTION_INTERVAL_S = 3600.0
MAX_COMMANDS_PER_CHECK = 20
ALERT_INTERVAL_S = 15.0

Range = tuple[int, int]


def gaps_above(
    conn: psycopg.Connection[Any], device: str, contiguous: int, last_seq: int
) -> tuple[list[Range], int]:
    """(missing ranges above ``contiguous``, the highest stored seq) of one station.

    Ranges recorded in seq_lost count as present. The tail up to ``last_seq`` is a range too.
    """
    rows = conn.execute(
        "SELECT prev + 1, seq - 1 FROM (SELECT seq, lag(seq, 1, %s::bigint) OVER (ORDER BY seq) "
        "AS prev FROM capture_events WHERE device_id = %s AND seq > %s) t "
        "WHERE seq > prev + 1 ORDER BY seq",
        (contiguous, device, contiguous),
    ).fetchall()
    top = conn.execute(
        "SELECT COALESCE(MAX(seq), %s) FROM capture_events WHERE device_id = %s AND seq > %s",
        (contiguous, device, contiguous),
    ).fetchone()
    highest = int(top[0]) if top else contiguous
    gaps: list[Range] = [(int(a), int(b)) for a, b in rows]
    if last_seq > highest:
        gaps.append((highest + 1, last_seq))
    lost = conn.execute(
        "SELECT from_seq, to_seq FROM seq_lost WHERE device_id = %s AND to_seq > %s "
        "ORDER BY from_seq",
        (device, contiguous),
    ).fetchall()
    return subtract(gaps, [(int(a), int(b)) for a, b in lost]), highest


def subtract(ranges: list[Range], holes: list[Range]) -> list[Range]:
    """``ranges`` minus ``holes`` (both inclusive integer ranges)."""
    out: list[Range] = []
    for low, high in ranges:
        pieces = [(low, high)]
        for h_low, h_high in holes:
            next_pieces = []
            for a, b in pieces:
                if h_high < a or h_low > b:
                    next_pieces.append((a, b))
                    continue
                if a < h_low:
                    next_pieces.append((a, h_low - 1))
                if h_high < b:
                    next_pieces.append((h_high + 1, b))
            pieces = next_pieces
        out.extend(pieces)
    return out


def chunks(low: int, high: int, size: int) -> list[Range]:
    return [(a, min(a + size - 1, high)) for a in range(low, high + 1, size)]


class Healer:
    """The gap finder of one collector (it acts only while it holds the group's lock)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.cfg = collector.cfg
        self.first_seen: dict[tuple[str, int], float] = {}
        self.asked: dict[tuple[str, int, int], float] = {}
        self.requests = 0
        self.leader = False

    def run(self) -> None:
        stop = self.collector.stop
        conn: psycopg.Connection[Any] | None = None
        retention_at = 0.0
        alerts_at = 0.0
        while not stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect_database(self.collector.config)
                    conn.autocommit = True
                    self.leader = False
                if not self.leader:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (HEAL_LOCK,)).fetchone()
                    self.leader = bool(row and row[0])
                    if self.leader:
                        log.info("collector: this collector heals seq gaps for the group")
                self._read_replies(conn)
                if self.leader:
                    self.check(conn)
                    if time.monotonic() - alerts_at > ALERT_INTERVAL_S:
                        alerts_at = time.monotonic()
                        self.alerts(conn)
                    if time.monotonic() - retention_at > RETENTION_INTERVAL_S:
                        retention_at = time.monotonic()
                        drop_old_partitions(conn, self.cfg.retention_days)
            except (psycopg.Error, CollectorError) as exc:
                log.warning("collector: gap check failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            except Exception:  # the healer must never stop the consumer
                log.exception("collector: gap check failed")
            stop.wait(self.cfg.gap_check_interval_s)
        if conn is not None:
            conn.close()

    def check(self, conn: psycopg.Connection[Any]) -> list[tuple[str, Range]]:
        """Find the open ranges of every station; ask for those past their grace."""
        now = time.monotonic()
        asked: list[tuple[str, Range]] = []
        stations = conn.execute(
            "SELECT device_id, contiguous_seq, last_seq FROM stations ORDER BY device_id"
        ).fetchall()
        token = read_secret(self.cfg.command_token_file, "collector.command_token_file")
        open_now: set[tuple[str, int]] = set()
        for device, contiguous, last_seq in stations:
            device, contiguous, last_seq = str(device), int(contiguous), int(last_seq)
            gaps, highest = gaps_above(conn, device, contiguous, last_seq)
            complete = gaps[0][0] - 1 if gaps else max(highest, contiguous)
            if complete > contiguous:
                conn.execute(
                    "UPDATE stations SET contiguous_seq = %s WHERE device_id = %s "
                    "AND contiguous_seq < %s",
                    (complete, device, complete),
                )
            for low, high in gaps:
                key = (device, low)
                open_now.add(key)
                seen = self.first_seen.setdefault(key, now)
                if now - seen < self.cfg.gap_grace_s:
                    continue
                for a, b in chunks(low, high, self.cfg.replay_max):
                    if len(asked) >= MAX_COMMANDS_PER_CHECK:
                        break
                    when = self.asked.get((device, a, b))
                    if when is not None and now - when < self.cfg.replay_interval_s:
                        continue
                    self.asked[(device, a, b)] = now
                    self._ask(device, a, b, token)
                    asked.append((device, (a, b)))
        for gap in list(self.first_seen):
            if gap not in open_now:
                del self.first_seen[gap]
        stale = 10 * self.cfg.replay_interval_s
        for request in [k for k, when in self.asked.items() if now - when > stale]:
            del self.asked[request]
        return asked

    def alerts(self, conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        """Raise the fleet's alerts that hold now and send on every unsent one."""
        raise_alerts(conn, self.cfg)
        return publish_pending(conn, self.cfg, self.collector.publish_alert)

    def _ask(self, device: str, low: int, high: int, token: str | None) -> None:
        self.requests += 1
        log.info("collector: asking %s to replay seq %d..%d", device, low, high)
        correlation = json.dumps({"device_id": device, "from_seq": low, "to_seq": high}).encode()
        payload = json.dumps({"from_seq": low, "to_seq": high}).encode()
        self.collector.publish_command(device, "outbox.replay", payload, correlation, token)

    def _read_replies(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            try:
                correlation, payload = self.collector.replies.get_nowait()
            except queue.Empty:
                return
            self.handle_reply(conn, correlation, payload)

    def handle_reply(
        self, conn: psycopg.Connection[Any], correlation: bytes | None, payload: bytes
    ) -> None:
        try:
            asked = json.loads(correlation or b"null")
            reply = json.loads(payload)
            device, low, high = asked["device_id"], int(asked["from_seq"]), int(asked["to_seq"])
        except (ValueError, TypeError, KeyError):
            log.warning("collector: a reply that is not to an outbox.replay: %r", payload[:200])
            return
        if not reply.get("ok"):
            error = reply.get("error") or {}
            log.warning(
                "collector: %s refused outbox.replay %d..%d: %s (%s)",
                device,
                low,
                high,
                error.get("message"),
                error.get("code"),
            )
            return
        result = reply.get("result") or {}
        log.info("collector: %s replays %d..%d: %s", device, low, high, result)
        nothing = not result.get("replayed") and not result.get("pending")
        if nothing and result.get("unavailable") == high - low + 1:
            log.warning(
                "collector: %s no longer holds seq %d..%d (pruned before it was "
                "collected); recorded in seq_lost",
                device,
                low,
                high,
            )
            conn.execute(
                "INSERT INTO seq_lost (device_id, from_seq, to_seq) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (device, low, high),
            )
