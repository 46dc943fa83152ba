"""The Modbus TCP server as a PLC sees it: a real pymodbus client reads the counters and the
last result of a lane reading scripted windows, and writes coil 0 to trigger the camera."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from lane import lane_config, running_lane, until
from scanstation.config import ConfigError, parse_config
from scanstation.config.risks import risky_settings
from scanstation.plc.modbus import ModbusLink
from scanstation.plc.registers import REGISTER_COUNT, decode_text, input_registers

MODBUS = {"enabled": True, "listen": "127.0.0.1:0", "unit": 1}


def counters(registers: list[int]) -> dict[str, int]:
    words = [(registers[i] << 16) | registers[i + 1] for i in range(0, 8, 2)]
    return dict(zip(("good", "noread", "multiple", "rejected"), words, strict=True))


async def test_modbus_client_reads_counters_and_last_result_and_triggers(tmp_path: Path) -> None:
    config = lane_config(tmp_path, modbus=MODBUS, match={"symbologies": ["EAN13", "QRCode"]})
    async with running_lane(config) as lane:
        [link] = lane.daemon.plc_links
        assert isinstance(link, ModbusLink)
        await until(link.listening.is_set)
        client = AsyncModbusTcpClient("127.0.0.1", port=link.port)
        await client.connect()
        try:
            for name in ("01-ean13.jpg", "07-empty.jpg", "06-two-codes.jpg", "05-code128.jpg"):
                await lane.window(name)
            response = await client.read_input_registers(0, count=REGISTER_COUNT, device_id=1)
            assert not response.isError()
            assert counters(response.registers) == {
                "good": 1, "noread": 1, "multiple": 1, "rejected": 1,
            }  # fmt: skip
            # The last result is the rejected Code 128, whatever its verdict.
            assert response.registers[8] == len("SCANSTATION-0001")
            assert decode_text(response.registers) == "SCANSTATION-0001"
            assert response.registers[9] == (ord("S") << 8) | ord("C")  # high byte first

            # Coil 0 = the camera's software trigger: a window opens and reads the label.
            triggers = lane.source.stats().triggers
            written = await client.write_coil(0, True, device_id=1)
            assert not written.isError()
            await until(lambda: lane.source.stats().triggers == triggers + 1)
            lane.show("01-ean13.jpg")
            await until(lambda: lane.windows() == 5)
            response = await client.read_input_registers(0, count=REGISTER_COUNT, device_id=1)
            assert counters(response.registers)["good"] == 2
            assert decode_text(response.registers) == "4006381333931"
            coil = await client.read_coils(0, count=1, device_id=1)
            assert coil.bits[0] is False  # momentary: reads back 0 once the trigger was taken
            assert link.triggers == 1

            # Another unit id is not this station.
            other = await client.read_input_registers(0, count=2, device_id=7)
            assert other.isError()
        finally:
            client.close()


def test_input_registers_wrap_counters_and_cut_the_text_at_100_bytes() -> None:
    registers = input_registers({"good": 2**32 + 5}, "é" + "X" * 150)
    assert len(registers) == REGISTER_COUNT == 59
    assert registers[:2] == [0, 5]
    assert registers[8] == 100
    assert decode_text(registers) == "?" + "X" * 99


def test_modbus_is_off_by_default_and_warned_about_off_loopback(tmp_path: Path) -> None:
    config = lane_config(tmp_path)
    assert (config.modbus.enabled, config.modbus.listen) == (False, "127.0.0.1:5020")
    wide = lane_config(tmp_path, modbus={"enabled": True, "listen": "0.0.0.0:5020"})
    assert any("Modbus TCP has no authentication" in r for r in risky_settings(wide))
    with pytest.raises(ConfigError, match=r"modbus\.listen 'plc' must be host:port"):
        parse_config({"modbus": {"listen": "plc"}}, environ={})
