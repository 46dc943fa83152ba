"""The daemon keeps its start-up objects out of the cyclic collector while it runs, and gives
them back when it stops."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp

from lane import lane_config
from scanstation import app
from scanstation.heap import settled
from scanstation.web.auth import ApiKeyStore

API = "/scanner/api/v1"


class _Node:
    me: _Node


def _cycle() -> weakref.ref[_Node]:
    node = _Node()
    node.me = node  # only the cyclic collector frees it
    return weakref.ref(node)


def test_settled_freezes_for_the_block_and_frees_after() -> None:
    before = _cycle()
    with settled() as frozen:
        assert before() is None  # today's garbage is collected, not frozen
        assert frozen > 1000
        # What was alive before is out of the generations a collection walks ...
        assert len(gc.get_objects()) < frozen
        # ... and what is made while settled is still collected.
        during = _cycle()
        gc.collect()
        assert during() is None
    assert gc.get_freeze_count() == 0


async def test_a_running_daemon_walks_only_what_it_made_since_it_was_ready(
    tmp_path: Path,
) -> None:
    config = lane_config(tmp_path)
    key = ApiKeyStore(config.api_keys_path).create()
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    daemon = asyncio.create_task(app.run(config, stop, on_ready=ready.set_result))
    try:
        running = await asyncio.wait_for(ready, 20)
        deadline = time.monotonic() + 5
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the station's modules, routes, tables
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
            async with http.post(f"{running.url}{API}/sessions", json={}) as resp:
                session = (await resp.json())["public_id"]
            body = {
                "session_public_id": session,
                "capture_type": "BARCODE",
                "raw_value": "04006381333931",
            }
            async with http.post(f"{running.url}{API}/captures", json=body) as resp:
                assert resp.status == 201, await resp.text()
        # The full collection a busy station makes walks only the objects made since.
        assert len(gc.get_objects()) < frozen
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 20)
    assert gc.get_freeze_count() == 0  # given back at stop
