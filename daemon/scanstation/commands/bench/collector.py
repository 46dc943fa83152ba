"""`scanstation bench collector`: capture events/s stored in PostgreSQL by 1 and 2 collectors,
beside a bare psycopg batched insert of the same rows; latency publish → committed.

Everything is real and local: a Mosquitto started on a free port, the PostgreSQL named by
``--database`` (a fresh database is created for each run and dropped after), the collectors
as ``scanstation collector`` processes. Simulated stations are ``mosquitto_pub`` clients publishing
QoS 1 copies of a capture event made by the station's own pipeline (one real Store + Pipeline
walk), each with its own seq, event_id and public_id. Modes are interleaved round by round
and the median of each is quoted.
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
from scanstation.commands.bench.ingest_mqtt import mosquitto

BROKER_EXTRA = "max_inflight_messages 5000\nmax_queued_messages 1000000\n"
PREFIX = "scanstation"


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


class Publishers:
    """One ``mosquitto_pub -l`` per simulated station (QoS 1, MQTT 5): a C client, so the
    publishing side costs the two cores little next to the collectors under test."""

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
) -> dict[str, float]:
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
            publishers = Publishers(port, devices)
            try:
                sent = publishers.publish(events, rate)
                deadline = time.monotonic() + 300
                while _count(dsn) < len(events):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {_count(dsn)} of {len(events)} events stored")
                    time.sleep(0.05)
            finally:
                publishers.close()
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
    }


def run_bare(admin: str, events: list[tuple[str, int, bytes]], batch_size: int) -> dict[str, float]:
    """psycopg alone: the same rows, executemany INSERT … ON CONFLICT DO NOTHING per batch."""
    from datetime import UTC, datetime

    with fresh_database(admin) as dsn, psycopg.connect(dsn) as conn:
        migrate(conn)
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
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(rows), batch_size):
                cur.executemany(
                    "INSERT INTO capture_events (device_id, seq, event_id, public_id, status, "
                    "raw_value, gtin, site, created, received_at, payload) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    rows[i : i + batch_size],
                )
                conn.commit()
        elapsed = time.perf_counter() - started
    return {"events_per_s": len(rows) / elapsed}


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
        results: dict[str, list[dict[str, float]]] = {"bare": [], "1": [], "2": []}
        with mosquitto(workdir, BROKER_EXTRA) as port:
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
        return statistics.median(r[key] for r in results[mode])

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
        "latency_rate_events_per_s": args.rate,
        "latency_p50_ms": round(latency["p50_ms"], 1),
        "latency_p99_ms": round(latency["p99_ms"], 1),
        "runs": results,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{len(events)} events from {args.stations} stations, {args.rounds} interleaved rounds")
    print(f"  bare psycopg batched insert   {report['bare_insert_events_per_s']:>8} events/s")
    print(f"  1 collector                   {report['collector_1_events_per_s']:>8} events/s")
    print(
        f"  2 collectors                  {report['collector_2_events_per_s']:>8} events/s "
        f"({report['collector_2_vs_bare']}x bare)"
    )
    print(
        f"  publish -> committed at {args.rate:g}/s (2 collectors): "
        f"p50 {report['latency_p50_ms']} ms, p99 {report['latency_p99_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
