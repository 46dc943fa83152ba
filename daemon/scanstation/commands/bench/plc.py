"""`scanstation bench plc`: code committed → visible to a PLC over Modbus TCP and OPC UA.

A real Store and Pipeline, the Outputs (whose match verdict feeds the read statistics) and
both PLC servers on loopback, in one daemon-like process. One scan at a time is committed;
the clock starts at the capture's terminal commit (the first ``Pipeline.on_finished`` hook)
and stops when

- **Modbus**: a pymodbus client in its own thread, polling input registers 0–1 back to
  back (what a PLC does, at its own cycle), first reads the incremented good-read counter;
- **OPC UA**: an asyncua client in its own thread receives the OpticalScanEvent of that
  code (subscription publishing interval 0: the server's fastest).

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
        self.seen.setdefault(str(event.ScanData), time.perf_counter())

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from asyncua.client.client import Client

        async with Client(self.endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            device_set = await client.nodes.objects.get_child(f"{idx}:DeviceSet")
            [device] = await device_set.get_children()
            event_type = await client.nodes.base_event_type.get_child(
                [f"{idx}:AutoIdScanEventType", f"{idx}:OpticalScanEventType"]
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
        tasks = [
            asyncio.create_task(pipeline.run()),
            asyncio.create_task(modbus.run()),
            asyncio.create_task(opcua.run()),
        ]
        try:
            await asyncio.wait_for(modbus.listening.wait(), 20)
            await asyncio.wait_for(opcua.listening.wait(), 20)
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
    }


async def run_all(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-plc-") as tmp:
            runs.append(await plc_run(Path(tmp), args.scans))
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
        print(f"{'path':<48} {'p50 ms':>8} {'p99 ms':>8}")
        labels = {
            "modbus": "Modbus: code committed → counter read by a PLC",
            "modbus_poll_round_trip": "baseline: one bare Modbus poll round trip",
            "opcua": "OPC UA: code committed → ScanResult event received",
        }
        for key, label in labels.items():
            row = result[key]
            print(f"{label:<48} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}")
        return 0
    return 130
