"""Delivered events kept for ``[mqtt] keep_delivered_hours`` and resent by ``outbox.replay``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401
from scanstation.publish.commands import CommandAuth, CommandError, parse_command
from scanstation.store import Store
from station import BEARER, outbox_drained, running_station, station_config, wait_until

BASE = "scanstation/lane-01"


async def test_delivered_rows_are_kept_replayed_by_seq_and_pruned(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        for n in range(5):
            await store.add_outbox_event("noreads", {"n": n})
        rows = await store.fetchall("SELECT id FROM outbox ORDER BY id")
        await store.write(
            lambda db: db.execute(
                "UPDATE outbox SET topic = 'captures', seq = id"  # as capture events 1..5
            )
        )
        batch = await store.outbox_batch(0, 100)
        await store.outbox_delete([e.id for e in batch], keep=True)
        assert await store.outbox_batch(0, 100) == []
        assert await store.outbox_stats() == (0, None)
        assert await store.published_seq() == 5
        kept = await store.fetchall("SELECT COUNT(*) FROM outbox WHERE delivered >= 0")
        assert kept[0][0] == len(rows) == 5

        counts = await store.outbox_replay(2, 4)
        assert counts == {"replayed": 3, "pending": 0, "unavailable": 0}
        again = await store.outbox_batch(0, 100)
        assert [(e.seq, e.event_id) for e in again] == [(e.seq, e.event_id) for e in batch[1:4]]
        # Waiting rows are pending, seqs never held are unavailable.
        assert await store.outbox_replay(4, 9) == {"replayed": 1, "pending": 1, "unavailable": 4}

        # Pruning deletes only the delivered rows older than the cut.
        assert await store.outbox_prune_delivered(time.time() - 3600) == 0
        assert await store.outbox_prune_delivered(time.time() + 1) == 1  # seq 1 (2..5 wait)
        assert await store.outbox_replay(1, 1) == {"replayed": 0, "pending": 0, "unavailable": 1}
        # The published seq never goes down.
        await store.outbox_delete([e.id for e in again][:1], keep=True)
        assert await store.published_seq() == 5


def test_outbox_replay_bodies_are_validated() -> None:
    auth = CommandAuth(token="t")

    def parse(payload: bytes, authorization: str | None = "Bearer t") -> Any:
        return parse_command(
            "outbox.replay", payload, None, None, auth=auth, authorization=authorization
        )

    ok = parse(b'{"from_seq": 3, "to_seq": 9}')
    assert (ok.body.from_seq, ok.body.to_seq) == (3, 9)
    for payload, field in (
        (b'{"from_seq": 9, "to_seq": 3}', "to_seq"),
        (b'{"from_seq": 0, "to_seq": 3}', "from_seq"),
        (b'{"from_seq": 1, "to_seq": 200000}', "to_seq"),
        (b'{"from_seq": 1}', "to_seq"),
    ):
        with pytest.raises(CommandError) as caught:
            parse(payload)
        assert (caught.value.code, caught.value.field) == ("invalid", field)
    with pytest.raises(CommandError) as caught:
        parse(b'{"from_seq": 1, "to_seq": 2}', authorization=None)
    assert caught.value.code == "unauthorized"


async def test_outbox_replay_over_mqtt_resends_the_same_events(
    broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path / "s", broker.port)
    assert config.mqtt.keep_delivered_hours == 168
    with Subscriber(broker.port, [f"{BASE}/captures", "replies/#"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            await station.scan(*["4006381333931"] * 6)
            await outbox_drained(station.store)
            first = await sub.until(lambda ms: len(ms) >= 6, what="six events")
            sub.publish(
                f"{BASE}/cmd/outbox.replay",
                json.dumps({"from_seq": 2, "to_seq": 4}),
                correlation=b"r1",
                response_topic="replies/c",
                authorization=BEARER,
            )
            got = await sub.until(
                lambda ms: (
                    len([m for m in ms if m.topic.endswith("/captures")]) >= 9
                    and any(m.topic == "replies/c" for m in ms)
                ),
                what="three replayed events and the reply",
            )
            telemetry = await station.link.telemetry_payload()
    events = [m.json() for m in got if m.topic.endswith("/captures")]
    reply = next(m.json() for m in got if m.topic == "replies/c")
    assert reply["ok"] is True
    assert reply["result"] == {
        "from_seq": 2,
        "to_seq": 4,
        "replayed": 3,
        "pending": 0,
        "unavailable": 0,
    }
    originals = {e["seq"]: e for e in (m.json() for m in first)}
    replayed = events[6:]
    assert [e["seq"] for e in replayed] == [2, 3, 4]
    assert all(e == originals[e["seq"]] for e in replayed)  # same event_id, same payload
    assert telemetry["last_seq"] == 6


async def test_outbox_replay_is_answered_while_new_captures_keep_flowing(
    broker: Broker, tmp_path: Path
) -> None:
    """Replayed rows lie below the drain's cursor; a steady flow of new rows after it must
    not keep them waiting."""
    config = station_config(tmp_path / "s", broker.port)
    with Subscriber(broker.port, [f"{BASE}/captures"]) as sub:
        async with running_station(config) as station:
            await wait_until(lambda: station.link.state.connected)
            await station.scan(*["4006381333931"] * 5)
            await outbox_drained(station.store)
            await sub.until(lambda ms: len(ms) >= 5, what="five events")
            flowing = True

            async def flow() -> None:
                while flowing:  # 50 captures/s, the whole time
                    await station.capture()
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(flow())
            try:
                await asyncio.sleep(0.3)
                asked = time.monotonic()
                counts = await station.store.outbox_replay(2, 3)
                seqs = lambda ms: [m.json()["seq"] for m in ms]  # noqa: E731
                got = await sub.until(lambda ms: seqs(ms).count(2) == 2, timeout=10, what="seq 2")
                took = time.monotonic() - asked
                await sub.until(lambda ms: seqs(ms).count(3) == 2, timeout=10, what="seq 3")
            finally:
                flowing = False
                await task
    assert counts == {"replayed": 2, "pending": 0, "unavailable": 0}
    assert took < 3.0  # the drain reads from the oldest row at least once a second
    assert max(seqs(got)) > 5  # new captures were flowing meanwhile


async def test_keep_delivered_hours_0_deletes_on_puback(broker: Broker, tmp_path: Path) -> None:
    config = station_config(tmp_path / "s", broker.port, keep_delivered_hours=0)
    async with running_station(config) as station:
        await wait_until(lambda: station.link.state.connected)
        await station.scan("4006381333931", "4006381333931")
        await outbox_drained(station.store)
        for _ in range(100):
            rows = await station.store.fetchall("SELECT COUNT(*) FROM outbox")
            if rows[0][0] == 0:
                break
            await asyncio.sleep(0.05)
        assert rows[0][0] == 0
        assert await station.store.outbox_replay(1, 2) == {
            "replayed": 0,
            "pending": 0,
            "unavailable": 2,
        }
        assert await station.store.published_seq() == 2
