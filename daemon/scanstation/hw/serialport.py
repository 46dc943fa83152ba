"""Opening a serial port (pyserial-asyncio) for a serial scanner or a serial output alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

OpenConnection = Callable[..., Awaitable[tuple[asyncio.StreamReader, Any]]]
"""open_serial_connection(url=..., baudrate=..., ...) -> (reader, writer)."""


_PARITY = {"none": "N", "even": "E", "odd": "O"}


class SerialLine(Protocol):
    """The line settings a serial source and a serial output share (read-only)."""

    @property
    def port(self) -> str: ...
    @property
    def baud(self) -> int: ...
    @property
    def bytesize(self) -> Literal[7, 8]: ...
    @property
    def parity(self) -> Literal["none", "even", "odd"]: ...
    @property
    def stopbits(self) -> Literal[1, 2]: ...


async def open_serial_port(
    line: SerialLine, open_connection: OpenConnection | None = None
) -> tuple[asyncio.StreamReader, Any]:
    """Open a serial port with pyserial-asyncio (imported here: the module works without it)."""
    if open_connection is None:
        import serial_asyncio

        open_connection = serial_asyncio.open_serial_connection
    return await open_connection(
        url=line.port,
        baudrate=line.baud,
        bytesize=line.bytesize,
        parity=_PARITY[line.parity],
        stopbits=line.stopbits,
    )
