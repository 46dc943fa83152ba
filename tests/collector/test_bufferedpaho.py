"""The collector's buffered paho client reads every packet intact: small ones by the
thousand in one chunk, one larger than a chunk, and across a broker restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from mosquitto import Broker
from scanstation.collector.bufferedpaho import CHUNK, BufferedClient


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
