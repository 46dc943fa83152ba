"""Users and roles over real HTTP: who logs in, what each role may do, and the one table of
route -> minimum role that the middleware enforces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.services.roles import Role
from scanstation.store import Store, audit
from scanstation.web import passwords
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.permissions import ROUTE_ROLES, required_role
from scanstation.web.server import make_app
from scanstation.web.ui_auth import open_path
from scanstation.web.users import UserStore, users_path

API = "/scanner/api/v1"
ADMIN_PASSWORD = "first admin password"
CATALOG = "gtin,name\n4006381333931,Pencil\n"


@pytest.fixture
def app(config: Config, store: Store, pipeline: Pipeline) -> web.Application:
    passwords.set_password(config, ADMIN_PASSWORD)
    users = UserStore(users_path(config))
    users.add("vera", Role.VIEWER, "viewer password")
    users.add("otto", Role.OPERATOR, "operator password")
    users.add("anna", Role.ADMIN, "second admin password")
    return make_app(Services(config, store, pipeline, pipeline.bus))


async def login(client: TestClient[Any, Any], username: str | None, password: str) -> str:
    body = (
        {"password": password} if username is None else {"username": username, "password": password}
    )
    resp = await client.post("/auth/login", json=body)
    assert resp.status == 200, await resp.text()
    token: str = (await resp.json())["csrf_token"]
    client.session.headers["X-CSRF-Token"] = token
    return token


@pytest.fixture
async def as_user(aiohttp_client: Any, app: web.Application) -> Any:
    async def make(username: str | None, password: str) -> TestClient[Any, Any]:
        client = await aiohttp_client(app)
        await login(client, username, password)
        return client

    return make


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def test_every_registered_route_has_its_own_entry_in_the_role_table(app: web.Application) -> None:
    routes = registered_routes(app)
    missing = sorted(routes - ROUTE_ROLES.keys())
    assert not missing, f"add these routes to web/permissions.py ROUTE_ROLES: {missing}"
    stale = sorted(ROUTE_ROLES.keys() - routes)
    assert not stale, f"ROUTE_ROLES names routes that do not exist: {stale}"
    # The table's open entries are exactly what the auth middleware serves without a login.
    for method, path in routes:
        is_open = ROUTE_ROLES[(method, path)] is None
        if "{" not in path:
            assert is_open == open_path(path, method), (method, path)
    # A route the table forgot would need admin (fail closed).
    assert required_role("DELETE", f"{API}/not-in-the-table") is Role.ADMIN


async def test_password_alone_still_logs_in_the_first_admin(as_user: Any) -> None:
    client = await as_user(None, ADMIN_PASSWORD)
    who = await (await client.get("/auth/session")).json()
    assert (who["username"], who["role"]) == ("admin", "admin")
    assert (await client.get(f"{API}/users")).status == 200


async def test_a_viewer_reads_everything_and_changes_nothing(as_user: Any) -> None:
    client = await as_user("vera", "viewer password")
    who = await (await client.get("/auth/session")).json()
    assert (who["username"], who["role"]) == ("vera", "viewer")
    for path in ("/sessions", "/captures", "/products", "/stats", "/exports/scans.csv"):
        assert (await client.get(API + path)).status == 200, path
    changes = [
        ("POST", "/sessions", {"json": {}}),
        ("POST", "/captures", {"json": {"raw_value": "4006381333931", "capture_type": "BARCODE"}}),
        ("POST", "/sources/cam0/trigger", {}),
        ("PUT", "/products/04006381333931", {"json": {"name": "x"}}),
        ("POST", "/products/import", {"data": CATALOG, "headers": {"Content-Type": "text/csv"}}),
        ("PATCH", "/proposals/x", {"json": {"status": "ACCEPTED"}}),
    ]
    for method, path, kwargs in changes:
        resp = await client.request(method, API + path, **kwargs)
        assert resp.status == 403, (method, path, resp.status)
        error = (await resp.json())["error"]
        assert error["field"] == "role"
        assert "vera has the viewer role" in error["message"]
    assert (await client.get(f"{API}/users")).status == 403
    assert (await client.get(f"{API}/audit")).status == 403
    assert (await client.get(f"{API}/sessions")).status == 200  # nothing was created
    assert (await (await client.get(f"{API}/sessions")).json())["count"] == 0


async def test_an_operator_runs_sessions_and_manual_entry_but_not_the_catalog(
    as_user: Any,
) -> None:
    client = await as_user("otto", "operator password")
    started = await client.post(f"{API}/sessions", json={})
    assert started.status == 201
    session = await started.json()
    capture = await client.post(
        f"{API}/captures",
        json={
            "raw_value": "4006381333931",
            "capture_type": "BARCODE",
            "session_public_id": session["public_id"],
        },
    )
    assert capture.status in (200, 201), await capture.text()
    ended = await client.post(f"{API}/sessions/{session['public_id']}/end")
    assert ended.status == 200
    imported = await client.post(
        f"{API}/products/import", data=CATALOG, headers={"Content-Type": "text/csv"}
    )
    assert imported.status == 403
    assert (await client.get(f"{API}/users")).status == 403


async def test_an_admin_imports_the_catalog_and_the_audit_log_names_them(
    as_user: Any, store: Store
) -> None:
    client = await as_user("anna", "second admin password")
    imported = await client.post(
        f"{API}/products/import", data=CATALOG, headers={"Content-Type": "text/csv"}
    )
    assert imported.status == 200
    users = await (await client.get(f"{API}/users")).json()
    assert [(u["username"], u["role"]) for u in users["results"]] == [
        ("admin", "admin"),
        ("anna", "admin"),
        ("otto", "operator"),
        ("vera", "viewer"),
    ]
    assert "password" not in json.dumps(users)
    log = await (await client.get(f"{API}/audit")).json()
    actions = [(e["actor"], e["action"], e["outcome"]) for e in log["results"]]
    assert actions[:2] == [("anna", "catalog.import", "ok"), ("anna", "login", "ok")]
    assert log["results"][0]["detail"] == {"products": 1}


async def test_wrong_and_unknown_users_are_refused_and_audited(
    aiohttp_client: Any, app: web.Application, store: Store
) -> None:
    client = await aiohttp_client(app)
    wrong = await client.post("/auth/login", json={"username": "otto", "password": "nope nope"})
    unknown = await client.post(
        "/auth/login", json={"username": "mallory", "password": "operator password"}
    )
    assert (wrong.status, unknown.status) == (401, 401)
    assert (await wrong.json())["error"]["message"] == "wrong user name or password"
    bad = await client.post("/auth/login", json={"username": 7, "password": "x"})
    assert (bad.status, (await bad.json())["error"]["field"]) == (422, "username")
    _, entries = await audit.entries(store, action="login")
    assert [(e.actor, e.outcome) for e in entries] == [("mallory", "refused"), ("otto", "refused")]


async def test_a_new_role_or_a_removed_user_applies_on_the_next_request(
    as_user: Any, config: Config
) -> None:
    client = await as_user("otto", "operator password")
    assert (await client.post(f"{API}/sessions", json={})).status == 201
    users = UserStore(users_path(config))  # as `scanstation user` does, from another process
    users.set_role("otto", Role.VIEWER)
    assert (await client.post(f"{API}/sessions", json={})).status == 403
    assert (await (await client.get("/auth/session")).json())["role"] == "viewer"
    users.set_password("otto", "a brand new password")
    assert (await client.get(f"{API}/sessions")).status == 401  # the password changed
    client2 = await as_user("otto", "a brand new password")
    users.remove("otto")
    assert (await client2.get(f"{API}/sessions")).status == 401


async def test_api_keys_carry_a_role(
    aiohttp_client: Any, app: web.Application, config: Config
) -> None:
    keys = ApiKeyStore(config.api_keys_path)
    viewer = await aiohttp_client(app, headers={"X-API-Key": keys.create("wall", Role.VIEWER)})
    operator = await aiohttp_client(app, headers={"X-API-Key": keys.create("lane", Role.OPERATOR)})
    admin = await aiohttp_client(app, headers={"X-API-Key": keys.create("ops")})
    assert (await viewer.get(f"{API}/captures")).status == 200
    refused = await viewer.post(f"{API}/sessions", json={})
    assert refused.status == 403
    assert "the viewer role" in (await refused.json())["error"]["message"]
    assert (await operator.post(f"{API}/sessions", json={})).status == 201
    assert (await operator.get(f"{API}/audit")).status == 403
    assert (await admin.get(f"{API}/audit")).status == 200
    who = await (await viewer.get("/auth/session")).json()
    assert who["role"] == "viewer"
    assert who["api_key"] is True


def test_keys_made_before_roles_are_admin_keys(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "old_keys.json"
    keys = ApiKeyStore(path)
    key = keys.create("old")
    data = json.loads(path.read_text())
    for item in data:
        del item["role"]  # the file as an older version wrote it
    path.write_text(json.dumps(data))
    record = ApiKeyStore(path).verify(key)
    assert record is not None
    assert record.role is Role.ADMIN
