"""The Closient-compatible JSON API under /scanner/api/v1 (SPEC §6)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, StringConstraints

from scanstation import __version__
from scanstation.config import Config
from scanstation.events import EventBus
from scanstation.images import UploadError, sanitize_upload
from scanstation.model import (
    RAW_VALUE_MAX_LENGTH,
    CaptureMode,
    CaptureStatus,
    CaptureType,
    SessionStatus,
    validate_metadata,
)
from scanstation.pipeline import Pipeline
from scanstation.sources.base import SourceHealth
from scanstation.store import NewCapture, Store
from scanstation.views import capture_json, parse_time, session_json
from scanstation.web.errors import ApiError, read_json

API_BASE = "/scanner/api/v1"


@dataclass
class Services:
    """What the HTTP layer needs of the running daemon."""

    config: Config
    store: Store
    pipeline: Pipeline
    bus: EventBus
    sources: dict[str, SourceHealth] = field(default_factory=dict)
    """Health of every running source, by name."""
    triggers: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Software triggers of the sources that have one (cameras in trigger mode), by name."""
    camera_stats: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Counters of the camera sources (frames, decodes, no-reads, fps, decode ms), by name."""
    mqtt: Any = None
    """The MQTT link (its ``state`` feeds /stats and /metrics); None in tests without one."""


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


# ---- request bodies ---------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_Body):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    metadata: Any = None
    """Checked by validate_metadata (SPEC §5 limits), which names the offending key."""
    source: Annotated[str, StringConstraints(max_length=40)] = "api"


class CaptureCreate(_Body):
    session_public_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    capture_type: Literal["BARCODE", "IMAGE", "MANUAL"] = "BARCODE"
    raw_value: Annotated[str, StringConstraints(max_length=RAW_VALUE_MAX_LENGTH)] = ""
    gtin: Annotated[str, StringConstraints(max_length=14, pattern=r"^[0-9]*$")] = ""
    gs1_dl_data: dict[str, str] | None = None
    metadata: Any = None
    symbology: Annotated[str, StringConstraints(max_length=40)] = ""
    symbology_identifier: Annotated[str, StringConstraints(max_length=3)] = ""
    source: Annotated[str, StringConstraints(max_length=40)] = "api"


def _raw_value_or_gtin(raw_value: str, gtin: str) -> str:
    if not raw_value and not gtin:
        raise ApiError(
            422,
            f"raw_value must be 1–{RAW_VALUE_MAX_LENGTH} characters (or give gtin)",
            field="raw_value",
        )
    return raw_value or gtin


# ---- query parameters -------------------------------------------------------------------


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {text!r}", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}", field=name)
    return value


def _time_param(request: web.Request, name: str) -> float | None:
    """A time filter: ISO 8601, epoch seconds, or an age such as 7d (views.parse_time)."""
    text = request.query.get(name)
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {exc}", field=name) from None


def _enum_param(request: web.Request, name: str, enum: type[Any]) -> Any:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return enum(text.upper())
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ApiError(400, f"{name} must be one of {allowed}, got {text!r}", field=name) from None


def _page(
    request: web.Request, items: list[dict[str, Any]], total: int, limit: int, offset: int
) -> web.Response:
    def link(new_offset: int) -> str:
        return str(request.rel_url.update_query(limit=limit, offset=new_offset))

    return web.json_response(
        {
            "count": total,
            "next": link(offset + limit) if offset + limit < total else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "results": items,
        }
    )


# ---- routes -----------------------------------------------------------------------------

routes = web.RouteTableDef()


async def healthz(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        await svc.store.fetchone("SELECT 1")
        db = "ok"
    except Exception as exc:  # the health check reports, it does not raise
        db = f"error: {exc}"
    sources = {name: h.state for name, h in svc.sources.items()}
    healthy = db == "ok"
    return web.json_response(
        {
            "status": "ok" if healthy else "degraded",
            "version": __version__,
            "db": db,
            "sources": sources,
        },
        status=200 if healthy else 503,
    )


@routes.post(f"{API_BASE}/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = SessionCreate.model_validate(await read_json(request) or {})
    session = await services(request).store.create_session(
        capture_mode=CaptureMode(body.capture_mode),
        metadata=validate_metadata(body.metadata),
        source=body.source,
    )
    services(request).bus.publish("session", session_json(session))
    return web.json_response(session_json(session), status=201)


@routes.get(f"{API_BASE}/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 50, 1, 500)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    status = _enum_param(request, "status", SessionStatus)
    sessions, total = await services(request).store.list_sessions(
        status=status, limit=limit, offset=offset
    )
    return _page(request, [session_json(s) for s in sessions], total, limit, offset)


@routes.get(API_BASE + "/sessions/{id}")
async def get_session(request: web.Request) -> web.Response:
    session = await services(request).store.get_session(request.match_info["id"])
    return web.json_response(session_json(session))


@routes.get(API_BASE + "/sessions/{id}/status")
async def session_status(request: web.Request) -> web.Response:
    store = services(request).store
    session = await store.get_session(request.match_info["id"])
    rows = await store.fetchall(
        "SELECT status, COUNT(*) FROM captures WHERE session_id = ? GROUP BY status",
        (session.id,),
    )
    by_status = {r[0]: r[1] for r in rows}
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
    session = await services(request).store.end_session(request.match_info["id"])
    services(request).bus.publish("session", session_json(session))
    return web.json_response(session_json(session))


@routes.post(f"{API_BASE}/captures")
async def create_capture(request: web.Request) -> web.Response:
    body = CaptureCreate.model_validate(await read_json(request) or {})
    raw_value = _raw_value_or_gtin(body.raw_value, body.gtin)
    capture = await services(request).pipeline.create_capture(
        body.session_public_id,
        NewCapture(
            capture_type=CaptureType(body.capture_type),
            raw_value=raw_value,
            gtin=body.gtin,
            symbology=body.symbology,
            symbology_identifier=body.symbology_identifier,
            source=body.source,
            gs1_dl_data=body.gs1_dl_data,
            metadata=validate_metadata(body.metadata),
        ),
    )
    return web.json_response(capture_json(capture), status=201)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[dict[str, str], bytes | None]:
    """The multipart form's text fields and its image; a malformed body is a 400."""
    fields: dict[str, str] = {}
    image: bytes | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "image":
                chunks, size = [], 0
                while chunk := await part.read_chunk(65536):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ApiError(
                            413, f"image is larger than {max_bytes} bytes", field="image"
                        )
                    chunks.append(chunk)
                image = b"".join(chunks)
            else:
                value = await part.text()
                if len(value) > 1000:
                    raise ApiError(422, f"{part.name} is too long", field=part.name)
                fields[part.name] = value
    except (ValueError, UnicodeDecodeError, LookupError, HttpProcessingError) as exc:
        raise ApiError(400, f"malformed multipart/form-data body: {exc}") from None
    return fields, image


