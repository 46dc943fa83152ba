"""Sources: the software trigger, camera snapshots and the MJPEG preview stream."""

from __future__ import annotations

from aiohttp import web

from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import Triggered
from scanstation.web.openapi import operation

routes = web.RouteTableDef()


@routes.post(API_BASE + "/sources/{name}/trigger")
@operation(
    "Open a read window on a camera source",
    path={"name": "name"},
    responses={202: Triggered},
    errors=(409,),
)
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
