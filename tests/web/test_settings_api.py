"""The settings API over real HTTP: the form from the config model, a preview that validates
and shows the diff (comments kept), apply with the previous file kept and an audit entry,
rollback, and the restart asked for after each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from scanstation.config import Config, load_config
from scanstation.pipeline import Pipeline
from scanstation.services.roles import Role
from scanstation.store import Store, audit
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.server import make_app

API = "/scanner/api/v1"
FILE = """# lane 1 at the front
[device]
id = "lane-01"
site = "store-7"   # the shop

[storage]
path = "{storage}"
"""


@pytest.fixture
def config_file(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "scanstation.toml"
    path.write_text(FILE.format(storage=config.storage.path))
    return path


@pytest.fixture
def restarts() -> list[int]:
    return []


@pytest.fixture
async def admin(
    aiohttp_client: Any,
    config_file: Path,
    store: Store,
    pipeline: Pipeline,
    restarts: list[int],
) -> TestClient[Any, Any]:
    config = load_config(config_file)
    services = Services(
        config, store, pipeline, pipeline.bus, config_path=config_file,
        restart=lambda: restarts.append(1),
    )  # fmt: skip
    app = make_app(services)
    key = ApiKeyStore(config.api_keys_path).create("ops", Role.ADMIN)
    client: TestClient[Any, Any] = await aiohttp_client(app, headers={"X-API-Key": key})
    return client


async def test_the_form_lists_every_section_and_key_with_its_documentation(
    admin: TestClient[Any, Any],
) -> None:
    form = await (await admin.get(f"{API}/config/schema")).json()
    assert form["editable"] is True
    assert form["has_previous"] is False
    sections = {s["name"]: s for s in form["sections"]}
    assert {"device", "storage", "session", "mqtt", "http", "sources", "outputs"} <= set(sections)
    fields = {f["key"]: f for s in form["sections"] for f in s["fields"]}
    assert fields["device.site"]["value"] == "store-7"
    assert fields["device.site"]["kind"] == "text"
    assert fields["device.site"]["description"]
    assert fields["storage.synchronous"]["kind"] == "choice"
    assert fields["storage.synchronous"]["choices"] == ["full", "normal"]
    assert fields["sources"]["kind"] == "json"
    assert {f["kind"] for f in fields.values()} >= {"bool", "int", "float", "text", "choice"}


async def test_preview_validates_and_shows_the_diff_keeping_comments(
    admin: TestClient[Any, Any], config_file: Path, restarts: list[int]
) -> None:
    resp = await admin.post(f"{API}/config/preview", json={"changes": {"device.site": "store-8"}})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert '-site = "store-7"   # the shop' in answer["diff"]
    assert '+site = "store-8"   # the shop' in answer["diff"]
    assert answer["sections"] == ["device"]
    bad = await admin.post(f"{API}/config/preview", json={"changes": {"http.bind": "nonsense"}})
    assert bad.status == 422
    error = (await bad.json())["error"]
    assert error["field"] == "http.bind"
    assert "'nonsense'" in error["message"]
    unknown = await admin.post(f"{API}/config/preview", json={"changes": {"device.colour": "x"}})
    assert unknown.status == 422
    assert "unknown key 'device.colour'" in (await unknown.json())["error"]["message"]
    assert "store-7" in config_file.read_text()  # a preview writes nothing
    assert restarts == []


async def test_apply_keeps_the_previous_file_audits_and_restarts_then_rollback(
    admin: TestClient[Any, Any], config_file: Path, store: Store, restarts: list[int]
) -> None:
    before = config_file.read_text()
    preview = await (
        await admin.post(f"{API}/config/preview", json={"changes": {"device.site": "store-8"}})
    ).json()
    stale = await admin.post(
        f"{API}/config/apply",
        json={"changes": {"device.site": "store-8"}, "base_sha256": "0" * 64},
    )
    assert stale.status == 409
    applied = await admin.post(
        f"{API}/config/apply",
        json={"changes": {"device.site": "store-8"}, "base_sha256": preview["base_sha256"]},
    )
    assert applied.status == 200, await applied.text()
    assert (await applied.json())["restarting"] is True
    assert config_file.read_text() == before.replace('"store-7"', '"store-8"')
    assert load_config(config_file).device.site == "store-8"
    await wait_for(lambda: len(restarts) == 1)
    form = await (await admin.get(f"{API}/config/schema")).json()
    assert form["has_previous"] is True

    back = await admin.post(f"{API}/config/rollback")
    assert back.status == 200
    assert config_file.read_text() == before
    await wait_for(lambda: len(restarts) == 2)
    _, entries = await audit.entries(store, action="config")
    assert [e.action for e in entries] == ["config.rollback", "config.apply"]
    assert '+site = "store-8"' in entries[1].detail["diff"]
    assert entries[1].actor.startswith("key:")

    lane = ApiKeyStore(load_config(config_file).api_keys_path).create("lane", Role.OPERATOR)
    operator = await admin.post(
        f"{API}/config/apply", json={"changes": {"device.site": "x"}}, headers={"X-API-Key": lane}
    )
    assert operator.status == 403


async def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
