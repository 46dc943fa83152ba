"""Captures (SPEC §6): create from a value or an uploaded photo, list, read, retry."""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from scanstation.jsonlimits import JsonLimitError, loads_limited
from scanstation.model import CaptureStatus, CaptureType, validate_metadata
from scanstation.payloads import capture_json
from scanstation.store import NewCapture
from scanstation.vision.images import UploadError, sanitize_upload
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import (
    CaptureCreate,
    CaptureOut,
    CapturePage,
    CaptureQuery,
    CaptureUpload,
    CaptureUploadForm,
)
from scanstation.web.openapi import operation
from scanstation.web.params import body, page_json, public_id, query, time_param

routes = web.RouteTableDef()


@routes.post(f"{API_BASE}/captures")
@operation(
    "Create a capture from a scanned or typed value",
    body=CaptureCreate,
    responses={201: CaptureOut},
    errors=(404, 409),
)
async def create_capture(request: web.Request) -> web.Response:
    sent = await body(request, CaptureCreate)
    # What the client sent is kept: its GTIN (as GTIN-14) and its gs1_dl_data, which the
    # walk merges with the station's own parse.
    capture = await services(request).pipeline.create_capture(
        sent.session_public_id,
        NewCapture(
            capture_type=CaptureType(sent.capture_type),
            raw_value=sent.raw_value,
            gtin=sent.gtin,
            symbology=sent.symbology,
            symbology_identifier=sent.symbology_identifier,
            source=sent.source,
            gs1_dl_data=sent.gs1_dl_data,
            metadata=validate_metadata(sent.metadata),
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
@operation(
    "Create a capture from an uploaded photo",
    form=CaptureUploadForm,
    responses={201: CaptureOut},
    errors=(404, 409),
)
async def upload_image(request: web.Request) -> web.Response:
    svc = services(request)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, f"expected multipart/form-data, got {request.content_type}")
    fields, image = await _read_upload(request, svc.config.http.max_upload_bytes)
    if image is None:
        raise ApiError(422, "image is required (a JPEG, PNG or WebP file)", field="image")
    if not fields.get("capture_type"):
        fields.pop("capture_type", None)  # an empty form field means the default, IMAGE
    form = CaptureUpload.model_validate(fields)
    try:
        metadata = loads_limited(form.metadata) if form.metadata else None
    except JsonLimitError:
        raise ApiError(422, "metadata must be a JSON object", field="metadata") from None
    try:
        stored, ext = await asyncio.to_thread(
            sanitize_upload, image, max_pixels=svc.config.http.max_upload_pixels
        )
    except UploadError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    # Stored re-encoded, upright, without EXIF/GPS; the key never comes from user input.
    key = await asyncio.to_thread(svc.pipeline.save_image, stored, ext)
    capture = await svc.pipeline.create_capture(
        form.session_public_id,
        NewCapture(
            capture_type=CaptureType(form.capture_type),
            raw_value=form.raw_value,
            gtin=form.gtin,
            source="upload",
            metadata=validate_metadata(metadata),
            uploaded_image_key=key,
        ),
    )
    return web.json_response(capture_json(capture), status=201)


@routes.get(f"{API_BASE}/captures")
@operation("List captures, newest first", query=CaptureQuery, responses={200: CapturePage})
async def list_captures(request: web.Request) -> web.Response:
    q = query(request, CaptureQuery)
    captures, total = await services(request).store.list_captures(
        session_public_id=q.session or q.session_public_id,
        status=CaptureStatus(q.status) if q.status else None,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        limit=q.limit,
        offset=q.offset,
    )
    return page_json(request, [capture_json(c) for c in captures], total, q.limit, q.offset)


@routes.get(API_BASE + "/captures/{id}")
@operation("One capture", path={"id": "any"}, responses={200: CaptureOut}, errors=(404,))
async def get_capture(request: web.Request) -> web.Response:
    capture = await services(request).store.get_capture(request.match_info["id"])
    return web.json_response(capture_json(capture))


@routes.post(API_BASE + "/captures/{id}/retry")
@operation(
    "Walk a FAILED or NOT_FOUND capture again (revision + 1)",
    path={"id": "public_id"},
    responses={200: CaptureOut},
    errors=(404, 409, 422),
)
async def retry_capture(request: web.Request) -> web.Response:
    capture = await services(request).pipeline.retry(public_id(request))
    return web.json_response(capture_json(capture))
