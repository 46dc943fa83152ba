"""Web UI login: the `sessionid` cookie, CSRF tokens, the login rate limit, and the auth
middleware that accepts either an X-API-Key header or a UI session.

UI sessions live in a SQLite table (``ui_sessions``, created here) with an in-memory copy
for the per-request check: a kiosk stays logged in across daemon restarts, and the table
holds only SHA-256 digests of the cookie values, so a copied database opens no sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from scanstation.services.roles import Role
from scanstation.store import Store, audit, ui_sessions
from scanstation.web.auth import ApiKeyStore
from scanstation.web.errors import ApiError, Handler, error_response, read_json
from scanstation.web.models import LoggedOut, LoginBody, UiSessionOut
from scanstation.web.openapi import operation
from scanstation.web.passwords import MAX_LENGTH, PasswordStore, hash_password, verify_password
from scanstation.web.permissions import PRINCIPAL, Principal
from scanstation.web.users import FIRST_ADMIN, UserStore

log = logging.getLogger(__name__)

COOKIE_NAME = "sessionid"
CSRF_HEADER = "X-CSRF-Token"
DJANGO_CSRF_HEADER = "X-CSRFToken"
"""Django's header name: Closient's cookie clients echo the ``csrftoken`` cookie in it."""
CSRF_COOKIE = "csrftoken"
"""The session's CSRF token, readable by scripts (not HttpOnly), the way Django sets it."""
API_KEY_HEADER = "X-API-Key"
LOGIN_PAGE = "/login"
LOGIN_PATH = "/auth/login"
LOGOUT_PATH = "/auth/logout"
SESSION_PATH = "/auth/session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

IDLE_TTL_S = 7 * 24 * 3600.0
"""A UI session unused this long ends (a kiosk in daily use stays logged in)."""
ABSOLUTE_TTL_S = 30 * 24 * 3600.0
"""Every UI session ends this long after its login, used or not."""
TOUCH_INTERVAL_S = 300.0
"""How often a session's last use is written back to the database (not on every request)."""

FREE_FAILURES = 10
"""Failed logins from one address before each further try has to wait."""
MAX_DELAY_S = 900.0
FAILURE_MEMORY_S = 3600.0
"""An address with no failed login for this long starts again with a clean slate."""
GLOBAL_FREE_FAILURES = 100
"""Failed logins from all addresses together before every try slows (distributed guessing)."""
GLOBAL_MAX_DELAY_S = 30.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UiSession:
    """One logged-in browser."""

    token_sha256: str
    """SHA-256 of the cookie value (the value itself is never stored)."""
    csrf_token: str
    """Sent back in X-CSRF-Token on every state-changing request."""
    password_tag: str
    """Which password hash was current at login; a new password ends older sessions."""
    created: float
    last_seen: float
    remote: str = ""
    user_agent: str = ""


