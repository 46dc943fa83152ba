"""Serial barcode scanners (USB CDC-ACM and RS-232) through pyserial-asyncio.

A serial scanner sends each scan as bytes followed by a terminator (CR, LF or both). GS
arrives as a real 0x1D byte, unless the scanner is programmed to send a visible substitute.
The pure :class:`SerialFramer` cuts the byte stream into scans; :class:`SerialSource`
opens the port, reads, reopens it when the scanner is unplugged and plugged back, and hands
every scan to the pipeline in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from scanstation.barcode.scantext import ScanText, split_scan
from scanstation.hw.serialport import OpenConnection, open_serial_port
from scanstation.model import Emit, Scan
from scanstation.sources.base import SourceHealth

if TYPE_CHECKING:
    from scanstation.config import SerialSourceConfig


log = logging.getLogger(__name__)


class SerialFramer:
    """Cuts bytes into frames at any terminator byte, or after a pause when there is none.

    >>> framer = SerialFramer("\\r\\n")
    >>> [f.raw_value for f in framer.feed(b"]C1010950600013435210AB\\x1d17270101\\r\\n", 0.0)]
    ['010950600013435210AB\\x1d17270101']
    """

    def __init__(
        self,
        terminator: str = "\r\n",
        *,
        frame_timeout: float = 0.1,
        encoding: str = "utf-8",
        gs_substitutes: tuple[str, ...] = (),
        aim_identifier: bool = True,
    ) -> None:
        self.terminators = frozenset(terminator.encode("latin-1"))
        self.frame_timeout = frame_timeout
        self.encoding = encoding
        self.gs_substitutes = gs_substitutes
        self.aim_identifier = aim_identifier
        self._buffer = bytearray()
        self._last_byte_at: float | None = None

    @property
    def deadline(self) -> float | None:
        """When :meth:`poll` ends the pending frame (only without a terminator), or None."""
        if self.terminators or not self._buffer or self._last_byte_at is None:
            return None
        return self._last_byte_at + self.frame_timeout

    def feed(self, data: bytes, now: float) -> list[ScanText]:
        """Take bytes received at ``now``; return the frames they complete."""
        frames: list[ScanText] = []
        if not self.terminators:
            last = self._last_byte_at
            if self._buffer and last is not None and now - last > self.frame_timeout:
                frames.extend(self._take(now))
            self._buffer.extend(data)
        else:
            for byte in data:
                if byte in self.terminators:
                    frames.extend(self._take(now))  # CR LF: the empty frame between is skipped
                else:
                    self._buffer.append(byte)
        if data:
            self._last_byte_at = now
        return frames

    def poll(self, now: float) -> list[ScanText]:
        """End the pending frame after a pause (terminator ``""`` only)."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        return self._take(now)

    def reset(self) -> bytes:
        """Forget a partial frame (the port went away); return its bytes for the log."""
        partial = bytes(self._buffer)
        self._buffer.clear()
        self._last_byte_at = None
        return partial

    def _take(self, now: float) -> list[ScanText]:
        if not self._buffer:
            return []
        text = bytes(self._buffer).decode(self.encoding, errors="replace")
        self._buffer.clear()
        identifier, value = split_scan(text, self.aim_identifier, self.gs_substitutes)
        if not value:
            return []
        return [ScanText(value, identifier, now)]


def _describe(port: str, exc: BaseException) -> str:
    text = str(exc)
    if "No such file" in text or "[Errno 2]" in text:
        return f"{port}: not plugged in (waiting for it)"
    if "Permission denied" in text or "[Errno 13]" in text:
        return f"{port}: permission denied: run as a member of the 'dialout' group"
    if "disconnected" in text or "Input/output error" in text or "[Errno 5]" in text:
        return f"{port}: unplugged (waiting for it)"
    return f"{port}: {text or type(exc).__name__}"


class SerialSource:
    """A serial barcode scanner on one port (a /dev/serial/by-id path keeps it stable)."""

    kind = "serial"

    def __init__(
        self,
        config: SerialSourceConfig,
        *,
        open_connection: OpenConnection | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
    ) -> None:
        self.config = config
        self.name = config.name
        self.health = SourceHealth(name=config.name, kind=self.kind)
        self._open_connection = open_connection
        self._backoff = (backoff_initial, backoff_max)
        self._scans: asyncio.Queue[Scan] = asyncio.Queue()

    def _framer(self) -> SerialFramer:
        config = self.config
        return SerialFramer(
            config.terminator,
            frame_timeout=config.frame_timeout_ms / 1000,
            encoding=config.encoding,
            gs_substitutes=tuple(config.gs_substitutes),
            aim_identifier=config.aim_identifier,
        )

    async def run(self, emit: Emit) -> None:
        """Read until cancelled; reopen the port with backoff whenever it goes away."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._emit_loop(emit))
                await self._port_loop()
        finally:
            self.health.set_state("stopped", self.health.detail)

    async def _open(self) -> tuple[asyncio.StreamReader, Any]:
        return await open_serial_port(self.config, self._open_connection)

    async def _port_loop(self) -> None:
        delay, longest = self._backoff
        port = self.config.port
        while True:
            try:
                reader, writer = await self._open()
            except Exception as exc:  # serial.SerialException, OSError, ValueError from pyserial
                self.health.set_state("reconnecting", _describe(port, exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            delay = self._backoff[0]
            self.health.set_state("running", f"{port}: open at {self.config.baud} baud")
            log.info("%s: reading %s", self.name, port)
            framer = self._framer()
            try:
                await self._read(reader, framer)
            except Exception as exc:  # serial.SerialException or OSError: the port went away
                partial = framer.reset()
                self.health.set_state("reconnecting", _describe(port, exc))
                log.warning(
                    "%s: %s%s",
                    self.name,
                    _describe(port, exc),
                    f"; dropped the partial scan {partial!r}" if partial else "",
                )
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
            await asyncio.sleep(delay)

    async def _read(self, reader: asyncio.StreamReader, framer: SerialFramer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = framer.deadline
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout)
            except TimeoutError:
                self._deliver(framer.poll(loop.time()))
                continue
            if not data:
                raise ConnectionError("the port was closed (device disconnected)")
            self._deliver(framer.feed(data, loop.time()))

    def _deliver(self, frames: list[ScanText]) -> None:
        for frame in frames:
            self._scans.put_nowait(
                Scan(
                    source=self.name,
                    raw_value=frame.raw_value,
                    symbology_identifier=frame.symbology_identifier,
                    symbology=frame.symbology,
                    metadata={"port": self.config.port},
                )
            )

    async def _emit_loop(self, emit: Emit) -> None:
        while True:
            scan = await self._scans.get()
            try:
                await emit(scan)
            except Exception:
                self.health.errors += 1
                log.exception("%s: could not store scan %r", self.name, scan.raw_value)
                continue
            self.health.scans += 1
            self.health.last_scan_at = time.time()
