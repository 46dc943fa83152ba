"""What the HTTP layer needs of the running daemon, kept on the app under one typed key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from scanstation.bus import EventBus
from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.readstats import ReadStats
from scanstation.services.noreads import NoReadRing
from scanstation.sources.base import SourceHealth
from scanstation.store import Store

API_BASE = "/scanner/api/v1"


@dataclass
class Services:
    """What the HTTP layer needs of the running daemon."""

    config: Config
    store: Store
    pipeline: Pipeline
    bus: EventBus
    sources: dict[str, SourceHealth] = field(default_factory=dict)
    """Health of every running source, by name."""
    triggers: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Software triggers of the sources that have one (cameras in trigger mode), by name."""
    camera_stats: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Counters of the camera sources (frames, decodes, no-reads, fps, decode ms), by name."""
    mqtt: Any = None
    """The MQTT link (its ``state`` feeds /stats and /metrics); None in tests without one."""
    config_path: Path | None = None
    """The config file the daemon was started with (the settings page edits it)."""
    restart: Callable[[], None] | None = None
    """Restarts the daemon in place with the config file read again (None: cannot)."""
    read_stats: ReadStats = field(default_factory=ReadStats)
    """Read-rate statistics and quality trends per source (/stats, /metrics)."""
    noreads: NoReadRing | None = None
    """The no-read image ring (/noreads); None when it is off."""


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
