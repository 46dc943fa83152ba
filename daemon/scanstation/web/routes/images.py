"""``GET /captures/{id}/image``: a capture's stored photo, or a thumbnail of it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from aiohttp import web

from scanstation.store import review
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import ImageQuery
from scanstation.web.openapi import operation
from scanstation.web.params import query

routes = web.RouteTableDef()


IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}


# ---- stored images ------------------------------------------------------------------------


def _thumbnail(path: Path, width: int) -> bytes:
    from PIL import Image  # the first thumbnail imports Pillow, not start-up (~2 MB)

    with Image.open(path, formats=["JPEG", "PNG", "WEBP"]) as image:
        image.thumbnail((width, width * 4))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=80)
        return out.getvalue()


@routes.get(API_BASE + "/captures/{id}/image")
@operation(
    "A capture's stored image, or a thumbnail of it",
    query=ImageQuery,
    responses={200: "image/*"},
)
async def capture_image(request: web.Request) -> web.StreamResponse:
    """The capture's stored image; ``?width=N`` gives a JPEG thumbnail N pixels wide."""
    svc = services(request)
    public_id = request.match_info["id"]
    _, _, _, key = await review.capture_ids(svc.store, public_id)
    if not key:
        raise ApiError(404, f"capture {public_id!r} has no stored image")
    root = svc.config.images_path.resolve()
    path = (root / key).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in IMAGE_TYPES:
        raise ApiError(404, f"capture {public_id!r} has no readable image")
    if not path.is_file():
        raise ApiError(404, f"the image of capture {public_id!r} is gone (retention?)")
    cache = {"Cache-Control": "private, max-age=86400, immutable"}  # keys are never reused
    width = query(request, ImageQuery).width
    if width is not None:
        try:
            data = await asyncio.to_thread(_thumbnail, path, width)
        except OSError as exc:
            raise ApiError(
                404, f"the image of capture {public_id!r} cannot be read: {exc}"
            ) from None
        return web.Response(body=data, content_type="image/jpeg", headers=cache)
    return web.FileResponse(
        path, headers={**cache, "Content-Type": IMAGE_TYPES[path.suffix.lower()]}
    )
