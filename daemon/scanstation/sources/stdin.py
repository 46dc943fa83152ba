"""Standard input as a scanner: one value per line (kiosks driven by another program, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from typing import TextIO

from scanstation.barcode.scantext import restore_gs
from scanstation.config import StdinSourceConfig
from scanstation.model import RAW_VALUE_MAX_LENGTH, Emit, Scan
from scanstation.sources.base import SourceHealth

log = logging.getLogger(__name__)


class StdinSource:
    """Reads lines on a daemon thread (a blocked read never holds up shutdown)."""

    def __init__(self, config: StdinSourceConfig, stream: TextIO | None = None) -> None:
        self.name = config.name
        self.config = config
        self.stream = stream if stream is not None else sys.stdin
        self.health = SourceHealth(config.name, "stdin")

    def _reader(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
        try:
            for line in self.stream:
                # Back-pressure: wait until the loop has taken the line before reading on.
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
        except (OSError, ValueError, RuntimeError) as exc:
            log.debug("stdin reader stopped: %s", exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.run_coroutine_threadsafe(lines.put(None), loop)

    async def run(self, emit: Emit) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue(maxsize=64)
        thread = threading.Thread(
            target=self._reader,
            args=(asyncio.get_running_loop(), lines),
            name=f"stdin-{self.name}",
            daemon=True,
        )
        thread.start()
        self.health.set_state("running", "reading standard input")
        while (line := await lines.get()) is not None:
            value = restore_gs(line.rstrip("\r\n"), self.config.gs_substitutes)
            if not value.strip():
                continue
            if len(value) > RAW_VALUE_MAX_LENGTH:
                log.warning(
                    "%s: ignored a line of %d characters (at most %d)",
                    self.name,
                    len(value),
                    RAW_VALUE_MAX_LENGTH,
                )
                self.health.errors += 1
                continue
            await emit(Scan(source=self.name, raw_value=value))
            self.health.scans += 1
            self.health.last_scan_at = asyncio.get_running_loop().time()
        self.health.set_state("stopped", "end of input")
