"""What a newcomer noticed in the UI, in headless Chromium: no sideways scrolling on the 7"
kiosk screen or a phone with real-world source details, a top product the catalog lacks says
so, GS1 fields in GS1's order, a title for every route (an unknown one too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_browser import PASSWORD, FakeCamera, browser, images_loaded, open_page, seed

from scanstation.config import Config
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.sources.base import SourceHealth
from scanstation.store import NewCapture, Store
from scanstation.web import passwords
from station import Station, running_station

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, imported for this module's tests

SMALL_SCREENS = [(800, 480), (390, 844)]  # the 7" kiosk screen, a phone


@pytest.fixture
async def busy_station(config: Config, store: Store, pipeline: Pipeline) -> AsyncIterator[Station]:
    """Sources as a real lane reports them: long device paths, a waiting gun, errors."""
    passwords.set_password(config, PASSWORD)
    camera = FakeCamera("cam0")
    camera.health.detail = (
        "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8F5E4B6F-video-index0 at 1280x720, 15 fps"
    )
    gun = SourceHealth(
        "kiosk-gun-entrance-left",
        "hid",
        state="reconnecting",
        detail="no barcode scanner found in /dev/input/by-id; plug one in or set device to its "
        "/dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd path",
        errors=3,
    )
    serial = SourceHealth(
        "serial-scanner", "serial", state="running", detail="/dev/serial/by-id/usb-FTDI_FT232R"
        "_USB_UART_A50285BI-if00-port0 at 115200 8N1", scans=1234567,
    )  # fmt: skip
    sources = {"cam0": camera.health, gun.name: gun, serial.name: serial}
    async with running_station(
        config, mqtt=False, http="tcp", store=store, pipeline=pipeline, sources=sources,
        previews={"cam0": camera},
    ) as station:  # fmt: skip
        yield station


async def overflow(page: Any) -> int:
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


async def test_no_page_scrolls_sideways_on_the_kiosk_screen_or_a_phone(
    browser: Any, busy_station: Station
) -> None:
    ids = await seed(busy_station)
    pages = [
        ("/#/dashboard", "Dashboard"),
        ("/#/live", "Live feed"),
        ("/#/sessions", "Sessions"),
        (f"/#/sessions/{ids['session']}", "Session"),
        (f"/#/captures/{ids['photo']}", "5012345678900"),
        ("/#/products", "Products"),
        ("/#/camera", "Camera preview"),
    ]
    for size in SMALL_SCREENS:
        p = await open_page(browser, size)
        await p.page.goto(busy_station.url + "/login")
        await p.page.get_by_label("Password").fill(PASSWORD)
        await p.page.keyboard.press("Enter")
        await p.page.wait_for_url("**/#/live")
        for path, heading in pages:
            await p.page.goto(busy_station.url + path)
            await p.page.get_by_role("heading", name=heading).first.wait_for()
            if "camera" not in path:
                await images_loaded(p.page)
            await asyncio.sleep(0.2)
            assert await overflow(p.page) <= 0, f"{path} at {size[0]}x{size[1]} scrolls sideways"
        # The long source details are there, wrapped rather than cut.
        await p.page.goto(busy_station.url + "/#/dashboard")
        await p.page.get_by_text("no barcode scanner found").wait_for()
        assert p.errors == [], p.errors
        await p.page.context.close()


async def test_top_products_marks_a_gtin_not_in_the_catalog(
    browser: Any, busy_station: Station
) -> None:
    await seed(busy_station)  # 5901234123457 is in the catalog (without a name)
    session = await busy_station.store.create_session(source="gun")
    for _ in range(3):
        await busy_station.pipeline.create_capture(
            session.public_id,
            NewCapture(capture_type=CaptureType.BARCODE, raw_value="4012345678901", source="gun"),
        )
    await busy_station.pipeline.idle()
    p = await open_page(browser)
    await p.page.goto(busy_station.url + "/login")
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.keyboard.press("Enter")
    await p.page.wait_for_url("**/#/live")
    await p.page.goto(busy_station.url + "/#/dashboard")
    top = p.page.get_by_role("region", name="Top products (7 days)")
    unknown = top.get_by_role("row").filter(has_text="04012345678901")
    await unknown.wait_for()
    assert "not in catalog" in await unknown.inner_text()
    named = top.get_by_role("row").filter(has_text="STABILO BOSS ORIGINAL highlighter")
    assert "not in catalog" not in await named.inner_text()
    unnamed = top.get_by_role("row").filter(has_text="05901234123457")
    assert "no name in the catalog" in await unnamed.inner_text()
    await p.page.context.close()


async def test_gs1_fields_show_in_gs1_order(browser: Any, busy_station: Station) -> None:
    session = await busy_station.store.create_session(source="gun")
    capture = await busy_station.pipeline.create_capture(
        session.public_id,
        NewCapture(
            capture_type=CaptureType.BARCODE,
            raw_value="]d2010950600013435217270101\x1d10ABC123",
            source="gun",
        ),
    )
    await busy_station.pipeline.idle()
    p = await open_page(browser)
    await p.page.goto(busy_station.url + "/login")
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.keyboard.press("Enter")
    await p.page.wait_for_url("**/#/live")
    await p.page.goto(busy_station.url + f"/#/captures/{capture.public_id}")
    panel = p.page.get_by_role("region", name="GS1 fields")
    await panel.wait_for()
    names = await panel.locator("dt").all_inner_texts()
    assert names == ["GTIN (01)", "Batch/lot (10)", "Expiry (17)"]
    await p.page.goto(busy_station.url + f"/#/sessions/{session.public_id}")
    cell = p.page.locator("ul.ais").first
    await cell.wait_for()
    assert [t.split()[0] for t in await cell.locator("li").all_inner_texts()] == [
        "(01)",
        "(10)",
        "(17)",
    ]
    await p.page.context.close()


async def test_every_route_sets_the_page_title(browser: Any, busy_station: Station) -> None:
    p = await open_page(browser)
    await p.page.goto(busy_station.url + "/login")
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.keyboard.press("Enter")
    await p.page.wait_for_url("**/#/live")
    for path, title in [
        ("/#/products", "Products · scanstation"),
        ("/#/no-such-page", "Not found · scanstation"),
        ("/#/dashboard", "Dashboard · scanstation"),
        ("/#/captures/nope", "Could not load this page · scanstation"),
    ]:
        await p.page.goto(busy_station.url + path)
        await p.page.wait_for_function("(t) => document.title === t", arg=title, timeout=5000)
    await p.page.goto(busy_station.url + "/#/no-such-page")
    await p.page.get_by_role("heading", name="Not found").wait_for()
    assert await p.page.title() == "Not found · scanstation"
    await p.page.context.close()
