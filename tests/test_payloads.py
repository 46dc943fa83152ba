"""The JSON views built without the encoder: byte for byte what json.dumps gives."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from scanstation.bus import EventBus
from scanstation.config import Config
from scanstation.model import (
    CAPTURE_FIELDS,
    Capture,
    CaptureStatus,
    CaptureType,
    build_capture,
    random_80,
    time_ordered_uuid,
)
from scanstation.payloads import capture_json, capture_json_text, iso
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store


def reference_iso(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def test_iso_is_datetimes_text_for_every_kind_of_timestamp() -> None:
    rng = random.Random(15)
    now = time.time()
    second = float(int(now))
    stamps = [now + rng.uniform(-1e5, 1e5) for _ in range(20_000)]
    stamps += [rng.uniform(0, 4e9) for _ in range(20_000)]
    # Every microsecond boundary of a second, and the halves rounding goes either way on.
    stamps += [second + k / 1e6 for k in range(0, 1_000_000, 97)]
    stamps += [second + (k + 0.5) / 1e6 for k in range(0, 1_000_000, 89)]
    stamps += [second + 0.9999995, second + 0.9999996, second + 0.9995, 0.0, 1.0, -5.25, 1e9]
    assert [iso(t) for t in stamps] == [reference_iso(t) for t in stamps]
    assert iso(None) is None


def test_time_ordered_uuid_and_random_bits() -> None:
    ids = [time_ordered_uuid() for _ in range(500)]
    assert len(set(ids)) == 500
    assert all(i[14] == "7" and i[19] in "89ab" and len(i) == 36 for i in ids)
    numbers = {random_80() for _ in range(1000)}
    assert len(numbers) == 1000
    assert all(0 <= n < 1 << 80 for n in numbers)


async def test_capture_event_text_is_json_dumps_of_the_event(store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config, bus=EventBus())
    pending = store.new_capture(
        "S", NewCapture(CaptureType.BARCODE, raw_value="]d2010950600013435217270101\x1d10AB")
    )
    variants = [
        pending,
        dataclasses.replace(
            pending,
            id=5,
            status=CaptureStatus.COMPLETED,
            product_public_id="P1",
            product_name='Ñame "quoted"',
            processed_at=time.time(),
            gs1_dl_data={"01": "09506000134352", "10": "AB"},
            checks={"expired": False, "list": [1, None, 2.5]},
            metadata={"lane": "é", "n": 1.25, "ok": True},
            qr_analysis={"final_url": "https://example.com/01/09506000134352"},
            uploaded_image_key="2026/12/04/a.jpg",
        ),
        dataclasses.replace(
            pending,
            product_public_id="P2",
            qr_analysis={},
            created=0.0,
            processed_at=None,
            gs1_dl_data={"00": "106141411234567897"},
        ),
        dataclasses.replace(
            pending, raw_value='\u2028\x00"\\ \U0001f600', error_message="line\nbreak"
        ),
    ]
    for capture in variants:
        expected_members = {**capture_json(capture)}
        event_id, text = pipeline._capture_event(capture, 7)
        assert text == json.dumps(pipeline.capture_event_payload(capture, 7, event_id))
        assert {k: v for k, v in json.loads(text).items() if k in expected_members} == (
            json.loads(json.dumps(expected_members))
        )
        # Given the columns' JSON as the store wrote it: the same text.
        texts = (
            json.dumps(capture.gs1_dl_data),
            json.dumps(capture.qr_analysis) if capture.qr_analysis is not None else None,
            json.dumps(capture.metadata),
            json.dumps(capture.checks),
        )
        event_id, text = pipeline._capture_event(capture, 8, texts)
        assert text == json.dumps(pipeline.capture_event_payload(capture, 8, event_id))
        assert capture_json_text(capture, "") == json.dumps(capture_json(capture))


def test_build_capture_is_the_dataclass_with_every_field_set() -> None:
    assert tuple(f.name for f in dataclasses.fields(Capture)) == CAPTURE_FIELDS
    values: dict[str, Any] = {
        "id": 3,
        "public_id": "P",
        "session_public_id": "S",
        "status": CaptureStatus.NOT_FOUND,
        "capture_type": CaptureType.IMAGE,
        "raw_value": "r",
        "gtin": "g",
        "symbology": "EAN13",
        "symbology_identifier": "]E0",
        "source": "cam0",
        "error_message": "e",
        "created": 1.5,
        "processed_at": 2.5,
        "gs1_dl_data": {"01": "x"},
        "product_public_id": "pp",
        "product_name": "n",
        "uploaded_image_key": "k",
        "qr_analysis": {"q": 1},
        "metadata": {"m": "v"},
        "checks": {"c": True},
        "revision": 4,
    }
    built = build_capture(**values)
    assert type(built) is Capture
    assert built == Capture(**values)
    assert [getattr(built, name) for name in CAPTURE_FIELDS] == list(values.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 4  # type: ignore[misc]


def test_random_bits_drawn_before_a_fork_are_not_repeated_in_the_child() -> None:
    import os

    random_80()  # the pool holds numbers drawn in this process now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next number, leave at once
        os.write(write, random_80().to_bytes(10))
        os._exit(0)
    os.close(write)
    child = int.from_bytes(os.read(read, 10))
    os.close(read)
    os.waitpid(pid, 0)
    assert child not in {random_80() for _ in range(64)}  # the parent's next ones
