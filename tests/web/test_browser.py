"""The web UI in headless Chromium (Debian's `chromium`, driven by Playwright's Python package):
login, the live feed, proposal review, export, and screenshots of every page.

Screenshots go to a temporary folder; set SCREENSHOTS_DIR=docs/screenshots to refresh
the ones the docs show.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scanstation.config import Config, NoReadImagesConfig
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.services.catalog import parse_products
from scanstation.services.noreads import NoReadRing
from scanstation.sources.base import SourceHealth
from scanstation.store import NewCapture, Store
from scanstation.web import passwords
from station import Station, running_station

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))  # Debian's package
if not CHROMIUM.exists():
    pytest.skip(
        "SKIPPED (browser): /usr/bin/chromium is missing; install it with "
        "`apt-get install -y chromium` to run the web UI tests",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="SKIPPED (browser): pip install playwright (no browser download)"
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API = "/scanner/api/v1"
PASSWORD = "kiosk password 1"
IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"
REPO = Path(__file__).resolve().parents[2]
VIEWPORTS = [(1280, 800), (800, 480), (390, 844)]  # desktop, 7" kiosk, phone


def jpeg(name: str, width: int = 640) -> bytes:
    with Image.open(IMAGES / name) as image:
        image.thumbnail((width, width))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue()


class FakeCamera:
    """A camera source as the web layer sees it: health plus its newest JPEG frame."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = SourceHealth(name, "camera", state="running", scans=12)
        self.frame = jpeg("rocket.jpg")

    def latest_jpeg(self) -> bytes:
        return self.frame


@pytest.fixture
async def station(config: Config, store: Store, pipeline: Pipeline) -> AsyncIterator[Station]:
    passwords.set_password(config, PASSWORD)
    camera = FakeCamera("cam0")
    sources = {
        "cam0": camera.health,
        "gun": SourceHealth("gun", "hid", state="running", scans=31),
    }
    async with running_station(
        config,
        mqtt=False,
        http="tcp",
        store=store,
        pipeline=pipeline,
        sources=sources,
        previews={"cam0": camera},
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


@dataclass
class Page:
    """A Playwright page plus the script errors it logged (a CSP violation is one)."""

    page: Any
    errors: list[str]


async def open_page(browser: Any, size: tuple[int, int] = (1280, 800)) -> Page:
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]}, accept_downloads=True
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(msg: Any) -> None:
        # 401s the login page expects show up as "Failed to load resource"; anything else
        # (a script error, a CSP refusal) is a bug.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    page.on("console", console)
    return Page(page, errors)


async def log_in(p: Page, station: Station, password: str = PASSWORD) -> None:
    await p.page.goto(station.url + "/")
    await p.page.wait_for_url("**/login?next=/")
    await p.page.get_by_label("Password").fill(password)
    await p.page.get_by_role("button", name="Log in").click()
    await p.page.wait_for_url("**/#/live")
    await p.page.wait_for_selector("#conn.live")


