"""A backup downloaded from the admin API is a real `scanstation backup` file: it restores
with the CLI into fresh storage with every capture; sealed with a passphrase on request."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web

from conftest import SCANSTATION
from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.services.backup import is_sealed
from scanstation.services.roles import Role
from scanstation.store import Store, audit
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.server import make_app

API = "/scanner/api/v1"


async def test_an_admin_downloads_a_backup_that_restores(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline, tmp_path: Path
) -> None:
    app: web.Application = make_app(Services(config, store, pipeline, pipeline.bus))
    keys = ApiKeyStore(config.api_keys_path)
    admin = await aiohttp_client(app, headers={"X-API-Key": keys.create("ops")})
    operator = await aiohttp_client(app, headers={"X-API-Key": keys.create("l", Role.OPERATOR)})
    session = await (await admin.post(f"{API}/sessions", json={})).json()
    for value in ("4006381333931", "5901234123457", "HELLO"):
        body = {
            "session_public_id": session["public_id"],
            "raw_value": value,
            "capture_type": "BARCODE",
        }
        assert (await admin.post(f"{API}/captures", json=body)).status == 201

    resp = await admin.get(f"{API}/backup")
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="test-01-')
    archive = tmp_path / "download.backup"
    archive.write_bytes(await resp.read())
    assert not list(config.storage.path.glob(".download-*"))  # nothing left behind

    fresh = tmp_path / "fresh.toml"
    fresh.write_text(
        f'[device]\nid = "test-01"\n[storage]\npath = "{tmp_path / "fresh"}"\n'
        f'[http]\nbind = "{config.http.bind}"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    restored = subprocess.run(
        [*SCANSTATION, "restore", str(archive), "--config", str(fresh)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(tmp_path / "fresh" / "scanstation.db") as db:
        values = sorted(r[0] for r in db.execute("SELECT raw_value FROM captures"))
    assert values == ["4006381333931", "5901234123457", "HELLO"]

    short = await admin.post(f"{API}/backup", json={"passphrase": "short"})
    assert short.status == 422
    assert (await short.json())["error"]["field"] == "passphrase"
    sealed = await admin.post(f"{API}/backup", json={"passphrase": "a long passphrase"})
    assert sealed.status == 200
    (tmp_path / "sealed.backup").write_bytes(await sealed.read())
    assert is_sealed(tmp_path / "sealed.backup")
    assert (await operator.get(f"{API}/backup")).status == 403
    _, entries = await audit.entries(store, action="backup")
    assert [(e.target, e.detail["encrypted"]) for e in entries] == [
        ("download", True),
        ("download", False),
    ]
