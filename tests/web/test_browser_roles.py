"""Roles in headless Chromium: a viewer sees nothing it may not do and is refused when it
tries anyway; an operator runs a session but cannot open the admin page; an admin reads the
users, the audit log and the configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import test_browser
from test_browser import PASSWORD, Page, open_page, seed

from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.services.roles import Role
from scanstation.store import Store
from scanstation.web import passwords
from scanstation.web.users import UserStore, users_path
from station import Station, running_station

pytestmark = pytest.mark.browser
browser = test_browser.browser  # the Chromium fixture, shared

USERS = {
    "vera": (Role.VIEWER, "viewer password"),
    "otto": (Role.OPERATOR, "operator password"),
    "anna": (Role.ADMIN, "second admin password"),
}


@pytest.fixture
async def station(config: Config, store: Store, pipeline: Pipeline) -> AsyncIterator[Station]:
    passwords.set_password(config, PASSWORD)
    users = UserStore(users_path(config))
    for name, (role, password) in USERS.items():
        users.add(name, role, password)
    async with running_station(
        config, mqtt=False, http="tcp", store=store, pipeline=pipeline
    ) as station:
        yield station


async def log_in_as(p: Page, station: Station, name: str) -> None:
    await p.page.goto(station.url + "/")
    await p.page.wait_for_url("**/login?next=/")
    await p.page.get_by_label("User name").fill(name)
    await p.page.get_by_label("Password").fill(USERS[name][1])
    await p.page.get_by_role("button", name="Log in").click()
    await p.page.wait_for_url("**/#/live")
    await p.page.wait_for_selector("#conn.live")
    assert await p.page.locator("#whoami").inner_text() == f"{name} · {USERS[name][0].value}"


async def direct(p: Page, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request from inside the logged-in page, with its CSRF token: what a user could do
    from the browser's console."""
    result: list[Any] = await p.page.evaluate(
        """async ([method, path, body]) => {
            const s = await (await fetch("/auth/session")).json();
            const init = { method, headers: { "X-CSRF-Token": s.csrf_token } };
            if (body !== null) {
              init.body = JSON.stringify(body);
              init.headers["Content-Type"] = "application/json";
            }
            const r = await fetch(path, init);
            return [r.status, await r.json()];
        }""",
        [method, path, body],
    )
    return result[0], result[1]


async def test_browser_a_viewer_sees_no_controls_and_is_refused_anyway(
    browser: Any, station: Station
) -> None:
    ids = await seed(station)
    p = await open_page(browser)
    await log_in_as(p, station, "vera")
    page = p.page
    await page.locator("#feed li").first.wait_for()
    assert not await page.get_by_label("Enter a code by hand").is_visible()
    assert not await page.get_by_role("link", name="Admin").is_visible()

    await page.goto(f"{station.url}/#/sessions")
    await page.get_by_role("heading", name="Sessions").wait_for()
    await page.locator("table, .empty").first.wait_for()
    assert not await page.get_by_role("button", name="New session").is_visible()

    await page.goto(f"{station.url}/#/sessions/{ids['session']}")
    await page.get_by_text("gun").first.wait_for()
    assert not await page.get_by_role("button", name="End session").is_visible()

    await page.goto(f"{station.url}/#/captures/{ids['photo']}")
    await page.get_by_text("Espresso coffee beans").wait_for()
    for name in ("Accept name: Espresso coffee beans", "Reject name: Espresso coffee beans"):
        assert not await page.get_by_role("button", name=name).is_visible()
    assert not await page.locator("#apply").is_visible()

    await page.goto(f"{station.url}/#/products")
    await page.get_by_role("heading", name="Products").wait_for()
    await page.locator("tbody tr").first.wait_for()
    assert not await page.get_by_role("button", name="Add product").is_visible()
    edits = page.locator('button[data-needs="admin"]')
    assert await edits.count() > 1  # one Edit per product, all hidden
    assert not any([await b.is_visible() for b in await edits.all()])

    await page.goto(f"{station.url}/#/admin")
    await page.locator("#not-allowed").wait_for()
    assert await page.locator("#users").count() == 0

    # The same changes sent by hand are refused by the server.
    tries = [
        ("POST", "/scanner/api/v1/sessions", {}),
        ("POST", f"/scanner/api/v1/sessions/{ids['session']}/end", None),
        ("POST", "/scanner/api/v1/captures",
         {"session_public_id": ids["session"], "raw_value": "4006381333931",
          "capture_type": "BARCODE"}),
        ("PUT", "/scanner/api/v1/products/04006381333931", {"name": "Changed"}),
        ("GET", "/scanner/api/v1/config", None),
    ]  # fmt: skip
    for method, path, body in tries:
        status, answer = await direct(p, method, path, body)
        assert status == 403, (method, path, status)
        assert answer["error"]["field"] == "role"
    session = await station.store.get_session(ids["session"])
    assert session.status.value == "ACTIVE"
    assert p.errors == []


