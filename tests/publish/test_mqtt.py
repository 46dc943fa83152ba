"""The MQTT link against a real Mosquitto: presence, outbox, telemetry, commands, TLS, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401 (the broker fixture)
from scanstation.publish.commands import COMMANDS, CommandAuth, CommandError, parse_command
from scanstation.publish.connection import backoff_delay, refusal_kind
from scanstation.publish.discovery import discovery_messages
from scanstation.publish.topics import Topics
from station import (
    BEARER,
    outbox_drained,
    running_station,
    station_config,
    stop_link,
    wait_until,
)

BASE = "scanstation/lane-01"
OPEN = CommandAuth(exempt=frozenset(COMMANDS))
"""Every command allowed without a token: for the tests of parsing alone."""

# ---- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(0, 1.0, 0.5), (0, 0.0, 0.25), (1, 1.0, 1.0), (3, 1.0, 4.0), (6, 1.0, 30.0), (60, 0.0, 15.0)],
)
def test_backoff_delay_grows_to_the_cap_with_jitter(
    attempt: int, rand: float, expected: float
) -> None:
    assert backoff_delay(attempt, 0.5, 30.0, lambda: rand) == expected


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (0x00, "ok"),
        (0x10, "ok"),  # no matching subscribers: delivered as far as the broker is concerned
        (0x80, "retry"),
        (0x87, "retry"),
        (0x97, "throttled"),
        (0x90, "dead"),
        (0x95, "dead"),
        (0x99, "dead"),
    ],
)
def test_refusal_kind_sorts_puback_reason_codes(reason: int, kind: str) -> None:
    assert refusal_kind(reason) == kind


@pytest.mark.parametrize(
    ("name", "payload", "code", "field", "message"),
    [
        ("reboot", b"{}", "unknown_command", "", "unknown command 'reboot'; expected one of"),
        ("session.start", b"{not json", "bad_request", "", "payload is not valid JSON"),
        ("session.start", b"[1, 2]", "bad_request", "", "must be a JSON object, got list"),
        ("session.start", b'{"colour": "red"}', "invalid", "colour", "unknown field"),
        (
            "session.start",
            b'{"capture_mode": "video"}',
            "invalid",
            "capture_mode",
            "Input should be",
        ),
        (
            "session.start",
            json.dumps({"metadata": {"k": "v" * 501}}).encode(),
            "invalid",
            "metadata",
            "is 501 characters; at most 500 are allowed",
        ),
        ("session.end", b"{}", "invalid", "session_public_id", "Field required"),
        (
            "capture.retry",
            b'{"capture_public_id": ""}',
            "invalid",
            "capture_public_id",
            "at least 1",
        ),
        ("catalog.upsert", b'{"products": []}', "invalid", "products", "non-empty list"),
        ("catalog.upsert", b'{"gtin": "4006381333932"}', "invalid", "products", "4006381333932"),
        (
            "session.end",
            b'{"correlation_id": [1]}',
            "invalid",
            "correlation_id",
            "string or number",
        ),
    ],
)
def test_parse_command_rejects_bad_payloads_naming_the_problem(
    name: str, payload: bytes, code: str, field: str, message: str
) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(name, payload, None, None, auth=OPEN)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert message in str(caught.value)


def test_parse_command_reads_bodies_and_payload_correlation_ids() -> None:
    start = parse_command(
        "session.start",
        b'{"metadata": {"lane": 3}, "correlation_id": "abc"}',
        None,
        None,
        auth=OPEN,
    )
    assert (start.body.capture_mode, start.body.metadata, start.correlation) == (
        "both",
        {"lane": 3},
        b"abc",
    )
    upsert = parse_command(
        "catalog.upsert",
        b'{"products": [{"gtin": "4006381333931", "name": "Pen"}]}',
        b"x",
        "r/1",
        auth=OPEN,
    )
    assert upsert.body == [{"gtin": "04006381333931", "name": "Pen"}]
    assert (upsert.correlation, upsert.response_topic) == (b"x", "r/1")
    assert parse_command("telemetry.now", b"", None, None, auth=OPEN).body is not None


def test_topics_name_commands_and_replies() -> None:
    topics = Topics(BASE)
    assert topics.command_name(f"{BASE}/cmd/session.start") == "session.start"
    assert topics.command_name(f"{BASE}/cmd/session.start/reply") is None
    assert topics.command_name("scanstation/lane-02/cmd/trigger") is None
    assert topics.reply("trigger") == f"{BASE}/cmd/trigger/reply"
    assert set(COMMANDS) == {
        "session.start",
        "session.end",
        "trigger",
        "capture.retry",
        "catalog.upsert",
        "telemetry.now",
    }


def test_discovery_messages_describe_one_device_with_three_sensors(tmp_path: Path) -> None:
    config = station_config(tmp_path, 1, homeassistant_discovery=True)
    messages = discovery_messages(config)
    assert [topic for topic, _ in messages] == [
        "homeassistant/sensor/scanstation_lane_01/last_scan/config",
        "homeassistant/sensor/scanstation_lane_01/status/config",
        "homeassistant/sensor/scanstation_lane_01/outbox_depth/config",
    ]
    bodies = [json.loads(payload) for _, payload in messages]
    assert {b["device"]["identifiers"][0] for b in bodies} == {"scanstation_lane_01"}
    assert [b["state_topic"] for b in bodies] == [
        f"{BASE}/captures",
        f"{BASE}/status",
        f"{BASE}/telemetry",
    ]


# ---- against a broker --------------------------------------------------------------------


async def test_link_presence_online_retained_then_offline_on_a_quick_clean_stop(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "b", extra_conf="log_type notice").start()
    try:
        config = station_config(tmp_path / "s", broker.port)
        with Subscriber(broker.port, [f"{BASE}/status"]) as sub:
            async with running_station(config) as station:
                await wait_until(lambda: station.link.state.connected, what="connected")
                online = (await sub.until(lambda ms: len(ms) >= 1, what="online"))[0].json()
                took = await stop_link(station)
                assert not station.link.state.connected
            offline = (await sub.until(lambda ms: len(ms) >= 2, what="offline"))[1].json()
        # A newcomer sees the retained state.
        with Subscriber(broker.port, [f"{BASE}/status"]) as late:
            retained = (await late.until(lambda ms: len(ms) >= 1, what="retained status"))[0]
    finally:
        broker.stop()
    assert (online["state"], online["device_id"], online["site"]) == (
        "online",
        "lane-01",
        "store-7",
    )
    assert offline == {**online, "state": "offline"}
    assert (retained.retain, retained.json()["state"]) == (True, "offline")
    assert took < 1.5
    # A clean DISCONNECT (the Will is discarded: the offline above was published by the stop).
    assert "Client scanstation-lane-01 disconnected." in broker.log.read_text()


async def test_link_publishes_capture_events_in_seq_order_and_empties_the_outbox(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
        async with running_station(config) as station:
            created = [await station.capture(f"400638133393{i % 10}") for i in range(30)]
            events = [m.json() for m in await sub.until(lambda ms: len(ms) >= 30, what="30 events")]
            await wait_until(lambda: station.link.state.published == 30)
            await outbox_drained(station.store)
            await station.link.refresh_stats()
            assert station.link.state.outbox_depth == 0
    assert [e["seq"] for e in events] == list(range(1, 31))
    assert [e["public_id"] for e in events] == [c.public_id for c in created]
    assert {e["schema"] for e in events} == {"scanstation.capture/1"}
    assert len({e["event_id"] for e in events}) == 30
    assert {(e["device_id"], e["site"]) for e in events} == {("lane-01", "store-7")}


async def test_link_paces_the_drain_under_the_publish_rate_limit(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port, publish_rate_limit=50)
    with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            await asyncio.gather(*(station.capture() for _ in range(30)))
            events = await sub.until(lambda ms: len(ms) >= 30, what="30 events")
    spread = events[-1].time - events[0].time
    assert 29 / 50 * 0.9 <= spread < 3.0


async def test_homeassistant_discovery_is_published_retained_on_connect(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port, homeassistant_discovery=True)
    async with running_station(config) as station:
        # The first telemetry follows the discovery messages on the connection.
        await wait_until(lambda: station.link.state.telemetry_sent >= 1)
    with Subscriber(broker.port, ["homeassistant/#"]) as sub:
        configs = await sub.until(lambda ms: len(ms) >= 3, what="three retained configs")
    assert sorted(m.topic.split("/")[-2] for m in configs) == [
        "last_scan",
        "outbox_depth",
        "status",
    ]
    assert {m.retain for m in configs} == {True}


async def test_link_survives_a_failing_telemetry_callback(broker: Broker, tmp_path: Path) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("camera gone")

    config = station_config(tmp_path / "s", broker.port, telemetry_interval=0.1)
    with Subscriber(broker.port, [f"{BASE}/telemetry"]) as sub:
        async with running_station(config, telemetry=broken) as station:
            messages = await sub.until(lambda ms: len(ms) >= 3, what="telemetry")
            assert station.link.state.connects == 1
    assert messages[0].json()["telemetry_error"] == "RuntimeError: camera gone"


async def test_link_telemetry_carries_backlog_and_extras_and_is_not_queued_offline(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port, telemetry_interval=0.2)
    with Subscriber(broker.port, [f"{BASE}/telemetry"]) as sub:
        async with running_station(config, telemetry=lambda: {"fps": 14.5}) as station:
            await station.capture()
            messages = await sub.until(
                lambda ms: any(m.json()["captures_total"] == 1 for m in ms), what="telemetry"
            )
            body = messages[-1].json()
            assert body["fps"] == 14.5
            assert set(body["outbox"]) == {"depth", "oldest_age_s", "dead", "in_flight"}
            assert body["device_id"] == "lane-01"
            assert body["disk_free_mb"] > 0
            broker.stop()
            await wait_until(lambda: not station.link.state.connected, what="disconnected")
            sent = station.link.state.telemetry_sent
            await asyncio.sleep(0.8)
            assert station.link.state.telemetry_sent == sent  # nothing produced while offline


async def test_commands_reply_on_the_response_topic_and_a_repeated_correlation_runs_once(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, ["replies/#", f"{BASE}/cmd/+/reply"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            for _ in range(2):
                sub.publish(
                    f"{BASE}/cmd/session.start",
                    json.dumps({"metadata": {"operator": "ana"}}),
                    correlation=b"req-1",
                    response_topic="replies/ops",
                    authorization=BEARER,
                )
            replies = await sub.until(lambda ms: len(ms) >= 2, what="two replies")
            await asyncio.sleep(0.2)
            sessions, total = await station.store.list_sessions()
    assert total == 1
    assert [(r.topic, r.correlation) for r in replies] == [("replies/ops", b"req-1")] * 2
    assert replies[0].payload == replies[1].payload
    body = replies[0].json()
    assert (body["ok"], body["command"], body["correlation_id"]) == (True, "session.start", "req-1")
    assert body["result"]["public_id"] == sessions[0].public_id
    assert body["result"]["metadata"] == {"operator": "ana"}


async def test_commands_run_end_to_end_and_report_errors_clearly(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply", f"{BASE}/telemetry"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            capture = await station.capture("4006381333931")
            await station.pipeline.idle()

            def ask(name: str, body: dict[str, Any]) -> dict[str, Any]:
                cid = f"{name}-{len(sub.messages)}"
                sub.publish(
                    f"{BASE}/cmd/{name}",
                    json.dumps({**body, "correlation_id": cid, "authorization": BEARER}),
                )
                reply = sub.wait_for(
                    lambda ms: any(
                        m.topic.endswith("/reply") and m.json()["correlation_id"] == cid for m in ms
                    ),
                    what=f"reply to {name}",
                )
                return next(
                    m.json()
                    for m in reply
                    if m.topic.endswith("/reply") and m.json()["correlation_id"] == cid
                )

            upsert = await asyncio.to_thread(
                ask, "catalog.upsert", {"products": [{"gtin": "4006381333931", "name": "Pen"}]}
            )
            assert upsert["result"] == {"upserted": 1, "gtins": ["04006381333931"]}
            retried = await asyncio.to_thread(
                ask, "capture.retry", {"capture_public_id": capture.public_id}
            )
            assert (retried["ok"], retried["result"]["revision"]) == (True, 2)
            await station.pipeline.idle()
            again = await station.store.get_capture(capture.public_id)
            assert (again.status.value, again.product_name) == ("COMPLETED", "Pen")

            conflict = await asyncio.to_thread(
                ask, "capture.retry", {"capture_public_id": capture.public_id}
            )
            assert conflict["error"]["code"] == "conflict"
            assert "only FAILED or NOT_FOUND" in conflict["error"]["message"]

            trig = await asyncio.to_thread(ask, "trigger", {})
            assert (trig["result"], station.triggered) == ({"triggered": "cam0"}, ["cam0"])
            unknown = await asyncio.to_thread(ask, "trigger", {"source": "cam9"})
            assert (unknown["error"]["code"], unknown["error"]["field"]) == ("not_found", "source")

            ended = await asyncio.to_thread(
                ask, "session.end", {"session_public_id": station.session_id}
            )
            assert ended["result"]["status"] == "COMPLETED"
            missing = await asyncio.to_thread(ask, "session.end", {"session_public_id": "nope"})
            assert missing["error"] == {
                "code": "not_found",
                "message": "session 'nope' does not exist",
                "field": "",
            }
            bad = await asyncio.to_thread(ask, "session.start", {"capture_mode": "video"})
            assert (bad["ok"], bad["error"]["code"], bad["error"]["field"]) == (
                False,
                "invalid",
                "capture_mode",
            )
            now = await asyncio.to_thread(ask, "telemetry.now", {})
            assert now["result"]["captures"] == {"COMPLETED": 1}
            assert station.link.state.commands == 9


async def test_retained_commands_are_ignored(broker: Broker, tmp_path: Path) -> None:
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply"]) as sub:
        sub.publish(f"{BASE}/cmd/session.start", "{}", retain=True)
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            await asyncio.sleep(0.5)
            assert (await station.store.list_sessions())[1] == 0
            assert sub.on(f"{BASE}/cmd/+/reply") == []
        sub.publish(f"{BASE}/cmd/session.start", "", retain=True)  # clear it


async def test_mqtt_311_replies_on_the_reply_topic(broker: Broker, tmp_path: Path) -> None:
    config = station_config(tmp_path / "s", broker.port, protocol="3.1.1")
    with Subscriber(broker.port, [f"{BASE}/cmd/+/reply"], protocol=4) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            assert station.link.state.protocol == "3.1.1"
            sub.publish(
                f"{BASE}/cmd/trigger",
                json.dumps({"correlation_id": 42, "authorization": BEARER}),
            )
            reply = (await sub.until(lambda ms: len(ms) >= 1, what="reply"))[0]
    assert reply.topic == f"{BASE}/cmd/trigger/reply"
    assert reply.json() == {
        "command": "trigger",
        "ok": True,
        "correlation_id": "42",
        "result": {"triggered": "cam0"},
    }


async def _mqtt3_only_proxy(target_port: int) -> tuple[asyncio.Server, int]:
    """A broker front that refuses MQTT 5 like a 3.1.1-only broker and relays the rest."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(65536)
        # CONNECT: fixed header byte, remaining length (varint), "\x00\x04MQTT", level.
        at = 1
        while head[at] & 0x80:
            at += 1
        level = head[at + 1 + 6]
        if level == 5:
            writer.write(b"\x20\x02\x00\x01")  # 3.1.1 CONNACK: unacceptable protocol version
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        up_writer.write(head)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_link_falls_back_to_311_when_the_broker_refuses_mqtt5(
    broker: Broker, tmp_path: Path
) -> None:
    server, port = await _mqtt3_only_proxy(broker.port)
    async with server:
        config = station_config(tmp_path / "s", port)
        with Subscriber(broker.port, [f"{BASE}/#"]) as sub:
            async with running_station(config) as station:
                await wait_until(lambda: station.link.state.connected, what="connected")
                await station.capture()
                await sub.until(lambda ms: any(m.topic.endswith("/captures") for m in ms))
                assert (station.link.state.protocol, station.link.state.connects) == ("3.1.1", 1)


