"""Scan sessions (SPEC §6): create, list, read, status, end."""

from __future__ import annotations

from aiohttp import web

from scanstation.model import CaptureMode, CaptureStatus, SessionStatus, validate_metadata
from scanstation.payloads import session_json
from scanstation.web.context import API_BASE, services
from scanstation.web.models import (
    SessionCreate,
    SessionOut,
    SessionPage,
    SessionQuery,
    SessionStatusOut,
)
from scanstation.web.openapi import operation
from scanstation.web.params import body, page_json, query

routes = web.RouteTableDef()


@routes.post(f"{API_BASE}/sessions")
@operation("Start a scan session", body=SessionCreate, responses={201: SessionOut})
async def create_session(request: web.Request) -> web.Response:
    sent = await body(request, SessionCreate)
    session = await services(request).pipeline.sessions.start(
        capture_mode=CaptureMode(sent.capture_mode),
        metadata=validate_metadata(sent.metadata),
        source=sent.source,
    )
    return web.json_response(session_json(session), status=201)


@routes.get(f"{API_BASE}/sessions")
@operation("List sessions, newest first", query=SessionQuery, responses={200: SessionPage})
async def list_sessions(request: web.Request) -> web.Response:
    q = query(request, SessionQuery)
    sessions, total = await services(request).store.list_sessions(
        status=SessionStatus(q.status) if q.status else None, limit=q.limit, offset=q.offset
    )
    return page_json(request, [session_json(s) for s in sessions], total, q.limit, q.offset)


@routes.get(API_BASE + "/sessions/{id}")
@operation("One session", responses={200: SessionOut})
async def get_session(request: web.Request) -> web.Response:
    session = await services(request).store.get_session(request.match_info["id"])
    return web.json_response(session_json(session))


@routes.get(API_BASE + "/sessions/{id}/status")
@operation("A session's progress: captures by status", responses={200: SessionStatusOut})
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
@operation("End a session", responses={200: SessionOut}, errors=(409,))
async def end_session(request: web.Request) -> web.Response:
    session = await services(request).pipeline.sessions.end(request.match_info["id"])
    return web.json_response(session_json(session))
