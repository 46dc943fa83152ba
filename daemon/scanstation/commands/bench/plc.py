"""`scanstation bench plc`: code committed → visible to a PLC over Modbus TCP and OPC UA.

A real Store and Pipeline, the Outputs (whose match verdict feeds the read statistics) and
both PLC servers on loopback, in one daemon-like process. One scan at a time is committed;
the clock starts at the capture's terminal commit (the first ``Pipeline.on_finished`` hook)
and stops when

- **Modbus**: a pymodbus client in its own thread, polling input registers 0–1 back to
  back (what a PLC does, at its own cycle), first reads the incremented good-read counter;
- **OPC UA**: an asyncua client in its own thread receives the OpticalScanEvent of that
  code (subscription publishing interval 0: the server's fastest).

Start-up: the OPC UA server's time to listening and the process's RSS then, in fresh
processes, against a bare asyncua Server (its standard address space, no nodesets), and the
longest stall of the bench's own loop while the server starts (it builds in its thread).

Side by side: one bare Modbus poll round trip, the floor of any commit → register figure (a
PLC polling every 10 ms adds up to 10 ms on top). The OPC UA subscription asks for a
publishing interval of 0, so the server sends each notification as it is queued.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from scanstation.bus import EventBus
from scanstation.commands.bench import free_port
from scanstation.config import parse_config
from scanstation.model import Capture, CaptureType
from scanstation.outputs import Outputs
from scanstation.pipeline import Pipeline
from scanstation.plc.autoid import AUTOID_URI, DI_URI
from scanstation.plc.modbus import ModbusLink
from scanstation.plc.opcua import NAMESPACE, OpcUaLink
from scanstation.readstats import ReadStats
from scanstation.store import NewCapture, Store


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _figures(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * statistics.median(seconds),
        "p99_ms": 1000 * _percentile(seconds, 0.99),
        "n": float(len(seconds)),
    }


class ModbusPoller(threading.Thread):
    """Polls the good-read counter as fast as it can; records when each new value appears."""

    def __init__(self, port: int) -> None:
        super().__init__(name="bench-modbus-poller", daemon=True)
        self.port = port
        self.seen: dict[int, float] = {}
        self.round_trips: list[float] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=self.port)
        client.connect()  # type: ignore[no-untyped-call]
        self.ready.set()
        last = -1
        while not self.stop.is_set():
            t0 = time.perf_counter()
            response = client.read_input_registers(0, count=2, device_id=1)
            now = time.perf_counter()
            self.round_trips.append(now - t0)
            good = (response.registers[0] << 16) | response.registers[1]
            if good != last:
                self.seen.setdefault(good, now)
                last = good
        client.close()  # type: ignore[no-untyped-call]


class OpcUaListener(threading.Thread):
    """An asyncua client on its own loop, subscribed to the device's events."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="bench-opcua-listener", daemon=True)
        self.endpoint = endpoint
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def event_notification(self, event: Any) -> None:
        now = time.perf_counter()
        for result in event.ScanResult or []:
            self.seen.setdefault(str(result.ScanData.String), now)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from asyncua.client.client import Client

        async with Client(self.endpoint, timeout=10) as client:
            await client.load_data_type_definitions()  # decodes the OpticalScanResult
            di = await client.get_namespace_index(DI_URI)
            ai = await client.get_namespace_index(AUTOID_URI)
            own = await client.get_namespace_index(NAMESPACE)
            device_set = await client.nodes.objects.get_child(f"{di}:DeviceSet")
            device = await device_set.get_child(f"{own}:bench")
            event_type = await client.nodes.base_event_type.get_child(
                [f"{ai}:AutoIdScanEventType", f"{ai}:OpticalScanEventType"]
            )
            subscription = await client.create_subscription(0, self)
            await subscription.subscribe_events(device, event_type)
            self.ready.set()
            # The stop flag is a threading.Event set from the bench's loop: polled.
            while not self.stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def plc_run(root: Path, scans: int) -> dict[str, dict[str, float]]:
    config = parse_config(
        {
            "device": {"id": "bench"},
            "storage": {"path": str(root), "disk_floor_mb": 0},
            "modbus": {"enabled": True, "listen": f"127.0.0.1:{free_port()}"},
            "opcua": {"enabled": True, "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/bench/"},
        },
        environ={},
    )
    async with Store(config.db_path) as store:
        stats = ReadStats()
        outputs = Outputs(config, store, on_verdict=stats.on_capture)
        pipeline = Pipeline(store, config, bus=EventBus())
        committed: dict[int, float] = {}

        def commit_seen(capture: Capture) -> None:
            committed[capture.id] = time.perf_counter()

        pipeline.on_finished.append(commit_seen)
        pipeline.on_finished.append(outputs.on_capture)
        modbus = ModbusLink(config.modbus, stats, None)
        opcua = OpcUaLink(config.opcua, stats, None, device_name="bench")
        tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(modbus.run())]
        try:
            await asyncio.wait_for(modbus.listening.wait(), 20)
            # The daemon's loop while the OPC UA server builds its address space: the
            # longest it went without running (a 10 ms ticker's lateness).
            stalls: list[float] = []
            ticker = asyncio.create_task(_tick(stalls))
            tasks.append(asyncio.create_task(opcua.run()))
            await asyncio.wait_for(opcua.listening.wait(), 60)
            ticker.cancel()
            poller, listener = ModbusPoller(modbus.port), OpcUaListener(opcua.endpoint)
            poller.start()
            listener.start()
            for thread in (poller, listener):
                await asyncio.to_thread(thread.ready.wait, 20)
            session = (await store.create_session()).public_id
            modbus_s: list[float] = []
            opcua_s: list[float] = []
            for i in range(scans):
                code = f"SN-{i:08d}"
                capture = await pipeline.create_capture(
                    session, NewCapture(CaptureType.BARCODE, raw_value=code, source="bench")
                )
                deadline = time.monotonic() + 5
                # The clients run in threads and note the time themselves: polled here.
                while (i + 1 not in poller.seen or code not in listener.seen) and (  # noqa: ASYNC110
                    time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.0005)
                start = committed.get(capture.id)
                if start is None:
                    continue
                if i + 1 in poller.seen:
                    modbus_s.append(poller.seen[i + 1] - start)
                if code in listener.seen:
                    opcua_s.append(listener.seen[code] - start)
            poller.stop.set()
            listener.stop.set()
            await asyncio.to_thread(poller.join, 5)
            await asyncio.to_thread(listener.join, 5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "modbus": _figures(modbus_s),
        "modbus_poll_round_trip": _figures(poller.round_trips),
        "opcua": _figures(opcua_s),
        "opcua_start_loop_stall": {"max_ms": 1000 * max(stalls, default=0.0)},
    }


