"""``GET /noreads`` and ``GET /noreads/{name}``: the no-read image ring, to view and download."""

from __future__ import annotations

from aiohttp import web

from scanstation.services.noreads import NoReadNotFound
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import NoReadQuery, NoReadRingOut
from scanstation.web.openapi import operation
from scanstation.web.params import query

routes = web.RouteTableDef()


@routes.get(API_BASE + "/noreads")
@operation("The no-read image ring, newest frame first", responses={200: NoReadRingOut})
async def list_noreads(request: web.Request) -> web.Response:
    """The frames the ring keeps (no-reads, and low-quality reads when configured)."""
    ring = services(request).noreads
    entries = await ring.entries() if ring is not None else []
    return web.json_response(
        {
            "enabled": ring is not None,
            "count": len(entries),
            "bytes": sum(e.bytes for e in entries),
            "results": [e.as_json() for e in entries],
        }
    )


@routes.get(API_BASE + "/noreads/{name}")
@operation(
    "One frame of the no-read image ring",
    query=NoReadQuery,
    path={"name": "any"},
    responses={200: "image/*"},
    errors=(404,),
)
async def noread_image(request: web.Request) -> web.StreamResponse:
    """The frame as JPEG (PNG if stored so); ``?download=1`` sends it as an attachment."""
    ring = services(request).noreads
    name = request.match_info["name"]
    if ring is None:
        raise ApiError(404, "the no-read ring is off ([noread_images] enabled = false)")
    try:
        path = ring.path_of(name)
    except NoReadNotFound as exc:
        raise ApiError(404, str(exc)) from None
    disposition = "attachment" if query(request, NoReadQuery).download else "inline"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "image/png" if name.endswith(".png") else "image/jpeg",
            "Content-Disposition": f'{disposition}; filename="{name}"',
            "Cache-Control": "private, max-age=3600",
        },
    )
