"""The station's MQTT topics and the retained presence payload (SPEC §7)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from scanstation import __version__
from scanstation.config import Config
from scanstation.payloads import iso

# ---- pure helpers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one device under its prefix."""

    base: str
    """``{topic_prefix}/{device_id}``"""

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def commands(self) -> str:
        """The subscription filter for every command."""
        return f"{self.base}/cmd/+"

    def event(self, suffix: str) -> str:
        """An outbox topic: captures, noreads, alerts."""
        return f"{self.base}/{suffix}"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/reply"


def topics_for(config: Config) -> Topics:
    return Topics(f"{config.mqtt.topic_prefix.rstrip('/')}/{config.device.id}")


def client_id_for(config: Config) -> str:
    return config.mqtt.client_id or f"scanstation-{config.device.id}"


def status_payload(
    state: Literal["online", "offline"],
    config: Config,
    started_at: float,
    last_seq: int | None = None,
) -> bytes:
    """The retained presence message (the ``offline`` one is also the Last Will).

    ``last_seq``: the highest capture seq the broker acknowledged, so that a collector can
    ask for a tail a broker restart lost (``outbox.replay``).
    """
    body: dict[str, object] = {
        "state": state,
        "version": __version__,
        "started_at": iso(started_at),
        "device_id": config.device.id,
        "site": config.device.site,
    }
    if last_seq is not None:
        body["last_seq"] = last_seq
    return json.dumps(body).encode()
