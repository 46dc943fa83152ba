"""The paho client subclass under the MQTT link: joined writes and PUBACKs read from its buffer.

A real paho client on one end of a socket pair, the test playing the broker on the other:
what goes over the wire is checked byte for byte, and paho's own bookkeeping (its in-flight
messages and their ``MQTTMessageInfo``) must end as paho itself leaves it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from mosquitto import Broker, broker_fixture  # noqa: F401 (the broker fixture)
from scanstation.publish.connection import PUBACK_REASONS, Connection, ConnectOptions, _Client

Wire = tuple[_Client, socket.socket]


def _wire(protocol: MQTTProtocolVersion, deferred: bool) -> Iterator[Wire]:
    client = _Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.settimeout(2)
    client._sock = ours
    client.max_inflight_messages_set(0)
    if deferred:
        # As on the asyncio loop: queued packets wait for loop_write.
        client.on_socket_register_write = lambda *args: None
    try:
        yield client, broker
    finally:
        ours.close()
        broker.close()


@pytest.fixture
def v5() -> Iterator[Wire]:
    yield from _wire(MQTTProtocolVersion.MQTTv5, deferred=True)


@pytest.fixture
def v311() -> Iterator[Wire]:
    yield from _wire(MQTTProtocolVersion.MQTTv311, deferred=True)


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, body) of each MQTT packet in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        pos += 1
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append((first, data[pos : pos + length]))
        pos += length
    assert pos == len(data), "a packet cut short"
    return out


def _publish_fields(body: bytes, v5: bool) -> tuple[str, int, bytes]:
    topic_len = int.from_bytes(body[:2], "big")
    topic = body[2 : 2 + topic_len].decode()
    mid = int.from_bytes(body[2 + topic_len : 4 + topic_len], "big")
    rest = body[4 + topic_len :]
    if v5:
        assert rest[0] == 0  # no properties
        rest = rest[1:]
    return topic, mid, rest


def _recv_all(sock: socket.socket) -> bytes:
    data = sock.recv(1 << 20)
    sock.settimeout(0.05)
    try:
        while more := sock.recv(1 << 20):
            data += more
    except TimeoutError:
        pass
    finally:
        sock.settimeout(2)
    return data


def _recorders(client: _Client) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    fast: list[tuple[int, int]] = []
    slow: list[tuple[int, int]] = []
    client.on_puback = lambda mid, reason: fast.append((mid, reason))

    def on_publish(c: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        slow.append((mid, reason.value))

    client.on_publish = on_publish
    return fast, slow


def test_publishes_queued_back_to_back_go_out_in_one_send(v5: Wire) -> None:
    client, broker = v5
    payloads = [f'{{"n": {i}, "pad": "{"x" * 900}"}}'.encode() for i in range(5)]
    mids = [client.publish("st/bench/captures", p, qos=1).mid for p in payloads]
    assert len(client._out_packet) == 1  # joined into one buffer
    sends = 0
    real_send = client._sock_send

    def counting_send(buf: bytes | bytearray) -> int:
        nonlocal sends
        sends += 1
        return real_send(buf)

    client._sock_send = counting_send  # type: ignore[method-assign]
    assert client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert sends == 1
    assert not client.want_write()
    packets = _packets(_recv_all(broker))
    assert [first for first, _ in packets] == [0x32] * 5  # PUBLISH, QoS 1
    fields = [_publish_fields(body, v5=True) for _, body in packets]
    assert fields == [("st/bench/captures", m, p) for m, p in zip(mids, payloads, strict=True)]


def test_qos0_and_disconnect_are_not_joined(v5: Wire) -> None:
    # paho's write acts on these once sent (on_publish for QoS 0, closing after DISCONNECT).
    client, broker = v5
    client.publish("a", b"1", qos=1)
    client.publish("a", b"2", qos=1)
    client.publish("t", b"telemetry", qos=0)
    client.publish("a", b"3", qos=1)
    assert len(client._out_packet) == 3
    published: list[int] = []
    client.on_publish = lambda c, u, mid, reason, props: published.append(mid)
    client.loop_write()
    assert published == [3]  # the QoS 0 message, once written
    kinds = [first for first, _ in _packets(_recv_all(broker))]
    assert kinds == [0x32, 0x32, 0x30, 0x32]


def test_a_partial_send_keeps_the_rest_of_the_joined_buffer(v5: Wire) -> None:
    client, broker = v5
    payload = b"y" * 30000
    for _ in range(2):
        client.publish("big", payload, qos=1)
    real_send = client._sock_send
    client._sock_send = lambda buf: real_send(buf[:1000])  # type: ignore[method-assign]
    client.loop_write()
    client._sock_send = real_send  # type: ignore[method-assign]
    while client.want_write():
        client.loop_write()
    packets = _packets(_recv_all(broker))
    assert [_publish_fields(body, v5=True)[2] for _, body in packets] == [payload, payload]


def test_plain_pubacks_are_settled_from_the_read_buffer(v5: Wire) -> None:
    client, broker = v5
    fast, slow = _recorders(client)
    infos = [client.publish("a", b"x", qos=1) for _ in range(5)]
    client.loop_write()
    _recv_all(broker)
    m = [info.mid for info in infos]
    broker.sendall(
        bytes([0x40, 2, 0, m[0]])  # 3.1.1-style, success
        + bytes([0x40, 3, 0, m[1], 0x10])  # no matching subscribers
        + bytes([0x40, 4, 0, m[2], 0x00, 0])  # an empty property list
        + bytes([0x40, 9, 0, m[3], 0x80, 5, 0x1F, 0, 2])
        + b"no"  # a reason string: paho's
        + bytes([0x40, 3, 0, 99, 0x00])  # a packet id paho never sent: ignored
    )
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert fast == [(m[0], 0), (m[1], 0x10), (m[2], 0)]
    assert slow == [(m[3], 0x80)]
    assert [info.is_published() for info in infos] == [True, True, True, True, False]
    assert list(client._out_messages) == [m[4]]
    assert client._inflight_messages == 1


def test_a_reason_code_paho_does_not_know_is_left_to_paho(v5: Wire) -> None:
    # Mosquitto's message_size_limit answers 0x95, which paho takes for a malformed packet
    # and drops the connection over: the link's dead-letter rule relies on that.
    assert 0x95 not in PUBACK_REASONS
    assert {0x00, 0x10, 0x80, 0x97} <= PUBACK_REASONS
    client, broker = v5
    fast, slow = _recorders(client)
    mid = client.publish("a", b"x", qos=1).mid
    client.loop_write()
    _recv_all(broker)
    broker.sendall(bytes([0x40, 3, 0, mid, 0x95]))
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert fast == []
    assert slow == []


def test_a_puback_split_across_reads(v5: Wire) -> None:
    client, broker = v5
    fast, slow = _recorders(client)
    mids = [client.publish("a", b"x", qos=1).mid for _ in range(2)]
    client.loop_write()
    _recv_all(broker)
    broker.sendall(bytes([0x40, 3, 0, mids[0], 0, 0x40, 3]))
    client.loop_read()
    assert fast == [(mids[0], 0)]
    broker.sendall(bytes([0, mids[1], 0]))
    client.loop_read()
    # The packet begun in the buffer is finished by paho's own read (and callback).
    assert fast == [(mids[0], 0)]
    assert slow == [(mids[1], 0)]
    assert not client._out_messages
    assert client._inflight_messages == 0


def test_mqtt_311_pubacks(v311: Wire) -> None:
    client, broker = v311
    fast, slow = _recorders(client)
    mids = [client.publish("a", b"x", qos=1).mid for _ in range(2)]
    client.loop_write()
    packets = _packets(_recv_all(broker))
    assert [_publish_fields(body, v5=False)[1] for _, body in packets] == mids
    broker.sendall(bytes([0x40, 2, 0, mids[0], 0x40, 2, 0, mids[1]]))
    client.loop_read()
    assert fast == [(mids[0], 0), (mids[1], 0)]
    assert slow == []
    assert not client._out_messages


def test_other_packets_between_pubacks_go_through_paho(v5: Wire) -> None:
    client, broker = v5
    fast, _ = _recorders(client)
    received: list[tuple[str, bytes]] = []
    client.on_message = lambda c, u, msg: received.append((msg.topic, msg.payload))
    mids = [client.publish("a", b"x", qos=1).mid for _ in range(2)]
    client.loop_write()
    _recv_all(broker)
    incoming = bytes([0, 3]) + b"cmd" + bytes([0]) + b"hello"  # QoS 0 PUBLISH, v5
    broker.sendall(
        bytes([0x40, 2, 0, mids[0]])
        + bytes([0x30, len(incoming)])
        + incoming
        + bytes([0x40, 2, 0, mids[1]])
    )
    for _ in range(3):
        client.loop_read()
    assert fast == [(mids[0], 0), (mids[1], 0)]
    assert received == [("cmd", b"hello")]


# ---- on a real broker, through Connection ------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_burst_of_sends_is_one_write_and_every_puback_comes_back(
    broker: Broker, protocol: str
) -> None:
    options = ConnectOptions(
        host="127.0.0.1",
        port=broker.port,
        client_id=f"burst-{protocol}",
        protocol=protocol,  # type: ignore[arg-type]
        keepalive=30,
        username="",
        password=None,
        will_topic="burst/status",
        will_payload=b"offline",
        tls=None,
    )
    conn = Connection(options)
    await conn.open()
    try:
        sends: list[int] = []
        real_send = conn.client._sock_send

        def counting_send(buf: bytes | bytearray, real: Any = real_send) -> int:
            sends.append(len(buf))
            return int(real(buf))

        conn.client._sock_send = counting_send  # type: ignore[method-assign]
        acked: list[tuple[int, int]] = []
        done = asyncio.Event()
        count = 50

        def on_ack(reason: int, i: int) -> None:
            acked.append((i, reason))
            if len(acked) == count:
                done.set()

        for i in range(count):
            conn.send("burst/events", b"z" * 900, lambda reason, i=i: on_ack(reason, i))
        assert sends == []  # nothing written inside the burst
        async with asyncio.timeout(10):
            await done.wait()
        assert sends[0] >= count * 900  # the whole burst in the first write
        assert sorted(i for i, _ in acked) == list(range(count))
        assert {reason for _, reason in acked} <= {0, 0x10}
        assert conn._writer_fd == -1  # nothing left waiting for writability
        assert not conn.client._out_messages
        # A publish with a future (status, commands' replies) still resolves.
        assert await asyncio.wait_for(conn.publish("burst/one", b"1", qos=1), 5) in (0, 0x10)
    finally:
        await conn.close()


async def test_a_send_that_would_block_waits_for_the_socket(broker: Broker) -> None:
    options = ConnectOptions(
        host="127.0.0.1",
        port=broker.port,
        client_id="blocked",
        protocol="5",
        keepalive=30,
        username="",
        password=None,
        will_topic="blocked/status",
        will_payload=b"offline",
        tls=None,
    )
    conn = Connection(options)
    await conn.open()
    real_add_writer = conn.loop.add_writer
    try:
        sock = conn.client.socket()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # fills at once
        armed: list[int] = []

        def add_writer(fd: Any, callback: Any, *args: Any) -> None:
            armed.append(fd)
            real_add_writer(fd, callback, *args)

        conn.loop.add_writer = add_writer  # type: ignore[method-assign]
        count = 120
        acked: list[int] = []
        done = asyncio.Event()

        def on_ack(reason: int) -> None:
            acked.append(reason)
            if len(acked) == count:
                done.set()

        payload = bytes(range(256)) * 40  # 10 KiB
        for _ in range(count):
            conn.send("blocked/events", payload, on_ack)
        async with asyncio.timeout(20):
            await done.wait()
        assert armed  # the write waited for writability at least once
        assert conn._writer_fd == -1  # and stopped waiting once all was sent
        assert not conn.client.want_write()
        assert set(acked) <= {0, 0x10}
    finally:
        conn.loop.add_writer = real_add_writer  # type: ignore[method-assign]
        await conn.close()
