"""A newcomer's first minutes, scripted: the README from the top, on a clean clone.

Clones this checkout, runs the README's first command as written (the install in a fresh venv,
then `scanstation demo` inside a network namespace that has only loopback, so any connection
beyond the machine fails), logs in through headless Chromium (entered into the same namespace),
sees each scene's capture, presses Ctrl-C and checks that nothing is left behind.

``SCREENSHOTS_DIR=docs/screenshots`` also refreshes the README's screenshot of the demo.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def readme_first_commands() -> list[str]:
    """The two lines of the README's first code block (the fresh-machine commands)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md starts with no ```sh block"
    return block.group(1).strip().splitlines()


def _needs() -> str:
    if os.geteuid() != 0:
        return "a network namespace needs root (unshare -n)"
    for tool in ("unshare", "nsenter", "ip", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        return "unshare -n is not allowed here"
    return ""


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def read_until(process: subprocess.Popen[str], lines: list[str], text: str, timeout: float) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return line
    raise AssertionError(f"{text!r} never appeared:\n{''.join(lines)}")


async def test_newcomer_follows_the_readme_from_the_top(tmp_path: Path) -> None:
    if why := _needs():
        pytest.skip(f"SKIPPED (newcomer): {why}")
    playwright_api = pytest.importorskip("playwright.async_api")
    first, second = readme_first_commands()
    assert second == "./scripts/test.sh"
    *install, demo_command = first.split(" && ")
    assert demo_command == ".venv/bin/scanstation demo", first

    clone = tmp_path / "scanstation"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for step in install:  # the install needs the package index: outside the namespace
        subprocess.run(["bash", "-c", step], cwd=clone, env=env, check=True, timeout=900)

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    demo = subprocess.Popen(
        ["unshare", "-n", "bash", "-c", f"ip link set lo up && exec {demo_command}"],
        cwd=clone,
        env={**env, "TMPDIR": str(tmpdir)},
        stdin=subprocess.PIPE,  # a terminal's stdin: the demo reads typed scans from it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    lines: list[str] = []
    try:
        url = read_until(demo, lines, "UI and API:", 120).split(":", 1)[1].split()[0]
        password = read_until(demo, lines, "UI login:", 10).split("password", 1)[1].strip()
        storage = Path(re.search(r"storage: (\S+?),", "".join(lines)).group(1))  # type: ignore[union-attr]
        assert url == "http://127.0.0.1:8080"  # the README's address: free in the namespace
        assert storage.parent == tmpdir
        read_until(demo, lines, "scene finished", 120)

        # Chromium runs in the demo's network namespace: 127.0.0.1 there is the demo's.
        wrapper = tmp_path / "chromium-in-demo-netns"
        wrapper.write_text(
            f'#!/bin/sh\nexec nsenter --net=/proc/{demo.pid}/ns/net -- {CHROMIUM} "$@"\n'
        )
        wrapper.chmod(0o755)
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS)
            try:
                await see_the_scene(browser, url, password)
            finally:
                await browser.close()

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        _, rest = demo.communicate(timeout=15)
        lines.append(rest)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    log = "".join(lines)
    assert demo.returncode == 0, log
    assert "Traceback" not in log
    for sign in ("unreachable", "offline", "cannot connect", "refused"):
        assert sign not in log.lower(), log  # nothing tried to leave the machine, or failed
    assert not storage.exists()
    assert list(tmpdir.iterdir()) == []
    assert processes_mentioning(str(storage)) == []  # its broker stopped with it
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""  # nothing written into the checkout beyond the ignored venv


async def see_the_scene(browser: Any, url: str, password: str) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(url + "/")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/#/live")
    feed = page.locator("#feed")
    rows = feed.locator("li.capture")
    # Locators, not wait_for_function: the UI's CSP (script-src 'self') forbids the eval
    # a string predicate needs.
    finished = rows.and_(
        page.locator("[data-status='COMPLETED'], [data-status='NOT_FOUND'], [data-status='FAILED']")
    )
    await expect(finished).to_have_count(8, timeout=60_000)
    assert await rows.count() == 8  # each step once: no endless loop
    if target := os.environ.get("SCREENSHOTS_DIR"):  # the README's picture of the demo
        for image in await page.locator("img").all():
            await expect(image).to_have_js_property("complete", True)
        await page.screenshot(path=str(REPO / target / "demo-live-1280x800.png"))
    texts = [t.strip() for t in await rows.locator(".title").all_inner_texts()]
    assert texts[::-1] == [
        "STABILO BOSS ORIGINAL highlighter",
        "Kleenex facial tissues",
        "GS1 demo product",  # the DataMatrix with its best-before date
        "GS1 demo product",  # the recalled batch
        "5901234123457",
        "(image)",  # the no-read
        "(image)",  # the photo
        "GS1 demo product",  # the QR code, resolved through its redirect chain
    ]
    recalled = rows.filter(has_text="RECALL7")
    await recalled.get_by_text("recalled").wait_for()
    await recalled.get_by_text("not for sale").wait_for()
    assert await rows.filter(has_text="5901234123457").get_by_text("NOT FOUND").count() == 1

    # The QR code: three real hops, all served by the demo on loopback.
    await rows.filter(has_text="/s/demo").locator("a.open").click()
    hops = page.get_by_role("list", name="Redirect hops").locator("li")
    await hops.first.wait_for()
    assert [h.split()[0] for h in await hops.all_inner_texts()] == ["302", "301", "200"]
    # The photo: the classifier's proposal.
    await page.goto(url + "/#/live")
    images = page.locator("#feed li.capture").filter(has_text="(image)")
    await images.first.wait_for()
    await images.nth(0).locator("a.open").click()  # newest first: the photo
    await page.get_by_text("espresso").first.wait_for()
    # The no-read keeps its frame.
    await page.goto(url + "/#/live")
    await (
        page.locator("#feed li.capture").filter(has_text="(image)").nth(1).locator("a.open").click()
    )
    photo = page.get_by_role("img", name="Photo of the capture")
    await photo.wait_for()
    assert await photo.evaluate("(img) => img.complete && img.naturalWidth > 0")
    await context.close()
