"""Serial output (RS-232, USB-CDC): each read as a line to a PLC, a scale or a legacy POS.

The port is opened with pyserial-asyncio and reopened with backoff when it goes away (a USB
adapter unplugged). Each read is sent as ``[AIM identifier] prefix text suffix terminator``;
GS stays a real 0x1D byte, as a serial scanner would send it. Reads that arrive while the
port is closed wait for it only ``max_age_ms``: a PLC gate must not act on a late read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from scanstation.config import SerialOutputConfig
from scanstation.hw.serialport import OpenConnection, open_serial_port
from scanstation.outputs.base import LiveRead, LiveSink

log = logging.getLogger(__name__)

"""open_serial_connection(url=..., baudrate=..., ...) -> (reader, writer)."""

BACKOFF_MAX_S = 30.0


def line_bytes(text: str, terminator: str, encoding: str) -> bytes:
    """The bytes sent for one read; characters ``encoding`` lacks become ``?``.

    >>> line_bytes("0109506000134352\\x1d10A", "\\r\\n", "ascii")
    b'0109506000134352\\x1d10A\\r\\n'
    >>> line_bytes("Café", "\\n", "ascii")
    b'Caf?\\n'
    """
    return (text + terminator).encode(encoding, errors="replace")


class SerialSink(LiveSink):
    """A ``[[outputs]] type = "serial"``: writes each read as a line to a port."""

    config: SerialOutputConfig

    def __init__(
        self, config: SerialOutputConfig, *, open_connection: OpenConnection | None = None
    ) -> None:
        super().__init__(config)
        self._open_connection = open_connection
        self._writer: Any = None
        """The open port's StreamWriter, or None while it is closed."""

    async def _open(self) -> tuple[asyncio.StreamReader, Any]:
        return await open_serial_port(self.config, self._open_connection)

    async def run(self) -> None:
        """Keep the port open and write queued reads until cancelled."""
        delay = self.config.reconnect_s
        while True:
            try:
                reader, writer = await self._open()
            except Exception as exc:  # serial.SerialException, OSError, ValueError
                self.state = "port closed"
                self.fail(f"cannot open {self.config.port}: {exc}; retrying in {delay:.0f} s")
                self._drop_stale()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = self.config.reconnect_s
            self.state = "ok"
            log.info("output %s: %s open at %d baud", self.name, self.config.port, self.config.baud)
            try:
                await self._pump(reader, writer)
            except Exception as exc:  # the port went away mid-write or mid-read
                self.state = "port closed"
                self.fail(f"{self.config.port}: {exc}; reopening")
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
            await asyncio.sleep(delay)

    def _drop_stale(self) -> None:
        """While the port is closed, let go of reads that are already too old to send."""
        kept: list[LiveRead] = []
        while not self.queue.empty():
            read = self.queue.get_nowait()
            self.queue.task_done()
            if not self.stale(read):
                kept.append(read)
        for read in kept:
            self.queue.put_nowait(read)

    def try_now(self, read: LiveRead) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        # The transport writes at once when the port takes it and buffers the rest.
        writer.write(line_bytes(read.text, self.config.terminator, self.config.encoding))
        self.written(read)
        return True

    async def _pump(self, reader: asyncio.StreamReader, writer: Any) -> None:
        closed = asyncio.create_task(self._until_closed(reader))
        take: asyncio.Task[LiveRead] | None = None
        self._writer = writer
        try:
            while True:
                take = asyncio.create_task(self.queue.get())
                await asyncio.wait({take, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not take.done():
                    closed.result()  # raises why the port closed
                    raise ConnectionError("the port was closed")
                read = take.result()
                self.busy = True
                try:
                    if not self.stale(read):
                        await self._write(writer, read)
                finally:
                    self.busy = False
                    self.queue.task_done()
        finally:
            self._writer = None
            for task in (take, closed):
                if task is not None and not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await closed

    async def _write(self, writer: Any, read: LiveRead) -> None:
        data = line_bytes(read.text, self.config.terminator, self.config.encoding)
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), timeout=5.0)
        except BaseException:
            self.counters.dropped += 1
            raise
        self.written(read)

    async def _until_closed(self, reader: asyncio.StreamReader) -> None:
        """Read (and ignore) what the other end sends, to notice when the port goes away."""
        while await reader.read(4096):
            pass
        raise ConnectionError("the port was closed (device disconnected)")
