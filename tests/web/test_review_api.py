"""The review API: proposals, products, exports, live events, stats, metrics, preview, images."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for_status
from scanstation.bus import EventKind
from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.sources.base import SourceHealth
from scanstation.store import Store
from scanstation.web.context import SERVICES, Services
from scanstation.web.routes.live import LIVE, end_streams
from scanstation.web.server import make_app

API = "/scanner/api/v1"
IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"
GTIN = "09506000134352"  # GS1's example GTIN (valid check digit)
TERMINAL = {"COMPLETED", "NOT_FOUND", "FAILED"}


class FakeCamera:
    """A camera source as the web layer sees it: health plus the newest encoded frame."""

    def __init__(self, name: str, frames: list[bytes]) -> None:
        self.name = name
        self.health = SourceHealth(name, "camera", state="running")
        self.frames = frames
        self.index = 0

    def latest_jpeg(self) -> bytes | None:
        return self.frames[self.index % len(self.frames)] if self.frames else None

    def next_frame(self) -> None:
        self.index += 1


def jpeg(name: str, width: int = 200) -> bytes:
    with Image.open(IMAGES / name) as image:
        image.thumbnail((width, width))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG")
        return out.getvalue()


@pytest.fixture
def camera() -> FakeCamera:
    return FakeCamera("cam0", [jpeg("coffee.jpg"), jpeg("rocket.jpg")])


@pytest.fixture
def app(config: Config, store: Store, pipeline: Pipeline, camera: FakeCamera) -> web.Application:
    gun = SourceHealth("gun", "hid", state="running")
    services = Services(config, store, pipeline, pipeline.bus, {"cam0": camera.health, "gun": gun})
    return make_app(services, previews={"cam0": camera})


@pytest.fixture
async def api(aiohttp_client: Any, app: web.Application, api_key: str) -> TestClient[Any, Any]:
    return await aiohttp_client(app, headers={"X-API-Key": api_key})


async def new_session(api: TestClient[Any, Any]) -> str:
    resp = await api.post(f"{API}/sessions", json={})
    assert resp.status == 201
    public_id: str = (await resp.json())["public_id"]
    return public_id


async def scan(api: TestClient[Any, Any], session: str, raw_value: str) -> dict[str, Any]:
    resp = await api.post(
        f"{API}/captures",
        json={"session_public_id": session, "capture_type": "BARCODE", "raw_value": raw_value},
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return await wait_for_status(api, body["public_id"], TERMINAL)


async def scanned_with_proposals(
    api: TestClient[Any, Any], store: Store, drafts: list[dict[str, Any]]
) -> dict[str, Any]:
    capture = await scan(api, await new_session(api), GTIN)
    row = await store.get_capture(capture["public_id"])
    await store.add_proposals(row.id, drafts)
    return capture


DRAFTS = [
    {"field_name": "name", "proposed_value": "Espresso beans", "confidence": 0.91,
     "source": "efficientnet-lite0", "reasoning": "top-1 class espresso"},
    {"field_name": "category", "proposed_value": "Coffee", "confidence": 0.8,
     "source": "efficientnet-lite0"},
    {"field_name": "certifications", "proposed_value": "Fairtrade", "confidence": 0.5},
    {"field_name": "colour", "proposed_value": "brown", "confidence": 0.4},
]  # fmt: skip


# ---- proposals ---------------------------------------------------------------------------


async def test_proposals_list_review_and_apply_create_the_product(
    api: TestClient[Any, Any], store: Store
) -> None:
    capture = await scanned_with_proposals(api, store, DRAFTS)
    assert capture["status"] == "NOT_FOUND"
    listed = await (await api.get(f"{API}/captures/{capture['public_id']}/proposals")).json()
    assert listed["count"] == 4
    by_field = {p["field_name"]: p for p in listed["results"]}
    assert by_field["name"]["status"] == "PENDING"
    assert by_field["name"]["confidence"] == 0.91
    for field in ("name", "category", "certifications", "colour"):
        resp = await api.patch(
            f"{API}/proposals/{by_field[field]['public_id']}", json={"status": "ACCEPTED"}
        )
        assert resp.status == 200
        assert (await resp.json())["status"] == "ACCEPTED"
    rejected = await api.patch(
        f"{API}/proposals/{by_field['category']['public_id']}", json={"status": "REJECTED"}
    )
    assert (await rejected.json())["reviewed_at"] is not None

    resp = await api.post(f"{API}/captures/{capture['public_id']}/apply")
    assert resp.status == 200
    body = await resp.json()
    assert body["created"] is True
    assert body["applied"] == [
        by_field["name"]["public_id"],
        by_field["certifications"]["public_id"],
    ]
    assert body["skipped"] == [
        {"public_id": by_field["colour"]["public_id"], "reason": "'colour' is not a product field"}
    ]
    product = body["product"]
    assert (product["gtin"], product["name"], product["category"]) == (GTIN, "Espresso beans", "")
    assert product["certifications"] == ["Fairtrade"]
    assert product["completeness"] == 30  # name (2) + certifications (1) of 10
    # The NOT_FOUND capture is walked again and now finds its product.
    after = await wait_for_status(api, capture["public_id"], {"COMPLETED"})
    assert (after["status"], after["product_name"], after["revision"]) == (
        "COMPLETED", "Espresso beans", 2,
    )  # fmt: skip


async def test_proposals_apply_twice_does_not_duplicate_list_items(
    api: TestClient[Any, Any], store: Store
) -> None:
    capture = await scanned_with_proposals(api, store, DRAFTS[2:3])
    proposals = await (await api.get(f"{API}/captures/{capture['public_id']}/proposals")).json()
    await api.patch(
        f"{API}/proposals/{proposals['results'][0]['public_id']}", json={"status": "ACCEPTED"}
    )
    await api.post(f"{API}/captures/{capture['public_id']}/apply")
    second = await (await api.post(f"{API}/captures/{capture['public_id']}/apply")).json()
    assert second["created"] is False
    assert second["product"]["certifications"] == ["Fairtrade"]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"status": "APPLIED"}, 422), ({}, 422), ({"status": "ACCEPTED", "x": 1}, 422)],
)
async def test_proposals_patch_rejects_bad_bodies(
    api: TestClient[Any, Any], store: Store, body: dict[str, Any], status: int
) -> None:
    capture = await scanned_with_proposals(api, store, DRAFTS[:1])
    proposals = await (await api.get(f"{API}/captures/{capture['public_id']}/proposals")).json()
    resp = await api.patch(f"{API}/proposals/{proposals['results'][0]['public_id']}", json=body)
    assert resp.status == status
    assert "error" in await resp.json()


async def test_proposals_unknown_ids_are_404(api: TestClient[Any, Any]) -> None:
    missing = "3vVHKgqCoxMTHhaYHM7ZUv"
    assert (await api.get(f"{API}/captures/{missing}/proposals")).status == 404
    assert (
        await api.patch(f"{API}/proposals/{missing}", json={"status": "ACCEPTED"})
    ).status == 404
    assert (await api.post(f"{API}/captures/{missing}/apply")).status == 404


async def test_proposals_apply_needs_accepted_proposals_and_a_gtin(
    api: TestClient[Any, Any], store: Store
) -> None:
    capture = await scanned_with_proposals(api, store, DRAFTS[:1])
    none_accepted = await api.post(f"{API}/captures/{capture['public_id']}/apply")
    assert none_accepted.status == 409
    text_capture = await scan(api, await new_session(api), "hello world")
    row = await store.get_capture(text_capture["public_id"])
    await store.add_proposals(row.id, DRAFTS[:1])
    proposal = (await store.list_proposals(text_capture["public_id"]))[0]
    await api.patch(f"{API}/proposals/{proposal.public_id}", json={"status": "ACCEPTED"})
    no_gtin = await api.post(f"{API}/captures/{text_capture['public_id']}/apply")
    assert no_gtin.status == 409
    assert "no GTIN" in (await no_gtin.json())["error"]["message"]


# ---- products ----------------------------------------------------------------------------


async def test_products_put_creates_then_merges(api: TestClient[Any, Any]) -> None:
    created = await api.put(f"{API}/products/9506000134352", json={"name": "Oat milk"})
    assert created.status == 201
    assert (await created.json())["gtin"] == GTIN  # GTIN-13 in the path, GTIN-14 stored
    updated = await api.put(
        f"{API}/products/{GTIN}", json={"brand": "Oatly", "certifications": ["Vegan"]}
    )
    assert updated.status == 200
    product = await (await api.get(f"{API}/products/{GTIN}")).json()
    assert (product["name"], product["brand"], product["certifications"]) == (
        "Oat milk", "Oatly", ["Vegan"],
    )  # fmt: skip
    assert product["completeness"] == 40


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/products/123", {"name": "x"}, 422),  # not a GTIN length
        ("/products/09506000134353", {"name": "x"}, 422),  # bad check digit
        (f"/products/{GTIN}", {"name": "x", "price": 3}, 422),  # unknown field
        (f"/products/{GTIN}", {"nutrition": "lots"}, 422),  # not an object
        (f"/products/{GTIN}", {"gtin": "96385074"}, 422),  # body disagrees with path
    ],
)
async def test_products_put_rejects_bad_input(
    api: TestClient[Any, Any], path: str, body: dict[str, Any], status: int
) -> None:
    resp = await api.put(API + path, json=body)
    assert resp.status == status
    assert (await resp.json())["error"]["message"]


async def test_products_get_unknown_is_404(api: TestClient[Any, Any]) -> None:
    resp = await api.get(f"{API}/products/{GTIN}")
    assert resp.status == 404


CATALOG_CSV = (
    "gtin,name,brand,category\n"
    "9506000134352,Oat milk,Oatly,Dairy alternatives\n"
    "96385074,Chewing gum,,Sweets\n"
)


async def test_products_import_csv_json_and_list(api: TestClient[Any, Any]) -> None:
    resp = await api.post(
        f"{API}/products/import", data=CATALOG_CSV, headers={"Content-Type": "text/csv"}
    )
    assert (resp.status, await resp.json()) == (200, {"imported": 2})
    resp = await api.post(
        f"{API}/products/import",
        json=[{"gtin": "4006381333931", "name": "Stabilo pen", "images": ["a.jpg"]}],
    )
    assert (await resp.json()) == {"imported": 1}
    page = await (await api.get(f"{API}/products", params={"order": "name"})).json()
    assert page["count"] == 3
    assert [p["name"] for p in page["results"]] == ["Chewing gum", "Oat milk", "Stabilo pen"]
    found = await (await api.get(f"{API}/products", params={"q": "oat"})).json()
    assert [p["gtin"] for p in found["results"]] == [GTIN]
    low = await (await api.get(f"{API}/products", params={"max_completeness": "30"})).json()
    assert {p["name"] for p in low["results"]} == {"Chewing gum", "Stabilo pen"}


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("name\nx\n", "text/csv", 422),  # no gtin column
        ("gtin\n123\n", "text/csv", 422),
        ("[{", "application/json", 422),
        ("gtin\n96385074\n", "application/xml", 415),
    ],
)
async def test_products_import_rejects_bad_catalogs(
    api: TestClient[Any, Any], data: str, content_type: str, status: int
) -> None:
    resp = await api.post(
        f"{API}/products/import", data=data, headers={"Content-Type": content_type}
    )
    assert resp.status == status


# ---- exports -----------------------------------------------------------------------------


async def test_exports_scans_and_products_csv(api: TestClient[Any, Any]) -> None:
    await api.put(f"{API}/products/{GTIN}", json={"name": "Oat milk"})
    session = await new_session(api)
    capture = await scan(api, session, f"]C1010{GTIN[1:]}10LOT42")
    assert capture["status"] == "COMPLETED", capture
    resp = await api.get(f"{API}/exports/scans.csv")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [(r["gtin"], r["batch"], r["capture_public_id"]) for r in rows] == [
        (GTIN, "LOT42", capture["public_id"])
    ]
    future = await api.get(f"{API}/exports/scans.csv", params={"since": "2999-01-01T00:00:00Z"})
    assert (await future.text()).count("\n") == 1  # the header alone
    products = list(csv.DictReader(io.StringIO(await (await api.get(
        f"{API}/exports/products.csv")).text())))  # fmt: skip
    assert [(p["gtin"], p["name"]) for p in products] == [(GTIN, "Oat milk")]


async def test_exports_bad_time_filter_is_400(api: TestClient[Any, Any]) -> None:
    resp = await api.get(f"{API}/exports/scans.csv", params={"since": "yesterday"})
    assert resp.status == 400


# ---- live events -------------------------------------------------------------------------


async def read_event(resp: Any, kind: str, timeout: float = 3.0) -> dict[str, Any]:
    """Read SSE frames until one of ``kind`` arrives; returns its data."""

    async def read() -> dict[str, Any]:
        event = ""
        while True:
            line = (await resp.content.readline()).decode()
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: ") and event == kind:
                data: dict[str, Any] = json.loads(line[6:])
                return data

    return await asyncio.wait_for(read(), timeout)


async def test_events_stream_capture_changes(api: TestClient[Any, Any]) -> None:
    session = await new_session(api)
    resp = await api.get(f"{API}/events")
    assert resp.headers["Content-Type"] == "text/event-stream"
    await read_event(resp, "hello")
    post = await api.post(
        f"{API}/captures",
        json={"session_public_id": session, "capture_type": "BARCODE", "raw_value": GTIN},
    )
    public_id = (await post.json())["public_id"]
    seen = []
    while True:
        data = await read_event(resp, "capture")
        assert data["public_id"] == public_id
        seen.append(data["status"])
        if data["status"] in TERMINAL:
            break
    assert seen == ["PENDING", "NOT_FOUND"]
    resp.close()


async def test_events_stream_ends_cleanly_on_shutdown(
    api: TestClient[Any, Any], app: web.Application
) -> None:
    resp = await api.get(f"{API}/events")
    await read_event(resp, "hello")
    assert len(app[LIVE].subscriptions) == 1
    await end_streams(app)
    assert await read_event(resp, "shutdown") == {}
    rest = await asyncio.wait_for(resp.content.read(), 2)  # returns: the server closed it
    assert rest.strip() == b""
    assert app[LIVE].subscriptions == set()


# ---- stats and metrics -------------------------------------------------------------------


async def test_stats_report_todays_scans_products_and_health(api: TestClient[Any, Any]) -> None:
    await api.put(f"{API}/products/{GTIN}", json={"name": "Oat milk", "brand": "Oatly"})
    session = await new_session(api)
    for value in (GTIN, GTIN, "96385074", "not a code"):
        await scan(api, session, value)
    stats = await (await api.get(f"{API}/stats")).json()
    assert stats["scans_today"] == 4
    assert stats["by_status"] == {"COMPLETED": 2, "NOT_FOUND": 2}
    assert stats["top_products"][0] == {
        "gtin": GTIN,
        "name": "Oat milk",
        "scans": 2,
        "in_catalog": True,
    }
    assert stats["products_total"] == 1
    assert stats["completeness_average"] == 30.0
    assert stats["completeness_buckets"]["25-49"] == 1
    assert len(stats["per_hour"]) == 24
    assert stats["per_hour"][-1]["captures"] == 4
    assert stats["outbox"]["depth"] == 4
    assert stats["mqtt"]["state"] == "off"
    assert [(s["name"], s["kind"], s["preview"]) for s in stats["sources"]] == [
        ("cam0", "camera", True), ("gun", "hid", False),
    ]  # fmt: skip


async def test_metrics_prometheus_text(api: TestClient[Any, Any]) -> None:
    session = await new_session(api)
    await scan(api, session, GTIN)
    resp = await api.get(f"{API}/metrics")
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await resp.text()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.split()[1] in ("HELP", "TYPE")
    # Parsed as Prometheus parses it (label order is not part of the format).
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("scanstation_captures", (("status", "NOT_FOUND"),))] == 1
    assert samples[("scanstation_outbox_depth", ())] == 1
    assert samples[("scanstation_source_up", (("kind", "camera"), ("source", "cam0")))] == 1
    assert samples[("scanstation_pipeline_captures_created_total", ())] == 1
    assert "# TYPE scanstation_store_commits_total counter" in text


async def test_metrics_need_credentials(aiohttp_client: Any, app: web.Application) -> None:
    anon = await aiohttp_client(app)
    assert (await anon.get(f"{API}/metrics")).status == 401


# ---- camera preview and stored images ----------------------------------------------------


async def test_preview_snapshot_is_the_newest_frame(
    api: TestClient[Any, Any], camera: FakeCamera
) -> None:
    first = await api.get(f"{API}/sources/cam0/snapshot.jpg")
    assert (first.status, first.headers["Content-Type"]) == (200, "image/jpeg")
    assert await first.read() == camera.frames[0]
    camera.next_frame()
    assert await (await api.get(f"{API}/sources/cam0/snapshot.jpg")).read() == camera.frames[1]


async def test_preview_unknown_and_non_camera_sources(api: TestClient[Any, Any]) -> None:
    assert (await api.get(f"{API}/sources/nope/snapshot.jpg")).status == 404
    assert (await api.get(f"{API}/sources/nope/stream.mjpg")).status == 404
    gun = await api.get(f"{API}/sources/gun/snapshot.jpg")
    assert gun.status == 409
    assert "no camera preview" in (await gun.json())["error"]["message"]


async def test_preview_without_a_frame_yet_is_409(
    api: TestClient[Any, Any], camera: FakeCamera
) -> None:
    camera.frames = []
    assert (await api.get(f"{API}/sources/cam0/snapshot.jpg")).status == 409


async def test_preview_mjpeg_stream_sends_jpeg_parts(
    api: TestClient[Any, Any], camera: FakeCamera
) -> None:
    resp = await api.get(f"{API}/sources/cam0/stream.mjpg", params={"fps": "30"})
    assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    assert await resp.content.readline() == b"--frame\r\n"
    assert await resp.content.readline() == b"Content-Type: image/jpeg\r\n"
    length = int((await resp.content.readline()).split(b":")[1])
    await resp.content.readline()
    frame = await resp.content.readexactly(length)
    assert frame == camera.frames[0]
    resp.close()


class StreamingCamera(FakeCamera):
    """A camera that also offers its own frame iterator, as sources/camera.py does."""

    async def mjpeg_frames(self, max_fps: float = 10.0) -> AsyncIterator[bytes]:
        for frame in self.frames:
            yield frame
            await asyncio.sleep(1 / max_fps)
        await asyncio.Event().wait()  # a live camera never ends


async def test_preview_mjpeg_uses_the_sources_own_frames(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline, api_key: str
) -> None:
    camera = StreamingCamera("cam1", [jpeg("coffee.jpg"), jpeg("rocket.jpg")])
    services = Services(config, store, pipeline, pipeline.bus, {"cam1": camera.health})
    client = await aiohttp_client(
        make_app(services, previews={"cam1": camera}), headers={"X-API-Key": api_key}
    )
    resp = await client.get(f"{API}/sources/cam1/stream.mjpg", params={"fps": "30"})
    assert await resp.content.readline() == b"--frame\r\n"
    frames = []
    for _ in range(2):
        await resp.content.readline()  # Content-Type
        length = int((await resp.content.readline()).split(b":")[1])
        await resp.content.readline()
        frames.append(await resp.content.readexactly(length))
        assert await resp.content.readline() == b"\r\n"
        assert await resp.content.readline() == b"--frame\r\n"
    assert frames == camera.frames
    resp.close()


async def test_capture_image_and_thumbnail(api: TestClient[Any, Any]) -> None:
    session = await new_session(api)
    photo = (IMAGES / "chelsea.jpg").read_bytes()
    form = {"session_public_id": session, "image": io.BytesIO(photo)}
    created = await (await api.post(f"{API}/captures/upload-image", data=form)).json()
    full = await api.get(f"{API}/captures/{created['public_id']}/image")
    assert (full.status, full.headers["Content-Type"]) == (200, "image/jpeg")
    # The stored image is the upload re-encoded (upright, metadata stripped): same picture.
    with Image.open(io.BytesIO(await full.read())) as stored, Image.open(io.BytesIO(photo)) as sent:
        assert stored.size == sent.size
        assert not stored.getexif()
    thumb = await api.get(f"{API}/captures/{created['public_id']}/image", params={"width": "64"})
    with Image.open(io.BytesIO(await thumb.read())) as image:
        assert image.size[0] == 64


async def test_capture_image_missing_is_404(api: TestClient[Any, Any]) -> None:
    capture = await scan(api, await new_session(api), GTIN)
    resp = await api.get(f"{API}/captures/{capture['public_id']}/image")
    assert resp.status == 404
    assert "no stored image" in (await resp.json())["error"]["message"]


async def test_ui_is_served_with_validators(api: TestClient[Any, Any]) -> None:
    page = await api.get("/")
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-cache"
    again = await api.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304
    assert (await api.get("/assets/nothing-here.js")).status == 404
    assert (await api.get("/assets/../../pyproject.toml")).status == 404


def mqtt_report(**overrides: Any) -> Any:
    from scanstation.publish.mqtt import MqttState

    fields = dict.fromkeys(MqttState.__slots__, 0)
    fields |= {"enabled": True, "connected": False, "broker": "broker.example:8883",
               "protocol": "5", "last_error": "connection refused", "connected_since": None,
               "outbox_oldest_age_s": None}  # fmt: skip
    return MqttState(**(fields | overrides))


class FakePublisher:
    """What the web layer reads of the MQTT publisher: its ``state`` snapshot."""

    def __init__(self, report: Any) -> None:
        self.state = report


@pytest.mark.parametrize(
    ("report", "word", "detail"),
    [
        (mqtt_report(), "disconnected", "connection refused"),
        (mqtt_report(connected=True, last_error=""), "connected", "broker.example:8883"),
        (mqtt_report(enabled=False, broker=""), "off", ""),
    ],
)
async def test_stats_show_the_mqtt_publishers_state(
    aiohttp_client: Any,
    config: Config,
    store: Store,
    pipeline: Pipeline,
    api_key: str,
    report: Any,
    word: str,
    detail: str,
) -> None:
    services = Services(config, store, pipeline, pipeline.bus)
    services.mqtt = FakePublisher(report)  # type: ignore[attr-defined]
    client = await aiohttp_client(make_app(services), headers={"X-API-Key": api_key})
    stats = await (await client.get(f"{API}/stats")).json()
    assert (stats["mqtt"]["state"], stats["mqtt"]["detail"]) == (word, detail)
    assert stats["mqtt"]["broker"] == report.broker
    metrics = await (await client.get(f"{API}/metrics")).text()
    assert f'scanstation_mqtt_connected{{state="{word}"}} {int(word == "connected")}' in metrics


def test_bench_pages_reports_every_page(capsys: pytest.CaptureFixture[str]) -> None:
    from scanstation.commands.bench import pages

    assert pages.main(["--captures", "2000", "--requests", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["captures"] == 2000
    assert set(result["pages"]) == {
        "captures, first page", "captures, page at offset 50%", "captures of one session",
        "captures FAILED", "captures since 1 h", "sessions, first page",
        "dashboard /stats (uncached)",
    }  # fmt: skip
    assert all(0 < p["median_ms"] <= p["p99_ms"] for p in result["pages"].values())


async def test_events_send_heartbeats_while_idle(
    api: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scanstation.web.routes.live.HEARTBEAT_S", 0.05)
    resp = await api.get(f"{API}/events")
    await read_event(resp, "hello")
    lines = [await asyncio.wait_for(resp.content.readline(), 2) for _ in range(2)]
    assert b": heartbeat\n" in lines
    resp.close()


async def test_events_tell_a_slow_reader_what_it_missed(
    api: TestClient[Any, Any], app: web.Application
) -> None:
    bus = app[SERVICES].bus
    bus.maxsize = 3
    resp = await api.get(f"{API}/events")
    await read_event(resp, "hello")
    for n in range(10):  # published faster than the stream is read
        bus.publish(EventKind.SESSION, {"public_id": f"s{n}", "status": "ACTIVE"})
    dropped = await read_event(resp, "dropped")
    assert dropped["count"] >= 1
    resp.close()
