"""`scanstation bench outputs`: capture committed → keystrokes / serial line written.

A real Store (WAL, synchronous=FULL by default) and Pipeline with two live outputs: a
keyboard gadget whose /dev/hidg0 is a pty (raw mode) and a serial output on another pty,
both drained by a reader on the far side. One scan at a time (alternating an EAN-13 and a
GS1 DataMatrix), measured from the moment the capture's terminal status is committed (the
first ``Pipeline.on_finished`` hook) to the moment the output's last write returned.

Side by side, in the same run and on the same ptys: the bare write of the same bytes (the
same 8-byte reports one write each, the same line) with no pipeline, no queue, no event
loop hop: what the device write itself costs. The target is p99 ≤ 10 ms.

On a real gadget the host polls the keyboard once per ms (high speed), so the host has the
first key within about a millisecond of the write and the rest at one report per poll;
the pty has no such pacing, so this measures the station's own part.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from scanstation.bus import EventBus
from scanstation.config import parse_config
from scanstation.model import Capture, CaptureType
from scanstation.outputs import Outputs
from scanstation.outputs.gadget import encode
from scanstation.outputs.serial_out import line_bytes
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store

GS = "\x1d"
TARGET_P99_MS = 10.0
LAYOUT = "de"


def scan_value(i: int) -> str:
    """Alternately an EAN-13 and a GS1 DataMatrix with a unique serial."""
    if i % 2 == 0:
        return "4006381333931"
    return f"010950600013435217270101{GS}10ABC123{GS}21S{i:07d}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _figures(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * statistics.median(seconds),
        "p99_ms": 1000 * _percentile(seconds, 0.99),
        "n": float(len(seconds)),
    }


@contextlib.contextmanager
def _pty() -> Any:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    try:
        yield master, os.ttyname(slave), slave
    finally:
        os.close(master)
        os.close(slave)


@contextlib.asynccontextmanager
async def _drained(*fds: int) -> AsyncIterator[dict[int, int]]:
    """Read the far side of each pty as data arrives (as a host would); counts bytes."""
    loop = asyncio.get_running_loop()
    received = dict.fromkeys(fds, 0)

    def reader(fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            received[fd] += len(os.read(fd, 65536))

    for fd in fds:
        loop.add_reader(fd, reader, fd)
    try:
        yield received
    finally:
        for fd in fds:
            loop.remove_reader(fd)


async def outputs_run(root: Path, scans: int, synchronous: str) -> dict[str, dict[str, float]]:
    with _pty() as (kbd_master, kbd_path, _), _pty() as (ser_master, ser_path, _):
        config = parse_config(
            {
                "device": {"id": "bench"},
                "storage": {"path": str(root), "synchronous": synchronous, "disk_floor_mb": 0},
                "outputs": [
                    {"type": "keyboard_gadget", "device": kbd_path, "layout": LAYOUT},
                    {"type": "serial", "port": ser_path, "baud": 115200, "aim_prefix": True},
                ],
            },
            environ={},
        )
        async with (
            Store(
                config.db_path,
                synchronous=config.storage.synchronous,
                commit_interval_ms=config.storage.commit_interval_ms,
            ) as store,
            _drained(kbd_master, ser_master),
        ):
            pipeline = Pipeline(store, config, bus=EventBus())
            outputs = Outputs(config, store)
            committed: dict[int, float] = {}
            latencies: dict[str, list[float]] = {"keyboard_gadget": [], "serial": []}

            def commit_seen(capture: Capture) -> None:
                committed[capture.id] = time.perf_counter()

            def written(name: str, capture: Capture, _since_hook: float) -> None:
                latencies[name].append(time.perf_counter() - committed[capture.id])

            pipeline.on_finished.append(commit_seen)  # first: right after the commit
            pipeline.on_finished.append(outputs.on_capture)
            outputs.add_listener(written)
            tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(outputs.run())]
            try:
                async with asyncio.timeout(10):
                    # Polled: the outputs' state is a plain attribute, set by their tasks.
                    while any(sink.state != "ok" for sink in outputs.live):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                session = (await store.create_session()).public_id
                for i in range(scans):
                    await pipeline.create_capture(
                        session,
                        NewCapture(
                            CaptureType.BARCODE,
                            raw_value=scan_value(i),
                            symbology_identifier="]E0" if i % 2 == 0 else "]d2",
                        ),
                    )
                    await pipeline.idle()
                    await outputs.idle()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return {name: _figures(values) for name, values in latencies.items()}


def bare_run(scans: int) -> dict[str, dict[str, float]]:
    """The baseline: the same bytes written straight to the same kind of pty."""
    with _pty() as (kbd_master, _, kbd_slave), _pty() as (ser_master, _, ser_slave):
        os.set_blocking(kbd_slave, False)
        keyboard: list[float] = []
        serial: list[float] = []
        for i in range(scans):
            value = scan_value(i)
            reports = encode(LAYOUT, value)
            line = line_bytes(("]E0" if i % 2 == 0 else "]d2") + value, "\r\n", "utf-8")
            t0 = time.perf_counter()
            for report in reports:
                os.write(kbd_slave, report)
            keyboard.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            os.write(ser_slave, line)
            serial.append(time.perf_counter() - t0)
            for fd in (kbd_master, ser_master):
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 65536):
                        pass
        return {"keyboard_gadget": _figures(keyboard), "serial": _figures(serial)}


async def run_all(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    runs: list[dict[str, dict[str, dict[str, float]]]] = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-outputs-") as tmp:
            station = await outputs_run(Path(tmp), args.scans, args.synchronous)
        runs.append({"station": station, "bare": bare_run(args.scans)})
        print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    return {
        path: {
            sink: {
                key: statistics.median(r[path][sink][key] for r in runs)
                for key in runs[0][path][sink]
            }
            for sink in runs[0][path]
        }
        for path in runs[0]
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench outputs", description=__doc__)
    parser.add_argument("--scans", type=int, default=300, help="scans per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.scans < 1 or args.repeats < 1:
        print(
            "scanstation bench outputs: --scans and --repeats must be at least 1", file=sys.stderr
        )
        return 2
    print(
        f"bench outputs: {args.repeats} repeats of {args.scans} scans, medians; "
        f"{os.cpu_count()} cores; WAL, synchronous={args.synchronous.upper()}; "
        f"keyboard layout {LAYOUT}; ptys stand in for /dev/hidg0 and the serial port",
        file=sys.stderr,
    )
    try:
        medians = asyncio.run(run_all(args))
    except (OSError, TimeoutError) as exc:
        print(f"scanstation bench outputs: {exc}", file=sys.stderr)
        return 1
    worst = max(medians["station"][sink]["p99_ms"] for sink in medians["station"])
    verdict = "met" if worst <= TARGET_P99_MS else "MISSED"
    if args.json:
        print(json.dumps({**medians, "target_p99_ms": TARGET_P99_MS, "target": verdict}, indent=2))
        return 0
    rows = [
        (
            "keyboard gadget: capture committed → reports written",
            medians["station"]["keyboard_gadget"],
        ),
        (
            "  baseline: bare write of the same reports, same pty",
            medians["bare"]["keyboard_gadget"],
        ),
        ("serial: capture committed → line written", medians["station"]["serial"]),
        ("  baseline: bare write of the same line, same pty", medians["bare"]["serial"]),
    ]
    print(f"{'path':<56} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in rows:
        print(f"{name:<56} {figures['p50_ms']:>8.3f} {figures['p99_ms']:>8.3f}")
    print(f"target p99 ≤ {TARGET_P99_MS:.0f} ms: {verdict} (worst p99 {worst:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
