"""The settings page's API (admin): the form generated from the config model, a preview
(validated, with the diff), apply (written, audited, then a controlled restart of the
daemon) and rollback to the file as it was before the last apply."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from scanstation.config import ConfigError
from scanstation.config import edit as config_edit
from scanstation.config.risks import risky_settings
from scanstation.store import audit
from scanstation.web.context import API_BASE, Services, services
from scanstation.web.errors import ApiError
from scanstation.web.models import ConfigChange
from scanstation.web.openapi import operation
from scanstation.web.params import body
from scanstation.web.permissions import principal

routes = web.RouteTableDef()

RESTART_DELAY_S = 0.5
"""The answer reaches the browser before the daemon stops to restart."""


def _editable(svc: Services) -> Any:
    if svc.config_path is None:
        raise ApiError(
            409,
            "the daemon was started without a config file (built-in defaults); start it with "
            "--config FILE to edit the configuration here",
        )
    return svc.config_path


def _field_of(message: str) -> str:
    m = re.search(r"'([\w.\[\]]+)'", message)
    return m.group(1) if m else "changes"


def _plan(svc: Services, changes: dict[str, Any]) -> config_edit.Plan:
    path = _editable(svc)
    try:
        return config_edit.plan(path, changes)
    except ConfigError as exc:
        raise ApiError(422, str(exc), field=_field_of(str(exc))) from None
    except OSError as exc:
        raise ApiError(409, f"cannot read {path}: {exc.strerror}") from None


def _answer(svc: Services, change: config_edit.Plan) -> dict[str, Any]:
    return {
        "diff": change.diff,
        "base_sha256": config_edit.sha256(change.old_text),
        "sections": config_edit.changed_sections(svc.config, change.config),
        "warnings": risky_settings(change.config),
    }


@routes.get(f"{API_BASE}/config/schema")
@operation("The settings form: sections, fields and values (admin)")
async def config_form(request: web.Request) -> web.Response:
    svc = services(request)
    return web.json_response(
        {
            "file": str(svc.config_path) if svc.config_path else None,
            "editable": svc.config_path is not None and svc.restart is not None,
            "has_previous": config_edit.previous_path(svc.config).is_file(),
            "sections": config_edit.form(svc.config),
        }
    )


@routes.post(f"{API_BASE}/config/preview")
@operation(
    "Preview a configuration change: the diff and what restarts (admin)",
    body=ConfigChange,
    errors=(409,),
)
async def preview(request: web.Request) -> web.Response:
    svc = services(request)
    sent = await body(request, ConfigChange)
    change = await asyncio.to_thread(_plan, svc, sent.changes)
    return web.json_response(await asyncio.to_thread(_answer, svc, change))


async def _write_and_restart(
    request: web.Request, svc: Services, change: config_edit.Plan, action: str
) -> web.Response:
    path = _editable(svc)
    if svc.restart is None:
        raise ApiError(409, "this daemon cannot restart itself; apply the change by hand")
    keep = config_edit.previous_path(svc.config)
    try:
        await asyncio.to_thread(config_edit.apply, path, change, keep)
    except ConfigError as exc:
        raise ApiError(409, str(exc), field="base_sha256") from None
    except OSError as exc:
        raise ApiError(
            409,
            f"cannot write {exc.filename or path}: {exc.strerror}; make the config file "
            "writable by the daemon's user to edit it here",
        ) from None
    answer = await asyncio.to_thread(_answer, svc, change)
    who = principal(request)
    await audit.record(
        svc.store,
        who.name if who else "",
        action,
        target=str(path),
        remote=request.remote or "",
        detail={"diff": change.diff, "sections": answer["sections"]},
    )
    asyncio.get_running_loop().call_later(RESTART_DELAY_S, svc.restart)
    return web.json_response({**answer, "restarting": True})


@routes.post(f"{API_BASE}/config/apply")
@operation(
    "Apply a configuration change and restart in place (admin)",
    body=ConfigChange,
    errors=(409,),
)
async def apply(request: web.Request) -> web.Response:
    svc = services(request)
    sent = await body(request, ConfigChange)
    change = await asyncio.to_thread(_plan, svc, sent.changes)
    if sent.base_sha256 not in (None, config_edit.sha256(change.old_text)):
        raise ApiError(
            409, "the config file changed since the preview; preview again", field="base_sha256"
        )
    if not change.diff:
        raise ApiError(422, "nothing to apply: the file would not change", field="changes")
    return await _write_and_restart(request, svc, change, "config.apply")


@routes.post(f"{API_BASE}/config/rollback")
@operation("Put the previous configuration file back and restart (admin)", errors=(409,))
async def rollback(request: web.Request) -> web.Response:
    svc = services(request)
    path = _editable(svc)
    try:
        change = await asyncio.to_thread(
            config_edit.rollback_plan, path, config_edit.previous_path(svc.config)
        )
    except ConfigError as exc:
        raise ApiError(409, str(exc)) from None
    return await _write_and_restart(request, svc, change, "config.rollback")
