"""The capture state machine: statuses, GS1 facts, outbox events, resumption, sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from scanstation.bus import EventBus
from scanstation.config import Config
from scanstation.model import CaptureStatus, CaptureType, Scan
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store


async def walk(pipeline: Pipeline, *values: str, session: str | None = None) -> list[Any]:
    if session is None:
        session = (await pipeline.store.create_session()).public_id
    created = [
        await pipeline.create_capture(session, NewCapture(CaptureType.BARCODE, raw_value=v))
        for v in values
    ]
    await pipeline.idle()
    return [await pipeline.store.get_capture(c.public_id) for c in created]


async def test_pipeline_statuses_for_real_values(pipeline: Pipeline) -> None:
    await pipeline.store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
    done = await walk(pipeline, "4006381333931", "5901234123457", "4006381333932")
    assert [(c.status, c.gtin) for c in done[:2]] == [
        (CaptureStatus.COMPLETED, "04006381333931"),
        (CaptureStatus.NOT_FOUND, "05901234123457"),
    ]
    assert done[0].product_name == "Highlighter"
    assert done[2].status is CaptureStatus.FAILED
    assert done[2].error_message
    assert all(c.processed_at is not None for c in done)


async def test_pipeline_writes_one_outbox_event_per_terminal_capture_seq_gap_free(
    pipeline: Pipeline,
) -> None:
    done = await walk(pipeline, *[str(4006381333931)] * 5, "5901234123457")
    rows = await pipeline.store.fetchall(
        "SELECT seq, payload FROM outbox WHERE topic = 'captures' ORDER BY id"
    )
    events = [json.loads(r[1]) for r in rows]
    assert [e["seq"] for e in events] == list(range(1, 7))
    assert [r[0] for r in rows] == list(range(1, 7))
    assert {e["public_id"] for e in events} == {c.public_id for c in done}
    assert len({e["event_id"] for e in events}) == 6
    assert all(e["schema"] == "scanstation.capture/1" for e in events)
    assert all(e["device_id"] == "test-01" and e["site"] == "lab" for e in events)


async def test_pipeline_retry_emits_a_new_event_with_higher_revision(pipeline: Pipeline) -> None:
    [capture] = await walk(pipeline, "5901234123457")
    await pipeline.retry(capture.public_id)
    await pipeline.idle()
    rows = await pipeline.store.fetchall("SELECT payload FROM outbox ORDER BY id")
    events = [json.loads(r[0]) for r in rows]
    assert [(e["revision"], e["seq"]) for e in events] == [(1, 1), (2, 2)]


async def test_pipeline_resumes_captures_left_in_progress(store: Store, config: Config) -> None:
    session = await store.create_session()
    capture = await store.add_capture(
        session.public_id, NewCapture(CaptureType.BARCODE, "4006381333931"), idle_timeout=60
    )
    await store.set_status([capture.id], CaptureStatus.ENRICHING)  # as if killed mid-walk
    pipeline = Pipeline(store, config, bus=EventBus())
    task = asyncio.create_task(pipeline.run())
    try:
        for _ in range(200):
            if (await store.get_capture(capture.public_id)).status.terminal:
                break
            await asyncio.sleep(0.01)
        assert (await store.get_capture(capture.public_id)).status is CaptureStatus.NOT_FOUND
    finally:
        task.cancel()


async def test_pipeline_a_capture_walked_twice_gets_one_event_and_one_seq(
    store: Store, config: Config
) -> None:
    """The start-up resume reads a just-created PENDING capture as unfinished while the same
    capture also waits in the queue: both walks finish it, but only the first one counts (a
    fleet collector saw 1,004 seqs for 1,000 captures before)."""
    session = await store.create_session()
    capture = await store.add_capture(
        session.public_id, NewCapture(CaptureType.BARCODE, "5901234123457"), idle_timeout=60
    )
    pipeline = Pipeline(store, config, bus=EventBus())
    finished = []
    pipeline.on_finished.append(finished.append)
    first = await pipeline.process([capture.id])  # the resume, reading it from the disk
    pipeline._queued[capture.id] = capture  # the queue's in-memory PENDING copy of it
    second = await pipeline.process([capture.id])
    assert [c.status for c in first] == [CaptureStatus.NOT_FOUND]
    assert second == []
    assert [c.public_id for c in finished] == [capture.public_id]  # outputs fire once
    rows = await store.fetchall("SELECT seq FROM outbox WHERE topic = 'captures'")
    assert [r[0] for r in rows] == [1]
    assert (await store.fetchone("SELECT COUNT(*) FROM scan_events"))[0] == 1


async def test_pipeline_ingest_uses_one_rolling_session_per_source(pipeline: Pipeline) -> None:
    a1 = await pipeline.ingest(Scan(source="gun1", raw_value="4006381333931"))
    a2 = await pipeline.ingest(Scan(source="gun1", raw_value="5901234123457"))
    b1 = await pipeline.ingest(Scan(source="cam0", raw_value="4006381333931"))
    assert a1.session_public_id == a2.session_public_id != b1.session_public_id
    session = await pipeline.store.get_session(a1.session_public_id)
    assert session.source == "gun1"
    assert session.capture_count == 2
    # The session is ended by an operator: the next scan opens a new one, nothing is lost.
    await pipeline.store.end_session(a1.session_public_id)
    a3 = await pipeline.ingest(Scan(source="gun1", raw_value="4006381333931"))
    assert a3.session_public_id != a1.session_public_id
    await pipeline.idle()
    assert (await pipeline.store.get_capture(a3.public_id)).status is CaptureStatus.NOT_FOUND


async def test_pipeline_gs1_values_fill_gs1_data_and_scan_events(pipeline: Pipeline) -> None:
    [capture] = await walk(pipeline, "]d2010950600013435217270101\x1d10ABC123")
    assert capture.gtin == "09506000134352"
    assert capture.gs1_dl_data == {"01": "09506000134352", "17": "270101", "10": "ABC123"}
    rows = await pipeline.store.scan_events()
    assert [(r["gtin"], r["batch"], r["expiry"]) for r in rows] == [
        ("09506000134352", "ABC123", "270101")
    ]


async def test_pipeline_expired_item_raises_an_alert(
    make_config: Callable[..., Config], tmp_path: Any
) -> None:
    config = make_config()
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config, bus=EventBus())
        task = asyncio.create_task(pipeline.run())
        try:
            [capture] = await walk(pipeline, "]C1010950600013435217200101\x1d10LOT42")
        finally:
            task.cancel()
        assert capture.checks.get("expired") is True
        assert capture.checks.get("not_for_sale") is True
        rows = await store.fetchall("SELECT payload FROM outbox WHERE topic = 'alerts'")
        assert len(rows) == 1
        alert = json.loads(rows[0][0])
        assert alert["capture_public_id"] == capture.public_id
        assert alert["gtin"] == "09506000134352"


async def test_pipeline_bus_sees_every_status_change(pipeline: Pipeline) -> None:
    with pipeline.bus.subscribe() as sub:
        await walk(pipeline, "4006381333931")
        statuses = []
        while not sub.queue.empty():
            event = sub.queue.get_nowait()
            if event.kind == "capture":
                statuses.append(event.data["status"])
    assert statuses == ["PENDING", "NOT_FOUND"]


async def test_pipeline_extra_destinations_get_their_own_copy_of_the_event(
    pipeline: Pipeline,
) -> None:
    pipeline.destinations = lambda capture: (
        ["webhook:wms"] if capture.status is CaptureStatus.COMPLETED else []
    )
    await pipeline.store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
    await walk(pipeline, "4006381333931", "5901234123457")
    mqtt = await pipeline.store.outbox_batch()
    webhook = await pipeline.store.outbox_batch(destination="webhook:wms")
    assert len(mqtt) == 2
    assert [e.event_id for e in webhook] == [mqtt[0].event_id]
    assert pipeline.store.outbox_signal("webhook:wms").is_set()
    assert await pipeline.store.outbox_stats("webhook:wms") == (1, webhook[0].created)


async def test_pipeline_noread_frame_becomes_an_image_capture_and_a_noreads_event(
    pipeline: Pipeline,
) -> None:
    import io

    from PIL import Image

    frame = io.BytesIO()
    Image.new("L", (64, 48), 128).save(frame, "JPEG")
    capture = await pipeline.ingest(
        Scan(
            source="cam0",
            raw_value="",
            capture_type=CaptureType.IMAGE,
            image=frame.getvalue(),
            metadata={"noread": "true", "trigger": "gpio"},
        )
    )
    await pipeline.idle()
    stored = await pipeline.store.get_capture(capture.public_id)
    assert stored.capture_type is CaptureType.IMAGE
    assert stored.status is CaptureStatus.NOT_FOUND
    assert (pipeline.config.images_path / stored.uploaded_image_key).is_file()
    rows = await pipeline.store.fetchall("SELECT payload FROM outbox WHERE topic = 'noreads'")
    [event] = [json.loads(r[0]) for r in rows]
    assert (event["source"], event["capture_public_id"], event["image_key"]) == (
        "cam0",
        capture.public_id,
        stored.uploaded_image_key,
    )


async def test_pipeline_finished_captures_are_what_the_store_holds(pipeline: Pipeline) -> None:
    """The walk builds finished captures in memory: hooks must see exactly the stored row."""
    await pipeline.store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
    seen: list[Any] = []
    pipeline.on_finished.append(seen.append)
    stored = await walk(
        pipeline, "4006381333931", "]d2010950600013435217270101\x1d10ABC123", "4006381333932"
    )
    assert [c.status for c in stored] == [
        CaptureStatus.COMPLETED,
        CaptureStatus.NOT_FOUND,
        CaptureStatus.FAILED,
    ]
    assert stored[0].product_name == "Highlighter"
    by_id = {c.public_id: c for c in seen}
    for capture in stored:
        held = by_id[capture.public_id]
        # processed_at is a float written and read back: equal to the microsecond.
        assert held.processed_at is not None
        assert capture.processed_at is not None
        assert abs(held.processed_at - capture.processed_at) < 1e-6
        assert dataclasses.replace(held, processed_at=None) == dataclasses.replace(
            capture, processed_at=None
        )


async def test_pipeline_local_capture_is_acknowledged_terminal_after_one_commit(
    pipeline: Pipeline,
) -> None:
    """A code's walk is done before its insert: one commit holds the capture, its terminal
    status, its analytics row and its outbox event, and the ack carries that capture."""
    store = pipeline.store
    await store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
    session = (await store.create_session()).public_id
    commits = store.commits
    capture = await pipeline.create_capture(
        session, NewCapture(CaptureType.BARCODE, raw_value="4006381333931", source="lane")
    )
    assert store.commits == commits + 1
    assert capture.status is CaptureStatus.COMPLETED
    assert capture.product_name == "Highlighter"
    assert capture.processed_at is not None
    assert await store.get_capture(capture.public_id) == capture
    rows = await store.fetchall("SELECT topic, payload FROM outbox WHERE topic = 'captures'")
    assert len(rows) == 1
    event = json.loads(rows[0][1])
    assert (event["public_id"], event["status"], event["seq"]) == (
        capture.public_id,
        "COMPLETED",
        1,
    )
    scans = await store.fetchall("SELECT gtin, source FROM scan_events")
    assert [tuple(r) for r in scans] == [("04006381333931", "lane")]
    assert pipeline.counters.created == 1
    assert pipeline.counters.finished == {"COMPLETED": 1}


async def test_status_counts_follow_every_write_path(pipeline: Pipeline) -> None:
    store = pipeline.store
    await store.upsert_products([{"gtin": "04006381333931", "name": "Highlighter"}])
    done = await walk(pipeline, "4006381333931", "5901234123457", "4006381333932", "123")
    await pipeline.retry(done[1].public_id)  # NOT_FOUND → PENDING → walked again
    await pipeline.idle()
    session = await store.create_session()
    await store.add_capture(  # left PENDING, as a walk not yet done
        session.public_id, NewCapture(CaptureType.BARCODE, "5901234123457"), idle_timeout=60
    )
    counted = {
        r[0]: r[1] for r in await store.fetchall("SELECT status, COUNT(*) FROM captures GROUP BY 1")
    }
    assert await store.status_counts() == counted
    assert counted["PENDING"] == 1
    for status in CaptureStatus:
        listed, total = await store.list_captures(status=status, limit=100)
        assert total == len(listed) == counted.get(status.value, 0)
    assert (await store.list_captures(limit=1))[1] == sum(counted.values())
