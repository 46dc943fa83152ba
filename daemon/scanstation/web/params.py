"""Request parsing shared by the routes: strict JSON bodies, query parameters, pages."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from scanstation.payloads import parse_time
from scanstation.web.errors import ApiError

# ---- request bodies ---------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
