"""`scanstation bench wear`: bytes written to the block device and fsyncs per barcode capture at
a lane's rate (default 5 captures/s), the station built as app.py builds it.

A child process runs Store → Pipeline (→ outbox → MqttLink with ``--mqtt``, on a Mosquitto of
its own) and creates captures at ``--rate`` for ``--seconds``; the figures are that process's
``/proc/self/io`` write_bytes (what reached the block layer, so run it on a real disk, not a
tmpfs: ``--dir``) from an empty WAL to a checkpoint after every capture is terminal (and, with
MQTT, acknowledged and its outbox row settled), and its fsync/fdatasync calls counted by strace
when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scanstation.bus import EventBus
from scanstation.commands.bench import VALUES
from scanstation.config import parse_config
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store


def write_bytes() -> int:
    """Bytes this process has caused to be written to storage (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes line")


async def child(root: Path, rate: float, seconds: float, port: int) -> dict[str, Any]:
    """The measured process: captures at ``rate`` for ``seconds``; its own write figures."""
    settings: dict[str, Any] = {"device": {"id": "bench"}, "storage": {"path": str(root)}}
    if port:
        settings["mqtt"] = {"host": "127.0.0.1", "port": port}
    config = parse_config(settings, "<bench>", environ={})
    async with Store(config.db_path, synchronous=config.storage.synchronous) as store:
        await store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
        pipeline = Pipeline(store, config, bus=EventBus())
        tasks = [asyncio.create_task(pipeline.run())]
        link = None
        if port:
            from scanstation.publish.mqtt import MqttLink

            link = MqttLink(config, store, pipeline)
            tasks.append(asyncio.create_task(link.run()))
            while not link.state.connected:  # noqa: ASYNC110 (the link has no event)
                await asyncio.sleep(0.01)
        session = (await store.create_session()).public_id
        # Warm up (first pages of every table and index), then measure from a steady state.
        for value in VALUES:
            await pipeline.create_capture(session, NewCapture(CaptureType.BARCODE, value))
        await _settle(store, pipeline, link)
        # From an empty WAL, and to the end of a checkpoint: the bytes counted include the
        # copy of every page into the database (pessimistic for a short run: a page written
        # by many commits is copied once a run here, once a WAL_AUTOCHECKPOINT_BYTES in life).
        await store.checkpoint("TRUNCATE")
        count = int(rate * seconds)
        before_bytes, before_commits = write_bytes(), store.commits
        started = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            await pipeline.create_capture(
                session, NewCapture(CaptureType.BARCODE, VALUES[i % len(VALUES)])
            )
        await _settle(store, pipeline, link)
        commits, before_checkpoint = store.commits - before_commits, write_bytes()
        await store.checkpoint("TRUNCATE")
        written = write_bytes() - before_bytes
        checkpoint = write_bytes() - before_checkpoint
        page_size = await store.page_size()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "captures": count,
        "write_bytes": written,
        "checkpoint_bytes": checkpoint,
        "commits": commits,
        "page_size": page_size,
    }


async def _settle(store: Store, pipeline: Pipeline, link: Any) -> None:
    """Every capture walked and, with MQTT, every outbox row acknowledged and deleted."""
    await pipeline.idle()
    if link is None:
        return
    async with asyncio.timeout(60):
        while (await store.outbox_stats())[0]:  # noqa: ASYNC110 (no event for "drained")
            await asyncio.sleep(0.05)


def _fsyncs(strace_out: Path) -> int | None:
    """fsync + fdatasync calls in an ``strace -c`` summary (None when it has none)."""
    if not strace_out.exists():
        return None
    total = 0
    for line in strace_out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            total += int(parts[3])
    return total


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scanstation-bench-wear-", dir=args.dir) as tmp:
        root = Path(tmp)
        findmnt = shutil.which("findmnt") or "/usr/bin/findmnt"
        fs = subprocess.run(  # noqa: S603
            [findmnt, "-n", "-o", "FSTYPE,SOURCE", "-T", str(root)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        broker: contextlib.AbstractContextManager[int] = contextlib.nullcontext(0)
        if args.mqtt:
            from scanstation.commands.bench.ingest_mqtt import mosquitto

            broker = mosquitto(root)
        with broker as port:
            command = [sys.executable, *command_tail(args, root, port)]
            strace = shutil.which("strace")
            trace = root / "strace.txt"
            if strace and not args.no_strace:
                command = [strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o"]
                command += [str(trace), sys.executable, *command_tail(args, root, port)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0:
                raise RuntimeError(f"the measured process failed: {done.stderr[-2000:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            fsyncs = _fsyncs(trace) if strace and not args.no_strace else None
    captures = figures["captures"]
    result: dict[str, Any] = {
        "rate_per_s": args.rate,
        "captures": captures,
        "mqtt": args.mqtt,
        "bytes_per_capture": round(figures["write_bytes"] / captures),
        "kib_per_capture": round(figures["write_bytes"] / captures / 1024, 2),
        "checkpoint_kib_per_capture": round(figures["checkpoint_bytes"] / captures / 1024, 2),
        "page_size": figures["page_size"],
        "commits_per_capture": round(figures["commits"] / captures, 2),
        "fsyncs_per_capture": round(fsyncs / captures, 2) if fsyncs is not None else None,
        "filesystem": fs,
    }
    return result


def command_tail(args: argparse.Namespace, root: Path, port: int) -> list[str]:
    return [
        "-m",
        "scanstation.commands.bench.wear",
        "--child",
        str(root / "station"),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--port",
        str(port),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench wear", description=__doc__)
    parser.add_argument("--rate", type=float, default=5.0, help="captures per second")
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of the run (60 s at 5/s: about one WAL checkpoint's worth of commits)",
    )
    parser.add_argument("--mqtt", action="store_true", help="publish through our own Mosquitto")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the database goes (a real disk)"
    )
    parser.add_argument("--no-strace", action="store_true", help="do not count fsyncs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.rate, args.seconds, args.port))))
        return 0
    try:
        result = measure(args)
    except RuntimeError as exc:
        print(f"bench wear: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    fsyncs = result["fsyncs_per_capture"]
    print(
        f"{result['captures']} captures at {args.rate:g}/s (MQTT {'on' if args.mqtt else 'off'}, "
        f"{result['filesystem']}): {result['kib_per_capture']:.1f} KiB written per capture, "
        f"{result['commits_per_capture']:.2f} commits"
        + (f", {fsyncs:.2f} fsyncs" if fsyncs is not None else "")
        + " per capture"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
