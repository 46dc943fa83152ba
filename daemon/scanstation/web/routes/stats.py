"""``GET /stats``: the dashboard's figures (today's counts, sources, MQTT link)."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from scanstation import __version__
from scanstation.health import outbox_report, source_report
from scanstation.payloads import iso
from scanstation.store import review
from scanstation.web.context import API_BASE, Services, services
from scanstation.web.routes.live import LIVE
from scanstation.web.routes.previews import preview_source

routes = web.RouteTableDef()


# ---- dashboard and metrics ----------------------------------------------------------------


def _midnight(timezone: str, now: float) -> float:
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def mqtt_state(svc: Services) -> dict[str, Any]:
    """The MQTT publisher's report (``svc.mqtt.state``, an MqttState) with a one-word
    ``state`` (connected | disconnected | off) and a ``detail`` line for the dashboard."""
    publisher = getattr(svc, "mqtt", None)
    if publisher is None:
        if not svc.config.mqtt.host:
            return {"state": "off", "detail": "no [mqtt] host configured; the outbox keeps events"}
        return {"state": "unknown", "detail": "the MQTT publisher is not running"}
    value: Any = getattr(publisher, "state", None)
    if callable(value):
        value = value()
    if hasattr(value, "as_dict"):
        report = dict(value.as_dict())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        report = dataclasses.asdict(value)
    elif isinstance(value, dict):
        report = dict(value)
    else:
        return {"state": str(value or "unknown")}
    if report.get("enabled") is False:
        word = "off"
    else:
        word = "connected" if report.get("connected") else "disconnected"
    detail = report.get("last_error") if word == "disconnected" else report.get("broker")
    return {**report, "state": word, "detail": str(detail or "")}


def _sources_json(svc: Services, app: web.Application) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            **source_report(h),
            "preview": preview_source(app, name) is not None,
        }
        for name, h in svc.sources.items()
    ]


STATS_TTL_S = 2.0
"""Dashboards on several screens share one /stats computation within this window."""


@routes.get(API_BASE + "/stats")
async def stats(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    if live.stats is not None and time.monotonic() - live.stats[0] < STATS_TTL_S:
        return web.json_response(live.stats[1])
    body = await _stats(request)
    live.stats = (time.monotonic(), body)
    return web.json_response(body)


async def _stats(request: web.Request) -> dict[str, Any]:
    svc = services(request)
    now = time.time()
    figures = await review.dashboard(
        svc.store, midnight=_midnight(svc.config.device.timezone, now), now=now
    )
    depth, oldest = await svc.store.outbox_stats()
    body = dataclasses.asdict(figures)
    body["per_hour"] = [{**h, "hour": iso(h["hour"])} for h in figures.per_hour]
    body.update(
        {
            "time": iso(now),
            "device_id": svc.config.device.id,
            "site": svc.config.device.site,
            "version": __version__,
            "outbox": outbox_report(depth, oldest, now),
            "mqtt": mqtt_state(svc),
            "sources": _sources_json(svc, request.app),
            "pipeline": {
                "created": svc.pipeline.counters.created,
                "finished": svc.pipeline.counters.finished,
                "queued": svc.pipeline.queue.qsize(),
                "last_batch_ms": round(svc.pipeline.counters.last_batch_ms, 2),
            },
            "live_subscribers": svc.bus.subscriber_count,
            "read_rate": svc.read_stats.as_dict(),
        }
    )
    return body
