"""The MQTT link (SPEC §7): outbox drain, presence, telemetry and remote commands.

paho-mqtt 2.x is driven from the asyncio loop by a thin bridge (``Connection``): paho's socket
is watched with ``loop.add_reader``/``add_writer`` and every paho callback runs on the loop
thread, except the blocking TCP/TLS connect, which runs in a worker thread. A fresh paho client
is made for every connection, so nothing unacknowledged ever lives only in paho's memory: the
SQLite outbox is the durable copy, rows are settled on PUBACK (kept as delivered for
``[mqtt] keep_delivered_hours`` so ``outbox.replay`` can resend them, then pruned), and a new
connection drains the outbox again from its first waiting row (consumers de-duplicate by
``event_id``).

aiomqtt is not used because it drops the MQTT 5 PUBACK reason code, which the dead-letter
rule needs, and waits on each publish with a timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from scanstation import __version__
from scanstation.config import Config
from scanstation.health import outbox_report, vitals
from scanstation.model import CaptureMode
from scanstation.payloads import capture_json, iso, session_json
from scanstation.pipeline import Pipeline
from scanstation.publish.commands import (
    COMMAND_QUEUE,
    CORRELATION_MEMORY,
    Command,
    CommandAuth,
    CommandError,
    parse_command,
    reply_payload,
)
from scanstation.publish.connection import (
    Connection,
    ConnectOptions,
    ConnectRefused,
    Incoming,
    MqttError,
    backoff_delay,
    read_password,
    reason_text,
    refusal_kind,
    tls_context,
    tls_files,
)
from scanstation.publish.discovery import discovery_messages
from scanstation.publish.topics import client_id_for, status_payload, topics_for
from scanstation.services.roles import Role
from scanstation.store import NotFound, OutboxEvent, Store, StoreError

log = logging.getLogger(__name__)


DRAIN_BATCH = 256
"""Outbox rows read per pass of the drain."""


FULL_READ_INTERVAL_S = 1.0
"""The drain reads from the oldest waiting row at least this often (rows made waiting again
below its cursor: ``outbox.replay``), besides whenever nothing follows the cursor."""


STATS_INTERVAL_S = 2.0


STOP_TIMEOUT_S = 1.5
"""How long a clean stop may wait for the ``offline`` PUBACK and the DISCONNECT."""


ACK_LINGER_S = 1.0
"""How long acknowledged rows gather before their delivered mark is written (one commit).
Each such commit is one more fsync on the writer the captures share, and a capture arriving
during it waits for it: at a lane's rate, one a second instead of ten keeps that out of the
capture's p99 and off the SD card. A crash in between sends those events again (at least
once: consumers de-duplicate by event_id)."""


PRUNE_INTERVAL_S = 300.0
"""How often delivered rows older than ``[mqtt] keep_delivered_hours`` are deleted."""


ACK_BATCH = 512
"""Acknowledged rows are settled in batches: after ACK_LINGER_S or once ACK_BATCH gather."""


# ---- state -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MqttState:
    """A snapshot of the link for the UI, /metrics and telemetry."""

    enabled: bool
    """False when no broker is configured (the outbox keeps every event)."""
    connected: bool
    """A CONNACK was accepted and the connection is up."""
    broker: str
    """host:port of the broker ('' when disabled)."""
    protocol: str
    """'5' or '3.1.1': the protocol in use (after any fallback)."""
    connects: int
    """Successful connections since start."""
    reconnects: int
    """Successful connections after the first (each follows a lost or refused link)."""
    last_error: str
    """Why the last connection attempt or connection failed ('' if none yet)."""
    connected_since: float | None
    """Epoch seconds of the current connection's CONNACK, None when disconnected."""
    outbox_depth: int
    """Events waiting in the outbox (refreshed every few seconds)."""
    outbox_oldest_age_s: float | None
    """Age of the oldest waiting event in seconds, None when the outbox is empty."""
    dead_letters: int
    """Events in outbox_dead (refused by the broker, kept for inspection)."""
    in_flight: int
    """Events published and waiting for their PUBACK."""
    published: int
    """Events acknowledged by the broker since start."""
    refused: int
    """Negative PUBACKs (reason code ≥ 0x80) since start."""
    telemetry_sent: int
    """Telemetry messages published since start."""
    commands: int
    """Commands handled (including rejected ones) since start."""
    commands_unauthorized: int
    """Commands refused for a missing or wrong authorization token since start."""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class _Counters:
    connects: int = 0
    last_error: str = ""
    connected_since: float | None = None
    outbox_depth: int = 0
    outbox_oldest: float | None = None
    dead_letters: int = 0
    in_flight: int = 0
    published: int = 0
    refused: int = 0
    telemetry_sent: int = 0
    commands: int = 0
    commands_unauthorized: int = 0


