"""The collector's buffered paho client reads every packet intact: small ones by the
thousand in one chunk, one larger than a chunk, and across a broker restart; PUBLISH packets
it decodes itself (MQTT 5 properties skipped) arrive intact and in order, and only what
``ack_many`` acknowledged is settled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mosquitto import Broker
from scanstation.collector.bufferedpaho import CHUNK, BufferedClient, Publish


def test_buffered_reads_deliver_every_message_intact(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b", extra_conf="max_inflight_messages 1000\n").start()
    got: list[bytes] = []
    connects = threading.Semaphore(0)
    sub = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id="buffered", protocol=MQTTProtocolVersion.MQTTv5
    )
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))

    def on_connect(client: paho.Client, *args: object) -> None:
        client.subscribe("t/#", 1)
        connects.release()

    sub.on_connect = on_connect
    sub.reconnect_delay_set(1, 1)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    try:
        assert connects.acquire(timeout=10)
        time.sleep(0.3)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        small = [f"message {i:05d}".encode() * 3 for i in range(3000)]
        large = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # spans four chunks
        for payload in [*small[:1500], large, *small[1500:]]:
            pub.publish("t/x", payload, qos=1)
        deadline = time.monotonic() + 20
        while len(got) < 3001 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [*small[:1500], large, *small[1500:]]
        pub.loop_stop()
        pub.disconnect()

        broker.restart()
        assert connects.acquire(timeout=15)  # a fresh connection, an empty buffer
        time.sleep(0.3)
        pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish("t/y", b"after the restart", qos=1)
        deadline = time.monotonic() + 10
        while len(got) < 3002 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got[3001:] == [b"after the restart"]
    finally:
        pub.loop_stop()
        sub.loop_stop()
        broker.stop()


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
def test_publishes_decoded_in_bulk_are_intact_and_only_the_acked_ones_are_settled(
    tmp_path: Path, protocol: MQTTProtocolVersion
) -> None:
    broker = Broker(tmp_path / "b", extra_conf="max_inflight_messages 5000\n").start()
    got: list[tuple[str, bytes, int]] = []
    lock = threading.Lock()
    connects = threading.Semaphore(0)

    bulk = [0]

    def on_publishes(publishes: list[Publish]) -> None:
        with lock:
            bulk[0] += len(publishes)
            got.extend((topic, payload, mid) for topic, payload, mid, _ in publishes)

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with lock:
            got.append((message.topic, bytes(message.payload), message.mid))

    def consumer() -> BufferedClient:
        kw: dict[str, object] = (
            {"clean_session": False} if protocol != MQTTProtocolVersion.MQTTv5 else {}
        )
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id="bulk",
            protocol=protocol,
            manual_ack=True,
            on_publishes=on_publishes,
            **kw,
        )
        client.on_message = on_message

        def on_connect(c: paho.Client, *args: object) -> None:
            c.subscribe("t/#", 1)
            connects.release()

        client.on_connect = on_connect
        if protocol == MQTTProtocolVersion.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
            client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        else:
            client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert connects.acquire(timeout=10)
        return client

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(got) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    sub = consumer()
    pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    try:
        time.sleep(0.3)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        # MQTT 5 properties of every kind a station might set: skipped by their length.
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("authorization", "x" * 300), ("k", "v")]
        props.ContentType = "application/json"
        props.CorrelationData = b"\x00\x01" * 90
        sent = []
        for i in range(3000):
            payload = (f"event {i:05d} " * (1 + i % 40)).encode()
            topic = f"t/lane-{i % 3}/captures"
            sent.append((topic, payload))
            pub.publish(topic, payload, qos=1, properties=props if i % 2 else None)
        wait_for(3000)
        with lock:
            assert [(t, p) for t, p, _ in got] == sent
            mids = [mid for _, _, mid in got]
        assert bulk[0] > 1500  # most of them decoded in bulk, not by paho one by one
        assert all(mids)
        sub.ack_many(mids[:-10])  # the last ten stay unacknowledged
        time.sleep(0.5)
        sub.disconnect()
        sub.loop_stop()

        with lock:
            got.clear()
        sub = consumer()  # the same session: the broker sends what was not acknowledged
        wait_for(10)
        time.sleep(0.5)
        with lock:
            assert [(t, p) for t, p, _ in got] == sent[-10:]
    finally:
        pub.loop_stop()
        sub.loop_stop()
        broker.stop()


def test_a_publish_too_short_for_its_packet_id_is_left_to_paho() -> None:
    """A QoS 1 PUBLISH whose remaining length ends before its packet id (malformed) is not
    decoded in bulk: nothing is handed over, nothing consumed, and no IndexError."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    handed: list[list[Publish]] = []
    client._on_publishes = handed.append
    # PUBLISH QoS 1, remaining length 3: topic length 1, topic "t", then no room for the id.
    client._rbuf, client._rpos = bytes([0x32, 3, 0, 1, ord("t")]), 0
    client._take_publishes()
    assert handed == []
    assert client._rpos == 0
    # The same packet with its id, then a QoS 0 one: both decoded, the buffer consumed.
    good = bytes([0x32, 5, 0, 1, ord("t"), 0, 7]) + bytes([0x30, 4, 0, 1, ord("u"), ord("x")])
    client._rbuf, client._rpos = good, 0
    client._take_publishes()
    assert handed == [[("t", b"", 7, 1), ("u", b"x", 0, 0)]]
    assert client._rpos == len(good)
