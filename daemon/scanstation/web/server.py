"""Builds the aiohttp application: middlewares (errors, Host allowlist, auth) and routes."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import SERVICES, Services
from scanstation.web.errors import Handler, error_middleware, error_response
from scanstation.web.passwords import PasswordStore, password_path
from scanstation.web.permissions import role_middleware
from scanstation.web.routes import setup_routes
from scanstation.web.ui import security_headers_middleware, setup_ui
from scanstation.web.ui_auth import auth_middleware, setup_ui_auth
from scanstation.web.users import UserStore, users_path

API_KEYS = web.AppKey("api_keys", ApiKeyStore)
OPEN_PATHS = frozenset({"/healthz"})


def allowed_host_names(configured: list[str], bind_host: str) -> frozenset[str]:
    """Host header names accepted besides IP literals (which DNS rebinding cannot forge)."""
    hostname = socket.gethostname().lower()
    names = {"localhost", hostname, f"{hostname}.local", bind_host.lower()}
    return frozenset(names | {h.lower() for h in configured})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowlist_middleware(allowed: frozenset[str], explicit: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = _host_name(request.headers.get("Host", ""))
        if name not in allowed and not (not explicit and _is_ip_literal(name)):
            return error_response(
                403,
                f"Host {name!r} is not in [http] allowed_hosts; add it there to reach this "
                "device by that name",
                field="Host",
            )
        return await handler(request)

    return middleware


@web.middleware
async def http_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405 (no route, wrong method) in the API's error shape.

    Sits inside error_middleware, which would pass the exception's Content-Type header on to
    json_response (a ValueError, so a 500) for these.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        message = {
            404: f"there is nothing at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        return error_response(exc.status, message, headers=headers)


def make_app(
    services: Services,
    *,
    previews: Mapping[str, object] | None = None,
    web_ui: Path | None = None,
) -> web.Application:
    """The HTTP app. ``previews``: source name → source object offering ``latest_jpeg()``
    (camera preview); ``web_ui``: the folder of the UI files (default: found by ui.py)."""
    config = services.config
    allowed = allowed_host_names(config.http.allowed_hosts, config.http.host)
    app = web.Application(
        middlewares=[
            security_headers_middleware,
            error_middleware,
            http_error_middleware,
            host_allowlist_middleware(allowed, explicit=bool(config.http.allowed_hosts)),
            # X-API-Key (as api_key_middleware did) or the UI's sessionid cookie + CSRF token.
            auth_middleware,
            # Then the route's minimum role (web/permissions.py) for that principal.
            role_middleware,
        ],
        client_max_size=config.http.max_upload_bytes + 64 * 1024,
    )
    app[SERVICES] = services
    app[API_KEYS] = ApiKeyStore(config.api_keys_path)
    setup_ui_auth(
        app,
        services.store,
        PasswordStore(password_path(config)),
        app[API_KEYS],
        UserStore(users_path(config)),
    )
    setup_routes(app, previews)
    setup_ui(app, web_ui)
    return app