async def _tick(stalls: list[float]) -> None:
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        stalls.append(max(time.perf_counter() - t0 - 0.01, 0.0))


STARTUP = """
import asyncio, json, sys, time
t0 = time.perf_counter()

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

async def product(endpoint):
    from scanstation.config import parse_config
    from scanstation.plc.opcua import OpcUaLink
    from scanstation.readstats import ReadStats
    config = parse_config({"opcua": {"enabled": True, "endpoint": endpoint}}, environ={})
    link = OpcUaLink(config.opcua, ReadStats(), None, device_name="bench")
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.listening.wait(), 120)
    return task

async def bare(endpoint):
    from asyncua import Server
    from scanstation.config import parse_config  # what the daemon has loaded either way
    from scanstation.readstats import ReadStats
    server = Server()
    await server.init()
    server.set_endpoint(endpoint)
    await server.start()
    return server

async def main(kind, endpoint):
    before = rss_mb()
    held = await (product if kind == "product" else bare)(endpoint)
    now = rss_mb()
    print(json.dumps({"s": time.perf_counter() - t0, "rss_mb": now, "added_mb": now - before}))
    sys.stdout.flush()
    import os
    os._exit(0)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def startup_run(kind: str) -> dict[str, float]:
    """One fresh process: import, build and listen (``product``: the AutoID server, both
    nodesets; ``bare``: a bare asyncua Server, its standard address space only)."""
    import os
    import subprocess

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/bench/"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", STARTUP, kind, endpoint],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


async def run_all(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-plc-") as tmp:
            run = await plc_run(Path(tmp), args.scans)
        # Start-up in fresh processes, product and bare asyncua interleaved.
        for kind in ("product", "bare"):
            figures = await asyncio.to_thread(startup_run, kind)
            run[f"opcua_startup_{kind}"] = figures
        runs.append(run)
        print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    return {
        path: {key: statistics.median(r[path][key] for r in runs) for key in runs[0][path]}
        for path in runs[0]
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench plc", description=__doc__)
    parser.add_argument("--scans", type=int, default=200, help="scans per repeat (200)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; medians shown (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run_all(args))
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"{'path':<56} {'p50 ms':>8} {'p99 ms':>8}")
        labels = {
            "modbus": "Modbus: code committed → counter read by a PLC",
            "modbus_poll_round_trip": "baseline: one bare Modbus poll round trip",
            "opcua": "OPC UA: code committed → OpticalScanEvent received",
        }
        for key, label in labels.items():
            row = result[key]
            print(f"{label:<56} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}")
        product, bare = result["opcua_startup_product"], result["opcua_startup_bare"]
        print(f"{'OPC UA start, fresh process':<56} {'s':>8} {'RSS MB':>8}")
        print(
            f"{'  AutoID server (DI + AutoID nodesets)':<56} {product['s']:>8.2f} "
            f"{product['rss_mb']:>8.1f}"
        )
        print(f"{'  baseline: bare asyncua Server':<56} {bare['s']:>8.2f} {bare['rss_mb']:>8.1f}")
        stall = result["opcua_start_loop_stall"]["max_ms"]
        print(f"longest stall of the daemon's loop while it starts: {stall:.0f} ms")
        return 0
    return 130
