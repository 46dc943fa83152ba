"""Uploads the no-read ring's frames (services/noreads.py) to ``[noread_images] upload_url``.

The ring queues one outbox row per kept frame under destination ``webhook:noread-upload``;
this drainer is a webhook output (the same order, retries with backoff, dead letters and
optional HMAC signature) whose request body is the frame itself, ``image/jpeg``, with the
frame's facts in headers. A frame the ring dropped before it was uploaded (the ring was full
for a long outage) cannot be sent any more: its row is dead-lettered with that reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from scanstation.config import NoReadImagesConfig, WebhookOutputConfig
from scanstation.outputs.webhook import WebhookSink
from scanstation.store import OutboxEvent, Store

NAME = "noread-upload"


class NoReadUploader(WebhookSink):
    """POSTs each queued no-read frame as ``image/jpeg`` (a webhook underneath)."""

    def __init__(self, config: NoReadImagesConfig, directory: Path, store: Store) -> None:
        super().__init__(
            WebhookOutputConfig(
                type="webhook",
                name=NAME,
                url=config.upload_url,
                timeout_s=config.upload_timeout_s,
                hmac_secret_file=config.upload_hmac_secret_file,
            ),
            store,
        )
        self.directory = directory

    def body(self, event: OutboxEvent) -> bytes:
        name = str(json.loads(event.payload).get("name", ""))
        path = self.directory / Path(name).name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ValueError(
                f"frame {name!r} left the no-read ring before it was uploaded"
            ) from None

    def headers(self, event: OutboxEvent, body: bytes) -> dict[str, str]:
        facts = json.loads(event.payload)
        headers = super().headers(event, body)
        headers["Content-Type"] = (
            "image/png" if str(facts.get("name")).endswith(".png") else "image/jpeg"
        )
        headers["X-Scanstation-Source"] = str(facts.get("source", ""))
        headers["X-Scanstation-Capture"] = str(facts.get("capture_public_id", ""))
        headers["X-Scanstation-Time"] = str(facts.get("time", ""))
        headers["X-Scanstation-Reason"] = str(facts.get("reason", ""))
        return headers
