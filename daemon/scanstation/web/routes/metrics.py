"""``GET /metrics``: the station's counters in the Prometheus text format, by prometheus-client
(web/exposition.py), which is imported by the first scrape rather than at start-up (~2 MB
resident that a station nobody scrapes does not need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from scanstation.web.context import API_BASE, services

if TYPE_CHECKING:
    from scanstation.web.exposition import Exposition

routes = web.RouteTableDef()


class _AppExposition:
    """The app's exposition (its own registry and collector), made by the first scrape."""

    def __init__(self) -> None:
        self.made: Exposition | None = None

    def get(self) -> Exposition:
        if self.made is None:
            from scanstation.web.exposition import Exposition

            self.made = Exposition.new()
        return self.made


EXPOSITION = web.AppKey("metrics_exposition", _AppExposition)


def setup(app: web.Application) -> None:
    app[EXPOSITION] = _AppExposition()


@routes.get(API_BASE + "/metrics")
async def metrics(request: web.Request) -> web.Response:
    from scanstation.web.exposition import CONTENT_TYPE, Snapshot

    svc = services(request)
    by_status = await svc.store.status_counts()
    depth, oldest = await svc.store.outbox_stats()
    body = request.app[EXPOSITION].get().render(Snapshot(svc, dict(by_status), depth, oldest))
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    )
