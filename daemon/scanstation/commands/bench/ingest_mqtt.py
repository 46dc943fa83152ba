"""`scanstation bench ingest --mqtt`: captures/s end to end (capture created → PUBACK) and the
latency at a steady 100 captures/s, beside a bare paho QoS 1 publish loop, in the same run.

A Mosquitto is started on a free port for the run (never the system broker). The station is
built as app.py builds it: Store (WAL, synchronous=FULL) → Pipeline → outbox → MqttLink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from scanstation.bus import EventBus
from scanstation.commands.bench import VALUES, free_port
from scanstation.config import Config, parse_config
from scanstation.heap import settled
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.publish.mqtt import MqttLink
from scanstation.store import NewCapture, OutboxEvent, Store


@contextlib.contextmanager
def mosquitto(workdir: Path, extra: str = "") -> Iterator[int]:
    """A throwaway Mosquitto on a free port; yields the port. ``extra``: more config lines."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        raise RuntimeError("mosquitto is not installed (apt install mosquitto)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest stderr\nlog_type error\n{user}{extra}"
    )
    log = (workdir / "mosquitto.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own config file, a fixed binary)
        [binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(5)
        log.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


# ---- the baseline: bare paho -------------------------------------------------------------


def _nodelay(client: Any, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Paho:
    """paho with its network thread, the way a plain script publishes: QoS 1, the same window
    of unacknowledged messages as the station (paho queues the rest itself and sends each as
    a PUBACK frees a slot), and TCP_NODELAY, as the station sets it."""

    def __init__(self, port: int, inflight: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.on_socket_open = _nodelay
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.early: dict[int, float] = {}
        """PUBACK times of packet ids whose send time was not noted yet (latency runs)."""
        self.timing = False
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.target = 0
        self.lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        time.sleep(0.2)

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        now = time.perf_counter()
        with self.lock:
            self.acked += 1
            sent = self.sent_at.pop(mid, None)
            if sent is not None:
                self.latencies.append(now - sent)
            elif self.timing:
                self.early[mid] = now
            if self.acked >= self.target:
                self.done.set()

    def throughput(self, payload: bytes, count: int) -> float:
        self.acked, self.target = 0, count
        self.done.clear()
        started = time.perf_counter()
        for _ in range(count):
            self.client.publish("bench/paho", payload, qos=1)
        if not self.done.wait(120):
            raise RuntimeError(f"bare paho: only {self.acked} of {count} PUBACKs arrived")
        return count / (time.perf_counter() - started)

    def latency(self, payload: bytes, rate: float, seconds: float) -> list[float]:
        count = int(rate * seconds)
        self.acked, self.target, self.latencies = 0, count, []
        self.done.clear()
        self.timing = True
        started = time.perf_counter()
        for i in range(count):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            sent = time.perf_counter()
            # Not under self.lock: paho calls on_publish holding its own lock, which
            # publish() takes too (holding both in opposite orders deadlocks).
            info = self.client.publish("bench/paho", payload, qos=1)
            with self.lock:
                acked = self.early.pop(info.mid, None)
                if acked is None:
                    self.sent_at[info.mid] = sent
                else:
                    self.latencies.append(acked - sent)
        if not self.done.wait(30):
            raise RuntimeError("bare paho: PUBACKs missing in the latency run")
        self.timing = False
        return self.latencies

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---- scanstation ---------------------------------------------------------------------------


def _config(
    storage: Path, port: int, inflight: int, commit_interval_ms: float | None = None
) -> Config:
    storage_section: dict[str, Any] = {"path": str(storage)}
    if commit_interval_ms is not None:
        storage_section["commit_interval_ms"] = commit_interval_ms
    return parse_config(
        {
            "device": {"id": "bench", "site": "bench"},
            "storage": storage_section,
            "mqtt": {"host": "127.0.0.1", "port": port, "inflight": inflight},
        },
        "<bench>",
        environ={},
    )


STAGES = ("commit", "wake_read", "publish", "puback", "settle")
"""Where a capture's time goes, in order: its group commit (fsync included) until
``create_capture`` returns (acknowledged); the outbox signal → the drain's read of its row;
the read → the PUBLISH handed to paho (the window wait included); → its PUBACK read; the
PUBACK → its delivered mark committed (after the PUBACK, so not in the latency)."""


def _public_id(payload: str) -> str:
    head = '{"public_id": "'
    if payload.startswith(head):  # cheap: the capture's id leads the event
        return payload[len(head) : payload.index('"', len(head))]
    return str(json.loads(payload)["public_id"])


class _Station:
    """Store → Pipeline → MqttLink, built as app.py builds them."""

    def __init__(self, config: Config, *, stages: bool = False) -> None:
        self.config = config
        self.trace = stages
        """Time every stage of every capture (the latency run); else only count PUBACKs."""
        self.started: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.latencies: list[float] = []
        self.times: dict[int, dict[str, float]] = {}
        """Outbox row id → stage → time."""
        self.row_of: dict[str, int] = {}
        self.delivered = 0
        self.settled = 0
        self.all_delivered = asyncio.Event()
        self.all_settled = asyncio.Event()
        self.target = 0
        self.rate = 0.0
        self.cpu_us_per_capture = 0.0

    def on_read(self, events: list[OutboxEvent]) -> None:
        now = time.perf_counter()
        for event in events:
            self.times.setdefault(event.id, {}).setdefault("read", now)

    def on_sent(self, event: OutboxEvent) -> None:
        self.times.setdefault(event.id, {})["sent"] = time.perf_counter()

    def on_delivered(self, event: OutboxEvent) -> None:
        if event.topic != "captures":
            return
        now = time.perf_counter()
        if self.trace:
            public_id = _public_id(event.payload)
            started = self.started.get(public_id)
            if started is not None:
                self.latencies.append(now - started)
            self.times.setdefault(event.id, {})["puback"] = now
            self.row_of[public_id] = event.id
        self.delivered += 1
        if self.delivered >= self.target:
            self.all_delivered.set()

    def on_settled(self, ids: list[int]) -> None:
        now = time.perf_counter()
        for row in ids:
            if (times := self.times.get(row)) is not None and "puback" in times:
                times["settled"] = now
                self.settled += 1
        if self.settled >= self.target:
            self.all_settled.set()

    def stage_times(self) -> dict[str, list[float]]:
        """Seconds per stage, one value per capture that went through all of them."""
        out: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for public_id, row in self.row_of.items():
            t = self.times.get(row, {})
            marks = [self.started.get(public_id), self.acked.get(public_id)]
            marks += [t.get(k) for k in ("read", "sent", "puback", "settled")]
            if any(m is None for m in marks):
                continue
            for stage, (a, b) in zip(STAGES, itertools.pairwise(marks), strict=True):
                out[stage].append(max(cast(float, b) - cast(float, a), 0.0))
        return out

    async def run(self, producers: int, count: int, rate: float | None) -> None:
        """Create ``count`` captures (as fast as possible, or at ``rate``) until every PUBACK."""
        async with Store(
            self.config.db_path,
            synchronous=self.config.storage.synchronous,
            commit_interval_ms=self.config.storage.commit_interval_ms,
        ) as store:
            await store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
            pipeline = Pipeline(store, self.config, bus=EventBus())
            link = MqttLink(self.config, store, pipeline)
            link.on_delivered.append(self.on_delivered)
            if self.trace:
                link.on_read.append(self.on_read)
                link.on_sent.append(self.on_sent)
                link.on_settled.append(self.on_settled)
            tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(link.run())]
            try:
                while not link.state.connected:  # noqa: ASYNC110 (the link has no event)
                    await asyncio.sleep(0.01)
                session = (await store.create_session()).public_id
                per_producer = max(count // producers, 1)
                if rate is None:
                    count = per_producer * producers
                self.target = count

                async def create(value: str) -> None:
                    t0 = time.perf_counter()
                    capture = await pipeline.create_capture(
                        session, NewCapture(CaptureType.BARCODE, raw_value=value)
                    )
                    if self.trace:
                        self.acked[capture.public_id] = time.perf_counter()
                        self.started[capture.public_id] = t0

                with settled():  # as the daemon runs once it is ready (scanstation.heap)
                    started = time.perf_counter()
                    cpu = time.process_time()
                    if rate is None:

                        async def produce(offset: int) -> None:
                            for i in range(per_producer):
                                await create(VALUES[(offset + i) % len(VALUES)])

                        await asyncio.gather(*(produce(p) for p in range(producers)))
                    else:
                        pending = set()
                        for i in range(count):
                            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                            task = asyncio.create_task(create(VALUES[i % len(VALUES)]))
                            pending.add(task)
                            task.add_done_callback(pending.discard)
                    async with asyncio.timeout(120):
                        await self.all_delivered.wait()
                    self.rate = count / (time.perf_counter() - started)
                    self.cpu_us_per_capture = 1e6 * (time.process_time() - cpu) / count
                if self.trace:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await self.all_settled.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def _scanstation(
    root: Path, port: int, args: argparse.Namespace, rate: float | None
) -> _Station:
    config = _config(root, port, args.inflight, args.commit_interval_ms)
    station = _Station(config, stages=rate is not None)
    count = int(args.rate * args.seconds) if rate is not None else args.count
    await station.run(args.producers, count, rate)
    return station


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(1000 * _percentile(values, 0.5), 3),
        "p99": round(1000 * _percentile(values, 0.99), 3),
    }


# ---- the command --------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput runs, then latency runs, each alternating bare paho and the station."""
    runs: dict[str, list[float]] = {"paho": [], "scanstation": []}
    p99s: dict[str, list[float]] = {"paho": [], "scanstation": []}
    latencies: dict[str, list[float]] = {"paho": [], "scanstation": []}
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="scanstation-bench-mqtt-") as tmp:
        root = Path(tmp)
        broker = contextlib.nullcontext(args.broker_port) if args.broker_port else mosquitto(root)
        with broker as port:
            sample = _sample_payload(root, port, args)
            bare = _Paho(port, args.inflight)
            try:
                for repeat in range(args.repeats):
                    runs["paho"].append(bare.throughput(sample, args.count))
                    station = asyncio.run(_scanstation(root / f"s{repeat}", port, args, None))
                    runs["scanstation"].append(station.rate)
                    cpu.append(station.cpu_us_per_capture)
                    print(f"  throughput {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
                for repeat in range(args.repeats):
                    lat = bare.latency(sample, args.rate, args.seconds)
                    latencies["paho"] += lat
                    p99s["paho"].append(_percentile(lat, 0.99))
                    steady = asyncio.run(_scanstation(root / f"r{repeat}", port, args, args.rate))
                    latencies["scanstation"] += steady.latencies
                    p99s["scanstation"].append(_percentile(steady.latencies, 0.99))
                    for stage, values in steady.stage_times().items():
                        stages[stage] += values
                    print(f"  latency {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
            finally:
                bare.close()
    ratios = [s / b for s, b in zip(runs["scanstation"], runs["paho"], strict=True)]

    def path(name: str) -> dict[str, Any]:
        return {
            "rate": statistics.median(runs[name]),
            "p50_ms": 1000 * _percentile(latencies[name], 0.5),
            "p99_ms": 1000 * statistics.median(p99s[name]),
            "runs": [round(r) for r in runs[name]],
            "p99_ms_runs": [round(1000 * v, 2) for v in p99s[name]],
        }

    return {
        "puback_per_s": round(statistics.median(runs["scanstation"])),
        "bare_puback_per_s": round(statistics.median(runs["paho"])),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "p99_ms_at_100_per_s": round(1000 * statistics.median(p99s["scanstation"]), 2),
        "p99_ms_at_100_per_s_spread": [
            round(1000 * min(p99s["scanstation"]), 2),
            round(1000 * max(p99s["scanstation"]), 2),
        ],
        "bare_p99_ms_at_100_per_s": round(1000 * statistics.median(p99s["paho"]), 2),
        "stages_at_rate_ms": {stage: _ms(v) for stage, v in stages.items() if v},
        "cpu_us_per_capture": round(statistics.median(cpu), 1),
        "bare_paho": path("paho"),
        "scanstation": path("scanstation"),
        "settings": {
            "count": args.count,
            "repeats": args.repeats,
            "producers": args.producers,
            "inflight": args.inflight,
            "qos": 1,
            "tcp_nodelay": True,
            "latency_rate": args.rate,
            "latency_seconds": args.seconds,
            "payload_bytes": len(sample),
            "commit_interval_ms": _config(
                root, port, 1, args.commit_interval_ms
            ).storage.commit_interval_ms,
            "cores": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        },
    }


def _sample_payload(root: Path, port: int, args: argparse.Namespace) -> bytes:
    """A real capture event, so the baseline publishes what the station publishes."""

    async def one() -> bytes:
        config = _config(root / "sample", port, args.inflight)
        async with Store(config.db_path) as store:
            pipeline = Pipeline(store, config, bus=EventBus())
            session = (await store.create_session()).public_id
            capture = await pipeline.create_capture(
                session, NewCapture(CaptureType.BARCODE, raw_value=VALUES[2])
            )
            await pipeline.process([capture.id])
            batch = await store.outbox_batch(0, 1)
            return batch[0].payload.encode()

    return asyncio.run(one())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench ingest --mqtt", description=__doc__)
    parser.add_argument("--count", type=int, default=10000, help="captures per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (A, B, …)")
    parser.add_argument("--producers", type=int, default=64, help="concurrent capture producers")
    parser.add_argument("--inflight", type=int, default=20, help="unacknowledged publishes")
    parser.add_argument("--rate", type=float, default=100.0, help="captures/s of the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument(
        "--commit-interval-ms",
        type=float,
        default=None,
        help="[storage] commit_interval_ms for the station (default: the config default)",
    )
    parser.add_argument(
        "--broker",
        default="",
        metavar="HOST:PORT",
        help="a running broker on this machine (loopback only) instead of our own mosquitto",
    )
    parser.add_argument("--json", action="store_true")
    args, rest = parser.parse_known_args(argv)
    args.broker_port = 0
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
            parser.error(f"--broker {args.broker!r}: expected 127.0.0.1:PORT (a local broker)")
        args.broker_port = int(port)
    if rest:
        print(f"bench ingest --mqtt: ignoring {' '.join(rest)}", file=sys.stderr)
    if min(args.count, args.repeats, args.producers, args.inflight) < 1 or args.rate <= 0:
        parser.error("--count, --repeats, --producers, --inflight and --rate must be positive")
    print(
        f"bench ingest --mqtt: {args.repeats} repeats of {args.count} captures (medians), "
        f"latency at {args.rate:.0f}/s for {args.seconds:.0f} s; {os.cpu_count()} cores; "
        "local Mosquitto, QoS 1, SQLite synchronous=FULL",
        file=sys.stderr,
    )
    try:
        result = measure(args)
    except RuntimeError as exc:
        print(f"bench ingest --mqtt: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    rate = f"p50/p99 at {args.rate:.0f}/s (p99: median of runs)"
    print(f"{'path':<46} {'per second':>11}  {rate}")
    for name, key in (
        ("bare paho QoS 1: publish → PUBACK", "bare_paho"),
        ("scanstation: capture created → PUBACK", "scanstation"),
    ):
        r = result[key]
        print(f"{name:<46} {r['rate']:>11,.0f}  {r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms")
    stages = result["stages_at_rate_ms"]
    print(
        f"  where the time goes at {args.rate:.0f}/s (p50 / p99): "
        + "; ".join(f"{k} {v['p50']:.2f} / {v['p99']:.2f} ms" for k, v in stages.items())
    )
    print(
        f"  ratio {result['ratio']} (spread {result['ratio_spread']}); "
        f"CPU {result['cpu_us_per_capture']} µs per capture"
    )
    return 0
