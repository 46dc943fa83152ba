"""``GET /healthz``: the unauthenticated liveness answer for probes and the watchdog."""

from __future__ import annotations

from aiohttp import web

from scanstation import __version__
from scanstation.web.context import services
from scanstation.web.models import HealthOut
from scanstation.web.openapi import operation


@operation("Liveness: the database and the sources", responses={200: HealthOut, 503: HealthOut})
async def healthz(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        db = "ok" if await svc.store.ping() else "error: no answer"
    except Exception as exc:  # the health check reports, it does not raise
        db = f"error: {exc}"
    if db == "ok" and svc.store.full_since is not None:
        db = "error: the disk is full; writes are refused"
    sources = {name: h.state for name, h in svc.sources.items()}
    healthy = db == "ok"
    return web.json_response(
        {
            "status": "ok" if healthy else "degraded",
            "version": __version__,
            "db": db,
            "sources": sources,
        },
        status=200 if healthy else 503,
    )
