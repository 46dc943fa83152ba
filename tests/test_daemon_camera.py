"""The daemon with camera sources, in one process: bundled frames through the real decoder,
a software trigger over HTTP opening a read window, a no-read, camera counters in /metrics."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from conftest import free_port
from scanstation import app
from scanstation.config import Config, parse_config
from scanstation.sources.camera import bundled_samples_dir
from scanstation.web.auth import ApiKeyStore

API = "/scanner/api/v1"


def camera_config(tmp_path: Path) -> Config:
    empty = tmp_path / "empty-lane"
    empty.mkdir()
    shutil.copy(bundled_samples_dir() / "07-empty.jpg", empty / "frame.jpg")
    return parse_config(
        {
            "device": {"id": "lane-cam"},
            "storage": {"path": str(tmp_path / "var")},
            "http": {"bind": f"127.0.0.1:{free_port()}"},
            "classifier": {"enabled": False},
            "qr_analysis": {"enabled": False},
            "sources": [
                {
                    "type": "camera",
                    "name": "cam0",
                    "backend": "file",
                    "device": str(bundled_samples_dir()),
                    "fps": 20,
                },
                {
                    "type": "camera",
                    "name": "gate",
                    "backend": "file",
                    "device": str(empty),
                    "fps": 20,
                    "loop": True,
                    "trigger": "software",
                    "read_window_ms": 300,
                },
            ],
        },
        environ={},
    )


async def test_daemon_camera_frames_trigger_noread_and_metrics(tmp_path: Path) -> None:
    config = camera_config(tmp_path)
    key = ApiKeyStore(config.api_keys_path).create()
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    daemon = asyncio.create_task(app.run(config, stop, on_ready=ready.set_result))
    try:
        running = await asyncio.wait_for(ready, 20)
        base = running.url + API
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:

            async def captures(source: str) -> list[dict[str, Any]]:
                async with http.get(f"{base}/captures", params={"limit": "100"}) as resp:
                    body = await resp.json()
                return [c for c in body["results"] if c["source"] == source]

            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = [c for c in await captures("cam0") if c["status"] != "PENDING"]
                if len({c["gtin"] for c in done if c["gtin"]}) >= 2:
                    break
                await asyncio.sleep(0.1)
            gtins = {c["gtin"] for c in await captures("cam0")}
            assert "04006381333931" in gtins  # the EAN-13 frame
            assert "09506000134352" in gtins  # the GS1 DataMatrix and Digital Link frames

            async with http.post(f"{base}/sources/cam0/trigger") as resp:
                assert resp.status == 409  # continuous: no trigger
            async with http.post(f"{base}/sources/nope/trigger") as resp:
                assert resp.status == 404
            async with http.post(f"{base}/sources/gate/trigger") as resp:
                assert resp.status == 202

            deadline = time.monotonic() + 10
            noreads: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not noreads:
                noreads = await captures("gate")
                await asyncio.sleep(0.1)
            [noread] = noreads
            assert noread["capture_type"] == "IMAGE"
            assert noread["metadata"]["noread"] == "true"
            async with http.get(f"{base}/captures/{noread['public_id']}/image") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "image/jpeg"

            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
            assert 'scanstation_camera_frames_total{source="cam0"}' in metrics
            assert 'scanstation_camera_no_reads_total{source="gate"} 1' in metrics

        rows = await running.store.fetchall("SELECT payload FROM outbox WHERE topic = 'noreads'")
        assert [json.loads(r[0])["source"] for r in rows] == ["gate"]
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)
