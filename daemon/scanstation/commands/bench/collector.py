"""`scanstation bench collector`: capture events/s stored in PostgreSQL by 1 and 2 collectors,
beside the bare psycopg path of the same rows; latency publish → committed.

Everything is real and local: a Mosquitto started on a free port, the PostgreSQL named by
``--database`` (a fresh database is created for each run and dropped after), the collectors
as ``scanstation collector`` processes. Simulated stations are ``mosquitto_pub`` clients publishing
QoS 1 copies of a capture event made by the station's own pipeline (one real Store + Pipeline
walk), each with its own seq, event_id and public_id. The bare baseline is psycopg's best
path for the same rows, parsed beforehand: COPY into a staging table and one INSERT … SELECT
… ON CONFLICT DO NOTHING per batch, as the collector stores them. Modes are interleaved round
by round (bare, 1 collector, 2 collectors); the median of each is quoted with its range, and
the CPU each process of a collector run used (collectors, broker, publishers, PostgreSQL
backends, this process) per event stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from scanstation.collector.schema import create_partitions, migrate, month_of
from scanstation.commands.bench.ingest_mqtt import mosquitto

BROKER_EXTRA = "max_inflight_messages 5000\nmax_queued_messages 1000000\n"
PREFIX = "scanstation"
PUBLISHER_INFLIGHT = 1000
"""QoS 1 messages each simulated station keeps unacknowledged (``mosquitto_pub -M`` too):
three publishers stand for a fleet's stream, so each keeps more in flight than one station
(``[mqtt] inflight``, 20); with 20, ``mosquitto_pub`` alone tops out near the rate under test."""
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def real_event(workdir: Path) -> dict[str, Any]:
    """One capture event as a station publishes it (Store → Pipeline → outbox row)."""
    from scanstation.bus import EventBus
    from scanstation.config import parse_config
    from scanstation.model import CaptureType
    from scanstation.pipeline import Pipeline
    from scanstation.store import NewCapture, Store

    config = parse_config(
        {"device": {"id": "lane-00", "site": "store-7"}, "storage": {"path": str(workdir)}},
        "<bench>",
        environ={},
    )

    async def make() -> dict[str, Any]:
        async with Store(config.db_path) as store:
            pipeline = Pipeline(store, config, bus=EventBus())
            task = asyncio.create_task(pipeline.run())
            session = await store.create_session()
            await pipeline.create_capture(
                session.public_id,
                NewCapture(
                    CaptureType.BARCODE, raw_value="]d2010950600013435217270101", source="gun1"
                ),
            )
            await pipeline.idle()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            rows = await store.fetchall("SELECT payload FROM outbox WHERE topic = 'captures'")
            return dict(json.loads(rows[0][0]))

    return asyncio.run(make())


def make_events(
    template: dict[str, Any], stations: int, per_station: int
) -> list[tuple[str, int, bytes]]:
    events = []
    for seq in range(1, per_station + 1):
        for n in range(stations):
            device = f"lane-{n + 1:02d}"
            body = {
                **template,
                "device_id": device,
                "seq": seq,
                "event_id": str(uuid.uuid4()),
                "public_id": uuid.uuid4().hex[:22],
            }
            events.append((device, seq, json.dumps(body).encode()))
    return events


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


class Stations:
    """The simulated stations (one ``Station`` connection each)."""

    processes: dict[str, subprocess.Popen[bytes]] = {}  # noqa: RUF012 (none: in this process)

    def __init__(self, port: int, devices: list[str]) -> None:
        self.stations = {d: Station(port, d, PUBLISHER_INFLIGHT) for d in devices}

    def publish(
        self, events: list[tuple[str, int, bytes]], rate: float | None
    ) -> dict[tuple[str, int], float]:
        """Publish every event: at full speed (one writer thread per station), or paced at
        ``rate`` events/s with the time of each one kept (for the latency)."""
        sent: dict[tuple[str, int], float] = {}
        by_device: dict[str, list[bytes]] = {}
        for device, _, payload in events:
            by_device.setdefault(device, []).append(payload)
        packets = {d: self.stations[d].packets(p) for d, p in by_device.items()}
        if rate is None:
            start = time.time()
            for device, seq, _ in events:
                sent[(device, seq)] = start
            threads = [
                threading.Thread(target=self.stations[d].send, args=(packets[d],)) for d in packets
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sent
        start_m = time.monotonic()
        index = dict.fromkeys(packets, 0)
        for i, (device, seq, _) in enumerate(events):
            delay = start_m + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[(device, seq)] = time.time()
            self.stations[device].send([packets[device][index[device]]])
            index[device] += 1
        return sent

    def close(self) -> None:
        for station in self.stations.values():
            station.close()


class Publishers:
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

    def publish(
        self, events: list[tuple[str, int, bytes]], rate: float | None
    ) -> dict[tuple[str, int], float]:
        """Publish every event: at full speed (one writer thread per station), or paced at
        ``rate`` events/s with the time of each one kept (for the latency)."""
        sent: dict[tuple[str, int], float] = {}
        if rate is None:
            by_device: dict[str, list[bytes]] = {}
            for device, _, payload in events:
                by_device.setdefault(device, []).append(payload)
            start = time.time()
            for device, seq, _ in events:
                sent[(device, seq)] = start

            def feed(device: str) -> None:
                stdin = self.processes[device].stdin
                assert stdin is not None
                stdin.write(b"\n".join(by_device[device]) + b"\n")
                stdin.flush()

            threads = [threading.Thread(target=feed, args=(d,)) for d in by_device]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sent
        start = time.monotonic()
        for i, (device, seq, payload) in enumerate(events):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stdin = self.processes[device].stdin
            assert stdin is not None
            sent[(device, seq)] = time.time()
            stdin.write(payload + b"\n")
            stdin.flush()
        return sent

    def close(self) -> None:
        for process in self.processes.values():
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    name = f"scanstation_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / HZ


class CpuMeter:
    """CPU seconds used by labelled processes during a run, sampled every 0.1 s (a process
    that exits keeps its last sample). Linux /proc; elsewhere it measures nothing."""

    def __init__(self) -> None:
        self.pids: dict[int, str] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, label: str, pid: int) -> None:
        if pid not in self.pids:
            self.pids[pid] = label
            used = _cpu_seconds(pid)
            if used is not None:
                self._first[pid] = self._last[pid] = used

    def start(self) -> None:
        self._thread.start()

    def _sample(self) -> None:
        for pid in list(self.pids):
            used = _cpu_seconds(pid)
            if used is not None:
                self._first.setdefault(pid, used)
                self._last[pid] = used

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def stop(self, events: int) -> dict[str, float]:
        """µs of CPU per event by label."""
        self._sample()
        self._stop.set()
        self._thread.join()
        used: dict[str, float] = {}
        for pid, label in self.pids.items():
            if pid in self._last:
                used[label] = used.get(label, 0.0) + self._last[pid] - self._first[pid]
        return {label: round(s / events * 1e6, 1) for label, s in sorted(used.items())}


def _broker_pid_of(port: int) -> int | None:
    """The bench's Mosquitto: the process whose config file names ``listener {port}``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if Path(args[0].decode(errors="replace")).name == "mosquitto" and "-c" in [
                    a.decode(errors="replace") for a in args
                ]:
                    conf = Path(args[args.index(b"-c") + 1].decode())
                    if f"listener {port} " in conf.read_text():
                        return int(entry.name)
    return None


