"""Image retention: stored images older than [storage] image_retention_days are deleted."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def prune_images(root: Path, days: int, now: float | None = None) -> int:
    """Delete image files under ``root`` older than ``days``; returns how many went.

    The captures keep their ``uploaded_image_key``; the image endpoint then answers 404.
    """
    if days <= 0 or not root.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - days * 86400
    removed = 0
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError as exc:  # a file that vanished or cannot be removed: go on
            log.warning("could not prune %s: %s", path, exc)
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


async def retention_loop(root: Path, days: int, interval_s: float = 3600) -> None:
    while True:
        removed = await asyncio.to_thread(prune_images, root, days)
        if removed:
            log.info("image retention: removed %d images older than %d days", removed, days)
        await asyncio.sleep(interval_s)
