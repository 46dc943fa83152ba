"""Administration reads: the users and their roles, the audit log (JSON pages and CSV)."""

from __future__ import annotations

import io
from datetime import datetime

from aiohttp import web

from scanstation.payloads import iso
from scanstation.services.exports import write_audit_csv
from scanstation.services.roles import Role
from scanstation.store import audit
from scanstation.web.context import API_BASE, services
from scanstation.web.params import int_param, page_json, time_param
from scanstation.web.ui_auth import UI_AUTH
from scanstation.web.users import FIRST_ADMIN

routes = web.RouteTableDef()


@routes.get(f"{API_BASE}/users")
async def list_users(request: web.Request) -> web.Response:
    """Every user who can log in (never a password hash); the first admin first."""
    users = request.app[UI_AUTH].users
    items = [
        {"username": FIRST_ADMIN, "role": Role.ADMIN.value, "first_admin": True, "created": None}
    ]
    for user in sorted((users.all() if users else {}).values(), key=lambda u: u.name):
        items.append(
            {
                "username": user.name,
                "role": user.role.value,
                "first_admin": False,
                "created": iso(user.created),
            }
        )
    return web.json_response({"count": len(items), "results": items})


@routes.get(f"{API_BASE}/audit")
async def list_audit(request: web.Request) -> web.Response:
    """The audit log, newest first; ?action=login (or a prefix such as user), since, until."""
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    total, rows = await audit.entries(
        services(request).store,
        limit=limit,
        offset=offset,
        action=request.query.get("action") or None,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    return page_json(request, [e.to_json() for e in rows], total, limit, offset)


@routes.get(f"{API_BASE}/audit.csv")
async def export_audit(request: web.Request) -> web.Response:
    out = io.StringIO()
    await write_audit_csv(
        services(request).store,
        out,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


@routes.get(f"{API_BASE}/config")
async def current_config(request: web.Request) -> web.Response:
    """The configuration the daemon runs with, as JSON (secrets live in files it names)."""
    return web.json_response(services(request).config.model_dump(mode="json"))
