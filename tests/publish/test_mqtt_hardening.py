"""Remote commands under attack, against a real Mosquitto: nested JSON, missing or wrong
tokens, and the per-station ACL of docs/deploy-fleet.md."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401 (the broker fixture)
from scanstation.store import NotFound
from scanstation.web.auth import ApiKeyStore
from station import BEARER, running_station, station_config, wait_until

BASE = "scanstation/lane-01"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _replies(sub: Subscriber, cid: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(f"{BASE}/cmd/+/reply") if m.correlation == cid.encode()]


async def test_deeply_nested_command_gets_an_error_reply_and_the_link_stays_up(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected, what="connected")
            deep = "[" * 3000 + "]" * 3000
            sub.publish(
                f"{BASE}/cmd/session.start",
                '{"metadata": ' + deep + "}",
                correlation=b"deep",
                authorization=BEARER,
            )
            # Queued right behind it: must still be answered.
            sub.publish(f"{BASE}/cmd/trigger", "{}", correlation=b"next", authorization=BEARER)
            await sub.until(
                lambda ms: {m.correlation for m in ms} >= {b"deep", b"next"}, what="both replies"
            )
            assert station.link.state.connects == 1  # never dropped
            assert station.link.state.connected
    deep_reply = _replies(sub, "deep")[0]
    assert deep_reply["ok"] is False
    assert deep_reply["error"]["code"] == "bad_request"
    assert "nested 3001 levels deep; at most 32" in deep_reply["error"]["message"]
    assert _replies(sub, "next")[0]["result"] == {"triggered": "cam0"}


async def test_commands_without_a_valid_token_are_refused_and_change_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    storage = tmp_path / "s"
    config = station_config(storage, broker.port, commands_without_token=["telemetry.now"])
    api_key = ApiKeyStore(config.api_keys_path).create("ops")
    upsert = json.dumps({"products": [{"gtin": "4006381333931", "name": "Hijacked"}]})
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected, what="connected")
            topic = f"{BASE}/cmd/catalog.upsert"
            sub.publish(topic, upsert, correlation=b"none")
            sub.publish(topic, upsert, correlation=b"wrong", authorization="Bearer guess")
            sub.publish(topic, upsert, correlation=b"basic", authorization="Basic b3BzOm9wcw==")
            field = json.dumps({**json.loads(upsert), "authorization": "Bearer nope"})
            sub.publish(topic, field, correlation=b"field")
            sub.publish(f"{BASE}/cmd/telemetry.now", "{}", correlation=b"exempt")
            await sub.until(lambda ms: len(ms) >= 5, what="five replies")
            with pytest.raises(NotFound):
                await station.store.get_product("04006381333931")
            refused = station.link.state.commands_unauthorized
            # The right ones: the command token (user property), an API key (3.1.1 field).
            sub.publish(topic, upsert, correlation=b"token", authorization=BEARER)
            sub.publish(
                f"{BASE}/cmd/trigger",
                json.dumps({"authorization": f"Bearer {api_key}"}),
                correlation=b"key",
            )
            await sub.until(lambda ms: len(ms) >= 7, what="seven replies")
            product = await station.store.get_product("04006381333931")
    assert refused == 4
    for cid in ("none", "wrong", "basic", "field"):
        reply = _replies(sub, cid)[0]
        assert (reply["ok"], reply["error"]["code"]) == (False, "unauthorized")
    assert (
        "needs an 'authorization: Bearer <token>'" in _replies(sub, "none")[0]["error"]["message"]
    )
    assert _replies(sub, "exempt")[0]["ok"] is True
    assert _replies(sub, "token")[0]["result"] == {"upserted": 1, "gtins": ["04006381333931"]}
    assert _replies(sub, "key")[0]["result"] == {"triggered": "cam0"}
    assert product.name == "Hijacked"


def _doc_acl() -> str:
    text = (DOCS / "deploy-fleet.md").read_text()
    block = re.search(r"<!-- acl: mosquitto -->\n```\n(.*?)```", text, re.S)
    assert block, "docs/deploy-fleet.md lost its Mosquitto ACL block"
    return block.group(1)


async def test_the_documented_acl_stops_another_station_spoofing_status_or_sending_commands(
    tmp_path: Path,
) -> None:
    passwords = tmp_path / "passwd"
    users = {"lane-01": "pw-lane-01", "lane-02": "pw-lane-02", "operations": "pw-ops"}
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwords), user, password], check=True
        )
    acl = tmp_path / "acl"
    acl.write_text(_doc_acl())
    broker = Broker(
        tmp_path / "b",
        anonymous=False,
        extra_conf=f"password_file {passwords}\nacl_file {acl}\n",
    ).start()
    try:
        (tmp_path / "pw").write_text(users["lane-01"])
        config = station_config(
            tmp_path / "s", broker.port, username="lane-01", password_file=str(tmp_path / "pw")
        )
        ops = Subscriber(
            broker.port, [f"{BASE}/#"], username="operations", password=users["operations"]
        )
        intruder = Subscriber(
            broker.port, [f"{BASE}/cmd/+"], username="lane-02", password=users["lane-02"]
        )
        with ops, intruder:
            async with running_station(config) as station:
                await ops.until(
                    lambda ms: any(m.topic == f"{BASE}/status" for m in ms), what="status"
                )
                # lane-02 holds a valid token (stolen) and still cannot reach lane-01.
                intruder.publish(f"{BASE}/status", '{"state": "offline"}', retain=True)
                intruder.publish(
                    f"{BASE}/cmd/session.start", "{}", correlation=b"evil", authorization=BEARER
                )
                ops.publish(
                    f"{BASE}/cmd/session.start", "{}", correlation=b"ops", authorization=BEARER
                )
                await ops.until(
                    lambda ms: any(m.correlation == b"ops" for m in ms), what="ops reply"
                )
                await asyncio.sleep(0.5)
                sessions = (await station.store.list_sessions())[1]
                assert station.link.state.connected
            statuses = [m.json()["state"] for m in ops.on(f"{BASE}/status")]
            commands_seen = intruder.on(f"{BASE}/cmd/+")
        assert sessions == 1  # the operations command ran, lane-02's did not
        assert "offline" not in statuses[:-1]
        assert statuses[0] == "online"
        assert [m.correlation for m in ops.on(f"{BASE}/cmd/+/reply")] == [b"ops"]
        assert commands_seen == []  # lane-02 may not even read lane-01's commands
    finally:
        broker.stop()


def test_commands_without_token_accepts_exactly_the_command_names() -> None:
    from typing import get_args

    from scanstation.config import MqttConfig
    from scanstation.publish.commands import COMMANDS

    annotation = MqttConfig.model_fields["commands_without_token"].annotation
    (literal,) = get_args(annotation)
    assert set(get_args(literal)) == set(COMMANDS)
