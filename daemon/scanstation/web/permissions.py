"""Who may call what: the minimum role of every HTTP route, in one table, and the middleware
that enforces it.

The auth middleware (``ui_auth``) says who is asking (a ``Principal``: a user's session or
an API key, with its role); ``role_middleware`` refuses with 403 whatever needs a higher role.
A route missing from ``ROUTE_ROLES`` needs ``admin`` (so a forgotten entry fails closed), and
a test fails for every registered route without its own entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from scanstation.services.roles import Role, allows
from scanstation.web.context import API_BASE
from scanstation.web.errors import Handler, error_response

V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN
OPEN: None = None

ROUTE_ROLES: dict[tuple[str, str], Role | None] = {
    # served without credentials (ui_auth.open_path)
    ("GET", "/healthz"): OPEN,
    ("GET", "/login"): OPEN,
    ("GET", "/favicon.ico"): OPEN,
    ("POST", "/auth/login"): OPEN,
    # the UI and the login session
    ("GET", "/"): V,
    ("GET", "/assets/{path}"): V,
    ("GET", "/api"): V,
    ("GET", f"{API_BASE}/openapi.json"): V,
    ("GET", "/auth/session"): V,
    ("POST", "/auth/logout"): V,
    # sessions
    ("GET", f"{API_BASE}/sessions"): V,
    ("GET", f"{API_BASE}/sessions/{{id}}"): V,
    ("GET", f"{API_BASE}/sessions/{{id}}/status"): V,
    ("POST", f"{API_BASE}/sessions"): OP,
    ("POST", f"{API_BASE}/sessions/{{id}}/end"): OP,
    # captures, manual entry, photos, proposals
    ("GET", f"{API_BASE}/captures"): V,
    ("GET", f"{API_BASE}/captures/{{id}}"): V,
    ("GET", f"{API_BASE}/captures/{{id}}/image"): V,
    ("GET", f"{API_BASE}/captures/{{id}}/proposals"): V,
    ("POST", f"{API_BASE}/captures"): OP,
    ("POST", f"{API_BASE}/captures/upload-image"): OP,
    ("POST", f"{API_BASE}/captures/{{id}}/retry"): OP,
    ("POST", f"{API_BASE}/captures/{{id}}/apply"): OP,
    ("PATCH", f"{API_BASE}/proposals/{{id}}"): OP,
    # the catalog: read by all, changed by admins
    ("GET", f"{API_BASE}/products"): V,
    ("GET", f"{API_BASE}/products/{{gtin}}"): V,
    ("PUT", f"{API_BASE}/products/{{gtin}}"): A,
    ("POST", f"{API_BASE}/products/import"): A,
    # reads of the station
    ("GET", f"{API_BASE}/exports/scans.csv"): V,
    ("GET", f"{API_BASE}/exports/products.csv"): V,
    ("GET", f"{API_BASE}/events"): V,
    ("GET", f"{API_BASE}/stats"): V,
    ("GET", f"{API_BASE}/metrics"): V,
    ("GET", f"{API_BASE}/noreads"): V,
    ("GET", f"{API_BASE}/noreads/{{name}}"): V,
    ("GET", f"{API_BASE}/sources/{{name}}/snapshot.jpg"): V,
    ("GET", f"{API_BASE}/sources/{{name}}/stream.mjpg"): V,
    ("POST", f"{API_BASE}/sources/{{name}}/trigger"): OP,
    # administration
    ("GET", f"{API_BASE}/users"): A,
    ("GET", f"{API_BASE}/audit"): A,
    ("GET", f"{API_BASE}/audit.csv"): A,
    ("GET", f"{API_BASE}/config"): A,
    ("GET", f"{API_BASE}/backup"): A,
    ("POST", f"{API_BASE}/backup"): A,
    ("POST", f"{API_BASE}/restore"): A,
    ("GET", f"{API_BASE}/config/schema"): A,
    ("POST", f"{API_BASE}/config/preview"): A,
    ("POST", f"{API_BASE}/config/apply"): A,
    ("POST", f"{API_BASE}/config/rollback"): A,
}
"""(method, route template) → the least role that may call it; None: no login needed."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: a logged-in user or an API key."""

    name: str
    """The user name, or ``key:<key id>`` for an API key."""
    role: Role
    kind: Literal["user", "api-key"]


PRINCIPAL = web.RequestKey("principal", Principal)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/captures/{id}``), '' when nothing matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return ""
    return resource.canonical  # /assets/{path:.+} is canonical as /assets/{path}


def required_role(method: str, template: str) -> Role | None:
    return ROUTE_ROLES.get(("GET" if method == "HEAD" else method, template), Role.ADMIN)


def principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


@web.middleware
async def role_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for a principal whose role is below the route's minimum (after authentication)."""
    if request.match_info.http_exception is not None:  # 404 / 405: nothing to protect
        return await handler(request)
    template = route_template(request)
    minimum = required_role(request.method, template)
    if minimum is None:
        return await handler(request)
    who = request.get(PRINCIPAL)
    if who is None:
        # The auth middleware lets a request through without a principal only for what
        # ui_auth.open_path serves to everyone (the login page and its assets).
        return await handler(request)
    if not allows(who.role, minimum):
        return error_response(
            403,
            f"{who.name} has the {who.role.value} role; {request.method} {template} needs "
            f"the {minimum.value} role",
            field="role",
        )
    return await handler(request)
