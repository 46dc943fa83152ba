"""``GET /scanner/api/v1/openapi.json``: the OpenAPI 3.1 document, built from the app itself.

Each route handler carries an ``@operation(...)`` naming its request model (JSON body, form
or query string), its response models and its error statuses; the document is assembled
from the app's router (method, path) and those models' JSON Schemas (web/models.py), so
what the handlers validate with and what the document says are the same classes. Auth is
read from the auth middleware's own rule (ui_auth.open_path). Routes without an
``@operation`` still appear, with a generic answer, so nothing the router serves is hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from scanstation import __version__
from scanstation.web.context import API_BASE
from scanstation.web.models import PUBLIC_ID_PATTERN, AnyObject, ErrorBody, Out

H = TypeVar("H", bound=Callable[..., Any])

PathKind = Literal["any", "public_id", "gtin", "name"]
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "any": {"type": "string", "minLength": 1, "maxLength": 200},
    "public_id": {"type": "string", "pattern": PUBLIC_ID_PATTERN},
    "gtin": {
        "type": "string",
        "pattern": "^[0-9]{8,14}$",
        "description": "A GTIN-8, -12, -13 or -14 with its check digit.",
    },
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
}

_ERROR_TEXT = {
    400: "Malformed request (bad JSON, a bad query parameter)",
    401: "No or wrong credentials",
    403: "CSRF token missing, other site, or a Host not allowed",
    404: "Nothing with that id",
    408: "The body did not arrive in time",
    409: "The state does not allow it",
    413: "Body or image too large",
    415: "Wrong content type",
    422: "A field breaks its rule; error.field names it",
    429: "Too many requests",
    503: "The disk is full",
}


@dataclass(frozen=True)
class Operation:
    """What the document says about one handler, besides its method and path."""

    summary: str
    body: type[BaseModel] | None = None
    """A JSON body validated with this model."""
    form: type[BaseModel] | None = None
    """A multipart/form-data body with these parts."""
    content: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    """Other request bodies: media type → schema (e.g. a CSV catalog)."""
    query: type[BaseModel] | None = None
    path: Mapping[str, PathKind] = field(default_factory=dict)
    responses: Mapping[int, type[BaseModel] | str] = field(default_factory=dict)
    """Status → response model, or a media type (text/csv, image/jpeg, text/event-stream)."""
    errors: tuple[int, ...] = ()
    """Error statuses besides those every operation of its kind can answer."""
    description: str = ""


OPERATIONS: dict[Callable[..., Any], Operation] = {}
"""Handler → its operation, filled by ``@operation``."""


def operation(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    content: Mapping[str, dict[str, Any]] | None = None,
    query: type[BaseModel] | None = None,
    path: Mapping[str, PathKind] | None = None,
    responses: Mapping[int, type[BaseModel] | str] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
) -> Callable[[H], H]:
    """Describe a route handler for the OpenAPI document (put it below ``@routes.get``)."""

    def mark(handler: H) -> H:
        OPERATIONS[handler] = Operation(
            summary,
            body,
            form,
            dict(content or {}),
            query,
            dict(path or {}),
            dict(responses or {200: AnyObject}),
            errors,
            description or (handler.__doc__ or "").strip(),
        )
        return handler

    return mark


def _models(operations: list[Operation]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody, "AnyObject": AnyObject}
    for op in operations:
        for model in (op.body, op.form, *op.responses.values()):
            if isinstance(model, type):
                found.setdefault(model.__name__, model)
    return list(found.values())


def _path_params(path: str, op: Operation) -> list[dict[str, Any]]:
    names = re.findall(r"\{([^}:]+)(?::[^}]*)?\}", path)
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PATH_SCHEMAS[op.path.get(name, "any")],
        }
        for name in names
    ]


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _security(path: str, method: str) -> list[dict[str, list[str]]]:
    from scanstation.web.ui_auth import open_path

    if open_path(path, method):
        return []
    if method in ("GET", "HEAD", "OPTIONS"):
        return [{"apiKey": []}, {"sessionCookie": []}]
    return [
        {"apiKey": []},
        {"sessionCookie": [], "csrfHeader": []},
        {"sessionCookie": [], "djangoCsrfHeader": []},
    ]


def _error_statuses(path: str, method: str, op: Operation) -> list[int]:
    statuses = {403, *op.errors}  # the Host allowlist answers 403 on every route
    if _security(path, method):
        statuses.add(401)
    if op.body or op.form or op.content:
        statuses |= {400, 408, 413, 415, 422}
    if op.query:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    if method not in ("GET", "HEAD"):
        statuses.add(503)  # a full disk refuses writes
    return sorted(statuses)


def _media(value: type[BaseModel] | str, refs: dict[str, Any]) -> dict[str, Any]:
    if value == "*/*":
        return {value: {"schema": {}}}  # a route without @operation: shape not documented
    if isinstance(value, str):
        binary = value.startswith(("image/", "multipart/"))
        return {value: {"schema": {"type": "string", **({"format": "binary"} if binary else {})}}}
    return {"application/json": {"schema": refs[value.__name__]}}


def _operation_id(path: str, method: str) -> str:
    short = path.removeprefix(API_BASE)
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", short).rstrip("_")


_LINKED = {
    "SessionOut": ("/sessions/{id}", "$response.body#/public_id"),
    "CaptureOut": ("/captures/{id}", "$response.body#/public_id"),
    "ProposalList": ("/proposals/{id}", "$response.body#/results/0/public_id"),
}
"""Responses that name a resource: links to every operation on it (OpenAPI links, so a
client, and schemathesis, can follow a created session or capture to what it offers)."""


def _add_links(paths: dict[str, dict[str, Any]], ops: Mapping[tuple[str, str], Operation]) -> None:
    for (path, method), op in ops.items():
        for status, answer in op.responses.items():
            name = getattr(answer, "__name__", "")
            if name not in _LINKED or status >= 300:
                continue
            prefix, expression = _LINKED[name]
            links = {}
            for (target, target_method), _ in ops.items():
                if target.startswith(API_BASE + prefix):
                    target_id = _operation_id(target, target_method)
                    links[target_id] = {
                        "operationId": target_id,
                        "parameters": {"path.id": expression},
                    }
            if name == "SessionOut":
                links["post_captures"] = {
                    "operationId": "post_captures",
                    "requestBody": {
                        "session_public_id": expression,
                        "capture_type": "BARCODE",
                        "raw_value": "4006381333931",
                    },
                }
            if links:
                paths[path][method.lower()]["responses"][str(status)]["links"] = links


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every API route the app serves."""
    routes: list[tuple[str, str, Callable[..., Any]]] = []
    for resource in app.router.resources():
        path = resource.canonical
        if not (path.startswith((API_BASE, "/auth/")) or path == "/healthz"):
            continue
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            routes.append((path, route.method, route.handler))
    default = Operation(
        "",
        responses={200: "*/*"},
        description="Its answer is described in docs/api.md (no @operation on its handler yet).",
    )
    ops = {(p, m): OPERATIONS.get(h, default) for p, m, h in routes}
    models = _models(list(ops.values()))
    keyed, defs = models_json_schema(
        [(m, "serialization" if issubclass(m, Out) else "validation") for m in models],
        ref_template="#/components/schemas/{model}",
    )
    refs = {model.__name__: schema for (model, _), schema in keyed.items()}
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), op in ops.items():
        item: dict[str, Any] = {
            "operationId": _operation_id(path, method),
            "summary": op.summary or f"{method} {path}",
            "security": _security(path, method),
            "responses": {},
        }
        if op.description:
            item["description"] = op.description
        params = _path_params(path, op) + (_query_params(op.query) if op.query else [])
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[op.body.__name__]}},
            }
        elif op.form is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": refs[op.form.__name__]}},
            }
        elif op.content:
            item["requestBody"] = {
                "required": True,
                "content": {k: {"schema": v} for k, v in op.content.items()},
            }
        for status, answer in op.responses.items():
            item["responses"][str(status)] = {
                "description": "OK" if status < 300 else str(status),
                "content": _media(answer, refs),
            }
        for status in _error_statuses(path, method, op):
            item["responses"].setdefault(
                str(status),
                {
                    "description": _ERROR_TEXT.get(status, "error"),
                    "content": {"application/json": {"schema": refs["ErrorBody"]}},
                },
            )
        paths.setdefault(path, {})[method.lower()] = item
    _add_links(paths, ops)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanstation API (Closient-compatible)",
            "version": __version__,
            "description": (
                "The scanning station's HTTP API under /scanner/api/v1, field-compatible "
                "with Closient's scanner API. Authenticate with the X-API-Key header, or with "
                "the web UI's sessionid cookie plus its CSRF token (X-CSRF-Token, or Django's "
                "X-CSRFToken echoing the csrftoken cookie) on state-changing requests."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
                "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "djangoCsrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
            },
        },
    }


@dataclass
class DocumentCache:
    """The document, built on the first request (the router is complete by then)."""

    document: dict[str, Any] | None = None


OPENAPI = web.AppKey("openapi", DocumentCache)

routes = web.RouteTableDef()


@routes.get(API_BASE + "/openapi.json")
@operation("This document (OpenAPI 3.1)")
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every route, generated from the handlers' models."""
    cache = request.app[OPENAPI]
    if cache.document is None:
        cache.document = build_document(request.app)
    return web.json_response(cache.document)
