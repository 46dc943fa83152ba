"""The collector process: paho-mqtt with manual acknowledgement feeding batched commits.

Threads: paho's network thread receives (``loop_start``) and puts messages on a bounded
queue, one list per socket read; the writer thread (``run``) gathers a batch, stores it in
one transaction and only then acknowledges its messages (``manual_ack``, the batch's
PUBACKs in one write); the healer thread looks for seq gaps.
The MQTT session is persistent (``clean_start=False``, a session expiry, a stable client
id), so what a killed collector had received but not committed is delivered again when it
returns; the unique key of capture_events makes the second copy a no-op.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from scanstation.collector import CollectorError
from scanstation.collector.bufferedpaho import BufferedClient, Publish
from scanstation.collector.schema import migrate
from scanstation.collector.sink import KINDS, BatchResult, Message, Sink
from scanstation.config import Config
from scanstation.publish.connection import read_password, tls_context

log = logging.getLogger(__name__)

IDLE_FLUSH_S = 0.002
"""A batch is stored once no message arrived for this long (the broker's send window may be
smaller than the batch size), or when it is full, or after ``batch_linger_ms``."""


def client_id(config: Config) -> str:
    """``[mqtt] client_id``, else ``scanstation-collector-<device id>`` (stable per host)."""
    return config.mqtt.client_id or f"scanstation-collector-{config.device.id}"


def reply_topic(config: Config, device: str = "+") -> str:
    """Where a station answers this collector's commands: under the station's own reply
    space (``{prefix}/{device}/reply/…``), which the fleet ACL lets it publish to."""
    prefix = config.mqtt.topic_prefix.rstrip("/")
    return f"{prefix}/{device}/reply/collectors/{client_id(config)}"


def subscriptions(config: Config) -> list[str]:
    prefix = config.mqtt.topic_prefix.rstrip("/")
    return [f"$share/{config.collector.group}/{prefix}/+/{kind}" for kind in KINDS]


def read_secret(path: Any, what: str) -> str | None:
    if path is None:
        return None
    try:
        return str(path.read_text(encoding="utf-8")).strip() or None
    except OSError as exc:
        raise CollectorError(f"{what} {path}: cannot read it: {exc.strerror}") from None


def connect_database(config: Config) -> psycopg.Connection[Any]:
    """A psycopg connection to ``[collector] database`` (CollectorError naming the URI)."""
    dsn = config.collector.database
    if not dsn:
        raise CollectorError(
            'collector.database is not set; e.g. database = "postgresql://collector@db/fleet"'
        )
    password = read_secret(config.collector.password_file, "collector.password_file")
    try:
        return psycopg.connect(
            dsn,
            password=password,
            application_name=f"scanstation-collector {client_id(config)}"[:63],
            connect_timeout=10,
        )
    except psycopg.Error as exc:
        raise CollectorError(f"collector.database {_redacted(dsn)}: {exc}".strip()) from None


def _redacted(dsn: str) -> str:
    head, at, tail = dsn.rpartition("@")
    if not at or ":" not in head.partition("://")[2]:
        return dsn
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.partition(':')[0]}:***@{tail}"


@dataclass
class Stats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    acked: int = 0
    stale_acks: int = 0
    """Messages committed after their connection ended (the broker sends them again)."""
    connects: int = 0
    db_errors: int = 0


class Collector:
    """One collector: a persistent MQTT session on the shared subscriptions, one database."""

    def __init__(
        self,
        config: Config,
        *,
        on_batch: Callable[[list[Message], BatchResult], None] | None = None,
    ) -> None:
        if not config.mqtt.host:
            raise CollectorError("mqtt.host is not set: the collector needs the fleet's broker")
        self.config = config
        self.cfg = config.collector
        self.on_batch = on_batch
        self.stats = Stats()
        self.stop = threading.Event()
        self.connected = threading.Event()
        # One list per socket read (at most a 64 KiB chunk of messages, or one message):
        # about receive_maximum * 2 + 1024 station events of a kilobyte wait at most.
        self._queue: queue.Queue[list[Message]] = queue.Queue(
            max(16, (self.cfg.receive_maximum * 2 + 1024) // 64)
        )
        self._carry: list[Message] = []
        """Messages of a read that did not fit in the last batch."""
        self._lock = threading.Lock()
        self._generation = 0
        self._client = self._make_client()
        """The consuming connection: the shared subscriptions, acknowledged by hand."""
        self._commands = self._make_command_client()
        """A second connection (MQTT 5, clean) for outbox.replay, its replies, fleet alerts."""
        self.replies: queue.Queue[tuple[bytes | None, bytes]] = queue.Queue(1024)
        """Replies of stations to this collector's commands (the healer reads them)."""
        self._reply_topic = reply_topic(config)

    # -- MQTT --

    def _base_client(
        self, client_id: str, protocol: MQTTProtocolVersion, **kw: Any
    ) -> BufferedClient:
        mqtt = self.config.mqtt
        client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kw
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(10000)
        client.reconnect_delay_set(
            max(int(mqtt.reconnect_min_s), 1), max(int(mqtt.reconnect_max_s), 1)
        )
        if mqtt.username:
            client.username_pw_set(mqtt.username, read_password(mqtt.password_file))
        context = tls_context(mqtt)
        if context is not None:
            client.tls_set_context(context)
        return client

    def _make_client(self) -> BufferedClient:
        if self.cfg.protocol == "5":
            client = self._base_client(
                client_id(self.config),
                MQTTProtocolVersion.MQTTv5,
                manual_ack=True,
                on_publishes=self._on_publishes,
            )
        else:
            client = self._base_client(
                client_id(self.config),
                MQTTProtocolVersion.MQTTv311,
                manual_ack=True,
                clean_session=False,
                on_publishes=self._on_publishes,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _make_command_client(self) -> paho.Client:
        client = self._base_client(
            f"{client_id(self.config)}-commands"[:128], MQTTProtocolVersion.MQTTv5
        )
        client.on_connect = self._on_command_connect
        client.on_message = self._on_reply
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.cfg.session_expiry_s
        properties.ReceiveMaximum = self.cfg.receive_maximum
        return properties

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("collector: the broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.stats.connects += 1
        # Subscribing again on a present session is harmless; after a broker restart that
        # lost it, it is what brings the messages back.
        if self.cfg.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in subscriptions(self.config)])
        else:
            client.subscribe([(t, 1) for t in subscriptions(self.config)])
        log.info(
            "collector: connected to %s:%s as %s (MQTT %s, session %s)",
            self.config.mqtt.host,
            self.config.mqtt.port,
            client_id(self.config),
            self.cfg.protocol,
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()

    def _on_command_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(self._reply_topic, SubscribeOptions(qos=1))])

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            self._generation += 1
        self.connected.clear()
        if not self.stop.is_set():
            log.warning("collector: disconnected from the broker (%s); reconnecting", reason)

    def _on_reply(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        try:
            self.replies.put_nowait((correlation, bytes(message.payload)))
        except queue.Full:
            log.warning("collector: too many command replies waiting; dropped one")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """A message paho decoded itself (the first of a read, or one cut by a read's end)."""
        self._queue.put(
            [
                Message(
                    message.topic,
                    bytes(message.payload),
                    time.time(),
                    message.mid,
                    message.qos,
                    self._generation,
                )
            ]
        )

    def _on_publishes(self, publishes: list[Publish]) -> None:
        """The PUBLISH packets of one socket read, decoded by BufferedClient."""
        now = time.time()
        generation = self._generation
        self._queue.put(
            [Message(topic, body, now, mid, qos, generation) for topic, body, mid, qos in publishes]
        )

    def publish_command(
        self, device: str, name: str, payload: bytes, correlation: bytes, token: str | None
    ) -> None:
        """Send a command to a station, with the fleet's token and this collector's reply topic."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = reply_topic(self.config, device)
        properties.CorrelationData = correlation
        if token:
            properties.UserProperty = ("authorization", f"Bearer {token}")
        topic = f"{self.config.mqtt.topic_prefix.rstrip('/')}/{device}/cmd/{name}"
        self._commands.publish(topic, payload, qos=1, properties=properties)

    def publish_alert(self, payload: bytes) -> None:
        """A fleet alert on ``{prefix}/_fleet/alerts`` (QoS 1)."""
        topic = f"{self.config.mqtt.topic_prefix.rstrip('/')}/_fleet/alerts"
        self._commands.publish(topic, payload, qos=1)

    # -- the writer --

    def _ack(self, messages: list[Message]) -> None:
        """PUBACK the batch's messages (one write), those of the current connection only."""
        with self._lock:
            current = self._generation
            mids = [m.mid for m in messages if m.generation == current and m.qos == 1]
            fresh = sum(1 for m in messages if m.generation == current)
            self.stats.stale_acks += len(messages) - fresh
            self.stats.acked += fresh
            self._client.ack_many(mids)

    def _gather(self) -> list[Message]:
        size = self.cfg.batch_size
        batch, self._carry = self._carry[:size], self._carry[size:]
        if not batch:
            try:
                batch = self._queue.get(timeout=0.2)
            except queue.Empty:
                return []
        deadline = time.monotonic() + self.cfg.batch_linger_ms / 1000
        while len(batch) < size:
            wait = min(IDLE_FLUSH_S, deadline - time.monotonic())
            try:
                more = (
                    self._queue.get(timeout=max(wait, 0)) if wait > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            room = size - len(batch)
            batch.extend(more[:room])
            self._carry = more[room:]
        return batch

    def run(self) -> None:
        """Consume until ``stop`` is set (blocking; call from the process's main thread or one
        of its own). Database outages are waited out: nothing is acknowledged meanwhile."""
        from scanstation.collector.healer import Healer

        conn = connect_database(self.config)
        version = migrate(conn)
        log.info("collector: database schema version %d", version)
        sink = Sink(conn, self.config.mqtt.topic_prefix, self.cfg.retention_days)
        healer = Healer(self)
        healer_thread = threading.Thread(target=healer.run, name="collector-healer", daemon=True)
        mqtt = self.config.mqtt
        if self.cfg.protocol == "5":
            self._client.connect_async(
                mqtt.host,
                mqtt.port,
                mqtt.keepalive,
                clean_start=False,
                properties=self._connect_properties(),
            )
        else:
            self._client.connect_async(mqtt.host, mqtt.port, mqtt.keepalive)
        self._commands.connect_async(mqtt.host, mqtt.port, mqtt.keepalive, clean_start=True)
        self._client.loop_start()
        self._commands.loop_start()
        healer_thread.start()
        fleet = None
        if self.cfg.http:
            from scanstation.collector.fleet import FleetServer

            fleet = FleetServer(self.config).start()
        try:
            while not self.stop.is_set():
                batch = self._gather()
                if not batch:
                    continue
                result, conn, sink = self._store(batch, conn, sink)
                if result is None:
                    break  # stopping during a database outage: the broker keeps the batch
                self._ack(batch)
                s = self.stats
                s.received += len(batch)
                s.stored += result.stored
                s.duplicates += result.duplicates
                s.rejected += result.rejected
                s.batches += 1
                if self.on_batch is not None:
                    self.on_batch(batch, result)
        finally:
            self.stop.set()
            if fleet is not None:
                fleet.stop()
            self._client.disconnect()
            self._client.loop_stop()
            self._commands.disconnect()
            self._commands.loop_stop()
            healer_thread.join(5)
            conn.close()
            log.info("collector: stopped (%s)", self.stats)

    def _store_singly(self, batch: list[Message], sink: Sink) -> BatchResult:
        total = BatchResult()
        for message in batch:
            try:
                one = sink.store([message])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                sink.conn.rollback()
                log.error(
                    "collector: %s: the database refuses this message (%s); it is dropped: %r",
                    message.topic,
                    exc,
                    message.payload[:200],
                )
                total.rejected += 1
                continue
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.rejected += one.rejected
            total.expired += one.expired
            total.devices |= one.devices
        return total

    def _store(
        self, batch: list[Message], conn: psycopg.Connection[Any], sink: Sink
    ) -> tuple[BatchResult | None, psycopg.Connection[Any], Sink]:
        delay = 0.5
        singly = False
        while True:
            try:
                result = self._store_singly(batch, sink) if singly else sink.store(batch)
                return result, conn, sink
            except psycopg.OperationalError as exc:
                self.stats.db_errors += 1
                log.warning("collector: the database failed (%s); retrying in %.1f s", exc, delay)
            except psycopg.Error as exc:
                # The database refused the data (a payload PostgreSQL cannot hold, e.g. a lone
                # \ud800 escape): store the messages one by one so one cannot hold up the rest.
                self.stats.db_errors += 1
                conn.rollback()
                log.warning(
                    "collector: a batch of %d was refused (%s); storing one by one",
                    len(batch),
                    exc,
                )
                singly = True
                continue
            if self.stop.wait(delay):
                return None, conn, sink
            delay = min(delay * 2, 30)
            if conn.closed or conn.broken:
                try:
                    conn = connect_database(self.config)
                    sink = Sink(conn, self.config.mqtt.topic_prefix, self.cfg.retention_days)
                except CollectorError as exc:
                    log.warning("collector: %s", exc)
