"""Image captures through the daemon's wiring: classifier proposals, reference photos,
look-alike proposals for image-only captures (real model, real photos, real SQLite)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from PIL import Image

from scanstation.app import init_classifier
from scanstation.bus import EventBus
from scanstation.config import Config
from scanstation.model import CaptureStatus, CaptureType
from scanstation.pipeline import Pipeline
from scanstation.store import NewCapture, Store
from scanstation.web.context import Services

IMAGES = Path(__file__).parents[1] / "data" / "images"


def reframed(name: str) -> bytes:
    """Another shot of the same thing: cropped, scaled and saved again as JPEG."""
    with Image.open(IMAGES / name) as image:
        w, h = image.size
        crop = image.convert("RGB").crop((w // 10, h // 12, w - w // 14, h - h // 9))
        buffer = io.BytesIO()
        crop.resize((crop.width * 3 // 4, crop.height * 3 // 4)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


async def test_visual_resolve_proposes_the_product_whose_reference_photo_matches(
    config: Config,
) -> None:
    async with Store(config.db_path) as store:
        enrichers = await init_classifier(config, store)
        assert enrichers, "the shipped model must load"
        pipeline = Pipeline(store, config, bus=EventBus(), enrichers=enrichers)
        walker = asyncio.create_task(pipeline.run())
        try:
            await store.upsert_products(
                [
                    {"gtin": "04006381333931", "name": "Cat food tin"},
                    {"gtin": "09506000134352", "name": "Espresso beans"},
                ]
            )
            session = (await store.create_session()).public_id

            async def photo(data: bytes, ext: str, gtin: str = "") -> str:
                key = pipeline.save_image(data, ext)
                capture = await pipeline.create_capture(
                    session,
                    NewCapture(CaptureType.IMAGE, raw_value=gtin, uploaded_image_key=key),
                )
                await pipeline.idle()
                return capture.public_id

            # Reference photos: captures of known products, applied to them.
            for name, gtin in (("chelsea.jpg", "04006381333931"), ("coffee.jpg", "09506000134352")):
                data = (IMAGES / name).read_bytes()
                public_id = await photo(data, "jpg", gtin)
                capture = await store.get_capture(public_id)
                assert capture.status is CaptureStatus.COMPLETED
                product = await store.get_product(gtin)
                assert await store.add_reference_photo(product.id, capture.id)

            # Looks only propose: another shot of each is NOT_FOUND, with the product it
            # looks like as a proposal carrying the similarity.
            cat = await store.get_capture(await photo(reframed("chelsea.jpg"), "jpg"))
            coffee = await store.get_capture(await photo(reframed("coffee.jpg"), "jpg"))
            cat_food = await store.get_product("04006381333931")
            beans = await store.get_product("09506000134352")
            for capture, product in ((cat, cat_food), (coffee, beans)):
                assert (capture.status, capture.product_public_id) == (CaptureStatus.NOT_FOUND, "")
                looks = [
                    p
                    for p in await store.list_proposals(capture.public_id)
                    if p.field_name == "product"
                ]
                assert [p.proposed_value for p in looks] == [product.public_id]
                assert looks[0].confidence >= 0.6
                assert product.name in looks[0].reasoning
            proposals = await store.list_proposals(coffee.public_id)
            assert any("espresso" in p.reasoning.lower() for p in proposals)

            rocket = await store.get_capture(
                await photo((IMAGES / "rocket.jpg").read_bytes(), "jpg")
            )
            assert rocket.status is CaptureStatus.NOT_FOUND  # nothing like it in the catalog
        finally:
            walker.cancel()


async def test_visual_review_flow_through_the_api(
    aiohttp_client: Any, config: Config, api_key: str
) -> None:
    """Upload a photo with no barcode, accept its category, apply it to a product: the capture
    reaches that product; the next photo of it gets the product as a proposal, and applying
    that proposal attaches it."""
    from aiohttp import FormData

    from scanstation.web.server import make_app

    api = "/scanner/api/v1"
    async with Store(config.db_path) as store:
        pipeline = Pipeline(
            store, config, bus=EventBus(), enrichers=await init_classifier(config, store)
        )
        walker = asyncio.create_task(pipeline.run())
        client = await aiohttp_client(
            make_app(Services(config, store, pipeline, pipeline.bus)),
            headers={"X-API-Key": api_key},
        )
        try:
            await client.put(f"{api}/products/09506000134352", json={"name": "Espresso beans"})
            session = (await (await client.post(f"{api}/sessions", json={})).json())["public_id"]

            async def upload(data: bytes) -> dict[str, Any]:
                form = FormData()
                form.add_field("session_public_id", session)
                form.add_field("image", data, filename="p.jpg", content_type="image/jpeg")
                resp = await client.post(f"{api}/captures/upload-image", data=form)
                assert resp.status == 201, await resp.text()
                await pipeline.idle()
                created = await resp.json()
                return dict(
                    await (await client.get(f"{api}/captures/{created['public_id']}")).json()
                )

            first = await upload((IMAGES / "coffee.jpg").read_bytes())
            assert first["status"] == "NOT_FOUND"
            listing = await (
                await client.get(f"{api}/captures/{first['public_id']}/proposals")
            ).json()
            category = next(p for p in listing["results"] if p["field_name"] == "category")
            assert "Coffee" in category["proposed_value"]
            resp = await client.patch(
                f"{api}/proposals/{category['public_id']}", json={"status": "ACCEPTED"}
            )
            assert resp.status == 200
            resp = await client.post(
                f"{api}/captures/{first['public_id']}/apply", json={"gtin": "9506000134352"}
            )
            assert resp.status == 200, await resp.text()
            product = (await resp.json())["product"]
            assert product["category"] == category["proposed_value"]

            # The apply walked the capture again: it reached the product it was applied to.
            assert (await resp.json())["capture"]["status"] == "PENDING"
            await pipeline.idle()
            applied = await (await client.get(f"{api}/captures/{first['public_id']}")).json()
            assert (applied["status"], applied["product_name"], applied["gtin"]) == (
                "COMPLETED",
                "Espresso beans",
                "09506000134352",
            )

            # The next photo of it: the product is proposed (looks never attach it); accepting
            # that proposal and applying it attaches the capture.
            second = await upload(reframed("coffee.jpg"))
            assert (second["status"], second["product_public_id"]) == ("NOT_FOUND", None)
            listing = await (
                await client.get(f"{api}/captures/{second['public_id']}/proposals")
            ).json()
            look = next(p for p in listing["results"] if p["field_name"] == "product")
            assert look["proposed_value"] == product["public_id"]
            await client.patch(f"{api}/proposals/{look['public_id']}", json={"status": "ACCEPTED"})
            resp = await client.post(f"{api}/captures/{second['public_id']}/apply")
            assert resp.status == 200, await resp.text()
            assert look["public_id"] in (await resp.json())["applied"]
            await pipeline.idle()
            second = await (await client.get(f"{api}/captures/{second['public_id']}")).json()
            assert (second["status"], second["product_name"]) == ("COMPLETED", "Espresso beans")
        finally:
            walker.cancel()
