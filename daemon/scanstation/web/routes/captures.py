"""Captures (SPEC §6): create from a value or an uploaded photo, list, read, retry."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import StringConstraints

from scanstation.jsonlimits import JsonLimitError, loads_limited
from scanstation.model import (
    RAW_VALUE_MAX_LENGTH,
    CaptureStatus,
    CaptureType,
    validate_metadata,
)
from scanstation.payloads import capture_json
from scanstation.store import NewCapture
from scanstation.vision.images import UploadError, sanitize_upload
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError, read_json
from scanstation.web.params import Body, enum_param, int_param, page_json, time_param

routes = web.RouteTableDef()


class CaptureCreate(Body):
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
        metadata = loads_limited(fields["metadata"]) if fields.get("metadata") else None
    except JsonLimitError:
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
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    captures, total = await services(request).store.list_captures(
        session_public_id=request.query.get("session") or request.query.get("session_public_id"),
        status=enum_param(request, "status", CaptureStatus),
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        limit=limit,
        offset=offset,
    )
    return page_json(request, [capture_json(c) for c in captures], total, limit, offset)


@routes.get(API_BASE + "/captures/{id}")
async def get_capture(request: web.Request) -> web.Response:
    capture = await services(request).store.get_capture(request.match_info["id"])
    return web.json_response(capture_json(capture))


@routes.post(API_BASE + "/captures/{id}/retry")
async def retry_capture(request: web.Request) -> web.Response:
    capture = await services(request).pipeline.retry(request.match_info["id"])
    return web.json_response(capture_json(capture))