async def test_broker_restarted_without_persistence_sees_online_again(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port, reconnect_max_s=1.0)
    async with running_station(config) as station:
        await wait_until(lambda: station.link.state.connected)
        broker.restart()  # persistence false: the retained status is gone with it
        await wait_until(lambda: station.link.state.reconnects == 1, what="a reconnect")
        with Subscriber(broker.port, [f"{BASE}/status"]) as sub:
            status = (await sub.until(lambda ms: len(ms) >= 1, what="the retained status"))[0]
    assert (status.retain, status.json()["state"]) == (True, "online")


async def test_stop_is_quick_while_a_tls_handshake_hangs(tmp_path: Path, pki: Path) -> None:
    # A port that accepts TCP and then says nothing: the TLS handshake blocks its thread.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        config = station_config(
            tmp_path / "s", silent.getsockname()[1], tls={"ca": str(pki / "ca.crt")}
        )
        async with running_station(config) as station:
            await asyncio.sleep(0.5)
            assert not station.link.state.connected
            assert await stop_link(station) < 0.5
    finally:
        silent.close()


# ---- refusals and dead letters ----------------------------------------------------------


async def _dead_rows(station: Any) -> list[tuple[str, str]]:
    rows = await station.store.fetchall("SELECT topic, last_error FROM outbox_dead ORDER BY id")
    return [(r[0], r[1]) for r in rows]


