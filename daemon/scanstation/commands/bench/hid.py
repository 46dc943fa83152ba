"""`scanstation bench hid` (and `bench ingest --source hid`): barcode gun to durable capture.

Fake guns type real scans (a GS1 DataMatrix with Ctrl+] as GS, on the German layout) into
HidSource, whose emit is ``Pipeline.ingest`` on a real SQLite file (WAL, synchronous=FULL
by default), the same path `scanstation run` uses. Measured:

- latency: from the terminator key reaching the device to emit returning (the capture is
  committed), one scan at a time, p50 and p99;
- sustained rate: scans/s while every gun types as fast as the station takes them;

side by side in the same run with the baseline of calling ``Pipeline.ingest`` directly with
the same values (no keystrokes), so the difference is what the HID path costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scanstation.bus import EventBus
from scanstation.config import Config, HidSourceConfig, parse_config
from scanstation.hw import keymaps
from scanstation.model import Capture, Scan
from scanstation.pipeline import Pipeline
from scanstation.sources.hid import FakeInputBus, HidSource
from scanstation.store import Store

LAYOUT = "de"
GS = "\x1d"


def scan_text(i: int) -> str:
    """A GS1 DataMatrix with a unique serial, as a gun sends it (AIM identifier first)."""
    return f"]d2010950600013435217270101{GS}10ABC123{GS}21S{i:07d}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _config(root: Path, synchronous: str) -> Config:
    return parse_config(
        {
            "device": {"id": "bench"},
            "storage": {"path": str(root), "synchronous": synchronous},
        },
        environ={},
    )


async def _with_pipeline(
    root: Path, synchronous: str, body: Callable[[Pipeline], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    config = _config(root, synchronous)
    async with Store(
        config.db_path,
        synchronous=config.storage.synchronous,
        commit_interval_ms=config.storage.commit_interval_ms,
    ) as store:
        pipeline = Pipeline(store, config, bus=EventBus())
        walker = asyncio.create_task(pipeline.run())
        try:
            return await body(pipeline)
        finally:
            walker.cancel()
            await asyncio.gather(walker, return_exceptions=True)


async def hid_run(
    root: Path, scans: int, burst: int, guns: int, synchronous: str
) -> dict[str, float]:
    """Latency (one scan at a time) and sustained rate (``guns`` typing at once) via HidSource."""

    async def body(pipeline: Pipeline) -> dict[str, float]:
        bus = FakeInputBus()
        done: dict[str, float] = {}
        arrived = asyncio.Event()

        async def emit(scan: Scan) -> Capture:
            capture = await pipeline.ingest(scan)
            done[scan.raw_value] = time.perf_counter()
            arrived.set()
            return capture

        paths = [f"/dev/input/by-id/usb-Bench_Gun_{g}-event-kbd" for g in range(guns)]
        sources = []
        for g, path in enumerate(paths):
            bus.plug(path)
            config = HidSourceConfig(type="hid", name=f"gun{g}", device=path, layout=LAYOUT)
            sources.append(HidSource(config, device_factory=bus.open))
        tasks = [asyncio.create_task(source.run(emit)) for source in sources]
        try:
            for path in paths:
                await bus.wait_grabbed(path)
            # Latency: one scan at a time on the first gun.
            latencies = []
            for i in range(scans):
                text = scan_text(i)
                events = keymaps.keystrokes(LAYOUT, text, key_interval=0.001)
                bus.type(paths[0], events)
                typed_at = time.perf_counter()
                value = text[3:]
                while value not in done:
                    arrived.clear()
                    await arrived.wait()
                latencies.append(done[value] - typed_at)
            # Sustained: every gun types its share as fast as it can be taken.
            per_gun = burst // guns
            typing = [
                (path, keymaps.keystrokes(LAYOUT, scan_text(1_000_000 + g * per_gun + i)))
                for g, path in enumerate(paths)
                for i in range(per_gun)
            ]
            started = time.perf_counter()
            for path, events in typing:
                bus.type(path, events)
            while len(done) < scans + per_gun * guns:
                arrived.clear()
                await arrived.wait()
            elapsed = time.perf_counter() - started
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * _percentile(latencies, 0.99),
            "rate": per_gun * guns / elapsed,
        }

    return await _with_pipeline(root, synchronous, body)


async def direct_run(
    root: Path, scans: int, burst: int, guns: int, synchronous: str
) -> dict[str, float]:
    """The baseline: the same scans handed to Pipeline.ingest directly (no keystrokes)."""

    async def body(pipeline: Pipeline) -> dict[str, float]:
        latencies = []
        for i in range(scans):
            text = scan_text(i)
            scan = Scan(source="gun0", raw_value=text[3:], symbology_identifier=text[:3])
            t0 = time.perf_counter()
            await pipeline.ingest(scan)
            latencies.append(time.perf_counter() - t0)
        per_gun = burst // guns

        async def gun(g: int) -> None:
            for i in range(per_gun):
                text = scan_text(1_000_000 + g * per_gun + i)
                await pipeline.ingest(
                    Scan(source=f"gun{g}", raw_value=text[3:], symbology_identifier=text[:3])
                )

        started = time.perf_counter()
        await asyncio.gather(*(gun(g) for g in range(guns)))
        elapsed = time.perf_counter() - started
        return {
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * _percentile(latencies, 0.99),
            "rate": per_gun * guns / elapsed,
        }

    return await _with_pipeline(root, synchronous, body)


FAMILIES = ("us", "de", "fr", "ch(fr)", "be", "se", "cz", "pl", "tr", "us(intl)", "latam", "ca")
"""One layout of each family for the per-layout decoder figures: QWERTY, QWERTZ, AZERTY,
Swiss, Nordic, Central European, Turkish Q, dead-key intl, Latin American, Canadian French."""


def decoder_rate(count: int, layout: str = LAYOUT) -> float:
    """Scans/s (per CPU second) through the pure keystroke decoder alone (no I/O, no loop)."""
    from scanstation.barcode.scantext import ScanText
    from scanstation.sources.hid import DecoderSettings, KeystrokeDecoder

    events = [e for i in range(count) for e in keymaps.keystrokes(layout, scan_text(i), start=i)]
    decoder = KeystrokeDecoder(DecoderSettings(layout=layout))
    # CPU time of this process: the decoder is pure computation on one thread, and the
    # figure then holds on a machine shared with other work.
    started = time.process_time()
    decoded = [o for event in events for o in decoder.feed(*event)]
    elapsed = time.process_time() - started
    if [type(o) for o in decoded] != [ScanText] * count:
        raise RuntimeError("the decoder did not return every scan")
    return count / elapsed


async def run_all(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {"hid": [], "direct": [], "decoder": []}
    layouts = [name for name in args.layouts.split(",") if name]
    for name in layouts:
        runs[f"decoder {name}"] = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-hid-") as tmp:
            root = Path(tmp)
            runs["hid"].append(
                await hid_run(root / "hid", args.scans, args.burst, args.guns, args.synchronous)
            )
            runs["direct"].append(
                await direct_run(
                    root / "direct", args.scans, args.burst, args.guns, args.synchronous
                )
            )
            runs["decoder"].append({"rate": decoder_rate(500)})
            for name in layouts:  # interleaved: every layout once per repeat
                runs[f"decoder {name}"].append({"rate": decoder_rate(500, name)})
        print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    return {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench hid", description=__doc__)
    parser.add_argument("--scans", type=int, default=200, help="scans for the latency figure")
    parser.add_argument("--burst", type=int, default=1000, help="scans for the rate figure")
    parser.add_argument("--guns", type=int, default=1, help="guns typing at once for the rate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--layouts",
        default=",".join(FAMILIES),
        help="comma-separated xkb layouts for per-layout decoder figures ('' for none)",
    )
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    for name in filter(None, args.layouts.split(",")):
        try:
            keymaps.get_layout(name)
        except keymaps.KeymapError as exc:
            print(f"scanstation bench hid: --layouts: {exc}", file=sys.stderr)
            return 2
    if args.scans < 1 or args.burst < args.guns or args.guns < 1 or args.repeats < 1:
        print(
            "scanstation bench hid: --scans, --guns and --repeats must be at least 1 and "
            "--burst at least --guns",
            file=sys.stderr,
        )
        return 2
    print(
        f"bench hid: {args.repeats} repeats, medians; {os.cpu_count()} cores; WAL, "
        f"synchronous={args.synchronous.upper()}; layout {LAYOUT}, GS1 DataMatrix of "
        f"{len(scan_text(0))} characters",
        file=sys.stderr,
    )
    medians = asyncio.run(run_all(args))
    if args.json:
        print(json.dumps(medians, indent=2))
        return 0
    rows: list[tuple[str, dict[str, Any]]] = [
        (f"HID gun → HidSource → Pipeline.ingest ({args.guns} gun(s))", medians["hid"]),
        ("baseline: Pipeline.ingest directly", medians["direct"]),
    ]
    print(f"{'path':<52} {'p50 ms':>8} {'p99 ms':>8} {'scans/s':>9}")
    for name, figures in rows:
        print(
            f"{name:<52} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f} "
            f"{figures['rate']:>9,.0f}"
        )
    decoder = medians["decoder"]["rate"]
    print(f"{'keystroke decoder alone, no I/O':<52} {'':>8} {'':>8} {decoder:>9,.0f}")
    for name, figures in medians.items():
        if name.startswith("decoder "):
            label = f"  decoder alone, layout {name.removeprefix('decoder ')}"
            print(f"{label:<52} {'':>8} {'':>8} {figures['rate']:>9,.0f}")
    return 0
