"""Scan sessions (SPEC §6): create, list, read, status, end."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import StringConstraints

from scanstation.model import (
    CaptureMode,
    CaptureStatus,
    SessionStatus,
    validate_metadata,
)
from scanstation.payloads import session_json
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import read_json
from scanstation.web.params import Body, enum_param, int_param, page_json

routes = web.RouteTableDef()


class SessionCreate(Body):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    metadata: Any = None
    """Checked by validate_metadata (SPEC §5 limits), which names the offending key."""
    source: Annotated[str, StringConstraints(max_length=40)] = "api"


@routes.post(f"{API_BASE}/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = SessionCreate.model_validate(await read_json(request) or {})
    session = await services(request).pipeline.sessions.start(
        capture_mode=CaptureMode(body.capture_mode),
        metadata=validate_metadata(body.metadata),
        source=body.source,
    )
    return web.json_response(session_json(session), status=201)


@routes.get(f"{API_BASE}/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    status = enum_param(request, "status", SessionStatus)
    sessions, total = await services(request).store.list_sessions(
        status=status, limit=limit, offset=offset
    )
    return page_json(request, [session_json(s) for s in sessions], total, limit, offset)


@routes.get(API_BASE + "/sessions/{id}")
async def get_session(request: web.Request) -> web.Response:
    session = await services(request).store.get_session(request.match_info["id"])
    return web.json_response(session_json(session))


@routes.get(API_BASE + "/sessions/{id}/status")
async def session_status(request: web.Request) -> web.Response:
    store = services(request).store
    session = await store.get_session(request.match_info["id"])
    by_status = await store.session_capture_counts(session.id)
    in_progress = sum(n for s, n in by_status.items() if not CaptureStatus(s).terminal)
    return web.json_response(
        {
            "public_id": session.public_id,
            "status": session.status.value,
            "capture_count": session.capture_count,
            "photo_count": session.photo_count,
            "captures_by_status": by_status,
            "in_progress": in_progress,
            "complete": in_progress == 0,
        }
    )


@routes.post(API_BASE + "/sessions/{id}/end")
async def end_session(request: web.Request) -> web.Response:
    session = await services(request).pipeline.sessions.end(request.match_info["id"])
    return web.json_response(session_json(session))
