"""The API's error shape, {"error": {"code", "message", "field"}}, and the middleware that
turns every failure into it: bad input never becomes a 500 or a stack trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from scanstation.model import MetadataError
from scanstation.store import StoreError
from scanstation.web import WebError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
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


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400/415 saying what was wrong with it."""
    if request.content_type not in ("application/json", ""):
        raise ApiError(415, f"expected a JSON body (application/json), got {request.content_type}")
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


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
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error; see the daemon's log", code="internal")