@routes.post(f"{API_BASE}/captures/upload-image")
async def upload_image(request: web.Request) -> web.Response:
    svc = services(request)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, f"expected multipart/form-data, got {request.content_type}")
    fields, image = await _read_upload(request, svc.config.http.max_upload_bytes)
    if image is None:
        raise ApiError(422, "image is required (a JPEG, PNG or WebP file)", field="image")
    unknown = set(fields) - {"session_public_id", "capture_type", "raw_value", "gtin", "metadata"}
    if unknown:
        raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    try:
        metadata = json.loads(fields["metadata"]) if fields.get("metadata") else None
    except json.JSONDecodeError:
        raise ApiError(422, "metadata must be a JSON object", field="metadata") from None
    body = CaptureCreate.model_validate(
        {
            "session_public_id": fields.get("session_public_id", ""),
            "capture_type": fields.get("capture_type", "IMAGE") or "IMAGE",
            "raw_value": fields.get("raw_value", ""),
            "gtin": fields.get("gtin", ""),
            "metadata": metadata,
            "source": "upload",
        }
    )
    try:
        stored, ext = await asyncio.to_thread(
            sanitize_upload, image, max_pixels=svc.config.http.max_upload_pixels
        )
    except UploadError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    # Stored re-encoded, upright, without EXIF/GPS; the key never comes from user input.
    key = await asyncio.to_thread(svc.pipeline.save_image, stored, ext)
    capture = await svc.pipeline.create_capture(
        body.session_public_id,
        NewCapture(
            capture_type=CaptureType(body.capture_type),
            raw_value=body.raw_value,
            gtin=body.gtin,
            source=body.source,
            metadata=validate_metadata(body.metadata),
            uploaded_image_key=key,
        ),
    )
    return web.json_response(capture_json(capture), status=201)


@routes.get(f"{API_BASE}/captures")
async def list_captures(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 50, 1, 500)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    captures, total = await services(request).store.list_captures(
        session_public_id=request.query.get("session") or request.query.get("session_public_id"),
        status=_enum_param(request, "status", CaptureStatus),
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        limit=limit,
        offset=offset,
    )
    return _page(request, [capture_json(c) for c in captures], total, limit, offset)


@routes.get(API_BASE + "/captures/{id}")
async def get_capture(request: web.Request) -> web.Response:
    capture = await services(request).store.get_capture(request.match_info["id"])
    return web.json_response(capture_json(capture))


@routes.post(API_BASE + "/captures/{id}/retry")
async def retry_capture(request: web.Request) -> web.Response:
    capture = await services(request).pipeline.retry(request.match_info["id"])
    return web.json_response(capture_json(capture))


@routes.post(API_BASE + "/sources/{name}/trigger")
async def trigger_source(request: web.Request) -> web.Response:
    """Software trigger: open a read window on a camera source (industrial reader style)."""
    svc = services(request)
    name = request.match_info["name"]
    if name not in svc.sources:
        raise ApiError(404, f"source {name!r} does not exist", field="name")
    trigger = svc.triggers.get(name)
    if trigger is None:
        raise ApiError(409, f"source {name!r} has no software trigger", field="name")
    trigger()
    return web.json_response({"source": name, "triggered": True}, status=202)
