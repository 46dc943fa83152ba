"""The Modbus TCP server (pymodbus): counters and the last result for a PLC, coil 0 to trigger.

The input registers are not copied on every read window: pymodbus calls :func:`action` on
each request (on the event loop), and a read of the input registers is answered from the
read-rate statistics as they are at that moment, so a PLC never sees a stale or half-updated
counter (both words of a uint32 come from one snapshot). Writing 1 to coil 0 fires the
software trigger of the first triggered camera; the coil then reads back 0 (a momentary
push button, so the next write of 1 triggers again).

Served on the daemon's event loop; ``run`` listens until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from scanstation.config import ModbusConfig
from scanstation.plc import PlcError
from scanstation.plc.registers import REGISTER_COUNT, TRIGGER_COIL, input_registers
from scanstation.readstats import ReadStats

log = logging.getLogger(__name__)

READ_INPUT_REGISTERS = 4
READ_COILS = 1
WRITE_COILS = (5, 15)


class ModbusLink:
    """One Modbus TCP server over the station's read statistics and its first trigger."""

    def __init__(
        self,
        config: ModbusConfig,
        stats: ReadStats,
        trigger: Callable[[], None] | None,
        *,
        trigger_name: str = "",
    ) -> None:
        self.config = config
        self.stats = stats
        self.trigger = trigger
        self.trigger_name = trigger_name
        self.triggers = 0
        """Triggers fired from coil 0 since start."""
        self.port = 0
        """The port listened on (the configured one, or the one picked for port 0)."""
        self._server: ModbusTcpServer | None = None
        self.listening = asyncio.Event()

    def device(self) -> SimDevice:
        """Unit ``config.unit``: 16 coils, 1 discrete input, 1 holding and 59 input registers."""
        return SimDevice(
            self.config.unit,
            simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=REGISTER_COUNT, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' hook before each request is served (registers may be changed in place)."""
        if function_code == READ_INPUT_REGISTERS:
            image = input_registers(self.stats.totals(), self.stats.last_result())
            registers[start_address : start_address + len(image)] = image
        elif function_code == READ_COILS:
            registers[0] &= ~(1 << TRIGGER_COIL)  # momentary: reads back 0 once taken
        elif function_code in WRITE_COILS and values is not None:
            offset = TRIGGER_COIL - address
            if 0 <= offset < len(values) and values[offset]:
                if self.trigger is None:
                    log.warning("modbus: coil 0 written, but no camera has a software trigger")
                    return ExcCodes.DEVICE_FAILURE
                self.triggers += 1
                self.trigger()
        return None

    async def run(self) -> None:
        """Listen until cancelled."""
        server = ModbusTcpServer(self.device(), address=(self.config.host, self.config.port))
        try:
            await server.serve_forever(background=True)
        except (OSError, RuntimeError) as exc:
            raise PlcError(
                f"modbus.listen = {self.config.listen!r}: cannot listen ({exc}); choose a free "
                "port (5020 needs no root, 502 does)"
            ) from None
        self._server = server
        transport: Any = server.transport
        self.port = int(transport.sockets[0].getsockname()[1])
        self.listening.set()
        log.info(
            "modbus: serving unit %d on %s:%d (coil 0 triggers %s)",
            self.config.unit,
            self.config.host,
            self.port,
            self.trigger_name or "nothing",
        )
        try:
            await asyncio.Event().wait()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]
