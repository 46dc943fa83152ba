"""Resolution order: a GTIN read from the capture decides the product, looks only propose;
GS1 keys other than a GTIN complete without the network (real model, real photos, real HTTP,
real SQLite)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from conftest import free_port
from scanstation.app import init_classifier
from scanstation.bus import EventBus
from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.vision.enrich import DEFAULT_RESOLVE_THRESHOLD, cosine_similarity
from scanstation.web.context import Services
from scanstation.web.server import make_app

API = "/scanner/api/v1"
IMAGES = Path(__file__).parent / "data" / "images"
X_GTIN = "05012345678900"  # the barcode on the photo
Y_GTIN = "04006381333931"  # the product the photo looks like


def reframed_cat(label: str = "") -> bytes:
    """Another shot of chelsea.jpg (cropped, scaled), with an upright EAN-13 on its left edge
    when ``label`` is given (outside the square the classifier looks at)."""
    with Image.open(IMAGES / "chelsea.jpg") as original:
        w, h = original.size
        image = original.convert("RGB").crop((w // 10, h // 12, w - w // 14, h - h // 9))
    if not label:
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4))
    if label:
        symbol = zxingcpp.write_barcode_to_image(
            zxingcpp.create_barcode(label, zxingcpp.BarcodeFormat.EAN13), scale=2
        )
        sticker = Image.fromarray(np.asarray(symbol)).convert("RGB")
        sticker = sticker.resize((sticker.width, 50)).rotate(90, expand=True)
        image.paste(sticker, (6, (image.height - sticker.height) // 2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture
async def station(
    aiohttp_client: Any, config: Config, api_key: str
) -> AsyncIterator[tuple[TestClient[Any, Any], Pipeline, Store]]:
    async with Store(config.db_path) as store:
        enrichers = await init_classifier(config, store)
        assert enrichers, "the shipped model must load"
        pipeline = Pipeline(store, config, bus=EventBus(), enrichers=enrichers)
        walker = asyncio.create_task(pipeline.run())
        client = await aiohttp_client(
            make_app(Services(config, store, pipeline, pipeline.bus)),
            headers={"X-API-Key": api_key},
        )
        try:
            yield client, pipeline, store
        finally:
            walker.cancel()
            await asyncio.gather(walker, return_exceptions=True)


async def upload(
    client: TestClient[Any, Any], pipeline: Pipeline, session: str, image: bytes, **fields: str
) -> dict[str, Any]:
    form = FormData()
    form.add_field("session_public_id", session)
    form.add_field("image", image, filename="p.jpg", content_type="image/jpeg")
    for name, value in fields.items():
        form.add_field(name, value)
    resp = await client.post(f"{API}/captures/upload-image", data=form)
    assert resp.status == 201, await resp.text()
    await pipeline.idle()
    public_id = (await resp.json())["public_id"]
    return dict(await (await client.get(f"{API}/captures/{public_id}")).json())


async def proposals(client: TestClient[Any, Any], public_id: str) -> list[dict[str, Any]]:
    listing = await (await client.get(f"{API}/captures/{public_id}/proposals")).json()
    return list(listing["results"])


async def test_a_barcode_in_the_photo_beats_a_look_alike_reference_photo(
    station: tuple[TestClient[Any, Any], Pipeline, Store],
) -> None:
    client, pipeline, _ = station
    await client.put(f"{API}/products/{X_GTIN}", json={"name": "Biscuits X"})
    await client.put(f"{API}/products/{Y_GTIN}", json={"name": "Cat food Y"})
    session = (await (await client.post(f"{API}/sessions", json={})).json())["public_id"]

    # Product Y's reference photo: a photo of the cat, applied to Y.
    reference = await upload(client, pipeline, session, (IMAGES / "chelsea.jpg").read_bytes())
    category = next(
        p for p in await proposals(client, reference["public_id"]) if p["field_name"] == "category"
    )
    await client.patch(f"{API}/proposals/{category['public_id']}", json={"status": "ACCEPTED"})
    resp = await client.post(
        f"{API}/captures/{reference['public_id']}/apply", json={"gtin": Y_GTIN}
    )
    assert resp.status == 200, await resp.text()
    await pipeline.idle()
    applied = await (await client.get(f"{API}/captures/{reference['public_id']}")).json()
    assert (applied["status"], applied["product_name"]) == ("COMPLETED", "Cat food Y")

    # The same-looking photo without a barcode: Y is proposed, not attached.
    lookalike = await upload(client, pipeline, session, reframed_cat())
    assert (lookalike["status"], lookalike["product_public_id"]) == ("NOT_FOUND", None)
    looks = [
        p for p in await proposals(client, lookalike["public_id"]) if p["field_name"] == "product"
    ]
    assert [p["proposed_value"] for p in looks] == [applied["product_public_id"]]

    # Now with product X's barcode on it: X decides; Y is at most a proposal. (It looks like
    # Y's reference photo as much as the look-alike does: over the resolve threshold.)
    photo = reframed_cat(X_GTIN[1:])
    classifier = pipeline.enrichers[0].classifier  # type: ignore[attr-defined]
    embeddings = [
        (await classifier.classify_async(data)).embedding
        for data in (photo, (IMAGES / "chelsea.jpg").read_bytes())
    ]
    assert cosine_similarity(*embeddings) >= DEFAULT_RESOLVE_THRESHOLD
    labelled = await upload(client, pipeline, session, photo)
    assert (labelled["status"], labelled["gtin"], labelled["product_name"]) == (
        "COMPLETED",
        X_GTIN,
        "Biscuits X",
    )
    for proposal in await proposals(client, labelled["public_id"]):
        assert proposal["status"] == "PENDING"
        assert proposal["proposed_value"] != applied["product_public_id"]

    # A GTIN the client sends decides as well, whatever the photo looks like.
    sent = await upload(client, pipeline, session, reframed_cat(), gtin=X_GTIN)
    assert (sent["status"], sent["product_name"]) == ("COMPLETED", "Biscuits X")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/00/106141411234567897", {"type": "SSCC", "ai": "00", "value": "106141411234567897"}),
        ("/414/9506000134369", {"type": "GLN", "ai": "414", "value": "9506000134369"}),
        (
            "/8003/09506000134376SER1",
            {"type": "GRAI", "ai": "8003", "value": "09506000134376SER1"},
        ),
        ("/8004/0950600ABC123", {"type": "GIAI", "ai": "8004", "value": "0950600ABC123"}),
    ],
)
async def test_non_gtin_digital_links_complete_offline_with_their_key(
    make_config: Any, aiohttp_client: Any, api_key: str, path: str, key: dict[str, str]
) -> None:
    # "Offline": the resolver's host refuses every connection (nothing listens on the port).
    config = make_config(qr_analysis={"allow_private_networks": True, "timeout": 2.0})
    link = f"http://127.0.0.1:{free_port()}{path}"
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config, bus=EventBus())
        walker = asyncio.create_task(pipeline.run())
        client = await aiohttp_client(
            make_app(Services(config, store, pipeline, pipeline.bus)),
            headers={"X-API-Key": api_key},
        )
        try:
            session = (await (await client.post(f"{API}/sessions", json={})).json())["public_id"]
            resp = await client.post(
                f"{API}/captures",
                json={"session_public_id": session, "capture_type": "BARCODE", "raw_value": link},
            )
            assert resp.status == 201
            await pipeline.idle()
            public_id = (await resp.json())["public_id"]
            done = await (await client.get(f"{API}/captures/{public_id}")).json()
            assert done["status"] == "COMPLETED", done["error_message"]
            assert done["gs1_key"] == key
            assert done["gs1_dl_data"] == {key["ai"]: key["value"]}
            assert done["qr_analysis"]["error_message"]  # the chain could not be followed
            assert done["product_public_id"] is None
            events = [json.loads(e.payload) for e in await store.outbox_batch()]
            event = next(e for e in events if e.get("public_id") == public_id)
            assert (event["status"], event["gs1_key"]) == ("COMPLETED", key)
        finally:
            walker.cancel()
            await asyncio.gather(walker, return_exceptions=True)
            await pipeline.close()


async def test_a_url_without_a_gs1_key_still_fails_offline(
    make_config: Any, aiohttp_client: Any, api_key: str
) -> None:
    config = make_config(qr_analysis={"allow_private_networks": True, "timeout": 2.0})
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config, bus=EventBus())
        walker = asyncio.create_task(pipeline.run())
        client = await aiohttp_client(
            make_app(Services(config, store, pipeline, pipeline.bus)),
            headers={"X-API-Key": api_key},
        )
        try:
            session = (await (await client.post(f"{API}/sessions", json={})).json())["public_id"]
            resp = await client.post(
                f"{API}/captures",
                json={
                    "session_public_id": session,
                    "capture_type": "BARCODE",
                    "raw_value": f"http://127.0.0.1:{free_port()}/product/42",
                },
            )
            await pipeline.idle()
            public_id = (await resp.json())["public_id"]
            done = await (await client.get(f"{API}/captures/{public_id}")).json()
            assert (done["status"], done["gs1_key"]) == ("FAILED", None)
            assert "QR analysis" in done["error_message"]
        finally:
            walker.cancel()
            await asyncio.gather(walker, return_exceptions=True)
            await pipeline.close()
