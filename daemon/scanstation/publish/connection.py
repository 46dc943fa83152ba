"""One MQTT connection on paho's network thread, with asyncio faces: connect, publish, subscribe."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from scanstation.config import MqttConfig
from scanstation.publish import PublishError

PERMANENT_REFUSALS = {
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x99: "payload format invalid",
}
"""PUBACK reason codes that no retry can cure: the event goes to outbox_dead at once."""


QUOTA_EXCEEDED = 0x97
"""A throttling broker: retried after a pause, never dead-lettered for it."""


QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
"""Linux's TCP_QUICKACK (None elsewhere)."""


CONNECT_TIMEOUT_S = 10.0


class MqttError(PublishError):
    """An MQTT connection or protocol failure; the message names the broker and the cause."""


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


# ---- the paho bridge ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message received on a subscription."""

    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    response_topic: str | None
    authorization: str | None = None
    """The MQTT 5 ``authorization`` user property (the first one), None without one."""


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
    tls_files: str = ""
    """The TLS files in use, named in errors, e.g. "mqtt.tls.ca = '/etc/…/ca.pem'"."""


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for the broker (server verified unless ``insecure``); None without TLS."""
    tls = config.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    except OSError as exc:
        raise MqttError(_tls_file_error("mqtt.tls.ca", tls.ca, exc, "a PEM CA bundle")) from None
    if tls.cert is not None:
        try:
            context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
        except OSError as exc:
            pair = f"mqtt.tls.cert = '{tls.cert}'" + (
                f" with mqtt.tls.key = '{tls.key}'" if tls.key else ""
            )
            if isinstance(exc, ssl.SSLError):
                raise MqttError(
                    f"{pair}: the client certificate does not load ({exc.reason or exc}); "
                    "expected a PEM certificate and its own private key"
                ) from None
            raise MqttError(
                f"{pair}: cannot read it ({exc.strerror or exc}); expected a PEM certificate "
                "and its own private key"
            ) from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.alpn:
        context.set_alpn_protocols(tls.alpn)
    return context


def _handshake_refused(exc: BaseException) -> bool:
    """A TLS handshake the peer answered with a reset, an EOF or not-TLS bytes."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        return True
    return isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError)


def tls_handshake_hint(exc: BaseException, broker: str) -> str:
    """What a failed TLS handshake most likely means ("" when it is not one): a peer that
    resets or answers non-TLS bytes is a plain MQTT listener, not a TLS one."""
    if not _handshake_refused(exc):
        return ""
    port = broker.rsplit(":", 1)[-1]
    return (
        f"TLS handshake with {broker} failed ({_reason(exc)}): the broker does not seem to "
        f"speak TLS on port {port} (a plain MQTT listener? 1883 is plain by convention, 8883 "
        "TLS); point mqtt.port at the broker's TLS listener, or remove [mqtt.tls] for a "
        "plain one"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def tls_files(config: MqttConfig) -> str:
    """The TLS files a config names, for error messages."""
    tls = config.tls
    if tls is None:
        return ""
    named = [(k, v) for k, v in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)) if v]
    if not named:
        return "mqtt.tls: the system CA bundle"
    return ", ".join(f"mqtt.tls.{k} = '{v}'" for k, v in named)


def _tls_file_error(key: str, path: Path | None, exc: OSError, expected: str) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{key} = '{path}': not {expected} ({exc.reason or exc})"
    return f"{key} = '{path}': cannot read it ({exc.strerror or exc}); expected {expected}"


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise MqttError(f"mqtt.password_file {path}: cannot read it: {exc.strerror}") from None


READ_CHUNK = 65536
"""Bytes taken from the socket per read: every PUBACK a readable event brings, at once."""


WRITE_CHUNK = 65536
"""Queued packets are joined into one buffer (one send) up to this many bytes."""


_PUBLISH = int(paho.PUBLISH)
_PUBACK = int(paho.PUBACK)
_DISCONNECT = int(paho.DISCONNECT)


def _puback_reasons() -> frozenset[int]:
    codes = set()
    for code in range(256):
        with contextlib.suppress(Exception):
            ReasonCode(PacketTypes.PUBACK, identifier=code)
            codes.add(code)
    return frozenset(codes)


PUBACK_REASONS = _puback_reasons()
"""The PUBACK reason codes paho decodes; it takes any other for a malformed packet (and
drops the connection): such a PUBACK is left to paho, so it goes the same way."""


