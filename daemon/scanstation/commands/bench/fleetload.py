"""The simulated stations of `scanstation bench collector`: the load, not what is measured.

``Stations`` is one minimal MQTT 5 connection per station inside the bench process (QoS 1
PUBLISH packets encoded before the clock starts, up to ``PUBLISHER_INFLIGHT`` in flight,
every PUBACK counted); ``Publishers`` is one ``mosquitto_pub -l`` per station, kept for the
"publishers alone" comparison. Both publish through ``LoadGenerator.publish``: at full
speed, or paced at a rate with each event's send time kept for the latency.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

PREFIX = "scanstation"
PUBLISHER_INFLIGHT = 1000
"""QoS 1 messages each simulated station keeps unacknowledged (``mosquitto_pub -M`` too):
three publishers stand for a fleet's stream, so each keeps more in flight than one station
(``[mqtt] inflight``, 20); with 20, ``mosquitto_pub`` alone tops out near the rate under test."""


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 127, length >> 7
        out.append(byte | (128 if length else 0))
        if not length:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


class LoadGenerator:
    """What publishes the simulated stations' events: ``prepare`` turns a station's payloads
    into what it writes (before the clock starts), ``write`` sends some of them."""

    def prepare(self, device: str, payloads: list[bytes]) -> list[bytes]:
        raise NotImplementedError

    def write(self, device: str, items: list[bytes]) -> None:
        raise NotImplementedError

    def publish(
        self, events: list[tuple[str, int, bytes]], rate: float | None
    ) -> dict[tuple[str, int], float]:
        """Publish every event: at full speed (one writer thread per station), or paced at
        ``rate`` events/s with the time of each one kept (for the latency)."""
        by_device: dict[str, list[bytes]] = {}
        for device, _, payload in events:
            by_device.setdefault(device, []).append(payload)
        prepared = {d: self.prepare(d, p) for d, p in by_device.items()}
        sent: dict[tuple[str, int], float] = {}
        if rate is None:
            start = time.time()
            for device, seq, _ in events:
                sent[(device, seq)] = start
            threads = [
                threading.Thread(target=self.write, args=(d, items))
                for d, items in prepared.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sent
        start_m = time.monotonic()
        index = dict.fromkeys(prepared, 0)
        for i, (device, seq, _) in enumerate(events):
            delay = start_m + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[(device, seq)] = time.time()
            self.write(device, [prepared[device][index[device]]])
            index[device] += 1
        return sent


class Station:
    """One simulated station's MQTT 5 connection, as cheap as a client can be: its QoS 1
    PUBLISH packets are encoded before the clock starts and written in runs of up to its
    window (what the broker has not acknowledged yet), a reader thread counts the PUBACKs.
    Real stations are other machines; here they must leave the two cores to what is under
    test: the collectors, the broker and PostgreSQL. ``close`` checks that every event was
    PUBACKed."""

    def __init__(self, port: int, device: str, window: int) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.device = device
        self.topic = _utf8(f"{PREFIX}/{device}/captures")
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # CONNECT: MQTT 5, clean start, keepalive 60 s, no properties.
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + _utf8(f"bench-{device}-{os.getpid()}")
        self.sock.sendall(b"\x10" + _remaining(len(body)) + body)
        kind, connack = self._read_packet()
        if kind != 0x20 or connack[1] != 0:
            raise RuntimeError(f"the broker refused station {device}: {connack!r}")
        props, _ = Properties(PacketTypes.CONNACK).unpack(connack[2:])  # type: ignore[no-untyped-call]
        self.window = min(window, int(getattr(props, "ReceiveMaximum", 65535)))
        self.sock.settimeout(None)
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.error: str | None = None
        self._acks = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_packet(self) -> tuple[int, bytes]:
        head = self.sock.recv(1)
        if not head:
            raise RuntimeError(f"the broker closed station {self.device}'s connection")
        length = shift = 0
        while True:
            byte = self.sock.recv(1)[0]
            length |= (byte & 127) << shift
            shift += 7
            if not byte & 128:
                break
        body = b""
        while len(body) < length:
            body += self.sock.recv(length - len(body))
        return head[0] & 0xF0, body

    def _read_acks(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._acks:
                    if self.acked < self.sent and self.error is None:
                        self.error = "the broker closed the connection"
                    self._acks.notify_all()
                return
            buf += data
            acked = refused = pos = 0
            while pos + 2 <= len(buf):
                length = buf[pos + 1]  # PUBACK / DISCONNECT bodies are short (one byte)
                if length & 128 or pos + 2 + length > len(buf):
                    break
                if buf[pos] & 0xF0 == 0x40:
                    acked += 1
                    refused += length > 2 and buf[pos + 4] >= 0x80
                elif buf[pos] & 0xF0 == 0xE0:
                    self.error = f"the broker disconnected: {buf[pos : pos + 2 + length]!r}"
                pos += 2 + length
            buf = buf[pos:]
            with self._acks:
                self.acked += acked
                self.refused += refused
                self._acks.notify_all()

    def packets(self, payloads: list[bytes]) -> list[bytes]:
        out = []
        for i, payload in enumerate(payloads):
            mid = struct.pack("!H", i % 65535 + 1)
            body = self.topic + mid + b"\x00" + payload  # no properties
            out.append(b"\x32" + _remaining(len(body)) + body)
        return out

    def send(self, packets: list[bytes]) -> None:
        """Write ``packets`` with at most ``window`` unacknowledged."""
        done = 0
        while done < len(packets):
            with self._acks:
                while self.sent - self.acked >= self.window and self.error is None:
                    self._acks.wait(1)
                if self.error:
                    raise RuntimeError(f"station {self.device}: {self.error}")
                room = self.window - (self.sent - self.acked)
                self.sent += min(room, len(packets) - done)
            run = packets[done : done + room]
            self.sock.sendall(b"".join(run))
            done += len(run)

    def close(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._acks:
            while self.acked < self.sent and self.error is None:
                if not self._acks.wait(max(deadline - time.monotonic(), 0)):
                    break
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._reader.join(5)
        self.sock.close()
        if self.acked < self.sent or self.refused:
            raise RuntimeError(
                f"station {self.device}: {self.acked} of {self.sent} events acknowledged, "
                f"{self.refused} refused ({self.error or 'timed out'})"
            )


class Stations(LoadGenerator):
    """The simulated stations (one ``Station`` connection each)."""

    processes: dict[str, subprocess.Popen[bytes]] = {}  # noqa: RUF012 (none: in this process)

    def __init__(self, port: int, devices: list[str]) -> None:
        self.stations = {d: Station(port, d, PUBLISHER_INFLIGHT) for d in devices}

    def prepare(self, device: str, payloads: list[bytes]) -> list[bytes]:
        return self.stations[device].packets(payloads)

    def write(self, device: str, items: list[bytes]) -> None:
        self.stations[device].send(items)

    def close(self) -> None:
        for station in self.stations.values():
            station.close()


class Publishers(LoadGenerator):
    """One ``mosquitto_pub -l`` per simulated station (QoS 1, MQTT 5), the C client; only
    for ``publishers_alone``: at 35–50 µs of CPU per event it takes a third of two cores at
    10,000 events/s, which the collectors under test would have to share."""

    def __init__(self, port: int, devices: list[str]) -> None:
        binary = shutil.which("mosquitto_pub")
        if binary is None:
            raise RuntimeError("mosquitto_pub is missing (apt install mosquitto-clients)")
        self.processes: dict[str, subprocess.Popen[bytes]] = {
            device: subprocess.Popen(  # noqa: S603 (a fixed binary, our own arguments)
                [
                    binary,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-q",
                    "1",
                    "-M",
                    str(PUBLISHER_INFLIGHT),
                    "-l",
                    "-V",
                    "mqttv5",
                    "-i",
                    f"bench-{device}-{os.getpid()}",
                    "-t",
                    f"{PREFIX}/{device}/captures",
                ],
                stdin=subprocess.PIPE,
            )
            for device in devices
        }
        time.sleep(0.3)

    def prepare(self, device: str, payloads: list[bytes]) -> list[bytes]:
        return [payload + b"\n" for payload in payloads]  # mosquitto_pub -l: one a line

    def write(self, device: str, items: list[bytes]) -> None:
        stdin = self.processes[device].stdin
        assert stdin is not None
        stdin.write(b"".join(items))
        stdin.flush()

    def close(self) -> None:
        for process in self.processes.values():
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
