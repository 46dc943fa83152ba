"""The daemon as a user runs it: `scanstation run --config X` in a subprocess, real HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from conftest import SCANSTATION, DaemonProcess

API = "/scanner/api/v1"


def create_key(config_path: Path) -> str:
    result = subprocess.run(
        [*SCANSTATION, "api-key", "create", "--config", str(config_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip().splitlines()[-1]


async def poll_status(
    http: aiohttp.ClientSession, url: str, wanted: str, timeout: float = 1.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(url) as resp:
            body: dict[str, Any] = await resp.json()
        if body["status"] == wanted or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)


async def test_daemon_acceptance_flow(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = daemon_factory()
    key = create_key(daemon.config_path)
    assert key.startswith("ss_")
    daemon.start()
    base = daemon.url + API
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
        async with http.post(f"{base}/sessions", json={}) as resp:
            assert resp.status == 201
            session = (await resp.json())["public_id"]
        async with http.post(
            f"{base}/captures",
            json={
                "session_public_id": session,
                "capture_type": "BARCODE",
                "raw_value": "4006381333931",
            },
        ) as resp:
            assert resp.status == 201
            capture = await resp.json()
            assert capture["status"] == "PENDING"
        started = time.monotonic()
        done = await poll_status(http, f"{base}/captures/{capture['public_id']}", "NOT_FOUND")
        assert done["status"] == "NOT_FOUND"
        assert time.monotonic() - started < 1.0
        assert done["gtin"] == "04006381333931"

        catalog = tmp_path / "catalog.csv"
        catalog.write_text("gtin,name,brand\n4006381333931,STABILO BOSS highlighter,STABILO\n")
        result = subprocess.run(
            [*SCANSTATION, "catalog", "import", str(catalog), "--config", str(daemon.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        async with http.post(f"{base}/captures/{capture['public_id']}/retry") as resp:
            assert resp.status == 200
        done = await poll_status(http, f"{base}/captures/{capture['public_id']}", "COMPLETED")
        assert done["status"] == "COMPLETED"
        assert done["product_name"] == "STABILO BOSS highlighter"
        async with http.post(f"{base}/captures/{capture['public_id']}/retry") as resp:
            assert resp.status == 409

        async with http.post(
            f"{base}/captures",
            json={"session_public_id": session, "capture_type": "FOO", "raw_value": "1"},
        ) as resp:
            assert resp.status == 422
            assert (await resp.json())["error"]["field"] == "capture_type"
        async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{base}/sessions") as resp:
            assert resp.status == 401
        async with http.post(f"{base}/sessions/{session}/end") as resp:
            assert resp.status == 200
        async with http.post(
            f"{base}/captures",
            json={
                "session_public_id": session,
                "capture_type": "BARCODE",
                "raw_value": "4006381333931",
            },
        ) as resp:
            assert resp.status == 409
    assert daemon.stop() < 5.0


async def test_daemon_kill9_during_burst_loses_no_acknowledged_capture(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    key = create_key(daemon.config_path)
    daemon.start()
    base = daemon.url + API
    acknowledged: list[str] = []
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
        async with http.post(f"{base}/sessions", json={}) as resp:
            session = (await resp.json())["public_id"]

        async def post(i: int) -> None:
            try:
                async with http.post(
                    f"{base}/captures",
                    json={
                        "session_public_id": session,
                        "capture_type": "BARCODE",
                        "raw_value": f"{4006381333931}",
                        "metadata": {"n": str(i)},
                    },
                ) as resp:
                    if resp.status == 201:
                        acknowledged.append((await resp.json())["public_id"])
            except (TimeoutError, aiohttp.ClientError):
                pass  # in flight when the daemon died: never acknowledged

        async def burst() -> None:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with sem:
                    await post(i)

            await asyncio.gather(*(one(i) for i in range(1000)))

        async def killer() -> None:
            while len(acknowledged) < 300:
                await asyncio.sleep(0.005)
            daemon.kill9()

        await asyncio.gather(burst(), killer())
    assert 300 <= len(acknowledged) < 1000

    db = sqlite3.connect(daemon.config_path.parent / "var" / "scanstation.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in db.execute("SELECT public_id FROM captures")}
    db.close()
    assert set(acknowledged) <= stored

    # After a restart the captures left in progress are walked to a terminal status.
    daemon.start()
    db = sqlite3.connect(daemon.config_path.parent / "var" / "scanstation.db")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = db.execute(
            "SELECT COUNT(*) FROM captures WHERE status NOT IN ('COMPLETED','NOT_FOUND','FAILED')"
        ).fetchone()[0]
        if left == 0:
            break
        time.sleep(0.1)
    assert left == 0
    db.close()
    assert daemon.stop() < 5.0


def test_daemon_first_run_generates_a_key_and_says_where(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    daemon.start()
    daemon.stop()
    assert daemon.log_path is not None
    log = daemon.log_path.read_text()
    note = daemon.config_path.parent / "var" / "initial-api-key.txt"
    assert str(note) in log
    assert note.stat().st_mode & 0o777 == 0o600
    assert note.read_text().strip().startswith("ss_")
    assert note.read_text().strip() not in log  # the key itself is not logged