async def test_event_over_the_payload_limit_is_dead_lettered_and_others_flow(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port, max_payload_bytes=1500)
    with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
        async with running_station(config) as station:
            await station.capture("4006381333931")
            await station.capture("4006381333931", note="x" * 500, more="y" * 500)
            await station.capture("4006381333931")
            events = await sub.until(lambda ms: len(ms) >= 2, what="two events")
            await wait_until(lambda: station.link.state.dead_letters == 1, what="dead letter")
            dead = await _dead_rows(station)
            await outbox_drained(station.store)
    assert [m.json()["seq"] for m in events] == [1, 3]
    assert dead[0][0] == "captures"
    assert "over the limit of 1500 bytes" in dead[0][1]


async def test_event_over_the_brokers_maximum_packet_size_is_dead_lettered(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "b", extra_conf="max_packet_size 1500").start()
    try:
        config = station_config(tmp_path / "s", broker.port)
        with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
            async with running_station(config) as station:
                await station.capture("4006381333931", note="x" * 500, more="y" * 500)
                await station.capture("4006381333931")
                events = await sub.until(lambda ms: len(ms) >= 1, what="the small event")
                await wait_until(lambda: station.link.state.dead_letters == 1)
                assert station.link.state.connects == 1  # never disconnected for it
        assert [m.json()["seq"] for m in events] == [2]
    finally:
        broker.stop()


