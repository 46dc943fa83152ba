"""The settings page against a real daemon in Chromium: an admin changes a setting through
the form generated from the config model, sees the diff, applies it (the daemon restarts
with it, the browser stays logged in), and rolls it back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import test_browser
from test_browser import PASSWORD, open_page

from conftest import DaemonProcess
from scanstation.config import load_config
from scanstation.web import passwords

pytestmark = pytest.mark.browser
browser = test_browser.browser  # the Chromium fixture, shared


async def stats_site(page: Any) -> str:
    site: str = await page.evaluate(
        "async () => (await (await fetch('/scanner/api/v1/stats')).json()).site"
    )
    return site


async def test_browser_an_admin_changes_a_setting_sees_the_diff_applies_and_rolls_back(
    browser: Any, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory("[session]\nidle_timeout = 600.0  # ten minutes\n")
    original = daemon.config_path.read_text()
    passwords.set_password(load_config(daemon.config_path), PASSWORD)
    daemon.start()
    p = await open_page(browser)
    page = p.page
    await page.goto(daemon.url + "/login")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/#/live")
    assert await stats_site(page) == ""

    await page.get_by_role("link", name="Settings").click()
    await page.locator("#cfg-section-device").wait_for()
    site = page.locator("#cfg-device-site")
    assert await site.input_value() == ""
    help_text = page.locator('[data-key="device.site"] small')
    assert await help_text.inner_text()  # the key's documentation beside it
    # A bad value is refused before anything is saved, naming the key.
    await page.locator("#cfg-http-bind").fill("no port here")
    await page.get_by_role("button", name="Preview changes").click()
    await page.locator("#config-error").filter(has_text="http.bind").wait_for()
    assert await page.get_by_role("button", name="Apply and restart").is_disabled()
    await page.locator("#cfg-http-bind").fill(load_config(daemon.config_path).http.bind)

    await site.fill("store-8")
    await page.get_by_role("button", name="Preview changes").click()
    diff = page.locator("#config-diff")
    await diff.wait_for()
    assert '+site = "store-8"' in await diff.inner_text()
    assert daemon.config_path.read_text() == original  # nothing written by a preview
    async with page.expect_navigation(timeout=30_000):  # reloaded once the daemon is back
        await page.get_by_role("button", name="Apply and restart").click()
        await page.locator("#config-status").filter(has_text="Restarting").wait_for()
    await page.locator("#cfg-section-device").wait_for()
    assert await page.locator("#cfg-device-site").input_value() == "store-8"
    assert await stats_site(page) == "store-8"  # the running daemon has the new value
    changed = daemon.config_path.read_text()
    assert 'site = "store-8"' in changed
    assert "idle_timeout = 600.0  # ten minutes" in changed  # comments kept
    assert daemon.proc is not None
    assert daemon.proc.poll() is None  # restarted in place, the same process

    async with page.expect_navigation(timeout=30_000):
        await page.get_by_role("button", name="Roll back to the previous file").click()
        await page.locator("#config-status").filter(has_text="Restarting").wait_for()
    await page.locator("#cfg-section-device").wait_for()
    assert await page.locator("#cfg-device-site").input_value() == ""
    assert await stats_site(page) == ""
    assert daemon.config_path.read_text() == original

    await page.goto(daemon.url + "/#/admin")
    rows = page.locator("#audit tbody tr")
    await rows.first.wait_for()
    texts = [await r.inner_text() for r in await rows.all()]
    assert "config.rollback" in texts[0]
    assert "config.apply" in texts[1]
    assert p.errors == []
    daemon.stop()
