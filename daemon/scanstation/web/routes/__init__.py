"""The HTTP routes of the Closient-compatible API (SPEC §6), one module per resource.

``setup_routes`` adds every resource's route table to the app, with the state the live stream
and the camera previews keep. Route modules may import services, store (readers), payloads,
model and web's own context/params/errors; never publish, sources' internals or hw.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from scanstation.web import openapi
from scanstation.web.routes import (
    admin,
    captures,
    exports,
    images,
    live,
    metrics,
    noreads,
    previews,
    products,
    proposals,
    sessions,
    settings,
    sources,
    stats,
)
from scanstation.web.routes.health import healthz

RESOURCES = (
    *(sessions, captures, proposals, products, exports, live, stats, metrics, noreads),
    *(admin, settings),
    openapi,
)
"""Route modules in the order their routes are added (previews and images after them)."""


def setup_routes(app: web.Application, camera_previews: Mapping[str, object] | None = None) -> None:
    """Adds /healthz and every API route; keeps the live-stream and preview state on the app."""
    app.router.add_get("/healthz", healthz)
    app[live.LIVE] = live.LiveStreams()
    app[previews.PREVIEWS] = previews.Previews.of(camera_previews or {})
    metrics.setup(app)
    app[openapi.OPENAPI] = openapi.DocumentCache()
    app.on_shutdown.append(live.end_streams)
    for module in (*RESOURCES, sources, previews, images):
        app.router.add_routes(module.routes)
