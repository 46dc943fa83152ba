"""MQTT commands check the role of the API key that sends them (real Mosquitto)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401 (the broker fixture)
from scanstation.publish.commands import COMMAND_ROLES, COMMANDS
from scanstation.services.roles import Role
from scanstation.web.auth import ApiKeyStore
from station import running_station, station_config, wait_until

BASE = "scanstation/lane-01"


def test_every_command_has_a_minimum_role() -> None:
    assert set(COMMAND_ROLES) == set(COMMANDS)


async def test_a_viewer_key_reads_telemetry_but_cannot_start_a_session(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    keys = ApiKeyStore(config.api_keys_path)
    viewer, operator = keys.create("wall", Role.VIEWER), keys.create("lane", Role.OPERATOR)
    upsert = {"products": [{"gtin": "4006381333931", "name": "Pencil"}]}
    sent = [
        ("session.start", viewer, {}, b"v-start"),
        ("telemetry.now", viewer, {}, b"v-telemetry"),
        ("session.start", operator, {}, b"o-start"),
        ("catalog.upsert", operator, upsert, b"o-upsert"),
    ]
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected, what="connected")
            for name, key, body, cid in sent:
                sub.publish(f"{BASE}/cmd/{name}", json.dumps(body), correlation=cid,
                            authorization=f"Bearer {key}")  # fmt: skip
            await sub.until(lambda ms: len(ms) >= 4, what="four replies")
            sessions, _ = await station.store.list_sessions(limit=10, offset=0)
            refused = station.link.state.commands_unauthorized
    replies: dict[bytes, Any] = {m.correlation: m.json() for m in sub.on(f"{BASE}/cmd/+/reply")}
    assert replies[b"v-start"]["error"]["code"] == "forbidden"
    assert (
        "has the viewer role; the command needs operator"
        in (replies[b"v-start"]["error"]["message"])
    )
    assert replies[b"v-telemetry"]["ok"] is True
    assert replies[b"o-start"]["ok"] is True
    assert replies[b"o-upsert"]["error"]["code"] == "forbidden"
    assert len(sessions) == 1  # only the operator's
    assert refused == 2
