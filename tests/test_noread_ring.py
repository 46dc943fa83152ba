"""The no-read image ring end to end: a triggered camera's no-read windows keep their frames,
the API lists and serves them, and each one is uploaded through the outbox to a real HTTP
receiver (which is down for the first attempts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from conftest import free_port
from lane import lane_config, running_lane, until
from scanstation.web.auth import ApiKeyStore

API = "/scanner/api/v1"


async def test_noread_frames_are_kept_listed_served_and_uploaded(tmp_path: Path) -> None:
    received: list[tuple[str, dict[str, str], bytes]] = []
    refuse = [2]  # the receiver answers 503 twice: the frames wait in the outbox

    async def receive(request: web.Request) -> web.Response:
        if refuse[0]:
            refuse[0] -= 1
            return web.Response(status=503)
        received.append((request.content_type, dict(request.headers), await request.read()))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/frames", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = lane_config(
        tmp_path,
        noread_images={
            "max_count": 2,
            "reserve_free_mb": 0,
            "upload_url": f"http://127.0.0.1:{port}/frames",
        },
    )
    key = ApiKeyStore(config.api_keys_path).create()
    try:
        async with running_lane(config) as lane:
            await lane.window("07-empty.jpg")
            await lane.window("01-ean13.jpg")  # a good read: nothing kept
            await lane.window("07-empty.jpg")
            await until(lambda: len(received) == 2, within=30)
            await lane.window("07-empty.jpg")
            await until(lambda: len(received) == 3, within=30)
            async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
                base = lane.daemon.url + API
                async with http.get(base + "/noreads") as resp:
                    ring: dict[str, Any] = await resp.json()
                newest = ring["results"][0]
                async with http.get(f"{base}/noreads/{newest['name']}?download=1") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == "image/jpeg"
                    assert resp.headers["Content-Disposition"].startswith("attachment;")
                    image = await resp.read()
                async with http.get(f"{base}/noreads/..%2Fapi_keys.json") as resp:
                    assert resp.status == 404
            async with (
                aiohttp.ClientSession() as anonymous,  # no key: no frames
                anonymous.get(f"{base}/noreads/{newest['name']}") as resp,
            ):
                assert resp.status == 401
    finally:
        await runner.cleanup()
    assert ring["count"] == 2  # max_count: the oldest of the three went
    assert {e["source"] for e in ring["results"]} == {"lane"}
    assert image[:2] == b"\xff\xd8"
    assert [content for content, _, _ in received] == ["image/jpeg"] * 3
    assert received[-1][2] == image  # the newest frame, byte for byte
    assert received[-1][1]["X-Scanstation-Capture"] == newest["capture_public_id"]
    assert received[0][1]["X-Scanstation-Reason"] == "noread"
