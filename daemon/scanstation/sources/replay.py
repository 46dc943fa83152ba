"""Replays raw values from a text file (default: the bundled samples) as if scanned."""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from pathlib import Path

from scanstation.barcode.scantext import restore_gs
from scanstation.config import ReplaySourceConfig
from scanstation.model import Emit, Scan
from scanstation.sources.base import SourceHealth

BUNDLED_SAMPLES = "sample_scans.txt"


def read_values(path: Path | None) -> list[str]:
    """Non-empty, non-comment lines; ``\\x1d`` written out stands for GS."""
    if path is None:
        text = resources.files("scanstation.data").joinpath(BUNDLED_SAMPLES).read_text("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return [
        restore_gs(line.rstrip("\r\n"), ["\\x1d"])
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


class ReplaySource:
    def __init__(self, config: ReplaySourceConfig) -> None:
        self.name = config.name
        self.config = config
        self.health = SourceHealth(config.name, "replay")

    async def run(self, emit: Emit) -> None:
        values = await asyncio.to_thread(read_values, self.config.file)
        self.health.set_state("running", f"replaying {len(values)} values")
        while True:
            for value in values:
                await emit(Scan(source=self.name, raw_value=value))
                self.health.scans += 1
                self.health.last_scan_at = time.time()
                await asyncio.sleep(self.config.interval_s)
            if not self.config.loop:
                break
        self.health.set_state("stopped", "replay finished")
