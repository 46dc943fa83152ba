"""A Closient client, written from the documented Closient fields alone (SPEC §10), against a
real station over HTTP: both auth styles (X-API-Key; the sessionid cookie with Django's
csrftoken cookie echoed in X-CSRFToken, or X-CSRF-Token), every call and edge case."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.web import passwords
from scanstation.web.context import Services
from scanstation.web.models import CaptureOut
from scanstation.web.server import make_app

API = "/scanner/api/v1"
PASSWORD = "closient client password"
SHORTUUID = re.compile(r"^[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{22}$")
ALWAYS = ("public_id", "status", "capture_type", "raw_value", "gtin", "error_message", "created")
NULLABLE = (
    "product_public_id",
    "product_short_id",
    "product_name",
    "processed_at",
    "uploaded_image_key",
    "qr_analysis",
)
TERMINAL = {"COMPLETED", "NOT_FOUND", "FAILED"}


class ClosientClient:
    """What a Closient integration does: the documented paths, fields and auth, nothing else."""

    def __init__(self, http: TestClient[Any, Any], headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    def _csrf(self) -> dict[str, str]:
        """Django's convention: the csrftoken cookie's value, echoed in X-CSRFToken."""
        if "X-API-Key" in self.headers or "X-CSRF-Token" in self.headers:
            return {}
        cookie = self.http.session.cookie_jar.filter_cookies(self.http.make_url("/"))
        return {"X-CSRFToken": cookie["csrftoken"].value} if "csrftoken" in cookie else {}

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = {**self.headers, **self._csrf()}
        return await self.http.post(f"{API}{path}", headers=headers, **kwargs)

    async def get(self, path: str) -> aiohttp.ClientResponse:
        return await self.http.get(f"{API}{path}", headers=self.headers)

    async def session(self) -> str:
        resp = await self.post("/sessions", json={})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["public_id"])

    async def capture(self, **body: Any) -> aiohttp.ClientResponse:
        return await self.post("/captures", json=body)

    async def upload(self, session: str, image: bytes, **fields: str) -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        form.add_field("session_public_id", session)
        form.add_field("image", image, filename="photo.png", content_type="image/png")
        for name, value in fields.items():
            form.add_field(name, value)
        return await self.post("/captures/upload-image", data=form)

    async def retry(self, public_id: str) -> aiohttp.ClientResponse:
        return await self.post(f"/captures/{public_id}/retry")

    async def finished(self, public_id: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                body: dict[str, Any] = await (await self.get(f"/captures/{public_id}")).json()
                if body["status"] in TERMINAL:
                    return body
                await asyncio.sleep(0.02)


def assert_documented(capture: dict[str, Any]) -> None:
    """The documented response: always-present fields, null (never "") where empty."""
    for name in ALWAYS:
        assert name in capture, name
    assert SHORTUUID.match(capture["public_id"])
    dt.datetime.fromisoformat(capture["created"])
    for name in NULLABLE:
        assert name in capture, name
        assert capture[name] != "", name
    assert capture["product_public_id"] == capture["product_short_id"]
    assert isinstance(capture["gs1_dl_data"], dict)
    assert isinstance(capture["metadata"], dict)
    CaptureOut.model_validate(capture)  # and the OpenAPI document's schema for it


async def assert_refused(resp: aiohttp.ClientResponse, status: int, field: str) -> str:
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"]["field"] == field, body
    assert body["error"]["message"]
    return str(body["error"]["message"])


def png(color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(params=["api-key", "django-csrf", "x-csrf-token"])
async def closient(
    request: pytest.FixtureRequest,
    aiohttp_client: Any,
    config: Config,
    store: Store,
    pipeline: Pipeline,
    api_key: str,
) -> AsyncIterator[ClosientClient]:
    passwords.set_password(config, PASSWORD)
    http = await aiohttp_client(make_app(Services(config, store, pipeline, pipeline.bus)))
    if request.param == "api-key":
        yield ClosientClient(http, {"X-API-Key": api_key})
        return
    resp = await http.post("/auth/login", json={"password": PASSWORD})
    assert resp.status == 200
    cookies = http.session.cookie_jar.filter_cookies(http.make_url("/"))
    assert {"sessionid", "csrftoken"} <= set(cookies)
    assert cookies["csrftoken"].value == (await resp.json())["csrf_token"]
    if request.param == "django-csrf":
        yield ClosientClient(http, {})
    else:
        yield ClosientClient(http, {"X-CSRF-Token": (await resp.json())["csrf_token"]})


async def test_closient_capture_round_trip_keeps_what_the_client_sent(
    closient: ClosientClient, store: Store
) -> None:
    await store.upsert_products([{"gtin": "09506000134352", "name": "Oat drink"}])
    session = await closient.session()
    # A client gtin next to a raw value that is no GTIN: normalised, kept, used for the lookup.
    resp = await closient.capture(
        session_public_id=session,
        capture_type="MANUAL",
        raw_value="shelf 4, oat drink",
        gtin="9506000134352",
        gs1_dl_data={"01": "09506000134352", "10": "LOT7"},
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert_documented(created)
    assert (created["gtin"], created["gs1_dl_data"]) == (
        "09506000134352",
        {"01": "09506000134352", "10": "LOT7"},
    )
    done = await closient.finished(created["public_id"])
    assert_documented(done)
    assert done["status"] == "COMPLETED"
    assert (done["gtin"], done["product_name"]) == ("09506000134352", "Oat drink")
    assert done["gs1_dl_data"] == {"01": "09506000134352", "10": "LOT7"}
    assert SHORTUUID.match(done["product_public_id"])


async def test_closient_gs1_dl_data_merges_and_the_station_parse_wins_a_conflict(
    closient: ClosientClient,
) -> None:
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session,
        capture_type="BARCODE",
        raw_value="]C1010950600013435210ABC123",
        gs1_dl_data={"10": "XYZ", "21": "SER9"},
    )
    done = await closient.finished((await resp.json())["public_id"])
    assert_documented(done)
    assert done["gs1_dl_data"] == {"01": "09506000134352", "10": "ABC123", "21": "SER9"}
    assert done["checks"]["conflicts"] == {
        "gs1_dl_data": {"10": {"client": "XYZ", "station": "ABC123"}}
    }
    # A retry walks it again from what the client sent: the same merge, the same record.
    resp = await closient.retry(done["public_id"])
    assert resp.status == 200
    again = await closient.finished(done["public_id"])
    assert (again["revision"], again["gs1_dl_data"], again["checks"]["conflicts"]) == (
        2,
        done["gs1_dl_data"],
        done["checks"]["conflicts"],
    )


async def test_closient_not_found_capture_has_null_fields_not_empty_strings(
    closient: ClosientClient,
) -> None:
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session, capture_type="BARCODE", raw_value="4006381333931"
    )
    done = await closient.finished((await resp.json())["public_id"])
    assert done["status"] == "NOT_FOUND"
    assert_documented(done)
    for name in ("product_public_id", "product_short_id", "product_name", "uploaded_image_key"):
        assert done[name] is None, name
    assert done["qr_analysis"] is None
    assert done["processed_at"] is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"raw_value": ""}, "raw_value"),
        ({"raw_value": "4" * 501}, "raw_value"),
        ({"capture_type": "barcode"}, "capture_type"),
        ({"capture_type": None}, "capture_type"),
        ({"gtin": "0" * 15}, "gtin"),
        ({"gtin": "4006381333932"}, "gtin"),  # check digit
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"metadata": {"k" * 41: "v"}}, "metadata." + "k" * 40),
        ({"metadata": {"note": "v" * 501}}, "metadata.note"),
        ({"gs1_dl_data": {"01": "123"}}, "gs1_dl_data"),
        ({"gs1_dl_data": {"abc": "1"}}, "gs1_dl_data.abc.[key]"),
    ],
)
async def test_closient_capture_edge_cases_are_422_naming_the_field(
    closient: ClosientClient, change: dict[str, Any], field: str
) -> None:
    session = await closient.session()
    body: dict[str, Any] = {
        "session_public_id": session,
        "capture_type": "BARCODE",
        "raw_value": "4006381333931",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    await assert_refused(await closient.capture(**body), 422, field)


async def test_closient_capture_edges_that_pass(closient: ClosientClient) -> None:
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session,
        capture_type="MANUAL",
        raw_value="x" * 500,
        metadata={f"k{i}": "v" * 500 for i in range(49)} | {"k" * 40: "ok"},
    )
    assert resp.status == 201, await resp.text()
    assert len((await resp.json())["raw_value"]) == 500


async def test_closient_upload_image_defaults_to_image_and_refuses_manual(
    closient: ClosientClient,
) -> None:
    session = await closient.session()
    resp = await closient.upload(session, png())
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert_documented(created)
    assert (created["capture_type"], created["raw_value"], created["gtin"]) == ("IMAGE", "", "")
    assert created["uploaded_image_key"]
    done = await closient.finished(created["public_id"])
    assert_documented(done)
    await assert_refused(
        await closient.upload(session, png(), capture_type="MANUAL"), 422, "capture_type"
    )
    resp = await closient.upload(session, png(), capture_type="BARCODE", gtin="4006381333931")
    assert resp.status == 201
    assert (await resp.json())["gtin"] == "04006381333931"
    await assert_refused(await closient.upload(session, png(), gtin="1" * 15), 422, "gtin")


async def test_closient_retry_ids_are_validated_and_only_failed_or_not_found_retry(
    closient: ClosientClient,
) -> None:
    message = await assert_refused(await closient.retry("not-a-short-uuid"), 422, "id")
    assert "22 characters" in message
    await assert_refused(await closient.retry("0" * 22), 422, "id")  # 0 is not in the alphabet
    await assert_refused(await closient.retry("3vVHKgqCoxMTHhaYHM7ZUv"), 404, "")
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session, capture_type="MANUAL", raw_value="]C100106141411234567897"
    )
    done = await closient.finished((await resp.json())["public_id"])
    assert done["status"] == "COMPLETED"  # an SSCC: nothing to look up
    await assert_refused(await closient.retry(done["public_id"]), 409, "")


async def test_cookie_client_without_a_csrf_token_is_refused(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline
) -> None:
    passwords.set_password(config, PASSWORD)
    http = await aiohttp_client(make_app(Services(config, store, pipeline, pipeline.bus)))
    assert (await http.post("/auth/login", json={"password": PASSWORD})).status == 200
    resp = await http.post(f"{API}/sessions", json={})
    assert resp.status == 403
    # A csrftoken cookie of the client's own making is worth nothing.
    resp = await http.post(
        f"{API}/sessions",
        json={},
        headers={"X-CSRFToken": "forged", "Cookie": "csrftoken=forged"},
    )
    assert resp.status == 403
    # Logging out clears both cookies.
    cookie = http.session.cookie_jar.filter_cookies(http.make_url("/"))["csrftoken"].value
    resp = await http.post("/auth/logout", headers={"X-CSRFToken": cookie})
    assert resp.status == 200
    assert "csrftoken" not in http.session.cookie_jar.filter_cookies(http.make_url("/"))


async def test_closient_gtin_in_the_value_decides_and_the_client_gtin_is_recorded(
    closient: ClosientClient, store: Store
) -> None:
    await store.upsert_products(
        [
            {"gtin": "04006381333931", "name": "Highlighter"},
            {"gtin": "09506000134352", "name": "Oat drink"},
        ]
    )
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session,
        capture_type="BARCODE",
        raw_value="4006381333931",
        gtin="09506000134352",
    )
    created = await resp.json()
    done = await closient.finished(created["public_id"])
    # A barcode value is walked before its one durable write: the 201 is already the result.
    assert created == done
    assert (done["gtin"], done["product_name"]) == ("04006381333931", "Highlighter")
    assert done["checks"]["conflicts"] == {
        "gtin": {"client": "09506000134352", "station": "04006381333931"}
    }
    assert done["gs1_key"] == {"type": "GTIN", "ai": "01", "value": "04006381333931"}


async def test_closient_fields_stay_on_a_failed_capture(closient: ClosientClient) -> None:
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session,
        capture_type="BARCODE",
        raw_value="4006381333932",  # a wrong check digit
        gtin="4006381333931",
        gs1_dl_data={"10": "LOT1"},
    )
    done = await closient.finished((await resp.json())["public_id"])
    assert_documented(done)
    assert done["status"] == "FAILED"
    assert "check digit" in done["error_message"]
    assert (done["gtin"], done["gs1_dl_data"]) == ("04006381333931", {"10": "LOT1"})


async def test_closient_ai_01_in_gs1_dl_data_names_the_product(
    closient: ClosientClient, store: Store
) -> None:
    await store.upsert_products([{"gtin": "09506000134352", "name": "Oat drink"}])
    session = await closient.session()
    resp = await closient.capture(
        session_public_id=session,
        capture_type="MANUAL",
        raw_value="typed at the till",
        gs1_dl_data={"01": "9506000134352"},
    )
    done = await closient.finished((await resp.json())["public_id"])
    assert (done["status"], done["gtin"], done["product_name"]) == (
        "COMPLETED",
        "09506000134352",
        "Oat drink",
    )
    assert done["gs1_dl_data"] == {"01": "09506000134352"}
