"""``GET /events``: the live server-sent event stream of capture and session changes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from typing import Any

from aiohttp import web

from scanstation import __version__
from scanstation.bus import Event, EventKind, Subscription
from scanstation.payloads import iso
from scanstation.web.context import API_BASE, services
from scanstation.web.openapi import operation

routes = web.RouteTableDef()


HEARTBEAT_S = 15.0
"""An SSE comment this often keeps proxies and phones from closing an idle stream."""


@dataclasses.dataclass
class LiveStreams:
    """Open event streams and camera viewers, so shutdown can end them cleanly."""

    subscriptions: set[Subscription] = dataclasses.field(default_factory=set)
    closing: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    mjpeg_viewers: int = 0
    stats: tuple[float, dict[str, Any]] | None = None
    """The last /stats answer and when it was made (monotonic seconds)."""


LIVE = web.AppKey("live_streams", LiveStreams)


_SHUTDOWN = Event(EventKind.SHUTDOWN, {})


# ---- live events --------------------------------------------------------------------------


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@routes.get(API_BASE + "/events")
@operation("Live server-sent events", responses={200: "text/event-stream"})
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: capture, session, proposal, product, alert … as they happen."""
    svc = services(request)
    live = request.app[LIVE]
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",
    }
    if request.method == "HEAD":  # the headers alone; a stream would never end
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    with svc.bus.subscribe() as sub:
        live.subscriptions.add(sub)
        try:
            await response.write(b"retry: 3000\n\n")
            await response.write(_sse("hello", {"time": iso(time.time()), "version": __version__}))
            reported = 0
            while not live.closing.is_set():
                try:
                    event = await asyncio.wait_for(sub.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if event is _SHUTDOWN:
                    await response.write(_sse("shutdown", {}))
                    break
                if sub.dropped > reported:
                    # A slow reader lost events: tell it to re-read the lists it shows.
                    await response.write(_sse("dropped", {"count": sub.dropped - reported}))
                    reported = sub.dropped
                await response.write(_sse(event.kind, event.data))
        except ConnectionResetError:  # the reader went away
            return response
        finally:
            live.subscriptions.discard(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def end_streams(app: web.Application) -> None:
    """on_shutdown: wake every event stream and camera viewer so they finish cleanly."""
    live = app[LIVE]
    live.closing.set()
    for sub in list(live.subscriptions):
        if sub.queue.full():
            sub.queue.get_nowait()
        sub.queue.put_nowait(_SHUTDOWN)
