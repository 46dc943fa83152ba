"""`scanstation bench ingest`: captures/s through the internal path and the HTTP API, durable,
beside a bare aiosqlite insert loop in the same run.

``--source hid`` and ``--mqtt`` hand over to the HID and MQTT ingest benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite

from scanstation.bus import EventBus
from scanstation.commands.bench import VALUES, free_port
from scanstation.config import parse_config
from scanstation.heap import settled
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store


async def bare_aiosqlite(path: Path, count: int, batch: int) -> float:
    """Inserts/s of a bare aiosqlite loop (WAL, synchronous=FULL), one execute per row."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        started = time.perf_counter()
        for start in range(0, count, batch):
            await db.execute("BEGIN")
            for i in range(start, min(start + batch, count)):
                await db.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
            await db.execute("COMMIT")
        return count / (time.perf_counter() - started)


BARE_CAPTURES = """
CREATE TABLE IF NOT EXISTS captures (
    id INTEGER PRIMARY KEY, public_id TEXT NOT NULL UNIQUE, session_id INTEGER NOT NULL,
    status TEXT NOT NULL, capture_type TEXT NOT NULL, raw_value TEXT NOT NULL,
    gtin TEXT NOT NULL, symbology TEXT NOT NULL, source TEXT NOT NULL, created REAL NOT NULL,
    modified REAL NOT NULL, processed_at REAL, gs1_dl_data TEXT NOT NULL,
    metadata TEXT NOT NULL, checks TEXT NOT NULL, revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS captures_session ON captures(session_id, id);
"""


async def bare_executemany(path: Path, count: int, batch: int = 100) -> float:
    """The best use of bare SQLite for durable capture-shaped rows: 16 columns, ~400 bytes,
    2 indexes (the unique public id and one more), ``batch`` rows per executemany and commit,
    WAL, synchronous=FULL."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(BARE_CAPTURES)
        now = time.time()
        meta = json.dumps({"lane": "3", "operator": "bench", "note": "x" * 120})
        gs1 = json.dumps({"01": "09506000134352", "17": "270101", "10": "ABC123"})
        checks = json.dumps({"expiry": "2027-01-01", "expired": False})
        rows = [
            (
                f"{i:022d}",
                1,
                "COMPLETED",
                "BARCODE",
                VALUES[i % len(VALUES)],
                "09506000134352",
                "DataMatrix",
                "bench",
                now,
                now,
                now,
                gs1,
                meta,
                checks,
                1,
            )
            for i in range(count)
        ]
        started = time.perf_counter()
        for start in range(0, count, batch):
            await db.execute("BEGIN")
            await db.executemany(
                "INSERT INTO captures (public_id, session_id, status, capture_type, raw_value, "
                "gtin, symbology, source, created, modified, processed_at, gs1_dl_data, "
                "metadata, checks, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows[start : start + batch],
            )
            await db.execute("COMMIT")
        return count / (time.perf_counter() - started)


async def internal(path: Path, count: int, producers: int) -> dict[str, float]:
    """Captures/s from create_capture to every capture terminal and durable."""
    config = parse_config(
        {"storage": {"path": str(path.parent)}, "device": {"id": "bench"}}, environ={}
    )
    async with Store(path) as store:
        await store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
        pipeline = Pipeline(store, config, bus=EventBus())
        walker = asyncio.create_task(pipeline.run())
        session = (await store.create_session()).public_id
        per_producer = count // producers
        latencies: list[float] = []

        async def produce(offset: int) -> None:
            for i in range(per_producer):
                value = VALUES[(offset + i) % len(VALUES)]
                t0 = time.perf_counter()
                await pipeline.create_capture(
                    session, NewCapture(CaptureType.BARCODE, raw_value=value)
                )
                latencies.append(time.perf_counter() - t0)

        with settled():  # as the daemon runs once it is ready (scanstation.heap)
            started, cpu_started = time.perf_counter(), time.process_time()
            await asyncio.gather(*(produce(p) for p in range(producers)))
            await pipeline.idle()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started  # every thread: event loop and writer
        walker.cancel()
        await asyncio.gather(walker, return_exceptions=True)
        done = await store.fetchone(
            "SELECT COUNT(*) FROM captures WHERE status IN ('COMPLETED','NOT_FOUND','FAILED')"
        )
        if done is None or done[0] != per_producer * producers:
            raise RuntimeError("not every capture reached a terminal status")
    latencies.sort()
    return {
        "rate": per_producer * producers / elapsed,
        "cpu_us_per_capture": 1e6 * cpu / (per_producer * producers),
        "ack_p50_ms": 1000 * latencies[len(latencies) // 2],
        "ack_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def http(path: Path, count: int, concurrency: int) -> dict[str, float]:
    """Captures/s POSTed to a `scanstation run` subprocess (201 = durable), then all walked."""
    port = free_port()
    config_path = path.parent / "bench.toml"
    config_path.write_text(
        f'[device]\nid = "bench"\n[storage]\npath = "{path.parent / "http"}"\n'
        f'[http]\nbind = "127.0.0.1:{port}"\n'
    )
    run = [sys.executable, "-m", "scanstation"]
    created = await asyncio.create_subprocess_exec(
        *run, "api-key", "create", "--config", str(config_path), stdout=subprocess.PIPE
    )
    stdout, _ = await created.communicate()
    key = stdout.decode().strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    proc = await asyncio.create_subprocess_exec(
        *run,
        "--log-level",
        "WARNING",
        "run",
        "--config",
        str(config_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/scanner/api/v1"
    try:
        async with aiohttp.ClientSession(
            headers={"X-API-Key": key},
            connector=aiohttp.TCPConnector(limit=concurrency),
        ) as client:
            for _ in range(200):
                try:
                    async with client.post(f"{base}/sessions", json={}) as resp:
                        session = (await resp.json())["public_id"]
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the daemon did not start")
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            per_worker = count // concurrency

            async def worker(offset: int) -> None:
                for i in range(per_worker):
                    body = {
                        "session_public_id": session,
                        "raw_value": VALUES[(offset + i) % len(VALUES)],
                    }
                    t0 = time.perf_counter()
                    async with client.post(f"{base}/captures", json=body) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            elapsed = time.perf_counter() - started
        if set(statuses) != {201}:
            raise RuntimeError(f"unexpected HTTP statuses {statuses}")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    latencies.sort()
    return {
        "rate": per_worker * concurrency / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Interleaved: bare, product, bare, product, … in the same run; every run kept."""
    results: dict[str, list[dict[str, float]]] = {
        "bare_single": [],
        "bare_executemany": [],
        "internal": [],
        "http": [],
    }
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-", dir=args.dir) as tmp:
            root = Path(tmp)
            results["bare_single"].append(
                {"rate": await bare_aiosqlite(root / "bare1.db", args.bare_count, 1)}
            )
            results["bare_executemany"].append(
                {"rate": await bare_executemany(root / "bare100.db", args.count)}
            )
            results["internal"].append(
                await internal(root / "internal" / "scanstation.db", args.count, args.producers)
            )
            if not args.no_http:
                results["http"].append(await http(root / "x.db", args.http_count, args.concurrency))
        print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    return {name: runs for name, runs in results.items() if runs}


def summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians, spreads (min, max) and the product/bare ratio of each interleaved pair."""
    medians = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    product = [r["rate"] for r in runs["internal"]]
    bare = [r["rate"] for r in runs["bare_executemany"]]
    ratios = [p / b for p, b in zip(product, bare, strict=True)]
    out: dict[str, Any] = {
        "captures_per_s": round(medians["internal"]["rate"]),
        "bare_per_s": round(medians["bare_executemany"]["rate"]),
        "ratio": round(statistics.median(ratios), 3),
        "captures_per_s_spread": [round(min(product)), round(max(product))],
        "bare_per_s_spread": [round(min(bare)), round(max(bare))],
        "ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "bare_one_execute_per_row_per_s": round(medians["bare_single"]["rate"]),
        "ack_p50_ms": round(medians["internal"]["ack_p50_ms"], 2),
        "ack_p99_ms": round(medians["internal"]["ack_p99_ms"], 2),
        "cpu_us_per_capture": round(medians["internal"]["cpu_us_per_capture"], 1),
        "repeats": len(product),
    }
    if "http" in medians:
        out["http_per_s"] = round(medians["http"]["rate"])
        out["http_p50_ms"] = round(medians["http"]["p50_ms"], 2)
        out["http_p99_ms"] = round(medians["http"]["p99_ms"], 2)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench ingest", description=__doc__)
    parser.add_argument("--count", type=int, default=20000, help="captures per internal run")
    parser.add_argument("--bare-count", type=int, default=3000)
    parser.add_argument("--http-count", type=int, default=5000)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the databases go (a real disk, not tmpfs)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--source", choices=["api", "hid"], default="api")
    parser.add_argument("--mqtt", action="store_true", help="end to end through MQTT PUBACK")
    args, rest = parser.parse_known_args(argv)
    if args.mqtt or args.source == "hid":
        # Hand the whole command line, less our own selector, to the other benchmark.
        forwarded = [a for a in argv if a not in ("--mqtt", "--source", "hid", "api")]
        module = (
            "scanstation.commands.bench.ingest_mqtt"
            if args.mqtt
            else "scanstation.commands.bench.hid"
        )
        return int(importlib.import_module(module).main(forwarded))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    print(
        f"bench ingest: {args.repeats} repeats, medians; {os.cpu_count()} cores; "
        "WAL, synchronous=FULL",
        file=sys.stderr,
    )
    result = summary(asyncio.run(run_all(args)))
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [
        ("bare aiosqlite, 1 execute per row and commit", result["bare_one_execute_per_row_per_s"]),
        ("bare executemany, capture rows, 100 a commit", result["bare_per_s"]),
        ("internal: create → terminal + outbox, durable", result["captures_per_s"]),
    ]
    if "http_per_s" in result:
        rows.append((f"HTTP POST /captures ({args.concurrency} connections)", result["http_per_s"]))
    print(f"{'path':<48} {'per second':>11}")
    for name, rate in rows:
        print(f"{name:<48} {rate:>11,.0f}")
    print(
        f"ratio internal / bare executemany: {result['ratio']:.2f} "
        f"(spread {result['ratio_spread'][0]:.2f}–{result['ratio_spread'][1]:.2f}); "
        f"ack p50 {result['ack_p50_ms']:.2f} ms, p99 {result['ack_p99_ms']:.2f} ms"
    )
    return 0
