"""The collector end to end: a real Station publishing through a real Mosquitto into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg

from collectors import BROKER_CONF, collector_config, collector_thread, count
from mosquitto import Broker
from postgres import pg_dsn_fixture, pg_server_fixture  # noqa: F401 (fixtures)
from scanstation.collector.consumer import subscriptions
from station import outbox_drained, running_station, station_config, wait_until


async def until_stored(dsn: str, n: int, timeout: float = 20, device: str | None = None) -> None:
    sql = "SELECT COUNT(*) FROM capture_events" + (" WHERE device_id = %s" if device else "")
    params = (device,) if device else ()
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await asyncio.to_thread(count, dsn, sql, *params)) < n:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{got} capture events stored after {timeout} s, expected {n}")
        await asyncio.sleep(0.1)


def test_subscriptions_are_shared_by_the_group(tmp_path: Path) -> None:
    config = collector_config(tmp_path, "postgresql://x@127.0.0.1/y", 1883)
    assert subscriptions(config) == [
        f"$share/scanstation-collectors/scanstation/+/{kind}"
        for kind in ("captures", "status", "telemetry", "noreads", "alerts")
    ]


async def test_a_station_s_captures_are_stored_once_and_acknowledged_after_commit(
    tmp_path: Path, pg_dsn: str
) -> None:
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    try:
        config = collector_config(tmp_path, pg_dsn, broker.port)
        station_conf = station_config(tmp_path / "lane-01", broker.port, telemetry_interval=0.5)
        with collector_thread(config) as collector:
            async with running_station(station_conf) as station:
                await station.scan(*["4006381333931"] * 40)
                await outbox_drained(station.store)
                await until_stored(pg_dsn, 40)
                await wait_until(
                    lambda: collector.stats.acked >= 40, what="the collector's acknowledgements"
                )
                # The station's telemetry reports the last seq the broker acknowledged.
                await wait_until(lambda: count(pg_dsn, "SELECT last_seq FROM stations") == 40)
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(
                "SELECT seq, event_id, status, gtin, payload->>'device_id' FROM capture_events "
                "ORDER BY seq"
            ).fetchall()
            station_row = conn.execute(
                "SELECT device_id, state, site, version FROM stations"
            ).fetchone()
        assert [r[0] for r in rows] == list(range(1, 41))
        assert len({r[1] for r in rows}) == 40
        assert {(r[2], r[3], r[4]) for r in rows} == {("NOT_FOUND", "04006381333931", "lane-01")}
        assert station_row is not None
        assert station_row[:3] == ("lane-01", "offline", "store-7")
        assert collector.stats.duplicates == 0
        assert collector.stats.stale_acks == 0
    finally:
        broker.stop()


async def test_a_range_the_broker_dropped_is_replayed_by_the_station_and_stored(
    tmp_path: Path, pg_dsn: str
) -> None:
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    try:
        # No persistent session: while the collector is away the broker drops the events.
        config = collector_config(tmp_path, pg_dsn, broker.port, session_expiry_s=0)
        station_conf = station_config(tmp_path / "lane-01", broker.port, telemetry_interval=60)
        async with running_station(station_conf) as station:
            with collector_thread(config):
                await station.scan(*["4006381333931"] * 10)
                await until_stored(pg_dsn, 10)
            await station.scan(*["5901234123457"] * 10)  # seq 11..20: nobody subscribed
            await outbox_drained(station.store)
            assert await asyncio.to_thread(count, pg_dsn) == 10
            with collector_thread(config) as collector:
                await station.scan(*["4006381333931"] * 10)  # seq 21..30: a hole at 11..20
                await until_stored(pg_dsn, 30, timeout=30)
                # The healer then knows the station complete up to 30.
                await wait_until(
                    lambda: count(pg_dsn, "SELECT contiguous_seq FROM stations") == 30, 10
                )
                replays = collector.stats
        with psycopg.connect(pg_dsn) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM capture_events ORDER BY seq")]
            middle = conn.execute(
                "SELECT DISTINCT raw_value FROM capture_events WHERE seq BETWEEN 11 AND 20"
            ).fetchall()
        assert seqs == list(range(1, 31))
        assert middle == [("5901234123457",)]
        assert replays.stored == 20
    finally:
        broker.stop()


async def test_outbox_replay_without_the_fleet_token_is_refused_and_nothing_is_resent(
    tmp_path: Path, pg_dsn: str
) -> None:
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    try:
        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-the-token\n")
        config = collector_config(
            tmp_path, pg_dsn, broker.port, session_expiry_s=0, command_token_file=str(wrong)
        )
        station_conf = station_config(tmp_path / "lane-01", broker.port, telemetry_interval=0.5)
        async with running_station(station_conf) as station:
            await station.scan(*["4006381333931"] * 5)  # before any collector: dropped
            await outbox_drained(station.store)
            with collector_thread(config):
                # The telemetry's last_seq shows a lost tail 1..5; the replay is refused.
                await wait_until(lambda: station.link.state.commands_unauthorized >= 1, 15)
                await asyncio.sleep(0.5)
            assert await asyncio.to_thread(count, pg_dsn) == 0
            rows = await station.store.fetchall(
                "SELECT COUNT(*) FROM outbox WHERE delivered < 0"  # waiting rows
            )
            assert rows[0][0] == 0
    finally:
        broker.stop()


async def test_the_documented_acl_lets_a_collector_collect_and_heal_a_lost_tail(
    tmp_path: Path, pg_dsn: str
) -> None:
    import re
    import subprocess

    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy-fleet.md").read_text()
    block = re.search(r"<!-- acl: mosquitto -->\n```\n(.*?)```", text, re.S)
    assert block is not None
    (tmp_path / "acl").write_text(block.group(1))
    users = {"lane-01": "pw-lane-01", "collector": "pw-collector"}
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(tmp_path / "passwd"), user, password],
            check=True,
        )
        (tmp_path / f"{user}.pw").write_text(password)
    broker = Broker(
        tmp_path / "broker",
        anonymous=False,
        extra_conf=(
            f"{BROKER_CONF}password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
        ),
    ).start()
    try:
        config = collector_config(tmp_path, pg_dsn, broker.port, session_expiry_s=0)
        config = config.model_copy(
            update={
                "mqtt": config.mqtt.model_copy(
                    update={"username": "collector", "password_file": tmp_path / "collector.pw"}
                )
            }
        )
        station_conf = station_config(
            tmp_path / "lane-01",
            broker.port,
            username="lane-01",
            password_file=str(tmp_path / "lane-01.pw"),
            telemetry_interval=0.5,
        )
        async with running_station(station_conf) as station:
            await station.scan(*["4006381333931"] * 5)  # before any collector: dropped
            await outbox_drained(station.store)
            with collector_thread(config):
                # A lost tail (from the telemetry's last_seq), asked for and answered
                # through the ACL: the command, the reply under lane-01/reply/collectors/.
                await until_stored(pg_dsn, 5, timeout=20)
                await station.scan(*["4006381333931"] * 5)
                await until_stored(pg_dsn, 10, timeout=20)
        with psycopg.connect(pg_dsn) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM capture_events ORDER BY seq")]
        assert seqs == list(range(1, 11))
    finally:
        broker.stop()


async def test_a_range_the_station_pruned_is_recorded_lost_and_not_asked_again(
    tmp_path: Path, pg_dsn: str
) -> None:
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    try:
        config = collector_config(tmp_path, pg_dsn, broker.port, session_expiry_s=0)
        # keep_delivered_hours = 0: rows are deleted on PUBACK, nothing to replay.
        station_conf = station_config(
            tmp_path / "lane-01", broker.port, telemetry_interval=0.5, keep_delivered_hours=0
        )
        async with running_station(station_conf) as station:
            await station.scan(*["4006381333931"] * 5)  # nobody subscribed: gone
            await outbox_drained(station.store)
            with collector_thread(config) as collector:
                await wait_until(
                    lambda: count(pg_dsn, "SELECT COUNT(*) FROM seq_lost") == 1, 20, "seq_lost"
                )
                await station.scan(*["4006381333931"] * 3)
                await until_stored(pg_dsn, 3)
                await wait_until(
                    lambda: count(pg_dsn, "SELECT contiguous_seq FROM stations") == 8, 10
                )
                asked = station.link.state.commands
                await asyncio.sleep(4)  # longer than replay_interval_s
                assert station.link.state.commands == asked  # not asked again
                assert collector.stats.stored == 3
        with psycopg.connect(pg_dsn) as conn:
            lost = conn.execute("SELECT device_id, from_seq, to_seq FROM seq_lost").fetchall()
            seqs = [r[0] for r in conn.execute("SELECT seq FROM capture_events ORDER BY seq")]
        assert lost == [("lane-01", 1, 5)]
        assert seqs == [6, 7, 8]
    finally:
        broker.stop()


async def test_a_station_offline_for_a_while_delivers_everything_when_back(
    tmp_path: Path, pg_dsn: str
) -> None:
    from mosquitto import free_port

    port = free_port()
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF, port=port)
    station_conf = station_config(tmp_path / "lane-01", port, reconnect_max_s=1.0)
    try:
        async with running_station(station_conf) as station:
            # No broker: the captures wait in the station's outbox.
            await station.scan(*["4006381333931"] * 50)
            assert (await station.store.outbox_stats())[0] == 50
            broker.start()
            config = collector_config(tmp_path, pg_dsn, port)
            with collector_thread(config):
                await until_stored(pg_dsn, 50, timeout=30)
        assert (
            await asyncio.to_thread(count, pg_dsn, "SELECT COUNT(DISTINCT seq) FROM capture_events")
            == 50
        )
    finally:
        broker.stop()


async def test_a_message_postgresql_refuses_is_dropped_alone_and_the_rest_stored(
    tmp_path: Path, pg_dsn: str
) -> None:
    from mosquitto import Subscriber

    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    try:
        config = collector_config(tmp_path, pg_dsn, broker.port)

        def event(seq: int, raw: str = "4006381333931") -> str:
            body = {"seq": seq, "event_id": f"e{seq}", "created": "2026-12-03T10:00:00Z"}
            return json.dumps(body)[:-1] + f', "raw_value": "{raw}"}}'

        with collector_thread(config) as collector, Subscriber(broker.port, []) as pub:
            # Valid JSON for Python, but jsonb refuses a lone surrogate escape.
            for payload in (event(1), event(2, "\\ud800"), event(3), event(4)):
                pub.publish("scanstation/lane-01/captures", payload)
            await until_stored(pg_dsn, 3)
            await wait_until(lambda: collector.stats.acked == 4, what="every message acked")
            rejected = collector.stats.rejected
        seqs = await asyncio.to_thread(count, pg_dsn, "SELECT SUM(seq) FROM capture_events")
        assert (seqs, rejected) == (1 + 3 + 4, 1)
    finally:
        broker.stop()
