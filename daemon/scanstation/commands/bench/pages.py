"""`scanstation bench pages`: how fast the review API answers with a big database.

Fills a fresh database with ``--captures`` captures (default 100,000) spread over sessions,
statuses and GTINs, then times the pages the web UI loads (capture list first page, a deep
page, one session, one status, the sessions list, the dashboard figures) over real HTTP,
against the issue's target: p99 ≤ 300 ms for a page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import statistics
import tempfile
import time
from typing import Any

import aiohttp
import aiosqlite
from aiohttp import web

from scanstation.bus import EventBus
from scanstation.config import parse_config
from scanstation.model import new_public_id
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.routes import stats as stats_route
from scanstation.web.server import make_app

TARGET_P99_MS = 300.0
STATUSES = ("COMPLETED", "COMPLETED", "COMPLETED", "NOT_FOUND", "FAILED")
GTINS = ("04006381333931", "00036000291452", "09506000134352", "05901234123457", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(store: Store, captures: int, per_session: int) -> str:
    """Insert ``captures`` finished captures (and their scan events) in a few transactions;
    returns the public id of a session in the middle."""
    now = time.time()
    sessions = max(1, math.ceil(captures / per_session))
    session_ids = [new_public_id() for _ in range(sessions)]

    async def add_sessions(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "INSERT INTO sessions (public_id, status, capture_mode, source, created, modified, "
            "capture_count) VALUES (?, 'COMPLETED', 'both', 'bench', ?, ?, ?)",
            [(sid, now - captures + i * per_session, now, per_session) for i, sid in
             enumerate(session_ids)],
        )  # fmt: skip

    await store.write(add_sessions)
    rows = await store.fetchall("SELECT id FROM sessions ORDER BY id")
    row_ids = [r[0] for r in rows]
    chunk = 20_000
    for start in range(0, captures, chunk):
        batch = [
            (
                new_public_id(),
                row_ids[i // per_session],
                STATUSES[i % len(STATUSES)],
                GTINS[i % len(GTINS)] or f"TEXT-{i}",
                GTINS[i % len(GTINS)],
                now - captures + i,  # one capture a second, the newest now
            )
            for i in range(start, min(start + chunk, captures))
        ]

        async def add_captures(db: aiosqlite.Connection, batch: list[Any] = batch) -> None:
            await db.executemany(
                "INSERT INTO captures (public_id, session_id, status, capture_type, raw_value, "
                "gtin, source, created, modified, processed_at) "
                "VALUES (?, ?, ?, 'BARCODE', ?, ?, 'bench', ?, ?, ?)",
                [(*row, row[-1], row[-1]) for row in batch],
            )
            await db.execute(
                "INSERT INTO scan_events (capture_id, gtin, time, device_id, source) "
                "SELECT id, gtin, created, 'bench', source FROM captures "
                "WHERE gtin != '' AND id > (SELECT COALESCE(MAX(capture_id), 0) FROM scan_events)"
            )

        await store.write(add_captures)
    return session_ids[sessions // 2]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def measure(
    url: str, key: str, pages: dict[str, str], requests: int
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
        for name, path in pages.items():
            timings = []
            for _ in range(requests):
                started = time.perf_counter()
                async with http.get(url + path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{path} answered {resp.status}")
                timings.append((time.perf_counter() - started) * 1000)
            results[name] = {
                "median_ms": round(statistics.median(timings), 2),
                "p99_ms": round(_percentile(timings, 0.99), 2),
                "max_ms": round(max(timings), 2),
            }
    return results


async def run(captures: int, requests: int, per_session: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scanstation-bench-pages-") as tmp:
        port = _free_port()
        config = parse_config(
            {"storage": {"path": tmp}, "http": {"bind": f"127.0.0.1:{port}"}},
            "<bench>",
            environ={},
        )
        async with Store(config.db_path, synchronous=config.storage.synchronous) as store:
            started = time.perf_counter()
            session = await fill(store, captures, per_session)
            fill_s = time.perf_counter() - started
            key = ApiKeyStore(config.api_keys_path).create("bench")
            pipeline = Pipeline(store, config, bus=EventBus())
            app = make_app(Services(config, store, pipeline, pipeline.bus))
            ttl, stats_route.STATS_TTL_S = (
                stats_route.STATS_TTL_S,
                0.0,
            )  # time the work, not the cache
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                base = "/scanner/api/v1"
                middle, hour_ago = captures // 2, round(time.time() - 3600)
                pages = {
                    "captures, first page": f"{base}/captures?limit=50",
                    "captures, page at offset 50%": f"{base}/captures?limit=50&offset={middle}",
                    "captures of one session": f"{base}/captures?session={session}&limit=50",
                    "captures FAILED": f"{base}/captures?status=FAILED&limit=50",
                    "captures since 1 h": f"{base}/captures?since={hour_ago}&limit=50",
                    "sessions, first page": f"{base}/sessions?limit=25",
                    "dashboard /stats (uncached)": f"{base}/stats",
                }  # fmt: skip
                results = await measure(f"http://127.0.0.1:{port}", key, pages, requests)
            finally:
                stats_route.STATS_TTL_S = ttl
                await runner.cleanup()
    return {
        "captures": captures,
        "requests_per_page": requests,
        "fill_s": round(fill_s, 2),
        "target_p99_ms": TARGET_P99_MS,
        "pages": results,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scanstation bench pages",
        description="Time the review API's pages over HTTP with a large database.",
    )
    parser.add_argument("--captures", type=int, default=100_000, help="captures in the database")
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    parser.add_argument("--per-session", type=int, default=500, help="captures per session")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.captures < 1 or args.requests < 1 or args.per_session < 1:
        parser.error("--captures, --requests and --per-session must be at least 1")
    result = asyncio.run(run(args.captures, args.requests, args.per_session))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['captures']:,} captures (filled in {result['fill_s']} s), "
        f"{result['requests_per_page']} requests per page, target p99 ≤ {TARGET_P99_MS:.0f} ms"
    )
    print(f"{'page':32} {'median ms':>10} {'p99 ms':>10} {'max ms':>10}  target")
    ok = True
    for name, figures in result["pages"].items():
        meets = figures["p99_ms"] <= TARGET_P99_MS
        ok &= meets
        print(
            f"{name:32} {figures['median_ms']:>10.1f} {figures['p99_ms']:>10.1f} "
            f"{figures['max_ms']:>10.1f}  {'ok' if meets else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
