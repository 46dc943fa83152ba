"""The MQTT link (SPEC §7): outbox drain, presence, telemetry and remote commands.

paho-mqtt 2.x is driven from the asyncio loop by a thin bridge (``Connection``): paho's socket
is watched with ``loop.add_reader``/``add_writer`` and every paho callback runs on the loop
thread, except the blocking TCP/TLS connect, which runs in a worker thread. A fresh paho client
is made for every connection, so nothing unacknowledged ever lives only in paho's memory: the
SQLite outbox is the durable copy, rows are deleted on PUBACK, and a new connection drains the
outbox again from its first row (consumers de-duplicate by ``event_id``).

aiomqtt is not used because it drops the MQTT 5 PUBACK reason code, which the dead-letter
rule needs, and waits on each publish with a timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scanstation import __version__
from scanstation.config import Config, MqttConfig
from scanstation.model import CaptureMode, MetadataError, validate_metadata
from scanstation.pipeline import Pipeline
from scanstation.store import MQTT_DESTINATION, NotFound, OutboxEvent, Store, StoreError
from scanstation.views import capture_json, iso, session_json

log = logging.getLogger(__name__)

COMMANDS = (
    "session.start",
    "session.end",
    "trigger",
    "capture.retry",
    "catalog.upsert",
    "telemetry.now",
)
"""Command names accepted on ``{prefix}/{device}/cmd/{name}``."""

PERMANENT_REFUSALS = {
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x99: "payload format invalid",
}
"""PUBACK reason codes that no retry can cure: the event goes to outbox_dead at once."""

QUOTA_EXCEEDED = 0x97
"""A throttling broker: retried after a pause, never dead-lettered for it."""

DRAIN_BATCH = 256
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
"""Linux's TCP_QUICKACK (None elsewhere)."""
STATS_INTERVAL_S = 2.0
STOP_TIMEOUT_S = 1.5
"""How long a clean stop may wait for the ``offline`` PUBACK and the DISCONNECT."""
CONNECT_TIMEOUT_S = 10.0
ACK_LINGER_S = 0.1
ACK_BATCH = 512
"""Acknowledged rows are deleted in batches: after ACK_LINGER_S or once ACK_BATCH gather."""
COMMAND_QUEUE = 256
CORRELATION_MEMORY = 1024
"""Correlation ids remembered (with their replies) so a repeated command runs once."""


class MqttError(Exception):
    """An MQTT connection or protocol failure; the message names the broker and the cause."""


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


# ---- pure helpers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one device under its prefix."""

    base: str
    """``{topic_prefix}/{device_id}``"""

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def commands(self) -> str:
        """The subscription filter for every command."""
        return f"{self.base}/cmd/+"

    def event(self, suffix: str) -> str:
        """An outbox topic: captures, noreads, alerts."""
        return f"{self.base}/{suffix}"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/reply"


def topics_for(config: Config) -> Topics:
    return Topics(f"{config.mqtt.topic_prefix.rstrip('/')}/{config.device.id}")


def client_id_for(config: Config) -> str:
    return config.mqtt.client_id or f"scanstation-{config.device.id}"


def status_payload(state: Literal["online", "offline"], config: Config, started_at: float) -> bytes:
    """The retained presence message (the ``offline`` one is also the Last Will)."""
    return json.dumps(
        {
            "state": state,
            "version": __version__,
            "started_at": iso(started_at),
            "device_id": config.device.id,
            "site": config.device.site,
        }
    ).encode()


def backoff_delay(attempt: int, low: float, high: float, rand: Callable[[], float]) -> float:
    """Jittered exponential reconnect delay: attempt 0 waits about ``low``, growing to ``high``.

    >>> backoff_delay(0, 0.5, 30, lambda: 1.0), backoff_delay(10, 0.5, 30, lambda: 1.0)
    (0.5, 30.0)
    """
    ceiling = min(high, low * 2 ** min(attempt, 30))
    # Jitter between half and all of the ceiling keeps a fleet from reconnecting in lockstep.
    return float(ceiling * (0.5 + 0.5 * rand()))


def refusal_kind(reason: int) -> Literal["ok", "dead", "throttled", "retry"]:
    """What a PUBACK reason code means for an outbox event."""
    if reason < 0x80:
        return "ok"  # includes 0x10 "no matching subscribers"
    if reason in PERMANENT_REFUSALS:
        return "dead"
    if reason == QUOTA_EXCEEDED:
        return "throttled"
    return "retry"


