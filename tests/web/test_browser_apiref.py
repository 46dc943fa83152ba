"""The API reference page (/api) in headless Chromium: it renders the station's own OpenAPI
document, readable on a desktop and a phone, with the Closient field rules shown."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, log_in, open_page, playwright_api

from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.web import passwords
from station import Station, running_station

pytestmark = pytest.mark.browser


@pytest.fixture
async def station(config: Config, store: Store, pipeline: Pipeline) -> AsyncIterator[Station]:
    passwords.set_password(config, PASSWORD)
    async with running_station(
        config, mqtt=False, http="tcp", store=store, pipeline=pipeline
    ) as station:
        yield station


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)])
async def test_browser_api_reference_shows_every_operation_and_its_rules(
    browser: Any, station: Station, size: tuple[int, int]
) -> None:
    p = await open_page(browser, size)
    await log_in(p, station)
    await p.page.goto(station.url + "/api")
    create = p.page.locator("section#post_captures")
    await create.wait_for(timeout=5000)
    assert "Create a capture" in await create.inner_text()
    capture_type = create.locator('tr[data-field="capture_type"]').first
    text = await capture_type.inner_text()
    assert "required" in text
    assert "^(BARCODE|IMAGE|MANUAL)$" in text
    raw_value = await create.locator('tr[data-field="raw_value"]').first.inner_text()
    assert "≥ 1 chars" in raw_value
    assert "≤ 500 chars" in raw_value
    # The 201 answer: nullable fields say so.
    product = await create.locator('tr[data-field="product_public_id"]').first.inner_text()
    assert "null" in product
    retry = p.page.locator("section#post_captures_id_retry")
    assert "abcdefghijkmnopqrstuvwxyz]{22}$" in await retry.inner_text()
    auth = await retry.locator(".auth").inner_text()
    assert auth == (
        "auth: X-API-Key header, or sessionid cookie + X-CSRF-Token header, "
        "or sessionid cookie + X-CSRFToken header"
    )
    # Every operation of the document has its section.
    doc = await (
        await p.page.context.request.get(station.url + "/scanner/api/v1/openapi.json")
    ).json()
    count = sum(len(item) for item in doc["paths"].values())
    assert await p.page.locator("section.op").count() == count
    # Nothing sticks out sideways, on a phone either.
    overflow = await p.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    wide = await p.page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
        " > document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.' +"
        " e.className + ' ' + (e.textContent || '').slice(0, 40))"
    )
    assert overflow <= 0, f"{overflow}px too wide at {size}: {wide}"
    first = await p.page.locator("section.op").first.get_attribute("id")
    assert first == "post_captures"  # Closient's resources first
    # The filter narrows the list.
    await p.page.get_by_label("Filter").fill("retry")
    assert await p.page.locator("section.op:not(.hidden)").count() == 1
    assert p.errors == []
    shots = os.environ.get("SCREENSHOTS_DIR")
    if shots:
        await p.page.get_by_label("Filter").fill("")
        await p.page.screenshot(path=str(Path(shots) / f"api-reference-{size[0]}x{size[1]}.png"))


async def test_browser_api_reference_needs_a_login(browser: Any, station: Station) -> None:
    p = await open_page(browser)
    await p.page.goto(station.url + "/api")
    await p.page.wait_for_url("**/login?next=/api")