def _joinable(command: int, qos: int) -> bool:
    """Packets paho's write does nothing with once sent (not QoS 0 PUBLISH, not DISCONNECT)."""
    kind = command & 0xF0
    return kind != _DISCONNECT and not (kind == _PUBLISH and qos == 0)


class _Client(paho.Client):
    """paho's client with cheaper reads and writes for the outbox's stream of QoS 1 messages.

    Reads: paho reads each packet with a recv() per header byte and one for the rest: three
    system calls per PUBACK. Here one recv takes what the socket holds and paho's reads are
    served from it; ``buffered`` says what is left, since the loop's reader is not woken for
    it. A plain PUBACK (no properties) found in that buffer is settled here (``on_puback``:
    packet id and reason code as ints), without paho's per-packet ReasonCode and Properties
    objects; any other packet goes through paho.

    Writes: paho sends each queued packet with a send() of its own; here packets queued back
    to back are joined into one buffer, so a burst of PUBLISH packets is one send (one trip
    through the kernel's loopback or TCP stack instead of one per message).
    """

    _chunk = b""
    _pos = 0
    on_puback: Callable[[int, int], None] | None = None
    """Called with (packet id, reason code) for a PUBACK of a message paho has in flight."""

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._chunk):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there
            if len(data) <= bufsize:
                return data  # b"" is the end of the stream: paho closes
            self._chunk, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._chunk))
        return self._chunk[start : self._pos]

    def buffered(self) -> int:
        return len(self._chunk) - self._pos

    def _packet_read(self) -> MQTTErrorCode:
        if self.on_puback is None or self._in_packet["command"] != 0:
            return super()._packet_read()
        if self._pos >= len(self._chunk):
            try:
                data = paho.Client._sock_recv(self, READ_CHUNK)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._chunk, self._pos = data, 0
        if self._pubacks() == 0:
            return super()._packet_read()  # another packet, or a PUBACK not whole yet
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _pubacks(self) -> int:
        """Settle the plain PUBACKs at the head of the buffer; how many."""
        chunk, pos, end = self._chunk, self._pos, len(self._chunk)
        v5 = self._protocol == paho.MQTTv5
        on_puback = self.on_puback
        assert on_puback is not None
        out = self._out_messages
        with self._out_message_mutex:  # as paho holds it around its on_publish
            settled = self._settle(chunk, pos, end, v5, on_puback, out)
        if settled:
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
        return settled

    def _settle(
        self,
        chunk: bytes,
        pos: int,
        end: int,
        v5: bool,
        on_puback: Callable[[int, int], None],
        out: dict[int, paho.MQTTMessage],
    ) -> int:
        """The loop of ``_pubacks``: one PUBACK after the other from ``pos``."""
        settled = 0
        while pos + 4 <= end and chunk[pos] == _PUBACK:
            length = chunk[pos + 1]
            if pos + 2 + length > end:
                break  # not whole yet: paho reads the rest
            if length == 2:
                reason = 0
            elif v5 and length == 3:
                reason = chunk[pos + 4]
            elif v5 and length == 4 and chunk[pos + 5] == 0:
                reason = chunk[pos + 4]  # an empty property list
            else:
                break  # properties, a longer length or a malformed packet: paho decides
            if reason not in PUBACK_REASONS:
                break
            mid = (chunk[pos + 2] << 8) | chunk[pos + 3]
            pos += 2 + length
            self._pos = pos
            settled += 1
            message = out.pop(mid, None)
            if message is None:
                continue  # paho ignores a PUBACK for no message of its own
            on_puback(mid, reason)
            # paho's _set_as_published, without taking and notifying the info's Condition:
            # no thread waits on these (Connection hands out packet ids, never the infos).
            message.info._published = True
            if message.qos > 0:
                self._inflight_messages -= 1
                if self._max_inflight_messages > 0:
                    rc = self._update_inflight()
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return settled
        return settled

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: paho.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        out = self._out_packet
        if out and _joinable(command, qos):
            tail = out[-1]
            if (
                _joinable(tail["command"], tail["qos"])
                and tail["to_process"] + len(packet) <= WRITE_CHUNK
            ):
                buffer = tail["packet"]
                if not isinstance(buffer, bytearray):
                    buffer = tail["packet"] = bytearray(buffer)
                buffer += packet
                tail["to_process"] += len(packet)
                self._call_socket_register_write()
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_queue(command, packet, mid, qos, info)


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
        self.client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=protocol,
            clean_session=None if options.protocol == "5" else True,
            reconnect_on_failure=False,
        )
        self.client.connect_timeout = 5.0
        # The outbox window bounds what we send; paho must not queue on top of it (0: no
        # limit of its own, and no walk over its messages on each PUBACK to find queued ones).
        self.client.max_inflight_messages_set(0)
        self.client.on_puback = self._on_puback
        if options.username:
            self.client.username_pw_set(options.username, options.password)
        self.client.will_set(options.will_topic, options.will_payload, qos=1, retain=True)
        if options.tls is not None:
            self.client.tls_set_context(options.tls)
        self.connack: asyncio.Future[tuple[int, Properties | None]] = self.loop.create_future()
        self.closed: asyncio.Future[str] = self.loop.create_future()
        self._acks: dict[int, asyncio.Future[int] | Callable[[int], None]] = {}
        """PUBACK waiters by packet id: a future (``publish``) or a callback (``send``)."""
        self._early_acks: dict[int, int] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._flush_soon = False
        """A write of paho's queued packets is scheduled (call_soon) on the loop."""
        self._writer_fd = -1
        """The socket watched for writability (a send that would block), -1 when not."""
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
            if options.tls is not None and (hint := tls_handshake_hint(exc, self.broker)):
                files = f" ({options.tls_files})" if options.tls_files else ""
                raise MqttError(hint + files) from None
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
        self._writer_fd = -1
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
        future: asyncio.Future[int] = self.loop.create_future()
        mid = self._publish(topic, payload, qos, retain, properties)
        if qos == 0:
            future.set_result(0)
        elif (early := self._early_acks.pop(mid, None)) is not None:
            # paho may call on_publish before publish() returns (paho #361, #482).
            future.set_result(early)
        else:
            self._acks[mid] = future
        return future

    def send(self, topic: str, payload: bytes, on_ack: Callable[[int], None]) -> None:
        """Publish QoS 1 without a future: ``on_ack(reason code)`` is called on the loop
        thread when the PUBACK arrives, and never if the connection ends first (the outbox
        drain's path: one call per event instead of a future and its scheduled callback)."""
        mid = self._publish(topic, payload, 1, False, None)
        if (early := self._early_acks.pop(mid, None)) is not None:
            on_ack(early)
        else:
            self._acks[mid] = on_ack

    def _publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> int:
        if self.closed.done():
            raise MqttError(f"not connected to {self.broker}")
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        return info.mid

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
        waiters: list[Any] = [*self._acks.values(), *self._subacks.values()]
        self._acks.clear()
        self._subacks.clear()
        for future in waiters:
            # A send() callback is dropped: its event stays in the outbox for the next link.
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_exception(error)
                future.exception()
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
        self._on_puback(mid, reason_code.value)

    def _on_puback(self, mid: int, reason: int) -> None:
        waiter = self._acks.pop(mid, None)
        if waiter is None:
            self._early_acks[mid] = reason
        elif not isinstance(waiter, asyncio.Future):
            waiter(reason)
        elif not waiter.done():
            waiter.set_result(reason)

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
        user = getattr(props, "UserProperty", None) if props is not None else None
        authorization = next(
            (str(v) for k, v in (user or ()) if str(k).lower() == "authorization"), None
        )
        self._on_message_cb(
            Incoming(
                message.topic,
                bytes(message.payload),
                message.retain,
                correlation,
                response,
                authorization,
            )
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
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                # Bytes already read (ours, or decoded by an SSL socket: paho #131) wake no
                # reader: go on while there are some.
                sock = self.client.socket()
                if not self.client.buffered() and not (
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

    def _flush(self) -> None:
        """Send what paho queued since the last write: one send for a burst of publishes.
        Only a send that would block waits for the socket to be writable."""
        self._flush_soon = False
        if self.closed.done() or self._writer_fd >= 0:
            return  # closed, or the writer callback is already armed and will send it
        self._writable()
        sock = self._sock
        if self.client.want_write() and sock is not None and not self.closed.done():
            self._writer_fd = sock.fileno()
            self.loop.add_writer(self._writer_fd, self._writable)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()

        def stop() -> None:
            if fileno > -1:
                self.loop.remove_reader(fileno)
                self.loop.remove_writer(fileno)
            self._writer_fd = -1

        self._call_on_loop(stop)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Packets were queued: write them once the current callback is done (a burst of
        # publishes then goes out in one send), not on the next poll for writability.
        if threading.get_ident() != self._loop_thread:
            self._call_on_loop(lambda: self._on_socket_register_write(client, userdata, sock))
        elif not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._flush)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def stop() -> None:
            if self._writer_fd >= 0:
                self.loop.remove_writer(self._writer_fd)
                self._writer_fd = -1

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
