"""The no-read image ring: the last no-read (and low-quality) frames, for a person to look at.

When a lane starts missing labels, the first question is "what did the camera see?". Every
finished capture that is a no-read (or a read scoring below ``low_quality_below``) has its
frame copied into ``<storage>/noreads/``, named ``<ms since epoch>-<source>-<capture id>.jpg``.
The ring keeps at most ``max_count`` frames and ``max_mb`` megabytes, and the disk keeps
``reserve_free_mb`` free: the oldest frames go first, and no frame is kept while the disk is
below the reserve. With ``upload_url``, each kept frame is also queued in the durable outbox
(destination ``webhook:noread-upload``) for the uploader in outputs/ to POST.

File work runs in a worker thread; ``on_capture`` is called on the event loop after the
capture's terminal commit (``Pipeline.on_finished``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanstation.config import NoReadImagesConfig
from scanstation.model import Capture
from scanstation.payloads import iso
from scanstation.services import ServiceError
from scanstation.store import Store

log = logging.getLogger(__name__)

UPLOAD_DESTINATION = "webhook:noread-upload"
UPLOAD_TOPIC = "noread_images"
NAME = re.compile(
    r"^(?P<ms>\d{13})-(?P<source>[A-Za-z0-9_.-]{1,40})-(?P<capture>[A-Za-z0-9]{22})\.(?:jpg|png)$"
)
MB = 1024 * 1024


class NoReadNotFound(ServiceError, LookupError):
    """No frame of that name in the ring."""


@dataclass(frozen=True, slots=True)
class RingEntry:
    """One kept frame."""

    name: str
    source: str
    capture_public_id: str
    time: float
    """When the capture was created (seconds since the epoch)."""
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "capture_public_id": self.capture_public_id,
            "time": iso(self.time),
            "bytes": self.bytes,
        }


class NoReadRing:
    """The ring of no-read frames in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        config: NoReadImagesConfig,
        directory: Path,
        images: Path,
        store: Store | None = None,
        *,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.images = images
        self.store = store
        self.free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self.kept = 0
        self.skipped_low_disk = 0

    def wants(self, capture: Capture) -> bool:
        """A no-read frame, or a read below the quality threshold, that has an image."""
        if not capture.uploaded_image_key:
            return False
        if capture.metadata.get("noread") in ("true", True):
            return True
        threshold = self.config.low_quality_below
        score = capture.metadata.get("quality_score")
        try:
            return threshold > 0 and score is not None and float(score) < threshold
        except (TypeError, ValueError):
            return False

    async def on_capture(self, capture: Capture) -> None:
        """Keep the frame of ``capture`` if it is one the ring wants; never raises."""
        if not self.config.enabled or not self.wants(capture):
            return
        try:
            entry = await asyncio.to_thread(self._keep, capture)
        except OSError as exc:
            log.warning("no-read ring: could not keep %s: %s", capture.public_id, exc)
            return
        if entry is None or self.store is None or not self.config.upload_url:
            return
        payload = {
            "name": entry.name,
            "source": entry.source,
            "capture_public_id": entry.capture_public_id,
            "time": iso(entry.time),
            "reason": "noread" if capture.metadata.get("noread") else "low_quality",
            "quality_score": capture.metadata.get("quality_score"),
        }
        self.store.queue_outbox_event(UPLOAD_TOPIC, payload, UPLOAD_DESTINATION)

    def _keep(self, capture: Capture) -> RingEntry | None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        source = self.images / capture.uploaded_image_key
        size = source.stat().st_size
        self._trim(room_for=size)
        if self.free_bytes(self.directory) - size < self.config.reserve_free_mb * MB:
            self.skipped_low_disk += 1
            log.warning(
                "no-read ring: the disk is below reserve_free_mb = %g; frame of %s not kept",
                self.config.reserve_free_mb,
                capture.public_id,
            )
            return None
        suffix = ".png" if source.suffix == ".png" else ".jpg"
        ms = int(capture.created * 1000)
        name = f"{ms:013d}-{capture.source}-{capture.public_id}{suffix}"
        target = self.directory / name
        tmp = target.with_suffix(".part")
        try:
            os.link(source, tmp)  # same file system: no extra bytes until retention drops one
        except OSError:
            shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        self.kept += 1
        return RingEntry(name, capture.source, capture.public_id, capture.created, size)

    def _trim(self, room_for: int = 0) -> None:
        """Drop the oldest frames until count, bytes and free space allow one more."""
        entries = sorted(self._scan(), key=lambda e: e.name)
        total = sum(e.bytes for e in entries)
        limit = self.config.max_mb * MB
        reserve = self.config.reserve_free_mb * MB
        while entries and (
            len(entries) + 1 > self.config.max_count
            or total + room_for > limit
            or self.free_bytes(self.directory) - room_for < reserve
        ):
            oldest = entries.pop(0)
            total -= oldest.bytes
            (self.directory / oldest.name).unlink(missing_ok=True)

    def _scan(self) -> list[RingEntry]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = NAME.match(path.name)
            if match is None:
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            found.append(
                RingEntry(
                    path.name,
                    match["source"],
                    match["capture"],
                    int(match["ms"]) / 1000,
                    size,
                )
            )
        return found

    async def entries(self) -> list[RingEntry]:
        """The kept frames, newest first."""
        found = await asyncio.to_thread(self._scan)
        return sorted(found, key=lambda e: e.name, reverse=True)

    def path_of(self, name: str) -> Path:
        """The file of the frame ``name``; NoReadNotFound for anything else (no traversal)."""
        if NAME.match(name) is None or not (self.directory / name).is_file():
            raise NoReadNotFound(f"no no-read frame named {name!r} in the ring")
        return self.directory / name


__all__ = ["UPLOAD_DESTINATION", "NoReadNotFound", "NoReadRing", "RingEntry"]
