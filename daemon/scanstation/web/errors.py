"""The API's error shape, {"error": {"code", "message", "field"}}, and the middleware that
turns every failure into it: bad input never becomes a 500 or a stack trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from scanstation.jsonlimits import MAX_BYTES, JsonLimitError, loads_limited
from scanstation.model import MetadataError
from scanstation.store import StorageFull, StoreError, is_disk_full
from scanstation.web import WebError
from scanstation.web.context import SERVICES, services

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


class ApiError(WebError):
    """An error the API answers with; ``field`` names the offending input when there is one."""

    def __init__(self, status: int, message: str, field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or _STATUS_CODES.get(status, "error")


def error_response(
    status: int,
    message: str,
    field: str = "",
    code: str = "",
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {
        "error": {
            "code": code or _STATUS_CODES.get(status, "error"),
            "message": message,
            "field": field,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def validation_error(exc: ValidationError) -> ApiError:
    """The first pydantic error as a 422 naming the field and what was expected."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    message = err["msg"]
    if err["type"] == "missing":
        message = f"{field} is required"
    elif err["type"] == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif "input" in err and not isinstance(err["input"], dict | list):
        message = f"{field}: {message} (got {err['input']!r})"
    else:
        message = f"{field}: {message}"
    return ApiError(422, message, field=field)


async def read_body(request: web.Request, max_bytes: int, what: str = "body") -> bytes:
    """The request body, read with a size limit that holds for chunked bodies too (413) and
    within ``[http] body_timeout_s`` (408), so a slow or endless sender is cut off."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(
            413, f"the {what} is {request.content_length} bytes; at most {max_bytes} are accepted"
        )
    svc = request.app.get(SERVICES)
    timeout = svc.config.http.body_timeout_s if svc is not None else 30.0
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > max_bytes:
                    raise ApiError(
                        413,
                        f"the {what} is over {max_bytes} bytes; at most {max_bytes} are accepted",
                    )
    except TimeoutError:
        raise ApiError(
            408, f"the {what} did not arrive within {timeout:g} s", code="request_timeout"
        ) from None
    return bytes(body)


async def read_json(request: web.Request, max_bytes: int | None = None) -> Any:
    """The request body as JSON, or a 400/408/413/415 saying what was wrong with it.

    At most ``max_bytes`` (default ``[http] max_json_bytes``) and 32 levels of nesting.
    """
    if request.content_type not in ("application/json", ""):
        raise ApiError(415, f"expected a JSON body (application/json), got {request.content_type}")
    if max_bytes is None:
        svc = request.app.get(SERVICES)
        max_bytes = svc.config.http.max_json_bytes if svc is not None else MAX_BYTES
    body = await read_body(request, max_bytes, "JSON body")
    try:
        return loads_limited(body, max_bytes=max_bytes)
    except JsonLimitError as exc:
        if exc.kind == "invalid":
            raise ApiError(400, f"the body is {exc}") from None
        raise ApiError(413 if exc.kind == "too_large" else 400, f"the body: {exc}") from None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field, exc.code)
    except ValidationError as exc:
        err = validation_error(exc)
        return error_response(err.status, err.message, err.field)
    except MetadataError as exc:
        return error_response(422, str(exc), exc.field)
    except StoreError as exc:
        status = {"not_found": 404, "conflict": 409, "disk_full": 503}.get(exc.code, 400)
        return error_response(status, str(exc), exc.field, code=exc.code)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, f"the request body is too large: {exc.text}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # The exception's own Content-Type (text/plain) must not override the JSON one.
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        return error_response(exc.status, exc.reason, headers=headers)
    except Exception as exc:
        if is_disk_full(exc):  # an image or file write on a full disk
            path = services(request).config.storage.path
            full = StorageFull(path, getattr(exc, "strerror", None) or str(exc))
            return error_response(503, str(full), code="disk_full")
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error; see the daemon's log", code="internal")