async def seed(station: Station) -> dict[str, str]:
    """A realistic station: the demo catalog, a session of scans, a photo with proposals."""
    catalog = resources.files("scanstation.data").joinpath("demo_catalog.csv").read_text()
    await station.store.upsert_products(parse_products(catalog, "demo_catalog.csv"))
    await station.store.upsert_products(
        [{"gtin": "05901234123457", "name": "", "category": "Unknown"}]
    )
    session = await station.store.create_session(source="gun")
    values = [
        "4006381333931",
        "]E00036000291452",
        "]d2010950600013435217270101\x1d10ABC123",
        "5901234123457",
        "4006381333932",
        "]C1010950600013435217200101\x1d10LOT42",
        "HELLO-WORLD",
    ]
    ids: dict[str, str] = {"session": session.public_id}
    for value in values:
        capture = await station.pipeline.create_capture(
            session.public_id,
            NewCapture(capture_type=CaptureType.BARCODE, raw_value=value, source="gun"),
        )
        ids.setdefault("first", capture.public_id)
    key = await asyncio.to_thread(station.pipeline.save_image, jpeg("coffee.jpg"), "jpg")
    photo = await station.pipeline.create_capture(
        session.public_id,
        NewCapture(
            capture_type=CaptureType.IMAGE,
            raw_value="5012345678900",
            gtin="05012345678900",
            source="cam0",
            uploaded_image_key=key,
        ),
    )
    ids["photo"] = photo.public_id
    await station.pipeline.idle()
    row = await station.store.get_capture(photo.public_id)
    await station.store.add_proposals(
        row.id,
        [
            {"field_name": "name", "proposed_value": "Espresso coffee beans", "confidence": 0.87,
             "source": "efficientnet-lite0", "reasoning": "ImageNet class 967 espresso"},
            {"field_name": "category", "proposed_value": "Coffee", "confidence": 0.74,
             "source": "efficientnet-lite0", "reasoning": "from the class hierarchy"},
            {"field_name": "brand", "proposed_value": "Cup", "confidence": 0.12,
             "source": "efficientnet-lite0", "reasoning": "ImageNet class 968 cup"},
        ],
    )  # fmt: skip
    return ids


# ---- the flows an operator uses ------------------------------------------------------------


async def test_browser_login_needs_the_right_password(browser: Any, station: Station) -> None:
    p = await open_page(browser)
    await p.page.goto(station.url + "/#/products")
    await p.page.wait_for_url("**/login?next=**")
    await p.page.get_by_label("Password").fill("not the password")
    await p.page.get_by_role("button", name="Log in").click()
    alert = p.page.get_by_role("alert")
    await alert.filter(has_text="wrong password").wait_for()
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.keyboard.press("Enter")  # keyboard use works as well as the mouse
    await p.page.wait_for_url("**/#/products")
    await p.page.get_by_role("heading", name="Products").wait_for()
    cookies = await p.page.context.cookies()
    session = next(c for c in cookies if c["name"] == "sessionid")
    assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")
    assert p.errors == []


@pytest.mark.parametrize(
    "next_param",
    ["/%5Cexample.org/", "/%09/example.org/", "//example.org/", "https://example.org/", "/\\x"],
)
async def test_browser_login_never_redirects_to_another_origin(
    browser: Any, station: Station, next_param: str
) -> None:
    p = await open_page(browser)
    await p.page.goto(f"{station.url}/login?next={next_param}")
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.get_by_role("button", name="Log in").click()
    await p.page.wait_for_url(lambda url: "/login" not in url, timeout=5000)
    assert p.page.url.startswith(station.url + "/")
    await p.page.get_by_role("heading").first.wait_for()


async def test_browser_login_returns_to_the_page_asked_for(browser: Any, station: Station) -> None:
    p = await open_page(browser)
    await p.page.goto(f"{station.url}/login?next=/%23/products")
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.get_by_role("button", name="Log in").click()
    await p.page.wait_for_url(f"{station.url}/#/products")


async def test_browser_live_feed_updates_when_a_capture_is_posted(
    browser: Any, station: Station
) -> None:
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.get_by_text("No captures yet").wait_for()
    session = await station.api("POST", "/sessions", json={})
    capture = await station.api(
        "POST",
        "/captures",
        json={
            "session_public_id": session["public_id"],
            "capture_type": "BARCODE",
            "raw_value": "09506000134352",
        },
    )
    row = p.page.locator(f'#feed li[data-id="{capture["public_id"]}"][data-status="NOT_FOUND"]')
    await row.wait_for(timeout=5000)
    assert "09506000134352" in await row.inner_text()
    # A product added to the catalog and a retry: the same row turns COMPLETED in place.
    await station.api("PUT", "/products/09506000134352", json={"name": "Oat milk"})
    await station.api("POST", f"/captures/{capture['public_id']}/retry")
    done = p.page.locator(f'#feed li[data-id="{capture["public_id"]}"][data-status="COMPLETED"]')
    await done.wait_for(timeout=5000)
    assert "Oat milk" in await done.inner_text()
    assert await p.page.locator("#feed li").count() == 1
    assert p.errors == []


