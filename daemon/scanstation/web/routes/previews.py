"""Camera previews: the latest frame as JPEG and an MJPEG stream, bounded in streams."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from scanstation.sources.base import FrameStream, Preview
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import StreamQuery
from scanstation.web.openapi import operation
from scanstation.web.params import query
from scanstation.web.routes.live import LIVE

routes = web.RouteTableDef()


MAX_MJPEG_STREAMS = 4
"""Each MJPEG viewer costs bandwidth and wake-ups on the Pi; more get a 429."""


MJPEG_REPEAT_S = 2.0


@dataclasses.dataclass
class Previews:
    """Source name → the source, for the sources that offer a camera preview."""

    sources: dict[str, Preview] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, sources: Mapping[str, object]) -> Previews:
        """The previews among ``sources`` (the others have none)."""
        return cls({name: s for name, s in sources.items() if isinstance(s, Preview)})


PREVIEWS = web.AppKey("previews", Previews)


# ---- camera preview -----------------------------------------------------------------------


def preview_source(app: web.Application | None, name: str) -> Preview | None:
    """The named source's preview, or None when it has none (or there is no such source)."""
    return app[PREVIEWS].sources.get(name) if app is not None else None


def _require_preview(request: web.Request) -> Preview:
    svc = services(request)
    name = request.match_info["name"]
    source = preview_source(request.app, name)
    if source is None and name not in svc.sources:
        raise ApiError(404, f"there is no source named {name!r}", field="name")
    if source is None:
        kind = svc.sources[name].kind if name in svc.sources else "this"
        raise ApiError(409, f"source {name!r} ({kind}) has no camera preview", field="name")
    return source


async def _latest_jpeg(source: Preview) -> bytes | None:
    latest = source.latest_jpeg
    if inspect.iscoroutinefunction(latest):
        value = await latest()
    else:
        value = await asyncio.to_thread(latest)  # JPEG encoding takes milliseconds
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and value else None


@routes.get(API_BASE + "/sources/{name}/snapshot.jpg")
@operation(
    "The camera's newest frame",
    path={"name": "name"},
    responses={200: "image/jpeg"},
    errors=(409,),
)
async def snapshot(request: web.Request) -> web.Response:
    frame = await _latest_jpeg(_require_preview(request))
    if frame is None:
        raise ApiError(
            409, f"source {request.match_info['name']!r} has no frame yet; try again shortly"
        )
    return web.Response(
        body=bytes(frame), content_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )


async def _frames(source: Preview, fps: int, closing: asyncio.Event) -> AsyncIterator[bytes]:
    """New frames at most ``fps`` a second: the source's own ``mjpeg_frames`` when it has
    one, else its newest JPEG polled (a still scene re-sent every ``MJPEG_REPEAT_S``)."""
    if isinstance(source, FrameStream):
        async for frame in source.mjpeg_frames(max_fps=float(fps)):
            if closing.is_set():
                return
            yield bytes(frame)
        return
    last: bytes | None = None
    latest: bytes | None
    sent_at = 0.0
    while not closing.is_set():
        latest = await _latest_jpeg(source)
        now = time.monotonic()
        if latest is not None and (latest is not last or now - sent_at > MJPEG_REPEAT_S):
            last, sent_at = latest, now
            yield latest
        await asyncio.sleep(1 / fps)


@routes.get(API_BASE + "/sources/{name}/stream.mjpg")
@operation(
    "The camera's preview stream (MJPEG)",
    path={"name": "name"},
    query=StreamQuery,
    responses={200: "multipart/x-mixed-replace"},
    errors=(409, 429),
)
async def mjpeg_stream(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace of the source's newest JPEG, at most ``fps`` a second."""
    source = _require_preview(request)
    fps = query(request, StreamQuery).fps
    if request.method == "HEAD":  # the headers alone; a stream would never end
        return web.Response(
            headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store",
            }
        )
    live = request.app[LIVE]
    if live.mjpeg_viewers >= MAX_MJPEG_STREAMS:
        raise ApiError(429, f"{MAX_MJPEG_STREAMS} camera previews are already open")
    live.mjpeg_viewers += 1
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        await response.write(b"--frame\r\n")
        async for frame in _frames(source, fps, live.closing):
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
            # The closing boundary goes out with the frame: browsers show a part only once
            # they see the boundary after it.
            await response.write(head.encode() + frame + b"\r\n--frame\r\n")
        return response
    except ConnectionResetError:  # the viewer went away
        return web.StreamResponse()
    finally:
        live.mjpeg_viewers -= 1
