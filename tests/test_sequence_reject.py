"""The sequence check end to end: serial numbers replayed as scans through the real daemon,
an out-of-sequence one pulses the reject output (gpiozero's MockFactory pin, as a wiring loom
sees it) and counts as a match reject for the PLC (Modbus registers 6–7)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from pymodbus.client import AsyncModbusTcpClient

from lane import lane_config, until
from scanstation import app

REJECT_PIN = 17


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = saved


async def test_out_of_sequence_serial_pulses_the_reject_output(
    tmp_path: Path, factory: MockFactory
) -> None:
    serials = tmp_path / "serials.txt"
    serials.write_text(
        "".join(f"0109506000134352\\x1d21{n:06d}\n" for n in (100, 101, 103, 104)),
        encoding="utf-8",
    )
    config = lane_config(
        tmp_path,
        sources=[{"type": "replay", "name": "line", "file": str(serials), "interval_s": 0.05}],
        match={"sequence": "increment", "sequence_field": "21"},
        # Only the match rules reject here (the GTIN is not in the catalog: NOT_FOUND).
        gpio={
            "reject_output": REJECT_PIN,
            "reject_on": [],
            "reject_delay_ms": 0,
            "reject_pulse_ms": 20,
        },
        modbus={"enabled": True, "listen": "127.0.0.1:0"},
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(app.run(config, stop, on_ready=ready.set_result))
    try:
        daemon = await asyncio.wait_for(ready, 20)

        def windows() -> int:
            report = daemon.read_stats.reports().get("line")
            return sum(report.totals.values()) if report else 0

        await until(lambda: windows() == 4)
        [link] = daemon.plc_links
        await until(link.listening.is_set)
        client = AsyncModbusTcpClient("127.0.0.1", port=link.port)
        await client.connect()
        registers = (await client.read_input_registers(0, count=8, device_id=1)).registers
        client.close()
        reject = factory.pin(REJECT_PIN)
        await until(lambda: len(reject.states) >= 3)  # off → on → off: one pulse
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert registers == [0, 3, 0, 0, 0, 0, 0, 1]  # 3 good reads, 1 match reject
    assert [s.state for s in reject.states] == [False, True, False]
    assert daemon.read_stats.reports()["line"].last_result.endswith("21000104")