# ---- the link ----------------------------------------------------------------------------


@dataclass
class _Drain:
    """Per-connection drain state."""

    window: asyncio.Semaphore
    size: int
    """The in-flight window: the broker's Receive Maximum or mqtt.inflight, the smaller."""
    max_bytes: int
    retries: list[tuple[float, OutboxEvent]] = field(default_factory=list)
    next_at: float = 0.0
    """Monotonic time of the next publish allowed by mqtt.publish_rate_limit."""


async def _guarded(conn: Connection, work: Awaitable[None]) -> None:
    """Run one of a connection's tasks; an MQTT failure in it ends the connection."""
    try:
        await work
    except MqttError as exc:
        conn.abort(str(exc))


def _release(window: asyncio.Semaphore, permits: int) -> None:
    for _ in range(permits):
        window.release()


class MqttLink:
    """The station's MQTT client: keeps a connection up and everything flowing over it."""

    def __init__(
        self,
        config: Config,
        store: Store,
        pipeline: Pipeline,
        *,
        triggers: Mapping[str, Callable[[], None]] = {},
        telemetry: Callable[[], dict[str, Any]] | None = None,
        api_key_valid: Callable[[str], bool] | None = None,
        api_key_role: Callable[[str], Role | None] | None = None,
    ) -> None:
        """``api_key_role``: the role of a station API key (None: not a key), checked against
        each command's minimum role; ``api_key_valid``: a key check whose keys are admins."""
        self.config = config
        self.api_key_valid = api_key_valid
        self.api_key_role = api_key_role
        self.mqtt = config.mqtt
        self.store = store
        self.pipeline = pipeline
        self.triggers = dict(triggers)
        self.telemetry = telemetry
        self.topics = topics_for(config)
        self.started_at = time.time()
        self.protocol: Literal["5", "3.1.1"] = self.mqtt.protocol
        self.on_delivered: list[Callable[[OutboxEvent], None]] = []
        """Called for every event the broker acknowledged (benchmarks, tests)."""
        self.on_read: list[Callable[[list[OutboxEvent]], None]] = []
        """Called with the events each outbox read found to send (benchmarks)."""
        self.on_sent: list[Callable[[OutboxEvent], None]] = []
        """Called for every event handed to the connection (benchmarks)."""
        self.on_settled: list[Callable[[list[int]], None]] = []
        """Called with the row ids whose delivered mark was committed (benchmarks)."""
        self._c = _Counters()
        self._conn: Connection | None = None
        self._acked: list[int] = []
        self._acked_ids: set[int] = set()
        self._dead_ids: set[int] = set()
        self._flush_wanted = asyncio.Event()
        self._ack_batch_full = asyncio.Event()
        self._commands: asyncio.Queue[Incoming] = asyncio.Queue(COMMAND_QUEUE)
        self._replies: OrderedDict[bytes, tuple[str, bytes]] = OrderedDict()
        self._rand = random.Random()
        self._connack_properties: Properties | None = None
        self._in_flight: dict[int, OutboxEvent] = {}
        """Events published on the current connection and not yet answered, by row id."""
        self._just_deleted: set[int] = set()
        """Rows deleted since the drain's current read began (that read may still see them)."""
        self._suspects: dict[int, int] = {}
        """Row id → times the connection died with that event alone in flight."""
        self._tasks: set[asyncio.Future[None]] = set()
        """Strong references to background writes (refusals, dead letters)."""
        self._topics: dict[str, tuple[str, int]] = {}
        """Outbox topic suffix → (full topic, its length in bytes)."""

    # -- state --

    @property
    def state(self) -> MqttState:
        c = self._c
        return MqttState(
            enabled=bool(self.mqtt.host),
            connected=self._conn is not None and c.connected_since is not None,
            broker=f"{self.mqtt.host}:{self.mqtt.port}" if self.mqtt.host else "",
            protocol=self.protocol,
            connects=c.connects,
            reconnects=max(c.connects - 1, 0),
            last_error=c.last_error,
            connected_since=c.connected_since,
            outbox_depth=c.outbox_depth,
            outbox_oldest_age_s=(
                round(max(time.time() - c.outbox_oldest, 0.0), 3)
                if c.outbox_oldest is not None
                else None
            ),
            dead_letters=c.dead_letters,
            in_flight=c.in_flight,
            published=c.published,
            refused=c.refused,
            telemetry_sent=c.telemetry_sent,
            commands=c.commands,
            commands_unauthorized=c.commands_unauthorized,
        )

    async def refresh_stats(self) -> None:
        depth, oldest = await self.store.outbox_stats()
        self._c.outbox_depth, self._c.outbox_oldest = depth, oldest
        self._c.dead_letters = await self.store.outbox_dead_count()

    # -- the main loop --

    async def run(self) -> None:
        """Keep connected and publishing until cancelled; then say ``offline`` and leave."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._stats_loop(), name="mqtt-stats")
            tg.create_task(self._flush_loop(), name="mqtt-acks")
            if not self.mqtt.host:
                log.info("MQTT is off (no [mqtt] host): the outbox keeps every event")
                await asyncio.Event().wait()
            try:
                await self._connect_loop()
            except asyncio.CancelledError:
                await self._stop()
                raise

    async def _connect_loop(self) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                conn = await self._open()
            except ConnectRefused as exc:
                if exc.unsupported_protocol and self.protocol == "5":
                    log.warning("%s does not speak MQTT 5; falling back to 3.1.1", exc.args[0])
                    self.protocol = "3.1.1"
                    continue
                self._failed(str(exc))
            except MqttError as exc:
                self._failed(str(exc))
            else:
                self._conn = conn
                try:
                    await self._session(conn)
                except asyncio.CancelledError:
                    raise  # a stop: _stop says offline and disconnects on this connection
                except MqttError as exc:
                    self._failed(str(exc))
                    self._connection_lost()
                except Exception as exc:  # a bug or a storage error: log it, reconnect
                    log.exception("MQTT: the session failed")
                    self._failed(f"{type(exc).__name__}: {exc}")
                self._conn = None
                self._c.connected_since = None
                self._c.in_flight = 0
                self._in_flight.clear()
                conn.abort("session ended")
                # A link that stayed up a while earns a quick reconnect.
                if time.monotonic() - started > 10:
                    failures = 0
            delay = backoff_delay(
                failures, self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s, self._rand.random
            )
            failures += 1
            log.info("MQTT: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    def _connection_lost(self) -> None:
        """Suspect the events that were in flight; strike one that was in flight alone.

        Some brokers answer a message they refuse by closing the connection (Mosquitto's
        message_size_limit makes paho see a protocol error, a 3.1.1 broker has no negative
        PUBACK). Suspects are sent alone on the next connection, so the culprit is the only
        event in flight when the connection dies again; after ``dead_letter_after`` such
        deaths it moves to outbox_dead and the others flow.
        """
        lost = list(self._in_flight.values())
        if len(lost) == 1:
            event = lost[0]
            strikes = max(self._suspects.get(event.id, 0), event.attempts) + 1
            error = f"the connection died each time this event was sent ({self._c.last_error})"
            if strikes >= self.mqtt.dead_letter_after:
                self._suspects.pop(event.id, None)
                self._bury(event, f"{strikes} times: {error}")
            else:
                self._suspects[event.id] = strikes
                self._background(self._note_refusal(event.id, error))
        else:
            for event in lost:
                self._suspects.setdefault(event.id, event.attempts)

    def _failed(self, error: str) -> None:
        if error != self._c.last_error:
            log.warning("MQTT: %s", error)
        self._c.last_error = error

    async def _open(self) -> Connection:
        options = ConnectOptions(
            host=self.mqtt.host,
            port=self.mqtt.port,
            client_id=client_id_for(self.config),
            protocol=self.protocol,
            keepalive=self.mqtt.keepalive,
            username=self.mqtt.username,
            password=await asyncio.to_thread(read_password, self.mqtt.password_file),
            will_topic=self.topics.status,
            will_payload=status_payload("offline", self.config, self.started_at),
            tls=await asyncio.to_thread(tls_context, self.mqtt),
            tls_files=tls_files(self.mqtt),
        )
        conn = Connection(options, self._on_message)
        try:
            properties = await conn.open()
        except BaseException:
            conn.abort("connect failed")
            raise
        self._connack_properties = properties
        return conn

    async def _session(self, conn: Connection) -> None:
        """Everything done over one connection; returns or raises when it ends."""
        properties = self._connack_properties
        window = self.mqtt.inflight
        max_bytes = self.mqtt.max_payload_bytes
        if properties is not None:
            # Respect the broker's limits instead of being disconnected for exceeding them.
            window = min(window, int(getattr(properties, "ReceiveMaximum", window)))
            max_bytes = min(max_bytes, int(getattr(properties, "MaximumPacketSize", max_bytes)))
        last_seq = await self.store.published_seq()
        await conn.publish(
            self.topics.status,
            status_payload("online", self.config, self.started_at, last_seq),
            qos=1,
            retain=True,
        )
        granted = await conn.subscribe(self.topics.commands, qos=1)
        if any(code >= 0x80 for code in granted):
            log.warning(
                "MQTT: the broker refused the command subscription %s", self.topics.commands
            )
        if self.mqtt.homeassistant_discovery:
            for topic, payload in discovery_messages(self.config):
                conn.publish(topic, payload, qos=1, retain=True)
        # Acks of the previous connection must be deleted before its rows are read again.
        await self._flush_acks()
        # Connected (for the state and the UI) once presence and commands are in place.
        self._c.connects += 1
        self._c.connected_since = time.time()
        self._c.last_error = ""
        log.info("MQTT: connected to %s (MQTT %s, window %d)", conn.broker, self.protocol, window)
        drain = _Drain(asyncio.Semaphore(window), window, max_bytes)
        tasks = [
            asyncio.create_task(_guarded(conn, self._drain(conn, drain)), name="mqtt-drain"),
            asyncio.create_task(_guarded(conn, self._telemetry_loop(conn)), name="mqtt-telemetry"),
            asyncio.create_task(_guarded(conn, self._command_loop(conn)), name="mqtt-commands"),
        ]
        try:
            # Until the connection ends, or one of its tasks fails (a bug: log it, reconnect).
            waiters: list[asyncio.Future[Any]] = [conn.closed, *tasks]
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done and not task.cancelled() and task.exception() is not None:
                    raise MqttError(f"{task.get_name()} failed: {task.exception()!r}")
            reason = await conn.closed
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        raise MqttError(f"{conn.broker}: {reason}")

    async def _stop(self) -> None:
        """Clean stop: retained ``offline``, DISCONNECT, acknowledged rows deleted."""
        conn = self._conn
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                if conn is not None and not conn.closed.done():
                    last_seq = await self.store.published_seq()
                    offline = status_payload("offline", self.config, self.started_at, last_seq)
                    with contextlib.suppress(MqttError):
                        await conn.publish(self.topics.status, offline, qos=1, retain=True)
                    await conn.close()
                await self._flush_acks()
        if conn is not None:
            conn.abort("stopped")
        self._conn = None
        self._c.connected_since = None
        log.info("MQTT: stopped")

    # -- the outbox --

    async def _drain(self, conn: Connection, drain: _Drain) -> None:
        """Publish outbox rows in id (= seq) order, at most ``window`` unacknowledged.

        Woken by the commit that added rows (``Store.outbox_changed``), each pass reads the
        rows after the highest id this connection has read (ids only grow and are never reused)
        and publishes them back to back, as the window allows; it reads again at once only
        after a full read or a new signal. When nothing follows that cursor, or a second
        has gone by, a pass reads from the oldest waiting row instead and skips those
        already handled (in flight, acked and awaiting their delivered mark, being
        dead-lettered, waiting for a retry): rows made waiting again (``outbox.replay``),
        or an id below the cursor, are found that way.
        """
        changed = self.store.outbox_changed
        cursor = 0
        full_at = 0.0
        more = True  # rows may be waiting: read before waiting for a signal
        while True:
            if not more and not changed.is_set():
                wait = min((w for w, _ in drain.retries), default=None)
                timeout = None if wait is None else max(wait - time.monotonic(), 0.01)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await changed.wait()
            changed.clear()
            full = cursor == 0 or time.monotonic() - full_at > FULL_READ_INTERVAL_S
            rows, more = await self._read(drain, 0 if full else cursor)
            if not full and not rows:
                full = True
                rows, more = await self._read(drain, 0)
            if full:
                full_at = time.monotonic()
            if rows:
                cursor = max(cursor, rows[-1].id)
            # Read after the await: a refusal that arrived during the read put its event
            # among the retries, and it must not go out again at once as if fresh.
            waiting = {e.id for _, e in drain.retries} if drain.retries else ()
            fresh = [e for e in rows if e.id not in waiting and not self._handled(e.id)]
            now = time.monotonic()
            due = [event for when, event in drain.retries if when <= now]
            if due:
                drain.retries = [(w, e) for w, e in drain.retries if w > now]
            if not fresh and not due:
                more = False
                continue
            for hook in self.on_read:
                hook(fresh)
            for event in (*due, *fresh):
                # A suspect (in flight when a connection died) goes alone, so that a
                # message the broker answers by disconnecting is found and set aside.
                permits = drain.size if event.id in self._suspects else 1
                for _ in range(permits):
                    await drain.window.acquire()
                if self._handled(event.id) or any(e.id == event.id for _, e in drain.retries):
                    # Acknowledged meanwhile (a retry's twin), or refused meanwhile and now
                    # waiting for its retry.
                    _release(drain.window, permits)
                    continue
                if self.mqtt.publish_rate_limit:
                    # Pace the drain under the broker's per-connection limit (AWS IoT: 100/s).
                    drain.next_at = max(drain.next_at, time.monotonic())
                    await asyncio.sleep(drain.next_at - time.monotonic())
                    drain.next_at += 1 / self.mqtt.publish_rate_limit
                self._publish_event(conn, drain, event, permits)

    async def _read(self, drain: _Drain, after_id: int) -> tuple[list[OutboxEvent], bool]:
        """Waiting rows after ``after_id`` (from the oldest, 0: room for the handled ones),
        and whether the read was full (more may follow)."""
        limit = DRAIN_BATCH
        if after_id == 0:
            busy = len(self._in_flight) + len(self._acked_ids) + len(self._dead_ids)
            limit += busy + len(drain.retries)
        # Rows deleted before this read cannot show up in it; rows deleted while it runs
        # can, and are recognised by this set.
        self._just_deleted = set()
        rows = await self.store.outbox_batch(after_id, limit)
        return rows, len(rows) >= limit

    def _handled(self, row_id: int) -> bool:
        return (
            row_id in self._in_flight
            or row_id in self._acked_ids
            or row_id in self._dead_ids
            or row_id in self._just_deleted
        )

    def _publish_event(
        self, conn: Connection, drain: _Drain, event: OutboxEvent, permits: int
    ) -> None:
        payload = event.payload.encode()
        topic, topic_bytes = self._topic(event.topic)
        # Fixed header (≤ 5) + topic + packet id + properties: 64 bytes covers it.
        size = len(payload) + topic_bytes + 64
        if size > drain.max_bytes:
            _release(drain.window, permits)
            self._bury(
                event,
                f"payload of {len(payload)} bytes is over the limit of {drain.max_bytes} bytes "
                "(mqtt.max_payload_bytes or the broker's maximum packet size)",
            )
            return
        self._c.in_flight += 1
        self._in_flight[event.id] = event
        try:
            conn.send(topic, payload, lambda reason: self._on_ack(drain, event, permits, reason))
        except MqttError:
            self._c.in_flight -= 1
            self._in_flight.pop(event.id, None)
            _release(drain.window, permits)
            raise
        for hook in self.on_sent:
            hook(event)

    def _topic(self, suffix: str) -> tuple[str, int]:
        """The full topic of an outbox topic suffix and its length in bytes (kept per suffix)."""
        known = self._topics.get(suffix)
        if known is None:
            topic = self.topics.event(suffix)
            known = self._topics[suffix] = (topic, len(topic.encode()))
        return known

    def _on_ack(self, drain: _Drain, event: OutboxEvent, permits: int, reason: int) -> None:
        """The broker answered ``event`` (called from the connection's read, on the loop)."""
        if permits == 1:
            drain.window.release()
        else:
            _release(drain.window, permits)
        c = self._c
        c.in_flight = max(c.in_flight - 1, 0)
        row = event.id
        self._in_flight.pop(row, None)
        if self._suspects:
            self._suspects.pop(row, None)
        if reason < 0x80:  # refusal_kind(reason) == "ok", the common case first
            c.published += 1
            acked = self._acked
            acked.append(row)
            self._acked_ids.add(row)
            self._flush_wanted.set()
            if len(acked) >= ACK_BATCH:
                self._ack_batch_full.set()
            for hook in self.on_delivered:
                hook(event)
            return
        kind = refusal_kind(reason)
        c.refused += 1
        error = reason_text(reason)
        attempts = event.attempts + 1
        if kind == "dead" or (kind == "retry" and attempts >= self.mqtt.dead_letter_after):
            self._bury(event, f"refused by the broker {attempts} time(s): {error}")
            return
        delay = min(2.0**attempts, 60.0)
        log.warning(
            "MQTT: %s event %s refused (%s); retrying in %.0f s",
            event.topic,
            event.event_id,
            error,
            delay,
        )
        retry = OutboxEvent(
            event.id,
            event.topic,
            event.event_id,
            event.seq,
            event.payload,
            event.created,
            attempts,
        )
        drain.retries.append((time.monotonic() + delay, retry))
        self._background(self._note_refusal(event.id, error))

    def _bury(self, event: OutboxEvent, error: str) -> None:
        log.error(
            "MQTT: %s event %s (seq %s) moved to outbox_dead: %s",
            event.topic,
            event.event_id,
            event.seq,
            error,
        )
        self._dead_ids.add(event.id)
        self._background(self._move_to_dead(event.id, error))

    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _note_refusal(self, row_id: int, error: str) -> None:
        await self.store.outbox_refused(row_id, error)

    async def _move_to_dead(self, row_id: int, error: str) -> None:
        try:
            await self.store.outbox_dead_letter(row_id, error)
        finally:
            self._dead_ids.discard(row_id)
            self._just_deleted.add(row_id)
            self.store.outbox_changed.set()
        self._c.dead_letters += 1

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            if len(self._acked) < ACK_BATCH:
                # Gather acknowledgements for a moment: one settling transaction (one fsync
                # on the writer the pipeline shares) per batch instead of one per event.
                self._ack_batch_full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ACK_LINGER_S):
                        await self._ack_batch_full.wait()
            try:
                await self._flush_acks()
            except Exception:  # the rows stay; they are deleted on the next try
                log.exception("MQTT: deleting acknowledged outbox rows failed")
                await asyncio.sleep(1)

    async def _flush_acks(self) -> None:
        """Delete every acknowledged row (one transaction for all gathered so far)."""
        self._flush_wanted.clear()
        if not self._acked:
            return
        ids, self._acked = self._acked, []
        try:
            await self.store.outbox_delete(ids, keep=self.mqtt.keep_delivered_hours > 0)
        except BaseException:
            self._acked = ids + self._acked
            raise
        self._acked_ids.difference_update(ids)
        self._just_deleted.update(ids)
        for hook in self.on_settled:
            hook(ids)
        # A new row may have taken a deleted row's id while it was skipped: look again.
        self.store.outbox_changed.set()

    async def _stats_loop(self) -> None:
        pruned_at = 0.0
        while True:
            try:
                await self.refresh_stats()
                if time.monotonic() - pruned_at > PRUNE_INTERVAL_S:
                    pruned_at = time.monotonic()
                    await self.prune_delivered()
            except Exception:  # statistics must never take the link down
                log.exception("MQTT: reading outbox statistics failed")
            await asyncio.sleep(STATS_INTERVAL_S)

    async def prune_delivered(self) -> int:
        """Delete delivered rows older than ``[mqtt] keep_delivered_hours``."""
        keep_s = self.mqtt.keep_delivered_hours * 3600
        pruned = await self.store.outbox_prune_delivered(time.time() - keep_s)
        if pruned:
            log.info("MQTT: pruned %d delivered outbox rows (kept %g h)", pruned, keep_s / 3600)
        return pruned

    # -- telemetry --

    async def telemetry_payload(self) -> dict[str, Any]:
        await self.refresh_stats()
        counts = await self.store.status_counts()
        extra: dict[str, Any] = {}
        if self.telemetry is not None:
            try:
                extra = dict(self.telemetry())
            except Exception as exc:  # the station's own figures must still go out
                log.exception("MQTT: the telemetry callback failed")
                extra = {"telemetry_error": f"{type(exc).__name__}: {exc}"}
        state = self.state
        body: dict[str, Any] = {
            "device_id": self.config.device.id,
            "time": iso(time.time()),
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "site": self.config.device.site,
            "telemetry_interval_s": self.mqtt.telemetry_interval,
            "captures": counts,
            "captures_total": sum(counts.values()),
            "outbox": {
                **outbox_report(self._c.outbox_depth, self._c.outbox_oldest, time.time()),
                "dead": state.dead_letters,
                "in_flight": state.in_flight,
            },
            "mqtt": {
                "reconnects": state.reconnects,
                "published": state.published,
                "refused": state.refused,
                "protocol": state.protocol,
                "commands_unauthorized": state.commands_unauthorized,
            },
            **vitals(self.config.storage.path),
            "storage": "full" if self.store.full_since is not None else "ok",
            "last_seq": await self.store.published_seq(),
        }
        return {**extra, **body}

    async def _telemetry_loop(self, conn: Connection) -> None:
        while True:
            await self._send_telemetry(conn)
            await asyncio.sleep(self.mqtt.telemetry_interval)

    async def _send_telemetry(self, conn: Connection) -> dict[str, Any]:
        body = await self.telemetry_payload()
        # QoS 0 and only while connected: stale telemetry is never queued.
        if not conn.closed.done():
            conn.publish(self.topics.telemetry, json.dumps(body).encode(), qos=0)
            self._c.telemetry_sent += 1
        return body

    # -- commands --

    def _on_message(self, message: Incoming) -> None:
        if message.retain:
            # A retained command would run again on every reconnect: never act on one.
            log.warning("MQTT: ignoring retained command on %s", message.topic)
            return
        try:
            self._commands.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("MQTT: command queue full; dropping %s", message.topic)

    async def _command_loop(self, conn: Connection) -> None:
        while True:
            message = await self._commands.get()
            try:
                await self.handle_command(conn, message)
            except MqttError:
                raise
            except Exception:  # one bad command must never take the link down
                log.exception("MQTT: handling the command on %s failed", message.topic)

    def command_auth(self) -> CommandAuth:
        """Who may run commands now (the token file is read each time, so it can rotate)."""
        token = None
        path = self.mqtt.command_token_file
        if path is not None:
            try:
                token = path.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                log.warning("MQTT: mqtt.command_token_file %s: cannot read it: %s", path, exc)
        return CommandAuth(
            token=token,
            api_key_valid=self.api_key_valid,
            api_key_role=self.api_key_role,
            exempt=frozenset(self.mqtt.commands_without_token),
        )

    async def handle_command(self, conn: Connection, message: Incoming) -> None:
        name = self.topics.command_name(message.topic) or message.topic
        self._c.commands += 1
        correlation = message.correlation
        response_topic = message.response_topic
        try:
            command = parse_command(
                name,
                message.payload,
                correlation,
                response_topic,
                auth=self.command_auth(),
                authorization=message.authorization,
            )
        except CommandError as exc:
            if exc.code in ("unauthorized", "forbidden"):
                self._c.commands_unauthorized += 1
                log.info("MQTT: command %s refused: %s", name, exc)
            else:
                log.info("MQTT: command %s rejected: %s", name, exc)
            correlation = exc.correlation or correlation
            self._reply(
                conn, name, correlation, response_topic, reply_payload(name, correlation, error=exc)
            )
            return
        key = command.correlation
        if key is not None and key in self._replies:
            # A repeated correlation id (a retry by the caller): answer again, do not run again.
            cached_name, cached = self._replies[key]
            self._reply(conn, cached_name, key, command.response_topic, cached)
            return
        try:
            result = await self._run_command(conn, command)
            payload = reply_payload(name, key, result=result)
        except CommandError as exc:
            payload = reply_payload(name, key, error=exc)
        except StoreError as exc:
            code = "not_found" if isinstance(exc, NotFound) else exc.code
            payload = reply_payload(name, key, error=CommandError(code, str(exc), exc.field))
        except Exception as exc:  # a command must never take the link down
            log.exception("MQTT: command %s failed", name)
            payload = reply_payload(
                name,
                key,
                error=CommandError("failed", f"{name} failed: {type(exc).__name__}: {exc}"),
            )
        if key is not None:
            self._replies[key] = (name, payload)
            while len(self._replies) > CORRELATION_MEMORY:
                self._replies.popitem(last=False)
        self._reply(conn, name, key, command.response_topic, payload)

    def _reply(
        self,
        conn: Connection,
        name: str,
        correlation: bytes | None,
        response_topic: str | None,
        payload: bytes,
    ) -> None:
        properties = None
        topic = response_topic or self.topics.reply(name)
        if self.protocol == "5" and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        with contextlib.suppress(MqttError):
            conn.publish(topic, payload, qos=1, properties=properties)

    async def _run_command(self, conn: Connection, command: Command) -> Any:
        body = command.body
        match command.name:
            case "session.start":
                session = await self.pipeline.sessions.start(
                    capture_mode=CaptureMode(body.capture_mode),
                    metadata=body.metadata,
                    source=body.source,
                )
                return session_json(session)
            case "session.end":
                session = await self.pipeline.sessions.end(body.session_public_id)
                return session_json(session)
            case "trigger":
                return self._trigger(body.source)
            case "capture.retry":
                return capture_json(await self.pipeline.retry(body.capture_public_id))
            case "catalog.upsert":
                count = await self.store.upsert_products(body)
                return {"upserted": count, "gtins": [p["gtin"] for p in body]}
            case "telemetry.now":
                return await self._send_telemetry(conn)
            case "outbox.replay":
                counts = await self.store.outbox_replay(body.from_seq, body.to_seq)
                log.info("MQTT: outbox.replay %d..%d: %s", body.from_seq, body.to_seq, counts)
                return {"from_seq": body.from_seq, "to_seq": body.to_seq, **counts}
        raise CommandError("unknown_command", f"unknown command {command.name!r}")

    def _trigger(self, source: str | None) -> dict[str, Any]:
        if not self.triggers:
            raise CommandError("unavailable", "no source of this station takes software triggers")
        if source is None:
            if len(self.triggers) > 1:
                raise CommandError(
                    "invalid",
                    "trigger: name the source; this station has "
                    + ", ".join(sorted(self.triggers)),
                    "source",
                )
            source = next(iter(self.triggers))
        if source not in self.triggers:
            raise CommandError(
                "not_found",
                f"trigger: no triggerable source {source!r}; expected one of "
                f"{', '.join(sorted(self.triggers))}",
                "source",
            )
        self.triggers[source]()
        return {"triggered": source}
