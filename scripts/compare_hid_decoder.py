#!/usr/bin/env python3
"""Keystroke decoder of an earlier commit vs this checkout's, side by side in one process.

    .venv/bin/python scripts/compare_hid_decoder.py 0e38a1d us,uk,de,fr,es,it

Exports ``daemon/scanstation`` of the given commit into a temporary folder as the package
``scanstation_old``, then for each layout times both decoders on 300 GS1 DataMatrix scans
(each typed by its own version's encoder), alternating old and new 7 times, in CPU seconds
of this process, and prints the medians and the new/old ratio as JSON.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GS = "\x1d"


def scan_text(i: int) -> str:
    return f"]d2010950600013435217270101{GS}10ABC123{GS}21S{i:07d}"


def export_old(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "daemon/scanstation"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    old = into / "scanstation_old"
    (into / "daemon" / "scanstation").rename(old)
    for path in old.rglob("*.py"):
        text = path.read_text("utf-8")
        text = re.sub(r"\bscanstation\.", "scanstation_old.", text)
        text = text.replace("from scanstation import", "from scanstation_old import")
        path.write_text(text, "utf-8")


def rate(keymaps: ModuleType, hid: ModuleType, layout: str, events: list[Any]) -> float:
    decoder = hid.KeystrokeDecoder(hid.DecoderSettings(layout=layout))
    started = time.process_time()
    scans = sum(len(decoder.feed(*event)) for event in events)
    elapsed = time.process_time() - started
    if scans != 300:
        raise RuntimeError(f"{layout}: {scans} scans decoded of 300")
    return 300 / elapsed


def main(argv: list[str]) -> int:
    commit, layouts = argv[0], argv[1].split(",")
    with tempfile.TemporaryDirectory() as tmp:
        export_old(commit, Path(tmp))
        sys.path.insert(0, tmp)
        from scanstation_old.hw import keymaps as old_keymaps  # type: ignore[import-not-found]
        from scanstation_old.sources import hid as old_hid  # type: ignore[import-not-found]

        from scanstation.hw import keymaps as new_keymaps
        from scanstation.sources import hid as new_hid

        out = {}
        for layout in layouts:
            old_events = [
                e for i in range(300) for e in old_keymaps.keystrokes(layout, scan_text(i), start=i)
            ]
            new_events = [
                e for i in range(300) for e in new_keymaps.keystrokes(layout, scan_text(i), start=i)
            ]
            old, new = [], []
            for _ in range(7):
                old.append(rate(old_keymaps, old_hid, layout, old_events))
                new.append(rate(new_keymaps, new_hid, layout, new_events))
            out[layout] = {
                "old_scans_per_cpu_s": round(statistics.median(old)),
                "new_scans_per_cpu_s": round(statistics.median(new)),
                "new_over_old": round(statistics.median(new) / statistics.median(old), 3),
            }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