def reason_text(reason: int) -> str:
    try:
        name = ReasonCode(PacketTypes.PUBACK, identifier=reason).getName()
    except Exception:  # an unknown code is still worth reporting by number
        name = "unknown reason"
    return f"PUBACK reason 0x{reason:02X} ({name})"


def cpu_temperature() -> float | None:
    """The SoC temperature in °C from the kernel's first thermal zone (None off a Pi)."""
    try:
        text = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
        return round(int(text.strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def disk_free_mb(path: Path) -> float | None:
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return round(shutil.disk_usage(candidate).free / 1e6, 1)
    return None


def discovery_messages(config: Config) -> list[tuple[str, bytes]]:
    """Home Assistant MQTT discovery: one device, sensors for last scan, status and backlog.

    The sensors read the topics the station publishes anyway (captures, status, telemetry),
    so discovery adds no traffic beyond these retained config messages.
    """
    topics = topics_for(config)
    device_id = config.device.id
    node = f"scanstation_{device_id}".replace(".", "_").replace("-", "_")
    device = {
        "identifiers": [node],
        "name": f"scanstation {device_id}",
        "manufacturer": "scanstation",
        "model": "scanstation edge scanner",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    sensors: list[tuple[str, dict[str, Any]]] = [
        (
            "last_scan",
            {
                "name": "Last scan",
                "state_topic": topics.event("captures"),
                "value_template": "{{ value_json.raw_value[:250] }}",
                "json_attributes_topic": topics.event("captures"),
                "json_attributes_template": (
                    "{{ {'gtin': value_json.gtin, 'status': value_json.status, "
                    "'product': value_json.product_name, 'time': value_json.created} | tojson }}"
                ),
                "icon": "mdi:barcode-scan",
                **availability,
            },
        ),
        (
            "status",
            {
                "name": "Status",
                "state_topic": topics.status,
                "value_template": "{{ value_json.state }}",
                "icon": "mdi:lan-connect",
            },
        ),
        (
            "outbox_depth",
            {
                "name": "Outbox depth",
                "state_topic": topics.telemetry,
                "value_template": "{{ value_json.outbox.depth }}",
                "unit_of_measurement": "events",
                "state_class": "measurement",
                "icon": "mdi:tray-full",
                **availability,
            },
        ),
    ]
    messages = []
    for key, body in sensors:
        payload = {**body, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}"}
        payload["device"] = device
        topic = f"{config.mqtt.homeassistant_prefix}/sensor/{node}/{key}/config"
        messages.append((topic, json.dumps(payload).encode()))
    return messages


# ---- commands ----------------------------------------------------------------------------


class CommandError(Exception):
    """A command that cannot run: ``code`` is the reply's error code, ``field`` the culprit."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.correlation: bytes | None = None
        """The command's correlation id when it was read before the error was found."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionStart(_Body):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    metadata: dict[str, Any] | None = None
    source: str = Field("mqtt", max_length=40)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_limits(cls, value: Any) -> dict[str, Any]:
        try:
            return validate_metadata(value)
        except MetadataError as exc:
            raise ValueError(str(exc)) from None


class SessionEnd(_Body):
    session_public_id: str = Field(min_length=1, max_length=40)


class Trigger(_Body):
    source: str | None = Field(None, max_length=40)


class CaptureRetry(_Body):
    capture_public_id: str = Field(min_length=1, max_length=40)


class Empty(_Body):
    pass


_BODIES: dict[str, type[_Body]] = {
    "session.start": SessionStart,
    "session.end": SessionEnd,
    "trigger": Trigger,
    "capture.retry": CaptureRetry,
    "telemetry.now": Empty,
}


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command, ready to run."""

    name: str
    body: Any
    """The validated body: a pydantic model, or the product list for catalog.upsert."""
    correlation: bytes | None
    """MQTT 5 Correlation Data, else the payload's ``correlation_id`` encoded."""
    response_topic: str | None
    """MQTT 5 Response Topic, None for 3.1.1 (the reply goes to ``…/cmd/{name}/reply``)."""


def parse_command(
    name: str, payload: bytes, correlation: bytes | None, response_topic: str | None
) -> Command:
    """Validate a command message; CommandError names what is wrong."""
    if name not in COMMANDS:
        raise CommandError(
            "unknown_command",
            f"unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
        )
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise CommandError("bad_request", f"{name}: payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(
            "bad_request", f"{name}: payload must be a JSON object, got {type(data).__name__}"
        )
    if "correlation_id" in data:
        cid = data.pop("correlation_id")
        if not isinstance(cid, str | int) or isinstance(cid, bool) or len(str(cid)) > 128:
            raise CommandError(
                "invalid",
                f"{name}: correlation_id must be a string or number of at most 128 characters",
                "correlation_id",
            )
        correlation = correlation or str(cid).encode()
    try:
        return Command(name, _command_body(name, data), correlation, response_topic)
    except CommandError as exc:
        exc.correlation = correlation
        raise


def _command_body(name: str, data: dict[str, Any]) -> Any:
    if name == "catalog.upsert":
        return _catalog_products(data)
    try:
        return _BODIES[name].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            fields = ", ".join(_BODIES[name].model_fields) or "no fields"
            message = f"unknown field; {name} takes {fields}"
        raise CommandError("invalid", f"{name}: {where or 'payload'}: {message}", where) from None


def _catalog_products(data: dict[str, Any]) -> list[dict[str, Any]]:
    from scanstation.catalog import CatalogError, parse_products

    if "products" in data and (not isinstance(data["products"], list) or not data["products"]):
        raise CommandError(
            "invalid", "catalog.upsert: products must be a non-empty list", "products"
        )
    if len(data.get("products", [])) > 1000:
        raise CommandError(
            "invalid", "catalog.upsert: at most 1000 products per command", "products"
        )
    try:
        return parse_products(json.dumps(data), "catalog.upsert")
    except CatalogError as exc:
        raise CommandError("invalid", str(exc), "products") from None


def reply_payload(
    command: str, correlation: bytes | None, result: Any = None, error: CommandError | None = None
) -> bytes:
    body: dict[str, Any] = {"command": command, "ok": error is None}
    if correlation is not None:
        body["correlation_id"] = correlation.decode("utf-8", errors="backslashreplace")
    if error is None:
        body["result"] = result
    else:
        body["error"] = {"code": error.code, "message": str(error), "field": error.field}
    return json.dumps(body).encode()


# ---- the paho bridge ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message received on a subscription."""

    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    response_topic: str | None


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Everything needed to open one connection (built fresh for every attempt)."""

    host: str
    port: int
    client_id: str
    protocol: Literal["5", "3.1.1"]
    keepalive: int
    username: str
    password: str | None
    will_topic: str
    will_payload: bytes
    tls: ssl.SSLContext | None


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for the broker (server verified unless ``insecure``); None without TLS."""
    tls = config.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
        if tls.cert is not None:
            context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(
            f"mqtt.tls: cannot load the CA or client certificate ({exc}); check ca, cert and key"
        ) from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.alpn:
        context.set_alpn_protocols(tls.alpn)
    return context


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise MqttError(f"mqtt.password_file {path}: cannot read it: {exc.strerror}") from None


class Connection:
    """One paho client on the asyncio loop: connect, publish with PUBACK futures, receive.

    Every method must be called on the loop thread. ``closed`` resolves (with the reason)
    when the connection ends for any reason; pending publishes then fail with MqttError.
    """

    def __init__(
        self, options: ConnectOptions, on_message: Callable[[Incoming], None] | None = None
    ) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_message_cb = on_message
        protocol = (
            MQTTProtocolVersion.MQTTv5 if options.protocol == "5" else MQTTProtocolVersion.MQTTv311
        )
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=protocol,
            clean_session=None if options.protocol == "5" else True,
            reconnect_on_failure=False,
        )
        self.client.connect_timeout = 5.0
        # The outbox window bounds what we send; paho must not queue on top of it.
        self.client.max_inflight_messages_set(1000)
        if options.username:
            self.client.username_pw_set(options.username, options.password)
        self.client.will_set(options.will_topic, options.will_payload, qos=1, retain=True)
        if options.tls is not None:
            self.client.tls_set_context(options.tls)
        self.connack: asyncio.Future[tuple[int, Properties | None]] = self.loop.create_future()
        self.closed: asyncio.Future[str] = self.loop.create_future()
        self._acks: dict[int, asyncio.Future[int]] = {}
        self._early_acks: dict[int, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_socket_register_write
        c.on_socket_unregister_write = self._on_socket_unregister_write

    @property
    def broker(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    # -- opening and closing --

    async def open(self, limit_s: float = CONNECT_TIMEOUT_S) -> Properties | None:
        """Connect and wait for an accepted CONNACK; MqttError otherwise."""
        options = self.options

        def connect() -> None:
            # Blocking: DNS, TCP, the TLS handshake; paho then queues CONNECT for the loop.
            self.client.connect(
                options.host,
                options.port,
                keepalive=options.keepalive,
                clean_start=True if options.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
            )

        try:
            await _in_daemon_thread(connect)
        except ssl.SSLCertVerificationError as exc:
            raise MqttError(
                f"TLS to {self.broker}: the broker's certificate was not verified "
                f"({exc.verify_message}); check mqtt.tls.ca"
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise MqttError(f"cannot connect to {self.broker}: {exc}") from None
        try:
            async with asyncio.timeout(limit_s):
                rc, properties = await asyncio.shield(self.connack)
        except TimeoutError:
            self.abort("no CONNACK")
            raise MqttError(f"{self.broker} sent no CONNACK within {limit_s:.0f} s") from None
        except MqttError:
            self.abort("connection closed before CONNACK")
            raise
        if rc != 0:
            self.abort("CONNACK refused")
            raise ConnectRefused(rc, self.broker)
        return properties

    async def close(self, limit_s: float = 0.5) -> None:
        """Send DISCONNECT (the broker then drops the Will) and wait briefly for the socket."""
        if self.closed.done():
            return
        self.client.disconnect()
        with contextlib.suppress(TimeoutError, MqttError):
            async with asyncio.timeout(limit_s):
                await asyncio.shield(self.closed)
        self.abort("closed")

    def abort(self, reason: str) -> None:
        """Drop the connection at once (no DISCONNECT)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
                self.loop.remove_writer(sock.fileno())
        with contextlib.suppress(Exception):
            self.client._sock_close()  # paho has no public "close now"
        self._closed(reason)

    # -- publishing --

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[int]:
        """Publish; the future resolves with the PUBACK reason code (0 at once for QoS 0)."""
        if self.closed.done():
            raise MqttError(f"not connected to {self.broker}")
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        future: asyncio.Future[int] = self.loop.create_future()
        if qos == 0:
            future.set_result(0)
        elif (early := self._early_acks.pop(info.mid, None)) is not None:
            # paho may call on_publish before publish() returns (paho #361, #482).
            future.set_result(early)
        else:
            self._acks[info.mid] = future
        return future

    async def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        result, mid = self.client.subscribe(topic, qos=qos)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe to {topic!r} failed: {paho.error_string(result)}")
        future: asyncio.Future[list[int]] = self.loop.create_future()
        self._subacks[mid] = future
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await future

    # -- paho callbacks (all on the loop thread, except socket_open/register_write) --

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self.connack.done():
            self.connack.set_result((reason_code.value, properties))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        text = "disconnected" if reason_code.value == 0 else f"connection lost: {reason_code}"
        self._closed(text)

    def _closed(self, reason: str) -> None:
        if not self.connack.done():
            self.connack.set_exception(MqttError(f"{self.broker}: {reason}"))
            self.connack.exception()  # mark retrieved: nobody may be waiting any more
        if not self.closed.done():
            self.closed.set_result(reason)
        error = MqttError(f"{self.broker}: {reason}")
        for futures in (self._acks, self._subacks):
            for future in futures.values():
                if not future.done():
                    future.set_exception(error)
                    future.exception()
            futures.clear()
        if self._misc is not None:
            self._misc.cancel()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._acks.pop(mid, None)
        if future is None:
            self._early_acks[mid] = reason_code.value
        elif not future.done():
            future.set_result(reason_code.value)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        future = self._subacks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result([rc.value for rc in reason_codes])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_message_cb is None:
            return
        props = message.properties
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        self._on_message_cb(
            Incoming(message.topic, bytes(message.payload), message.retain, correlation, response)
        )

    def _call_on_loop(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            # The loop may be gone if the daemon stopped while this connect was under way.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        raw = getattr(sock, "_sock", sock)  # paho may wrap it (websockets)
        with contextlib.suppress(OSError, AttributeError):
            # Small packets back to back (a batch of events, the broker's PUBACKs): without
            # this, Nagle's algorithm holds the second until the first is acknowledged.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def start() -> None:
            if self.closed.done():  # abandoned while connecting: close, do not watch
                with contextlib.suppress(Exception):
                    self.client._sock_close()
                return
            self.loop.add_reader(sock.fileno(), self._readable)
            self._misc = self.loop.create_task(self._misc_loop(), name="mqtt-misc")

        # Called from the connect thread: hand the socket to the loop.
        self._call_on_loop(start)

    def _readable(self) -> None:
        sock = self._sock
        if QUICKACK is not None and sock is not None:
            # Acknowledge at once: a broker without TCP_NODELAY (Mosquitto's default) holds
            # each PUBACK after the first of a burst until our delayed ACK (up to 40 ms).
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        try:
            while True:
                rc = self.client.loop_read()
                # An SSL socket can hold decoded bytes select() does not see (paho #131).
                sock = self.client.socket()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not (
                    sock is not None and hasattr(sock, "pending") and sock.pending() > 0
                ):
                    break
        except Exception as exc:  # a broken socket: the connection is over
            self.abort(f"read failed: {exc}")

    def _writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception as exc:
            self.abort(f"write failed: {exc}")

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()

        def stop() -> None:
            if fileno > -1:
                self.loop.remove_reader(fileno)
                self.loop.remove_writer(fileno)

        self._call_on_loop(stop)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()
        self._call_on_loop(lambda: self.loop.add_writer(fileno, self._writable))

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()

        def stop() -> None:
            self.loop.remove_writer(fileno)

        self._call_on_loop(stop)

    async def _misc_loop(self) -> None:
        # Keepalive PINGREQs and the ping-timeout check.
        while self.client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 (paho polls)
            await asyncio.sleep(1)
        self._closed("keepalive timed out")


async def _in_daemon_thread(work: Callable[[], None]) -> None:
    """Run blocking ``work`` in a daemon thread: a connect stuck in DNS or TCP must not hold
    up the daemon's exit (the default executor is joined when the loop closes)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="mqtt-connect", daemon=True).start()
    await future


class ConnectRefused(MqttError):
    """A CONNACK with a failure reason code."""

    def __init__(self, reason: int, broker: str) -> None:
        try:
            name = ReasonCode(PacketTypes.CONNACK, identifier=reason).getName()
        except Exception:
            name = "unknown reason"
        hint = ""
        if reason in (0x86, 0x87, 4, 5):
            hint = "; check mqtt.username and mqtt.password_file"
        super().__init__(f"{broker} refused the connection: {name} (0x{reason:02X}){hint}")
        self.reason = reason

    @property
    def unsupported_protocol(self) -> bool:
        return self.reason in (0x84, 1)


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
    ) -> None:
        self.config = config
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
        self._c = _Counters()
        self._conn: Connection | None = None
        self._acked: list[int] = []
        self._acked_ids: set[int] = set()
        self._dead_ids: set[int] = set()
        self._flush_wanted = asyncio.Event()
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
        )

    async def refresh_stats(self) -> None:
        depth, oldest = await self.store.outbox_stats()
        row = await self.store.fetchone(
            "SELECT COUNT(*) FROM outbox_dead WHERE destination = ?", (MQTT_DESTINATION,)
        )
        self._c.outbox_depth, self._c.outbox_oldest = depth, oldest
        self._c.dead_letters = int(row[0]) if row else 0

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
        await conn.publish(
            self.topics.status,
            status_payload("online", self.config, self.started_at),
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
                    offline = status_payload("offline", self.config, self.started_at)
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

        Each pass reads the oldest rows and skips those already handled (in flight, acked
        and awaiting deletion, being dead-lettered, waiting for a retry). There is no
        "after id" cursor: SQLite reuses the highest rowid once that row is deleted, so a
        new event can carry the id of one just acknowledged.
        """
        changed = self.store.outbox_changed
        while True:
            changed.clear()
            busy = len(self._in_flight) + len(self._acked_ids) + len(self._dead_ids)
            # Rows deleted before this read cannot show up in it; rows deleted while it runs
            # can, and are recognised by this set.
            self._just_deleted = set()
            rows = await self.store.outbox_batch(0, busy + len(drain.retries) + DRAIN_BATCH)
            # Read after the await: a refusal that arrived during the read put its event
            # among the retries, and it must not go out again at once as if fresh.
            waiting = {e.id for _, e in drain.retries}
            fresh = [e for e in rows if e.id not in waiting and not self._handled(e.id)]
            now = time.monotonic()
            due = [event for when, event in drain.retries if when <= now]
            if due:
                drain.retries = [(w, e) for w, e in drain.retries if w > now]
            if not fresh and not due:
                wait = min((w for w, _ in drain.retries), default=None)
                timeout = None if wait is None else max(wait - now, 0.01)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await changed.wait()
                continue
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
        topic = self.topics.event(event.topic)
        # Fixed header (≤ 5) + topic + packet id + properties: 64 bytes covers it.
        size = len(payload) + len(topic.encode()) + 64
        if size > drain.max_bytes:
            _release(drain.window, permits)
            self._bury(
                event,
                f"payload of {len(payload)} bytes is over the limit of {drain.max_bytes} bytes "
                "(mqtt.max_payload_bytes or the broker's maximum packet size)",
            )
            return
        try:
            future = conn.publish(topic, payload, qos=1)
        except MqttError:
            _release(drain.window, permits)
            raise
        self._c.in_flight += 1
        self._in_flight[event.id] = event
        future.add_done_callback(lambda f: self._on_ack(drain, event, permits, f))

    def _on_ack(
        self, drain: _Drain, event: OutboxEvent, permits: int, future: asyncio.Future[int]
    ) -> None:
        _release(drain.window, permits)
        self._c.in_flight = max(self._c.in_flight - 1, 0)
        if future.cancelled() or future.exception() is not None:
            return  # the connection is gone: the row stays and the next connection sends it
        self._in_flight.pop(event.id, None)
        self._suspects.pop(event.id, None)
        reason = future.result()
        kind = refusal_kind(reason)
        if kind == "ok":
            self._c.published += 1
            self._acked.append(event.id)
            self._acked_ids.add(event.id)
            self._flush_wanted.set()
            for hook in self.on_delivered:
                hook(event)
            return
        self._c.refused += 1
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
        async def op(db: Any) -> None:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, row_id),
            )

        await self.store.write(op)

    async def _move_to_dead(self, row_id: int, error: str) -> None:
        now = time.time()

        async def op(db: Any) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO outbox_dead (id, destination, topic, event_id, seq, "
                "payload, created, attempts, last_error, died) "
                "SELECT id, destination, topic, event_id, seq, payload, created, attempts + 1, "
                "?, ? FROM outbox WHERE id = ?",
                (error, now, row_id),
            )
            await db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

        try:
            await self.store.write(op)
        finally:
            self._dead_ids.discard(row_id)
            self._just_deleted.add(row_id)
            self.store.outbox_changed.set()
        self._c.dead_letters += 1

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            if len(self._acked) < ACK_BATCH:
                # Gather acknowledgements for a moment: one deleting transaction (one fsync
                # on the writer the pipeline shares) per batch instead of one per event.
                await asyncio.sleep(ACK_LINGER_S)
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
            await self.store.outbox_delete(ids)
        except BaseException:
            self._acked = ids + self._acked
            raise
        self._acked_ids.difference_update(ids)
        self._just_deleted.update(ids)
        # A new row may have taken a deleted row's id while it was skipped: look again.
        self.store.outbox_changed.set()

    async def _stats_loop(self) -> None:
        while True:
            try:
                await self.refresh_stats()
            except Exception:  # statistics must never take the link down
                log.exception("MQTT: reading outbox statistics failed")
            await asyncio.sleep(STATS_INTERVAL_S)

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
                "depth": state.outbox_depth,
                "oldest_age_s": state.outbox_oldest_age_s,
                "dead": state.dead_letters,
                "in_flight": state.in_flight,
            },
            "mqtt": {
                "reconnects": state.reconnects,
                "published": state.published,
                "refused": state.refused,
                "protocol": state.protocol,
            },
            "cpu_temp_c": cpu_temperature(),
            "disk_free_mb": disk_free_mb(self.config.storage.path),
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
            await self.handle_command(conn, message)

    async def handle_command(self, conn: Connection, message: Incoming) -> None:
        name = self.topics.command_name(message.topic) or message.topic
        self._c.commands += 1
        correlation = message.correlation
        response_topic = message.response_topic
        try:
            command = parse_command(name, message.payload, correlation, response_topic)
        except CommandError as exc:
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
                session = await self.store.create_session(
                    capture_mode=CaptureMode(body.capture_mode),
                    metadata=body.metadata,
                    source=body.source,
                )
                self.pipeline.bus.publish("session", session_json(session))
                return session_json(session)
            case "session.end":
                session = await self.store.end_session(body.session_public_id)
                self.pipeline.bus.publish("session", session_json(session))
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