class UiSessionTable:
    """Logged-in UI sessions: the ``ui_sessions`` table, read once into memory."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._sessions: dict[str, UiSession] = {}
        self._touched: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        now = self.clock()
        rows = await ui_sessions.load(
            self.store, idle_before=now - IDLE_TTL_S, created_before=now - ABSOLUTE_TTL_S
        )
        self._sessions = {r[0]: UiSession(*r) for r in rows}
        self._touched = {s.token_sha256: s.last_seen for s in self._sessions.values()}

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(
        self, password_tag: str, remote: str, user_agent: str
    ) -> tuple[str, UiSession]:
        """A new session; returns the cookie value (shown once) and the session."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = UiSession(
            _digest(token),
            secrets.token_urlsafe(32),
            password_tag,
            now,
            now,
            remote[:64],
            user_agent[:200],
        )

        await ui_sessions.insert(
            self.store,
            (
                session.token_sha256,
                session.csrf_token,
                session.password_tag,
                session.created,
                session.last_seen,
                session.remote,
                session.user_agent,
            ),
        )
        self._sessions[session.token_sha256] = session
        self._touched[session.token_sha256] = now
        return token, session

    def lookup(
        self, token: str | None, current_tag: Callable[[str], str | None]
    ) -> UiSession | None:
        """The live session for a cookie value, or None (unknown, expired, old password).

        ``current_tag`` maps the tag stored at login to the tag its user has now (None: the
        user is gone); a different tag means the password changed since the login.
        """
        if not token or len(token) > 100:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self.clock()
        password_tag = current_tag(session.password_tag)
        expired = (
            now - session.last_seen > IDLE_TTL_S
            or now - session.created > ABSOLUTE_TTL_S
            or password_tag is None
            or not hmac.compare_digest(session.password_tag, password_tag)
        )
        if expired:
            self._forget(digest)
            return None
        session = replace(session, last_seen=now)
        self._sessions[digest] = session
        if now - self._touched.get(digest, 0.0) > TOUCH_INTERVAL_S:
            self._touched[digest] = now
            self._spawn(self._write_last_seen(digest, now))
        return session

    async def delete(self, token: str | None) -> None:
        if token:
            digest = _digest(token)
            self._sessions.pop(digest, None)
            await self._delete_rows([digest])

    def _forget(self, digest: str) -> None:
        self._sessions.pop(digest, None)
        self._touched.pop(digest, None)
        self._spawn(self._delete_rows([digest]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write_last_seen(self, digest: str, now: float) -> None:
        try:
            await ui_sessions.touch(self.store, digest, now)
        except Exception:  # losing a last-seen update only shortens the session
            log.warning("could not record a UI session's last use", exc_info=True)

    async def _delete_rows(self, digests: list[str]) -> None:
        try:
            await ui_sessions.delete(self.store, digests)
        except Exception:
            log.warning("could not delete an ended UI session", exc_info=True)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class LoginLimiter:
    """Slows password guessing: after ``FREE_FAILURES`` failed logins from one address, each
    further try must wait 1, 2, 4 … seconds (at most ``MAX_DELAY_S``) after the last failure."""

    clock: Callable[[], float] = time.monotonic
    _by_address: dict[str, _Failures] = field(default_factory=dict)
    _global: _Failures = field(default_factory=_Failures)

    @staticmethod
    def _delay(failures: _Failures, free: int, cap: float) -> float:
        if failures.count < free:
            return 0.0
        return min(2.0 ** (failures.count - free), cap)

    def _fresh(self, failures: _Failures, now: float) -> _Failures:
        if failures.count and now - failures.last > FAILURE_MEMORY_S:
            return _Failures()
        return failures

    def retry_after(self, address: str) -> float:
        """Seconds this address must still wait before its next try (0: it may try now)."""
        now = self.clock()
        mine = self._fresh(self._by_address.get(address, _Failures()), now)
        self._global = self._fresh(self._global, now)
        wait_mine = mine.last + self._delay(mine, FREE_FAILURES, MAX_DELAY_S) - now
        wait_all = (
            self._global.last
            + self._delay(self._global, GLOBAL_FREE_FAILURES, GLOBAL_MAX_DELAY_S)
            - now
        )
        return max(0.0, wait_mine, wait_all)

    def failed(self, address: str) -> None:
        now = self.clock()
        if len(self._by_address) > 10_000:  # forget stale addresses before memory grows
            self._by_address = {
                a: f for a, f in self._by_address.items() if now - f.last <= FAILURE_MEMORY_S
            }
        mine = self._fresh(self._by_address.get(address, _Failures()), now)
        self._by_address[address] = _Failures(mine.count + 1, now)
        self._global = _Failures(self._fresh(self._global, now).count + 1, now)

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)

    def failures(self, address: str) -> int:
        return self._by_address.get(address, _Failures()).count


@dataclass
class UiAuth:
    """Everything the login routes and the auth middleware share."""

    passwords: PasswordStore
    sessions: UiSessionTable
    api_keys: ApiKeyStore
    users: UserStore | None = None
    """Named users besides the first admin (None: only the first admin logs in)."""
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    def password_tag(self) -> str | None:
        """The first admin's tag: which ``ui-password`` hash is current."""
        try:
            current = self.passwords.current()
        except ValueError:
            return None
        return None if current is None else _digest(current.encode())[:16]

    def user_tag(self, name: str) -> str | None:
        """A named user's tag (``u:<name>:<hash digest>``), None when there is no such user."""
        user = self._user(name)
        return None if user is None else f"u:{name}:{_digest(user.password.encode())[:16]}"

    def current_tag(self, stored: str) -> str | None:
        """The tag the user a session was opened for has now (see UiSessionTable.lookup)."""
        if stored.startswith("u:"):
            return self.user_tag(stored.split(":", 2)[1])
        return self.password_tag()

    def principal_of(self, session: UiSession) -> Principal | None:
        if not session.password_tag.startswith("u:"):
            return Principal(FIRST_ADMIN, Role.ADMIN, "user")
        user = self._user(session.password_tag.split(":", 2)[1])
        return None if user is None else Principal(user.name, user.role, "user")

    def _user(self, name: str) -> Any:
        if self.users is None:
            return None
        try:
            return self.users.get(name)
        except (ValueError, KeyError, TypeError, OSError):  # a damaged users file: no users
            log.warning("cannot read the users file %s", self.users.path, exc_info=True)
            return None

    def lookup(self, request: web.Request) -> tuple[UiSession, Principal] | None:
        """The live session of a request's cookie and who it belongs to, or None."""
        session = self.sessions.lookup(request.cookies.get(COOKIE_NAME), self.current_tag)
        if session is None:
            return None
        who = self.principal_of(session)
        return None if who is None else (session, who)

    def check_login(self, username: str, password: str) -> str | None:
        """Blocking (scrypt): the tag of a session for these credentials, None if wrong."""
        if username in ("", FIRST_ADMIN):
            return self.password_tag() if self.passwords.verify(password) else None
        user = self._user(username)
        if user is None:
            # The same scrypt work as for a real user: timing does not tell names apart.
            verify_password(password, _dummy_hash())
            return None
        return self.user_tag(username) if verify_password(password, user.password) else None


UI_AUTH = web.AppKey("ui_auth", UiAuth)
_DUMMY: list[Any] = []


def _dummy_hash() -> Any:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def open_path(path: str, method: str) -> bool:
    """Routes served without credentials: the login page and what it loads, the login call."""
    if path == LOGIN_PATH:
        return method == "POST"
    return path in ("/healthz", LOGIN_PAGE, "/favicon.ico") or path.startswith("/assets/login/")


def _is_api_path(path: str) -> bool:
    return path.startswith(("/scanner/", "/auth/", "/metrics"))


def _origin_matches(request: web.Request) -> bool:
    """A browser's Origin (when sent) must name this host: a second line behind SameSite."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def _unauthenticated(request: web.Request, message: str) -> web.StreamResponse:
    if _is_api_path(request.path) or request.method not in SAFE_METHODS:
        return error_response(401, message, headers={"WWW-Authenticate": API_KEY_HEADER})
    target = request.rel_url.path_qs
    raise web.HTTPFound(f"{LOGIN_PAGE}?next={quote(target, safe='/')}")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """X-API-Key (machines, no CSRF) or the sessionid cookie (browsers, CSRF on changes)."""
    if open_path(request.path, request.method):
        return await handler(request)
    auth = request.app[UI_AUTH]
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        record = auth.api_keys.verify(key)
        if record is None:
            return error_response(
                401, "the API key is not valid", headers={"WWW-Authenticate": API_KEY_HEADER}
            )
        request[PRINCIPAL] = Principal(f"key:{record.key_id}", record.role, "api-key")
        return await handler(request)
    found = auth.lookup(request)
    if found is None:
        message = (
            "log in to the web UI, or send a valid X-API-Key header"
            if COOKIE_NAME not in request.cookies
            else "the UI session has ended; log in again"
        )
        return _unauthenticated(request, message)
    session, request[PRINCIPAL] = found
    if request.method not in SAFE_METHODS:
        # Either convention (SPEC §10): X-CSRF-Token, or Django's X-CSRFToken echoing the
        # csrftoken cookie. Both are compared with this session's own token, so a cookie
        # planted by another site is worth nothing.
        sent = request.headers.get(CSRF_HEADER) or request.headers.get(DJANGO_CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            return error_response(
                403,
                f"a state change from the UI needs this session's CSRF token in the "
                f"{CSRF_HEADER} header (or Django's {DJANGO_CSRF_HEADER}, echoing the "
                f"{CSRF_COOKIE} cookie)",
                field=CSRF_HEADER,
            )
        if not _origin_matches(request):
            return error_response(403, "the request comes from another site", field="Origin")
    return await handler(request)


def _set_cookie(response: web.Response, request: web.Request, token: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=int(ABSOLUTE_TTL_S),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _set_csrf_cookie(response: web.Response, request: web.Request, session: UiSession) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        session.csrf_token,
        max_age=int(ABSOLUTE_TTL_S),
        path="/",
        httponly=False,  # Django's way: the page's script reads it into X-CSRFToken
        samesite="Strict",
        secure=request.secure,
    )


def _session_body(session: UiSession, who: Principal) -> dict[str, Any]:
    return {
        "username": who.name,
        "role": who.role.value,
        "csrf_token": session.csrf_token,
        "created": session.created,
        "idle_timeout_s": IDLE_TTL_S,
        "expires": session.created + ABSOLUTE_TTL_S,
    }


@operation(
    "Log in to the web UI: the sessionid and csrftoken cookies",
    body=LoginBody,
    responses={200: UiSessionOut},
    errors=(401, 429),
)
async def login(request: web.Request) -> web.Response:
    """POST /auth/login {"username", "password"} → the sessionid cookie and the CSRF token.

    Without a username (or with ``admin``) the password is the first admin's.
    """
    auth = request.app[UI_AUTH]
    address = request.remote or "unknown"
    wait = auth.limiter.retry_after(address)
    if wait > 0:
        raise ApiError(
            429,
            f"too many failed logins; try again in {wait:.0f} s",
            field="password",
        )
    if request.content_length is not None and request.content_length > MAX_LENGTH + 256:
        raise ApiError(413, "the login request is too large")
    # JSON only: a cross-site HTML form cannot send application/json without CORS consent.
    if request.content_type != "application/json":
        raise ApiError(415, f"expected a JSON body (application/json), got {request.content_type}")
    body = await read_json(request, max_bytes=MAX_LENGTH + 256)
    sent = LoginBody.model_validate(body if isinstance(body, dict) else {})
    password = sent.password
    username = sent.username.strip().lower()
    if username in ("", FIRST_ADMIN) and auth.password_tag() is None:
        raise ApiError(
            403,
            "no web UI password is set on this device; run `scanstation set-password`",
            field="password",
        )
    tag = await asyncio.to_thread(auth.check_login, username, password)
    if tag is None:
        auth.limiter.failed(address)
        log.warning(
            "failed UI login from %s (%d in a row)", address, auth.limiter.failures(address)
        )
        await audit.record(
            auth.sessions.store,
            username or FIRST_ADMIN,
            "login",
            outcome="refused",
            remote=address,
            detail={"failures_in_a_row": auth.limiter.failures(address)},
        )
        raise ApiError(
            401, "wrong user name or password" if username else "wrong password", field="password"
        )
    auth.limiter.succeeded(address)
    await auth.sessions.delete(request.cookies.get(COOKIE_NAME))  # no session fixation
    token, session = await auth.sessions.create(tag, address, request.headers.get("User-Agent", ""))
    who = auth.principal_of(session)
    assert who is not None  # the tag was just checked
    await audit.record(
        auth.sessions.store, who.name, "login", remote=address, detail={"role": who.role.value}
    )
    response = web.json_response(_session_body(session, who))
    _set_cookie(response, request, token)
    _set_csrf_cookie(response, request, session)
    return response


@operation("Log out of the web UI", responses={200: LoggedOut})
async def logout(request: web.Request) -> web.Response:
    """POST /auth/logout: ends this browser's session (the middleware checked the CSRF token)."""
    await request.app[UI_AUTH].sessions.delete(request.cookies.get(COOKIE_NAME))
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE_NAME, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


@operation("The web UI session's CSRF token", responses={200: UiSessionOut})
async def current_session(request: web.Request) -> web.Response:
    """GET /auth/session: the CSRF token of the logged-in browser (401 without a session)."""
    found = request.app[UI_AUTH].lookup(request)
    if found is None:  # the middleware let an X-API-Key request through
        who = request[PRINCIPAL]
        return web.json_response(
            {"csrf_token": None, "api_key": True, "username": who.name, "role": who.role.value}
        )
    response = web.json_response(_session_body(*found))
    _set_csrf_cookie(response, request, found[0])
    return response


def setup_ui_auth(
    app: web.Application,
    store: Store,
    passwords: PasswordStore,
    keys: ApiKeyStore,
    users: UserStore | None = None,
) -> None:
    """Register the login routes and open/close the session table with the app."""
    auth = UiAuth(passwords, UiSessionTable(store), keys, users)
    app[UI_AUTH] = auth

    async def sessions_ctx(app: web.Application) -> Any:
        await auth.sessions.open()
        yield
        await auth.sessions.close()

    app.cleanup_ctx.append(sessions_ctx)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(LOGOUT_PATH, logout)
    app.router.add_get(SESSION_PATH, current_session)
