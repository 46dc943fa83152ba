"""The station's own vital signs that several places report: CPU temperature, free disk."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path


def cpu_temperature() -> float | None:
    """The SoC temperature in °C from the kernel's first thermal zone (None off a Pi)."""
    try:
        text = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
        return round(int(text.strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def disk_free_mb(path: Path) -> float | None:
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return round(shutil.disk_usage(candidate).free / 1e6, 1)
    return None
