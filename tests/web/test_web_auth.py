"""Web UI authentication: password file, login, sessionid cookie, CSRF, rate limit, Host check."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from scanstation.config import Config
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.web import passwords
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.server import make_app
from scanstation.web.ui_auth import FREE_FAILURES, UI_AUTH, LoginLimiter

API = "/scanner/api/v1"
PASSWORD = "correct horse battery"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(config: Config, store: Store, pipeline: Pipeline) -> web.Application:
    passwords.set_password(config, PASSWORD)
    return make_app(Services(config, store, pipeline, pipeline.bus))


@pytest.fixture
async def anon(aiohttp_client: Any, app: web.Application) -> TestClient[Any, Any]:
    """A browser with no credentials (it keeps cookies, like a browser)."""
    return await aiohttp_client(app)


async def log_in(client: TestClient[Any, Any], password: str = PASSWORD) -> str:
    resp = await client.post("/auth/login", json={"password": password})
    assert resp.status == 200, await resp.text()
    token: str = (await resp.json())["csrf_token"]
    return token


def concrete(path: str) -> str:
    """A route template with its placeholders filled in."""
    return (
        path.replace("{id}", "3vVHKgqCoxMTHhaYHM7ZUv")
        .replace("{gtin}", "09506000134352")
        .replace("{name}", "cam0")
        .replace("{path:.+}", "app.js")
    )


def all_routes(app: web.Application) -> list[tuple[str, str]]:
    found = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path:
            found.append((route.method, concrete(path)))
    return sorted(set(found))


OPEN = {("GET", "/healthz"), ("GET", "/login"), ("GET", "/favicon.ico"), ("POST", "/auth/login")}


async def test_auth_every_route_but_the_open_ones_needs_credentials(
    anon: TestClient[Any, Any], app: web.Application
) -> None:
    routes = all_routes(app)
    assert len(routes) > 30  # the whole API, the UI and the login routes
    for method, path in routes:
        resp = await anon.request(method, path, allow_redirects=False)
        if (method, path) in OPEN:
            assert resp.status in (200, 415), (method, path, resp.status)
        elif path.startswith(("/scanner/", "/auth/")) or method != "GET":
            assert resp.status == 401, (method, path, resp.status)
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
        else:
            assert resp.status == 302, (method, path, resp.status)
            assert resp.headers["Location"].startswith("/login?next=")


async def test_auth_ui_redirect_keeps_the_page_to_return_to(anon: TestClient[Any, Any]) -> None:
    resp = await anon.get("/", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/login?next=/")


async def test_auth_login_page_and_its_assets_are_open(anon: TestClient[Any, Any]) -> None:
    page = await anon.get("/login")
    assert page.status == 200
    html = await page.text()
    assets = re.findall(r'(?:src|href)="(/assets/login/[^"]+)"', html)
    assert assets, "the login page loads its script and style from /assets/login/"
    for asset in assets:
        assert (await anon.get(asset)).status == 200, asset


async def test_auth_wrong_host_is_forbidden(anon: TestClient[Any, Any]) -> None:
    for path in ("/healthz", "/login", f"{API}/sessions"):
        resp = await anon.get(path, headers={"Host": "attacker.example:8080"})
        assert resp.status == 403, path
        assert (await resp.json())["error"]["field"] == "Host"


async def test_auth_login_sets_a_strict_httponly_cookie(anon: TestClient[Any, Any]) -> None:
    resp = await anon.post("/auth/login", json={"password": PASSWORD})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("sessionid=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on the LAN; https sets it
    assert len((await resp.json())["csrf_token"]) >= 40


async def test_auth_session_cookie_opens_the_api_and_the_ui(anon: TestClient[Any, Any]) -> None:
    csrf = await log_in(anon)
    assert (await anon.get(f"{API}/sessions")).status == 200
    page = await anon.get("/", allow_redirects=False)
    assert page.status == 200
    assert (await anon.get("/auth/session")).status == 200
    assert (await (await anon.get("/auth/session")).json())["csrf_token"] == csrf


async def test_auth_state_change_without_csrf_token_is_forbidden(
    anon: TestClient[Any, Any],
) -> None:
    csrf = await log_in(anon)
    missing = await anon.post(f"{API}/sessions", json={})
    wrong = await anon.post(f"{API}/sessions", json={}, headers={"X-CSRF-Token": "x" * 43})
    right = await anon.post(f"{API}/sessions", json={}, headers={"X-CSRF-Token": csrf})
    assert (missing.status, wrong.status, right.status) == (403, 403, 201)
    assert (await missing.json())["error"]["field"] == "X-CSRF-Token"


async def test_auth_cross_site_origin_is_forbidden_even_with_the_token(
    anon: TestClient[Any, Any],
) -> None:
    csrf = await log_in(anon)
    resp = await anon.post(
        f"{API}/sessions",
        json={},
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert resp.status == 403


async def test_auth_api_key_needs_no_csrf_token(
    aiohttp_client: Any, app: web.Application, config: Config
) -> None:
    key = ApiKeyStore(config.api_keys_path).create("machine")
    client = await aiohttp_client(app, headers={"X-API-Key": key})
    assert (await client.post(f"{API}/sessions", json={})).status == 201
    bad = await client.get(f"{API}/sessions", headers={"X-API-Key": "ss_nope_nope"})
    assert bad.status == 401


async def test_auth_login_refuses_wrong_password_and_form_posts(
    anon: TestClient[Any, Any],
) -> None:
    wrong = await anon.post("/auth/login", json={"password": "not it at all"})
    form = await anon.post("/auth/login", data={"password": PASSWORD})
    empty = await anon.post("/auth/login", json={})
    assert (wrong.status, form.status, empty.status) == (401, 415, 422)
    assert "sessionid" not in anon.session.cookie_jar.filter_cookies(anon.make_url("/"))


async def test_auth_ten_failed_logins_slow_further_tries(
    anon: TestClient[Any, Any], app: web.Application
) -> None:
    clock = FakeClock()
    app[UI_AUTH].limiter.clock = clock
    for _ in range(FREE_FAILURES):
        assert (await anon.post("/auth/login", json={"password": "guess"})).status == 401
    # Even the right password waits now: guessing is what the delay slows.
    blocked = await anon.post("/auth/login", json={"password": PASSWORD})
    assert blocked.status == 429
    assert "too many failed logins" in (await blocked.json())["error"]["message"]
    clock.now += 1.5
    assert (await anon.post("/auth/login", json={"password": "guess"})).status == 401
    assert (await anon.post("/auth/login", json={"password": PASSWORD})).status == 429
    clock.now += 2.5
    assert (await anon.post("/auth/login", json={"password": PASSWORD})).status == 200


def test_login_limiter_doubles_the_wait_after_ten_failures() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock)
    waits = []
    for _ in range(14):
        waits.append(limiter.retry_after("192.0.2.7"))
        limiter.failed("192.0.2.7")
    assert waits == [0.0] * 10 + [1.0, 2.0, 4.0, 8.0]
    assert limiter.retry_after("198.51.100.1") == 0.0  # another address is not slowed
    clock.now += 3600 + 60
    assert limiter.retry_after("192.0.2.7") == 0.0  # forgotten after an hour of quiet


async def test_auth_logout_ends_the_session(anon: TestClient[Any, Any]) -> None:
    csrf = await log_in(anon)
    assert (await anon.post("/auth/logout")).status == 403  # CSRF applies to logout too
    assert (await anon.post("/auth/logout", headers={"X-CSRF-Token": csrf})).status == 200
    assert (await anon.get(f"{API}/sessions")).status == 401


async def test_auth_new_password_ends_existing_sessions(
    anon: TestClient[Any, Any], config: Config
) -> None:
    await log_in(anon)
    passwords.set_password(config, "a brand new password")
    resp = await anon.get(f"{API}/sessions")
    assert resp.status == 401
    assert "log in again" in (await resp.json())["error"]["message"]
    await log_in(anon, "a brand new password")


async def test_auth_sessions_survive_a_restart(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline
) -> None:
    passwords.set_password(config, PASSWORD)
    first = await aiohttp_client(make_app(Services(config, store, pipeline, pipeline.bus)))
    await log_in(first)
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))["sessionid"].value
    second = await aiohttp_client(make_app(Services(config, store, pipeline, pipeline.bus)))
    resp = await second.get(f"{API}/sessions", cookies={"sessionid": cookie})
    assert resp.status == 200
    rows = await store.fetchall("SELECT token_sha256 FROM ui_sessions")
    assert cookie not in {r[0] for r in rows}  # only digests are stored


async def test_auth_without_a_password_login_explains_how_to_set_one(
    aiohttp_client: Any, config: Config, store: Store, pipeline: Pipeline
) -> None:
    client = await aiohttp_client(make_app(Services(config, store, pipeline, pipeline.bus)))
    resp = await client.post("/auth/login", json={"password": "anything goes"})
    assert resp.status == 403
    assert "scanstation set-password" in (await resp.json())["error"]["message"]


async def test_auth_responses_carry_a_strict_csp(anon: TestClient[Any, Any]) -> None:
    for path in ("/login", "/healthz", f"{API}/sessions"):
        resp = await anon.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


# ---- the password file and the command --------------------------------------------------


def test_password_hash_round_trip() -> None:
    stored = passwords.hash_password(PASSWORD)
    decoded = passwords.PasswordHash.decode(stored.encode())
    assert decoded == stored
    assert passwords.verify_password(PASSWORD, decoded)
    assert not passwords.verify_password(PASSWORD + "!", decoded)
    assert not passwords.verify_password("", decoded)


@pytest.mark.parametrize("text", ["", "plain", "scrypt$1$2$3$@@@$@@@", "bcrypt$a$b$c$d$e"])
def test_password_hash_rejects_malformed_files(text: str) -> None:
    with pytest.raises(passwords.PasswordError, match="set-password"):
        passwords.PasswordHash.decode(text)


def test_set_password_main_reads_stdin_and_writes_0600(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "scanstation.toml"
    config_file.write_text(f'[storage]\npath = "{config.storage.path}"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("swordfish-1234\n"))
    assert passwords.set_password_main(["--config", str(config_file), "--stdin"]) == 0
    path = config.storage.path / "ui-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert passwords.PasswordStore(path).verify("swordfish-1234")
    assert "web UI password set" in capsys.readouterr().out


def test_set_password_main_refuses_short_passwords(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "scanstation.toml"
    config_file.write_text(f'[storage]\npath = "{config.storage.path}"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert passwords.set_password_main(["--config", str(config_file), "--stdin"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert not (config.storage.path / "ui-password").exists()


def test_set_password_main_prompts_twice(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "scanstation.toml"
    config_file.write_text(f'[storage]\npath = "{config.storage.path}"\n')
    answers = iter(["first-password", "other-password"])
    monkeypatch.setattr(passwords.getpass, "getpass", lambda prompt: next(answers))
    assert passwords.set_password_main(["--config", str(config_file)]) == 2
    answers = iter(["same-password", "same-password"])
    assert passwords.set_password_main(["--config", str(config_file)]) == 0


def test_ensure_ui_password_generates_once(config: Config) -> None:
    out = io.StringIO()
    note = passwords.ensure_ui_password(config, out)
    assert note is not None
    assert str(note) in out.getvalue()
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    generated = note.read_text().strip()
    assert len(generated) >= 16
    assert passwords.PasswordStore(passwords.password_path(config)).verify(generated)
    assert passwords.ensure_ui_password(config, io.StringIO()) is None
    passwords.set_password(config, "chosen by the operator")
    assert not note.exists()  # the generated one is no longer valid: its note goes
