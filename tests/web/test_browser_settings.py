"""The settings page against a real daemon in Chromium: an admin changes a setting through
the form generated from the config model, sees the diff, applies it (the daemon restarts
with it, the browser stays logged in), and rolls it back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import test_browser
from test_browser import PASSWORD, open_page

from conftest import DaemonProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "commands"))
from test_backup import cli, seed

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


async def test_browser_an_admin_restores_a_backup_from_the_admin_page(
    browser: Any, daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    # Station A's backup (its own first-admin password), made with the command line.
    a_config = tmp_path / "a.toml"
    a_config.write_text(f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "a"}"\n')
    passwords.set_password(load_config(a_config), "station A password")
    await seed(a_config, 30, photos=1)
    archive = tmp_path / "a.backup"
    made = await asyncio.to_thread(cli, "backup", str(archive), "--config", str(a_config))
    assert made.returncode == 0, made.stderr

    daemon = daemon_factory()
    passwords.set_password(load_config(daemon.config_path), PASSWORD)
    daemon.start()
    p = await open_page(browser)
    page = p.page
    await page.goto(daemon.url + "/login")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/#/live")
    await page.goto(daemon.url + "/#/admin")
    restore = page.get_by_role("button", name="Restore and restart")
    await restore.wait_for()
    await page.locator("#restore-file").set_input_files(str(archive))
    assert await restore.is_disabled()  # not before the box is ticked
    await page.locator("#restore-agree").check()
    async with page.expect_navigation(timeout=30_000):
        await restore.click()
    # Station A's UI sessions came back with its database: this browser logs in again, with
    # station A's password, and sees station A's captures.
    await page.wait_for_url("**/login?next=**", timeout=30_000)
    await page.get_by_label("Password").fill("station A password")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(lambda url: urlsplit(url).path == "/" and url.endswith("#/admin"))
    await page.locator("#users").wait_for()
    total = await page.evaluate(
        "async () => (await (await fetch('/scanner/api/v1/captures?limit=1')).json()).count"
    )
    assert total == 30
    assert daemon.proc is not None
    assert daemon.proc.poll() is None
    assert p.errors == []
    daemon.stop()