async def test_event_the_broker_disconnects_for_is_isolated_and_dead_lettered(
    tmp_path: Path,
) -> None:
    # Mosquitto's message_size_limit answers with PUBACK 0x95, which paho takes for a
    # protocol error and disconnects: the station must still find the culprit.
    broker = Broker(tmp_path / "b", extra_conf="message_size_limit 1500").start()
    try:
        config = station_config(
            tmp_path / "s",
            broker.port,
            dead_letter_after=2,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
            async with running_station(config) as station:
                for i in range(10):
                    if i == 4:
                        await station.capture("4006381333931", note="x" * 500, more="y" * 500)
                    else:
                        await station.capture("4006381333931")
                events = await sub.until(
                    lambda ms: len({m.json()["seq"] for m in ms}) >= 9, timeout=15
                )
                await wait_until(lambda: station.link.state.dead_letters == 1)
                dead = await _dead_rows(station)
        assert sorted({m.json()["seq"] for m in events}) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
        assert "the connection died each time this event was sent" in dead[0][1]
    finally:
        broker.stop()


async def test_event_refused_with_a_negative_puback_is_retried_then_dead_lettered(
    tmp_path: Path,
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        f"topic readwrite {BASE}/status\ntopic readwrite {BASE}/captures\n"
        f"topic readwrite {BASE}/telemetry\ntopic readwrite {BASE}/cmd/#\n"
    )
    broker = Broker(tmp_path / "b", extra_conf=f"acl_file {acl}").start()
    try:
        config = station_config(tmp_path / "s", broker.port, dead_letter_after=2)
        with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
            async with running_station(config) as station:
                await station.store.add_outbox_event("noreads", {"source": "cam0"})
                await station.capture()
                await sub.until(lambda ms: len(ms) >= 1, what="the capture event")
                await wait_until(lambda: station.link.state.dead_letters == 1, timeout=10)
                dead = await _dead_rows(station)
                assert station.link.state.refused == 2
        assert dead == [
            ("noreads", "refused by the broker 2 time(s): PUBACK reason 0x87 (Not authorized)")
        ]
    finally:
        broker.stop()


# ---- TLS and credentials ------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                 "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)  # fmt: skip
    return d


async def test_tls_with_server_verification_and_a_client_certificate(
    pki: Path, tmp_path: Path
) -> None:
    broker = Broker(
        tmp_path / "b",
        extra_conf=(
            f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
            f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"
        ),
    ).start()
    try:
        good = station_config(
            tmp_path / "good",
            broker.port,
            tls={
                "ca": str(pki / "ca.crt"),
                "cert": str(pki / "client.crt"),
                "key": str(pki / "client.key"),
            },
        )
        async with running_station(good) as station:
            await wait_until(lambda: station.link.state.connected, what="TLS connection")
            await station.capture()
            await wait_until(lambda: station.link.state.published == 1)

        wrong_ca = station_config(
            tmp_path / "bad",
            broker.port,
            tls={
                "ca": str(pki / "other-ca.crt"),
                "cert": str(pki / "client.crt"),
                "key": str(pki / "client.key"),
            },
        )
        async with running_station(wrong_ca) as station:
            await wait_until(lambda: bool(station.link.state.last_error), what="an error")
            assert not station.link.state.connected
            assert "certificate was not verified" in station.link.state.last_error
            assert "mqtt.tls.ca" in station.link.state.last_error
    finally:
        broker.stop()


async def test_tls_against_a_plain_broker_names_the_likely_cause_and_the_file(
    pki: Path, tmp_path: Path
) -> None:
    """The mistake behind "Connection reset by peer": [mqtt.tls] pointed at a plain listener."""
    broker = Broker(tmp_path / "b").start()  # plain MQTT only
    try:
        config = station_config(tmp_path / "s", broker.port, tls={"ca": str(pki / "ca.crt")})
        async with running_station(config) as station:
            await wait_until(lambda: bool(station.link.state.last_error), what="an error")
            error = station.link.state.last_error
            assert not station.link.state.connected
            assert f"TLS handshake with 127.0.0.1:{broker.port} failed" in error
            assert "does not seem to speak TLS" in error
            assert "8883" in error
            assert f"mqtt.tls.ca = '{pki / 'ca.crt'}'" in error
    finally:
        broker.stop()


def test_tls_files_that_do_not_load_are_named_with_their_key(pki: Path, tmp_path: Path) -> None:
    from scanstation.config.network import MqttConfig
    from scanstation.publish.connection import MqttError, tls_context

    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with pytest.raises(MqttError) as info:
        tls_context(MqttConfig(host="b", tls={"ca": str(not_pem)}))
    assert f"mqtt.tls.ca = '{not_pem}': not a PEM CA bundle" in str(info.value)
    with pytest.raises(MqttError) as info:
        tls_context(
            MqttConfig(
                host="b",
                tls={"ca": str(pki / "ca.crt"), "cert": str(pki / "client.crt"),
                     "key": str(pki / "server.key")},
            )
        )  # fmt: skip
    message = str(info.value)
    assert f"mqtt.tls.cert = '{pki / 'client.crt'}'" in message
    assert f"mqtt.tls.key = '{pki / 'server.key'}'" in message
    assert "its own private key" in message


async def test_username_and_password_file(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "lane", "s3cret"], check=True)
    broker = Broker(tmp_path / "b", extra_conf=f"password_file {passwd}", anonymous=False).start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        config = station_config(
            tmp_path / "s", broker.port, username="lane", password_file=str(secret)
        )
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected, what="authenticated")
        secret.write_text("wrong\n")
        async with running_station(config) as station:
            await wait_until(lambda: bool(station.link.state.last_error))
            assert "Not authorized" in station.link.state.last_error
            assert "mqtt.password_file" in station.link.state.last_error
    finally:
        broker.stop()
