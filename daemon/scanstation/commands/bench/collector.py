"""`scanstation bench collector`: capture events/s stored in PostgreSQL by 1 and 2 collectors,
beside the bare psycopg path of the same rows; latency publish → committed.

Everything is real and local: a Mosquitto started on a free port, the PostgreSQL named by
``--database`` (a fresh database is created for each run and dropped after), the collectors
as ``scanstation collector`` processes. Simulated stations (fleetload.py: a minimal MQTT 5
client per station in this process) publish QoS 1 copies of a capture event made by the
station's own pipeline (one real Store + Pipeline walk), each with its own seq, event_id and
public_id. The bare baseline is psycopg's best
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
import statistics
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
from scanstation.commands.bench.fleetload import PREFIX, Publishers, Stations
from scanstation.commands.bench.ingest_mqtt import mosquitto

BROKER_EXTRA = "max_inflight_messages 5000\nmax_queued_messages 1000000\n"
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