async def test_browser_manual_entry_adds_a_capture(browser: Any, station: Station) -> None:
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.get_by_label("Enter a code by hand").fill("4006381333931")
    await p.page.get_by_role("button", name="Add").click()
    await p.page.locator('#feed li[data-status="NOT_FOUND"]').wait_for(timeout=5000)
    page = await station.api("GET", "/captures")
    assert [(c["raw_value"], c["capture_type"]) for c in page["results"]] == [
        ("4006381333931", "MANUAL")
    ]


async def test_browser_proposal_review_and_apply(browser: Any, station: Station) -> None:
    ids = await seed(station)
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.goto(f"{station.url}/#/captures/{ids['photo']}")
    await p.page.get_by_role("heading", name="Proposals (3)").wait_for()
    await p.page.get_by_role("button", name="Accept name: Espresso coffee beans").click()
    await p.page.locator('tr[data-status="ACCEPTED"]').wait_for()
    await p.page.get_by_role("button", name="Accept category: Coffee").click()
    await p.page.locator('tr[data-status="ACCEPTED"]').nth(1).wait_for()
    await p.page.get_by_role("button", name="Reject brand: Cup").click()
    await p.page.locator('tr[data-status="REJECTED"]').wait_for()
    await p.page.get_by_role("button", name="Apply 2 accepted to the product").click()
    await p.page.get_by_role("status").filter(has_text="Applied 2").wait_for()
    product = await station.api("GET", "/products/05012345678900")
    assert (product["name"], product["category"], product["brand"]) == (
        "Espresso coffee beans", "Coffee", "",
    )  # fmt: skip
    # The capture was NOT_FOUND; applying walked it again and it now shows its product.
    await p.page.get_by_role("heading", name="Espresso coffee beans").wait_for(timeout=5000)
    statuses = [p.status.value for p in await station.store.list_proposals(ids["photo"])]
    assert statuses == ["ACCEPTED", "ACCEPTED", "REJECTED"]
    assert p.errors == []