async def test_browser_an_operator_runs_a_session_but_cannot_open_the_config(
    browser: Any, station: Station
) -> None:
    p = await open_page(browser)
    await log_in_as(p, station, "otto")
    page = p.page
    assert await page.get_by_label("Enter a code by hand").is_visible()
    await page.get_by_label("Enter a code by hand").fill("4006381333931")
    await page.get_by_role("button", name="Add").click()
    await page.locator("#feed li").first.wait_for()

    await page.goto(f"{station.url}/#/sessions")
    await page.get_by_role("button", name="New session").click()
    await page.wait_for_url("**/#/sessions/*")
    await page.get_by_role("button", name="End session").click()
    await page.get_by_role("button", name="End session").wait_for(state="detached")
    sessions, _ = await station.store.list_sessions()
    assert sorted(s.status.value for s in sessions) == ["ACTIVE", "COMPLETED"]

    assert not await page.get_by_role("link", name="Admin").is_visible()
    assert not await page.get_by_role("link", name="Settings").is_visible()
    await page.goto(f"{station.url}/#/settings")
    await page.locator("#not-allowed").wait_for()
    assert await page.locator("#config-preview").count() == 0
    for path in ("/scanner/api/v1/config", "/scanner/api/v1/config/schema"):
        status, _ = await direct(p, "GET", path)
        assert status == 403
    status, _ = await direct(
        p, "POST", "/scanner/api/v1/config/apply", {"changes": {"device.site": "x"}}
    )
    assert status == 403
    status, _ = await direct(p, "GET", "/scanner/api/v1/audit")
    assert status == 403
    assert p.errors == []


async def test_browser_an_admin_reads_users_audit_and_config(
    browser: Any, station: Station
) -> None:
    bad = await open_page(browser)
    await bad.page.goto(station.url + "/login")
    await bad.page.get_by_label("User name").fill("otto")
    await bad.page.get_by_label("Password").fill("not the password")
    await bad.page.get_by_role("button", name="Log in").click()
    await bad.page.get_by_role("alert").filter(has_text="wrong user name or password").wait_for()

    p = await open_page(browser)
    await log_in_as(p, station, "anna")
    page = p.page
    await page.get_by_role("link", name="Admin").click()
    await page.wait_for_url("**/#/admin")
    rows = page.locator("#users tbody tr")
    await rows.first.wait_for()
    assert [await r.get_attribute("data-user") for r in await rows.all()] == [
        "admin", "anna", "otto", "vera"
    ]  # fmt: skip
    audit = page.locator("#audit tbody tr")
    await audit.first.wait_for()
    texts = [await r.inner_text() for r in await audit.all()]
    assert "anna" in texts[0]
    assert "login" in texts[0]
    assert "refused" in texts[1]
    assert "otto" in texts[1]
    await page.get_by_label("Action").select_option("login")
    async with page.expect_download() as download:
        await page.locator("#audit-csv").click()
    csv_text = (await (await download.value).path()).read_text()
    assert csv_text.splitlines()[0] == "time,actor,action,target,outcome,remote,detail"
    assert "otto,login,,refused" in csv_text
    async with page.expect_download() as backup:
        await page.locator("#backup-download").click()
    data = (await (await backup.value).path()).read_bytes()
    assert data[:2] == b"\x1f\x8b"  # a gzip'd tar: the `scanstation backup` format
    await page.locator("#settings-link").click()
    await page.wait_for_url("**/#/settings")
    await page.locator("#cfg-section-device").wait_for()
    assert await page.locator("#cfg-device-id").input_value() == station.config.device.id
    assert p.errors == []
