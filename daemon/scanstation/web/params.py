"""Request parsing shared by the routes: bodies and query strings validated with the models
of web/models.py, path ids, time filters, pages."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from scanstation.payloads import parse_time
from scanstation.web.errors import ApiError, read_json, validation_error
from scanstation.web.models import PUBLIC_ID_PATTERN, Body, PublicId

__all__ = ["Body", "body", "int_param", "page_json", "public_id", "query", "time_param"]

M = TypeVar("M", bound=BaseModel)

# ---- request bodies ---------------------------------------------------------------------


async def body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated with ``model`` (a 422 naming the field, see errors.py)."""
    data = await read_json(request)
    return model.model_validate({} if data is None else data)


def query(request: web.Request, model: type[M]) -> M:
    """The query string validated with ``model``: a 400 naming the parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        err = validation_error(exc)
        raise ApiError(400, err.message, field=err.field) from None


_PUBLIC_ID = TypeAdapter(PublicId)


def public_id(request: web.Request, name: str = "id") -> str:
    """A path's public id, checked against the shortuuid pattern (SPEC §10): a 422 if not."""
    value = request.match_info[name]
    try:
        return _PUBLIC_ID.validate_python(value)
    except ValidationError:
        raise ApiError(
            422,
            f"{name} {value[:60]!r} is not a public id: expected 22 characters matching "
            f"{PUBLIC_ID_PATTERN}",
            field=name,
        ) from None


# ---- query parameters -------------------------------------------------------------------


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
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


def time_param(request: web.Request, name: str) -> float | None:
    """A time filter: ISO 8601, epoch seconds, or an age such as 7d (views.parse_time)."""
    text = request.query.get(name)
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {exc}", field=name) from None


def enum_param(request: web.Request, name: str, enum: type[Any]) -> Any:
    text = request.query.get(name)
    if not text:
        return None
    try:
        return enum(text.upper())
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ApiError(400, f"{name} must be one of {allowed}, got {text!r}", field=name) from None


def page_json(
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