async def test_browser_export_downloads_the_scans_csv(browser: Any, station: Station) -> None:
    await seed(station)
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.get_by_role("link", name="Dashboard").click()
    await p.page.get_by_role("heading", name="Dashboard").wait_for()
    async with p.page.expect_download() as info:
        await p.page.get_by_role("link", name="Export scans CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("scans-")
    text = Path(await download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["gtin"] for r in rows} >= {"04006381333931", "00036000291452", "09506000134352"}
    assert {r["batch"] for r in rows} >= {"ABC123", "LOT42"}
    assert p.errors == []


async def test_browser_dashboard_shows_the_read_rate_per_source(
    browser: Any, station: Station
) -> None:
    for result in ("good", "good", "good", "noread"):
        station.read_stats.record("cam0", result, ["4006381333931"] if result == "good" else [])
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.goto(station.url + "/#/dashboard")
    row = p.page.locator('#read-rate tr[data-source="cam0"]')
    await row.wait_for()
    assert await row.locator('[data-field="rate"]').inner_text() == "75.0 %"
    assert await row.locator('[data-field="hour"]').inner_text() == "75.0 % of 4"
    assert await row.locator('[data-field="noread"]').inner_text() == "1"
    assert "4006381333931" in await row.inner_text()
    assert p.errors == []


async def test_browser_noread_page_shows_and_downloads_the_kept_frames(
    browser: Any, config: Config, store: Store, pipeline: Pipeline
) -> None:
    passwords.set_password(config, PASSWORD)
    ring = NoReadRing(
        NoReadImagesConfig(reserve_free_mb=0), config.storage.path / "noreads", config.images_path
    )
    frame = jpeg("coffee.jpg")
    key = await asyncio.to_thread(pipeline.save_image, frame, "jpg")
    session = await store.create_session(source="cam0")
    capture = await pipeline.create_capture(
        session.public_id,
        NewCapture(
            capture_type=CaptureType.IMAGE, source="cam0", uploaded_image_key=key,
            metadata={"noread": "true"},
        ),
    )  # fmt: skip
    await pipeline.idle()
    await ring.on_capture(await store.get_capture(capture.public_id))
    async with running_station(
        config, mqtt=False, http="tcp", store=store, pipeline=pipeline, noreads=ring
    ) as station:
        p = await open_page(browser)
        await log_in(p, station)
        await p.page.goto(station.url + "/#/dashboard")
        await p.page.locator("#noreads-link").click()
        await p.page.wait_for_url("**/#/noreads")
        card = p.page.locator("#noreads li")
        await card.wait_for()
        assert await card.count() == 1
        await images_loaded(p.page)
        width = await card.locator("img").evaluate("img => img.naturalWidth")
        with Image.open(io.BytesIO(frame)) as image:
            assert width == image.width  # the frame itself, served by the API
        async with p.page.expect_download() as download_info:
            await card.get_by_role("link", name="Download").click()
        download = await download_info.value
        assert download.suggested_filename.endswith(f"-cam0-{capture.public_id}.jpg")
        assert p.errors == []


async def test_browser_logout_returns_to_the_login_page(browser: Any, station: Station) -> None:
    p = await open_page(browser)
    await log_in(p, station)
    await p.page.get_by_role("button", name="Log out").click()
    await p.page.wait_for_url("**/login")
    await p.page.goto(station.url + "/#/sessions")
    await p.page.wait_for_url("**/login?next=**")


# ---- every page at the desktop and the kiosk size --------------------------------------------


async def images_loaded(page: Any, timeout: float = 5.0) -> None:
    # Polled from here: wait_for_function evaluates a string in the page, which the CSP forbids.
    for _ in range(int(timeout / 0.05)):
        if await page.evaluate("[...document.images].every((i) => i.complete)"):
            return
        await asyncio.sleep(0.05)


async def test_browser_screenshots_of_every_page(
    browser: Any, station: Station, tmp_path: Path
) -> None:
    target = os.environ.get("SCREENSHOTS_DIR")
    out = (REPO / target) if target else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    ids = await seed(station)
    pages = [
        ("live", "/#/live", "Live feed"),
        ("sessions", "/#/sessions", "Sessions"),
        ("session", f"/#/sessions/{ids['session']}", "Session"),
        ("capture", f"/#/captures/{ids['photo']}", "5012345678900"),
        ("products", "/#/products", "Products"),
        ("dashboard", "/#/dashboard", "Dashboard"),
        ("camera", "/#/camera", "Camera preview"),
    ]
    for width, height in VIEWPORTS:
        p = await open_page(browser, (width, height))
        await p.page.goto(station.url + "/login")
        await p.page.get_by_label("Password").wait_for()
        await p.page.screenshot(path=str(out / f"login-{width}x{height}.png"))
        await p.page.get_by_label("Password").fill(PASSWORD)
        await p.page.keyboard.press("Enter")
        await p.page.wait_for_url("**/#/live")
        for name, path, heading in pages:
            await p.page.goto(station.url + path)
            await p.page.get_by_role("heading", name=heading).first.wait_for()
            if name != "camera":  # an MJPEG image never completes
                await images_loaded(p.page)
            await asyncio.sleep(0.3)  # let the last frame paint
            # Nothing may stick out sideways: the kiosk has no horizontal scrolling.
            overflow = await p.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} at {width}x{height} is {overflow}px too wide"
            await p.page.screenshot(path=str(out / f"{name}-{width}x{height}.png"))
        await p.page.goto(station.url + "/#/products")
        await p.page.get_by_role("button", name="Edit STABILO BOSS ORIGINAL highlighter").click()
        await p.page.get_by_role("dialog").wait_for()
        await p.page.screenshot(path=str(out / f"product-edit-{width}x{height}.png"))
        assert p.errors == [], p.errors
        await p.page.context.close()
    written = sorted(f.name for f in out.glob("*.png"))
    assert len(written) == (len(pages) + 2) * len(VIEWPORTS)