def _backends(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def wait_stored(dsn: str, events: list[tuple[str, int, bytes]], timeout: float = 300) -> None:
    """Until every event is in capture_events. A COUNT(*) of the table costs PostgreSQL
    milliseconds that the collectors under test would lose at every poll; the newest seq per
    station is an index lookup, so the count is only asked once every station's last seq is in."""
    last: dict[str, int] = {}
    for device, seq, _ in events:
        last[device] = max(seq, last.get(device, 0))
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            done = all(
                (
                    conn.execute(
                        "SELECT 1 FROM capture_events WHERE device_id = %s AND seq = %s",
                        (device, seq),
                    ).fetchone()
                    is not None
                )
                for device, seq in last.items()
            )
            if done:
                row = conn.execute("SELECT COUNT(*) FROM capture_events").fetchone()
                stored = int(row[0]) if row else 0
                if stored >= len(events):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {_count(dsn)} of {len(events)} events stored")
            time.sleep(0.05)


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT COUNT(*) FROM capture_events").fetchone()
    return int(row[0]) if row else 0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


def _end_session(port: int, client_id: str) -> None:
    """Connect once with a clean session and leave: the broker drops the old one."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
        clean_session=True,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.1)
    client.disconnect()
    client.loop_stop()


def run_collectors(
    collectors: int,
    admin: str,
    port: int,
    events: list[tuple[str, int, bytes]],
    workdir: Path,
    rate: float | None = None,
    batch_size: int = 1000,
    protocol: str = "5",
) -> dict[str, Any]:
    """Start ``collectors`` processes on a fresh database, publish ``events``, wait for all."""
    with fresh_database(admin) as dsn:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        processes = []
        logs = []
        names = []
        for n in range(collectors):
            name = f"bench-collector-{n}-{uuid.uuid4().hex[:6]}"
            names.append(name)
            config = workdir / f"{name}.toml"
            config.write_text(
                f'[device]\nid = "{name}"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                f'client_id = "{name}"\n[collector]\ndatabase = "{dsn}"\n'
                f'batch_size = {batch_size}\nsession_expiry_s = 0\nprotocol = "{protocol}"\n'
            )
            log = workdir / f"{name}.log"
            logs.append(log)
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(  # noqa: S603 (this interpreter, our own config)
                        [
                            sys.executable,
                            "-m",
                            "scanstation",
                            "--log-level",
                            "INFO",
                            "collector",
                            "--config",
                            str(config),
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        meter = CpuMeter()
        try:
            deadline = time.monotonic() + 30
            while not all("connected to" in log.read_text() for log in logs):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the collectors did not connect: " + logs[0].read_text()[-2000:]
                    )
                time.sleep(0.05)
            time.sleep(0.5)  # the SUBACKs
            devices = sorted({e[0] for e in events})
            publishers = Stations(port, devices)
            for process in processes:
                meter.add("collectors", process.pid)
            broker = _broker_pid_of(port)
            if broker is not None:
                meter.add("broker", broker)
            for pid in _backends(dsn):
                meter.add("postgresql", pid)
            meter.add("bench", os.getpid())
            meter.start()
            try:
                sent = publishers.publish(events, rate)
                wait_stored(dsn, events)
            finally:
                publishers.close()
            cpu = meter.stop(len(events))
            with psycopg.connect(dsn) as conn:
                rows = conn.execute(
                    "SELECT device_id, seq, extract(epoch FROM stored_at)::float8 "
                    "FROM capture_events"
                ).fetchall()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(20)
            # A shared subscription keeps sending a stopped collector's persistent session its
            # share: end the sessions so the next run's collectors get every message.
            for name in names:
                _end_session(port, name)
    first = min(sent.values())
    last = max(float(r[2]) for r in rows)
    latencies = [(float(r[2]) - sent[(str(r[0]), int(r[1]))]) * 1000 for r in rows]
    return {
        "events_per_s": len(rows) / (last - first),
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "cpu_us_per_event": cpu,
    }


def run_publishers_alone(
    port: int, events: list[tuple[str, int, bytes]], kind: str
) -> dict[str, Any]:
    """The simulated stations into the broker with a C subscriber (``mosquitto_sub``, QoS 1)
    taking them out: the rate the load generator itself reaches, with no collector."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise RuntimeError("mosquitto_sub is missing (apt install mosquitto-clients)")
    sub = subprocess.Popen(  # noqa: S603 (a fixed binary, our own arguments)
        [
            binary,
            "-p",
            str(port),
            "-q",
            "1",
            "-V",
            "mqttv5",
            "-C",
            str(len(events)),
            "-t",
            f"{PREFIX}/+/captures",
        ],
        stdout=subprocess.DEVNULL,
    )
    meter = CpuMeter()
    try:
        time.sleep(0.5)  # its SUBACK
        devices = sorted({e[0] for e in events})
        publishers: Stations | Publishers = (
            Stations(port, devices) if kind == "stations" else Publishers(port, devices)
        )
        meter.add("subscriber", sub.pid)
        for process in publishers.processes.values():
            meter.add("publishers", process.pid)
        broker = _broker_pid_of(port)
        if broker is not None:
            meter.add("broker", broker)
        meter.add("bench", os.getpid())
        meter.start()
        started = time.time()
        publishers.publish(events, None)
        publishers.close()
        sub.wait(120)
        elapsed = time.time() - started
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    return {"events_per_s": len(events) / elapsed, "cpu_us_per_event": meter.stop(len(events))}


BARE_COLUMNS = (
    "device_id, seq, event_id, public_id, status, raw_value, gtin, site, created, received_at, "
    "payload"
)


def run_bare(admin: str, events: list[tuple[str, int, bytes]], batch_size: int) -> dict[str, Any]:
    """psycopg alone, at its best: the same rows parsed beforehand, COPY into a staging table
    and one INSERT … SELECT … ON CONFLICT DO NOTHING per batch, one COMMIT per batch."""
    from datetime import UTC, datetime

    with fresh_database(admin) as dsn, psycopg.connect(dsn) as conn:
        migrate(conn)
        conn.execute(
            "CREATE TEMPORARY TABLE bare_stage (LIKE capture_events INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        conn.commit()
        received = datetime.now(UTC)
        rows = []
        for device, seq, payload in events:
            body = json.loads(payload)
            rows.append(
                (
                    device,
                    seq,
                    body["event_id"],
                    body["public_id"],
                    body["status"],
                    body["raw_value"],
                    body["gtin"],
                    body["site"],
                    datetime.fromisoformat(body["created"]),
                    received,
                    payload.decode(),
                )
            )
        create_partitions(conn, {month_of(r[8]) for r in rows})
        meter = CpuMeter()
        meter.add("postgresql", conn.info.backend_pid)
        meter.add("bench", os.getpid())
        meter.start()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(rows), batch_size):
                with cur.copy(f"COPY bare_stage ({BARE_COLUMNS}) FROM STDIN") as copy:
                    for row in rows[i : i + batch_size]:
                        copy.write_row(row)
                cur.execute(
                    f"INSERT INTO capture_events ({BARE_COLUMNS}) SELECT {BARE_COLUMNS} "
                    "FROM bare_stage ON CONFLICT DO NOTHING"
                )
                conn.commit()
        elapsed = time.perf_counter() - started
        stored = _count(dsn)
        cpu = meter.stop(len(rows))
    if stored != len(rows):
        raise RuntimeError(f"the bare insert stored {stored} of {len(rows)} rows")
    return {"events_per_s": len(rows) / elapsed, "cpu_us_per_event": cpu}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench collector", description=__doc__)
    parser.add_argument(
        "--database",
        default=os.environ.get(
            "SCANSTATION_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL maintenance database to create the bench databases from",
    )
    parser.add_argument("--stations", type=int, default=3, help="simulated stations")
    parser.add_argument("--events", type=int, default=30000, help="events per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median quoted)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000, help="events/s of the latency run")
    parser.add_argument("--seconds", type=float, default=5, help="length of the latency run")
    parser.add_argument(
        "--protocol", choices=("5", "3.1.1"), default="5", help="[collector] protocol"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.stations, args.events, args.rounds, args.batch_size) < 1 or args.rate <= 0:
        parser.error("--stations, --events, --rounds and --batch-size must be >= 1, --rate > 0")
    with tempfile.TemporaryDirectory(prefix="scanstation-bench-collector-") as tmp:
        workdir = Path(tmp)
        template = real_event(workdir / "station")
        per_station = max(args.events // args.stations, 1)
        events = make_events(template, args.stations, per_station)
        results: dict[str, list[dict[str, Any]]] = {"bare": [], "1": [], "2": []}
        with mosquitto(workdir, BROKER_EXTRA) as port:
            alone = {
                kind: run_publishers_alone(port, events, kind)
                for kind in ("stations", "mosquitto_pub")
            }
            for _ in range(args.rounds):
                results["bare"].append(run_bare(args.database, events, args.batch_size))
                for n in ("1", "2"):
                    results[n].append(
                        run_collectors(
                            int(n),
                            args.database,
                            port,
                            events,
                            workdir,
                            batch_size=args.batch_size,
                            protocol=args.protocol,
                        )
                    )
            paced = make_events(
                template, args.stations, max(int(args.rate * args.seconds) // args.stations, 1)
            )
            latency = run_collectors(
                2,
                args.database,
                port,
                paced,
                workdir,
                rate=args.rate,
                batch_size=args.batch_size,
                protocol=args.protocol,
            )

    def median(mode: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[mode]))

    def spread(mode: str) -> list[int]:
        rates = [r["events_per_s"] for r in results[mode]]
        return [round(min(rates)), round(max(rates))]

    def cpu(mode: str) -> dict[str, float]:
        labels = sorted({k for r in results[mode] for k in r["cpu_us_per_event"]})
        return {
            k: round(statistics.median(r["cpu_us_per_event"].get(k, 0.0) for r in results[mode]), 1)
            for k in labels
        }

    bare = median("bare", "events_per_s")
    report = {
        "events": len(events),
        "stations": args.stations,
        "rounds": args.rounds,
        "protocol": args.protocol,
        "bare_insert_events_per_s": round(bare),
        "collector_1_events_per_s": round(median("1", "events_per_s")),
        "collector_2_events_per_s": round(median("2", "events_per_s")),
        "collector_2_vs_bare": round(median("2", "events_per_s") / bare, 2),
        "spread_events_per_s": {mode: spread(mode) for mode in ("bare", "1", "2")},
        "publishers_alone_events_per_s": {k: round(v["events_per_s"]) for k, v in alone.items()},
        "publishers_alone_cpu_us_per_event": {k: v["cpu_us_per_event"] for k, v in alone.items()},
        "cpu_us_per_event": {mode: cpu(mode) for mode in ("bare", "1", "2")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "latency_rate_events_per_s": args.rate,
        "latency_p50_ms": round(latency["p50_ms"], 1),
        "latency_p99_ms": round(latency["p99_ms"], 1),
        "runs": results,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{len(events)} events from {args.stations} stations, {args.rounds} interleaved rounds")
    ranges = report["spread_events_per_s"]
    for label, mode, key in (
        ("bare psycopg COPY + INSERT", "bare", "bare_insert_events_per_s"),
        ("1 collector", "1", "collector_1_events_per_s"),
        ("2 collectors", "2", "collector_2_events_per_s"),
    ):
        low, high = ranges[mode]
        print(f"  {label:28s} {report[key]:>8} events/s  (rounds {low}..{high})")
    print(f"  2 collectors / bare: {report['collector_2_vs_bare']}")
    for kind, rate in report["publishers_alone_events_per_s"].items():
        print(f"  publishers alone ({kind} -> broker -> mosquitto_sub): {rate} events/s")
    for mode, used in report["cpu_us_per_event"].items():
        shares = ", ".join(f"{k} {v}" for k, v in used.items())
        print(f"  CPU µs per event, {mode}: {shares}")
    print(
        f"  publish -> committed at {args.rate:g}/s (2 collectors): "
        f"p50 {report['latency_p50_ms']} ms, p99 {report['latency_p99_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
