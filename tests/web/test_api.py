"""The core HTTP API (SPEC §6) through aiohttp's test client on a real SQLite file."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from conftest import wait_for_status
from scanstation.model import is_public_id
from scanstation.web.context import SERVICES, Services

API = "/scanner/api/v1"
Client = TestClient[Any, Any]


async def new_session(client: Client, **body: Any) -> str:
    resp = await client.post(f"{API}/sessions", json=body)
    assert resp.status == 201
    data = await resp.json()
    return str(data["public_id"])


async def post_capture(client: Client, session: str, **body: Any) -> Any:
    body.setdefault("capture_type", "BARCODE")
    return await client.post(f"{API}/captures", json={"session_public_id": session, **body})


async def test_api_capture_walks_to_not_found_then_completed_after_catalog(
    client: Client,
) -> None:
    session = await new_session(client)
    resp = await post_capture(client, session, capture_type="BARCODE", raw_value="4006381333931")
    assert resp.status == 201
    created = await resp.json()
    assert created["status"] == "PENDING"
    assert is_public_id(created["public_id"])

    done = await wait_for_status(client, created["public_id"], {"NOT_FOUND"}, timeout=1.0)
    assert done["status"] == "NOT_FOUND"
    assert done["gtin"] == "04006381333931"

    store = client.app[SERVICES].store
    await store.upsert_products([{"gtin": "04006381333931", "name": "STABILO highlighter"}])
    resp = await client.post(f"{API}/captures/{created['public_id']}/retry")
    assert resp.status == 200
    assert (await resp.json())["status"] == "PENDING"
    done = await wait_for_status(client, created["public_id"], {"COMPLETED"})
    assert done["status"] == "COMPLETED"
    assert done["product_name"] == "STABILO highlighter"
    assert done["revision"] == 2
    assert done["product_public_id"] == done["product_short_id"] != ""

    resp = await client.post(f"{API}/captures/{created['public_id']}/retry")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "conflict"
    assert "COMPLETED" in error["message"]


async def test_api_invalid_check_digit_fails_with_reason(client: Client) -> None:
    session = await new_session(client)
    resp = await post_capture(client, session, raw_value="4006381333932")
    done = await wait_for_status(client, (await resp.json())["public_id"], {"FAILED"})
    assert done["status"] == "FAILED"
    assert "check digit" in done["error_message"].lower()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"capture_type": "FOO", "raw_value": "1"}, "capture_type"),
        ({"raw_value": "x" * 501}, "raw_value"),
        ({"raw_value": ""}, "raw_value"),
        ({"raw_value": "1", "gtin": "123456789012345"}, "gtin"),
        ({"raw_value": "1", "gtin": "12345ABC"}, "gtin"),
        ({"raw_value": "1", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        (
            {"raw_value": "1", "metadata": {"k" * 41: "v"}},
            "metadata.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
        ),
        ({"raw_value": "1", "metadata": {"note": "v" * 501}}, "metadata.note"),
        ({"raw_value": "1", "colour": "red"}, "colour"),
    ],
)
async def test_api_invalid_capture_is_422_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    session = await new_session(client)
    resp = await post_capture(client, session, **body)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["field"] == field
    assert error["code"] == "invalid"


async def test_api_metadata_at_the_limits_is_accepted(client: Client) -> None:
    session = await new_session(client)
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(50)}
    resp = await post_capture(client, session, raw_value="1", metadata=metadata)
    assert resp.status == 201
    assert (await resp.json())["metadata"] == metadata


async def test_api_capture_to_ended_session_is_409(client: Client) -> None:
    session = await new_session(client)
    resp = await client.post(f"{API}/sessions/{session}/end")
    assert resp.status == 200
    assert (await resp.json())["status"] == "COMPLETED"
    resp = await post_capture(client, session, raw_value="4006381333931")
    assert resp.status == 409
    assert (await resp.json())["error"]["field"] == "session_public_id"
    resp = await client.post(f"{API}/sessions/{session}/end")
    assert resp.status == 409


async def test_api_unknown_ids_are_404(client: Client) -> None:
    unknown = "ZZZZZZZZZZZZZZZZZZZZZZ"
    for path in (f"/sessions/{unknown}", f"/captures/{unknown}", f"/sessions/{unknown}/status"):
        resp = await client.get(API + path)
        assert resp.status == 404, path
        assert unknown in (await resp.json())["error"]["message"]
    resp = await post_capture(client, unknown, raw_value="1")
    assert resp.status == 404
    resp = await client.post(f"{API}/captures/{unknown}/retry")
    assert resp.status == 404


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "ss_nope"}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}]
)
async def test_api_without_a_valid_key_is_401(client: Client, headers: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(client.make_url(f"{API}/sessions"), headers=headers) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_api_healthz_is_open(client: Client) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(client.make_url("/healthz")) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def test_api_wrong_host_is_403(client: Client) -> None:
    resp = await client.get(f"{API}/sessions", headers={"Host": "evil.example.com"})
    assert resp.status == 403
    assert (await resp.json())["error"]["field"] == "Host"


async def test_api_bad_json_is_400_not_500(client: Client) -> None:
    resp = await client.post(
        f"{API}/captures", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await client.post(
        f"{API}/captures", data=b"<xml/>", headers={"Content-Type": "text/xml"}
    )
    assert resp.status == 415


async def test_api_list_captures_filters_and_paginates(client: Client) -> None:
    first, second = await new_session(client), await new_session(client)
    for value in ("4006381333931", "5901234123457", "4006381333932"):
        await post_capture(client, first, raw_value=value)
    await post_capture(client, second, raw_value="4006381333931")
    await client.app[SERVICES].pipeline.idle()

    resp = await client.get(f"{API}/captures", params={"session": first, "limit": "2"})
    page = await resp.json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"] is not None
    resp = await client.get(page["next"])
    assert len((await resp.json())["results"]) == 1

    resp = await client.get(f"{API}/captures", params={"status": "FAILED"})
    failed = (await resp.json())["results"]
    assert [c["raw_value"] for c in failed] == ["4006381333932"]

    resp = await client.get(f"{API}/captures", params={"since": "2999-01-01T00:00:00Z"})
    assert (await resp.json())["count"] == 0
    resp = await client.get(f"{API}/captures", params={"limit": "0"})
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "limit"


async def test_api_session_lifecycle_and_status(client: Client) -> None:
    session = await new_session(client, capture_mode="barcode_scan", metadata={"lane": "3"})
    await post_capture(client, session, raw_value="4006381333931")
    await client.app[SERVICES].pipeline.idle()
    resp = await client.get(f"{API}/sessions/{session}")
    body = await resp.json()
    assert body["capture_mode"] == "barcode_scan"
    assert body["metadata"] == {"lane": "3"}
    assert body["capture_count"] == 1
    resp = await client.get(f"{API}/sessions/{session}/status")
    status = await resp.json()
    assert status["captures_by_status"] == {"NOT_FOUND": 1}
    assert status["complete"] is True
    resp = await client.get(f"{API}/sessions", params={"status": "ACTIVE"})
    assert session in [s["public_id"] for s in (await resp.json())["results"]]


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_api_upload_image_stores_file_and_makes_image_capture(client: Client) -> None:
    session = await new_session(client)
    form = FormData()
    form.add_field("session_public_id", session)
    form.add_field("image", _png(), filename="shelf.png", content_type="image/png")
    resp = await client.post(f"{API}/captures/upload-image", data=form)
    assert resp.status == 201, await resp.text()
    capture = await resp.json()
    assert capture["capture_type"] == "IMAGE"
    key = capture["uploaded_image_key"]
    assert key.endswith(".png")
    assert "shelf" not in key  # keys are never derived from user input
    config = client.app[SERVICES].config
    stored = config.images_path / key
    assert stored.is_file()
    with Image.open(stored) as image:
        assert image.size == (64, 48)


async def test_api_upload_rejects_non_images_and_oversized(client: Client) -> None:
    session = await new_session(client)
    form = FormData()
    form.add_field("session_public_id", session)
    form.add_field("image", b"GIF89a not really", filename="x.png", content_type="image/png")
    resp = await client.post(f"{API}/captures/upload-image", data=form)
    assert resp.status == 415
    assert (await resp.json())["error"]["field"] == "image"

    form = FormData()
    form.add_field("session_public_id", session)
    form.add_field("note", b"no image here", filename="note.txt", content_type="text/plain")
    resp = await client.post(f"{API}/captures/upload-image", data=form)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "image"


async def test_api_below_the_disk_floor_captures_are_refused_visibly(
    aiohttp_client: Any, make_config: Any, api_key: str
) -> None:
    from scanstation.bus import EventBus
    from scanstation.pipeline import Pipeline
    from scanstation.store import Store
    from scanstation.web.server import make_app

    config = make_config(storage={"disk_floor_mb": 10**12})  # more than any disk has
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config, bus=EventBus())
        client = await aiohttp_client(
            make_app(Services(config, store, pipeline, pipeline.bus)),
            headers={"X-API-Key": api_key},
        )
        session = await new_session(client)
        resp = await post_capture(client, session, raw_value="4006381333931")
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "disk_full"
        assert "disk_floor_mb" in error["message"]
        assert (await store.list_captures())[1] == 0
