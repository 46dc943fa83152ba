"""HTTP webhook output: POST each capture event as JSON, from the durable outbox, until a 2xx.

The event of every capture the webhook's filter and match rules accept is written to the
outbox under destination ``webhook:<name>`` in the same transaction as the capture's
terminal status (``Outputs.destinations``), so nothing is lost while the target is down or
the station restarts. This drainer posts the rows in order, deletes each on a 2xx, and on a
failure pauses with jittered exponential backoff and tries the same row again. A capture the
target refuses with a 4xx ``dead_letter_after`` times in a row moves to ``outbox_dead`` so
it cannot block the queue for ever. Delivery is at least once: receivers deduplicate by
``event_id`` (body field and ``X-Scanstation-Event-Id`` header).

With ``hmac_secret_file`` every request carries ``X-Scanstation-Timestamp`` (Unix seconds)
and ``X-Scanstation-Signature: sha256=<hex>``, the HMAC-SHA256 of
``timestamp + "." + body`` under the secret (see docs/outputs.md for checking it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from scanstation import __version__
from scanstation.barcode.format import FormatFields
from scanstation.config import WebhookOutputConfig
from scanstation.outputs.base import OutputError, Sink
from scanstation.store import OutboxEvent, Store

log = logging.getLogger(__name__)

BATCH = 50
RESPONSE_TEXT_LIMIT = 200
SIGNATURE_HEADER = "X-Scanstation-Signature"
TIMESTAMP_HEADER = "X-Scanstation-Timestamp"
EVENT_ID_HEADER = "X-Scanstation-Event-Id"
SECRET_RETRY_S = 30.0


class WebhookError(OutputError):
    """A webhook that cannot run (unreadable secret); the message names the file."""


def destination(name: str) -> str:
    """The outbox destination of the webhook output called ``name``."""
    return f"webhook:{name}"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Scanstation-Signature value for ``body`` sent at ``timestamp``.

    >>> sign(b"s3cret", "1700000000", b'{"a":1}')
    'sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940'
    """
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise WebhookError(
            f"webhook hmac_secret_file {str(path)!r} cannot be read: {exc.strerror}"
        ) from None
    if not secret:
        raise WebhookError(f"webhook hmac_secret_file {str(path)!r} is empty")
    return secret


def backoff(failures: int, initial: float, longest: float, rand: Callable[[], float]) -> float:
    """Pause after ``failures`` failures in a row: doubling from ``initial``, capped, jittered.

    Half of the pause is fixed and half random, so stations that lost the same target at the
    same moment do not all come back at once.

    >>> backoff(1, 1.0, 60.0, lambda: 0.0), backoff(3, 1.0, 60.0, lambda: 1.0)
    (0.5, 4.0)
    >>> backoff(20, 1.0, 60.0, lambda: 1.0)
    60.0
    """
    ceiling = min(longest, initial * 2 ** min(failures - 1, 30))
    return float(ceiling / 2 + ceiling / 2 * rand())


class WebhookSink(Sink):
    """A ``[[outputs]] type = "webhook"``: drains its outbox destination to the URL."""

    config: WebhookOutputConfig

    def __init__(
        self,
        config: WebhookOutputConfig,
        store: Store,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(config)
        self.store = store
        self.destination = destination(self.name)
        self.secret: bytes | None = None
        """The HMAC key; with hmac_secret_file set, nothing is posted until it is read."""
        self.rand = rand
        self.failures = 0
        """Failed attempts in a row (any row); sets the backoff."""
        self._refusals: dict[str, int] = {}
        """event_id -> 4xx answers in a row."""
        self._text = config.mode != "template" or bool(config.format)

    def body(self, event: OutboxEvent) -> bytes:
        """What is posted: the capture event, plus ``text`` when a format is configured."""
        if not self._text:
            return event.payload.encode()
        payload: dict[str, Any] = json.loads(event.payload)
        payload["text"] = self.formatter.text(FormatFields.from_event(payload))
        return json.dumps(payload).encode()

    def headers(self, event: OutboxEvent, body: bytes) -> dict[str, str]:
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": f"scanstation/{__version__}",
            EVENT_ID_HEADER: event.event_id,
        }
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return headers

    async def _load_secret(self) -> None:
        """Read hmac_secret_file, retrying while it is unreadable: events wait in the outbox
        (never posted unsigned), and the station keeps serving its other outputs."""
        path = self.config.hmac_secret_file
        while path is not None and self.secret is None:
            try:
                self.secret = read_secret(path)
            except WebhookError as exc:
                self.state = "secret unreadable"
                self.fail(f"{exc}; holding events until it can be read")
                await asyncio.sleep(SECRET_RETRY_S)

    async def run(self) -> None:
        """Post queued events until cancelled."""
        await self._load_secret()
        signal = self.store.outbox_signal(self.destination)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        connector = aiohttp.TCPConnector(ssl=self.config.verify_tls)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            self.state = "ok"
            while True:
                signal.clear()  # before reading: a commit after the read sets it again
                batch = await self.store.outbox_batch(0, BATCH, destination=self.destination)
                if not batch:
                    await signal.wait()
                    continue
                delivered: list[int] = []
                failed = False
                for event in batch:
                    if not await self.deliver(http, event, delivered):
                        failed = True
                        break
                if delivered:
                    # One commit for the batch: a crash before it only resends (at least once).
                    await self.store.outbox_delete(delivered, self.destination)
                if failed:
                    await asyncio.sleep(
                        backoff(
                            self.failures,
                            self.config.retry_initial_s,
                            self.config.retry_max_s,
                            self.rand,
                        )
                    )

    async def deliver(
        self, http: aiohttp.ClientSession, event: OutboxEvent, delivered: list[int]
    ) -> bool:
        """POST one event; True when it is done with (delivered: id added to ``delivered``,
        or dead-lettered)."""
        try:
            body = self.body(event)
        except (ValueError, TypeError) as exc:  # a payload that is not a capture event
            await self._dead_letter(event, f"cannot build the request body: {exc}")
            return True
        try:
            async with http.post(
                self.config.url,
                data=body,
                headers=self.headers(event, body),
                allow_redirects=False,
            ) as response:
                status = response.status
                text = (await response.text(errors="replace"))[:RESPONSE_TEXT_LIMIT]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._failed(event, f"POST {self.config.url}: {type(exc).__name__}: {exc}")
            self.state = "target down"
            return False
        if 200 <= status < 300:
            delivered.append(event.id)
            self._refusals.pop(event.event_id, None)
            self.failures = 0
            self.counters.sent += 1
            self.state = "ok"
            return True
        reason = f"POST {self.config.url}: HTTP {status} {text.strip()}".strip()
        if 400 <= status < 500 and status not in (408, 429):
            refused = self._refusals.get(event.event_id, 0) + 1
            self._refusals[event.event_id] = refused
            if refused >= self.config.dead_letter_after:
                self._refusals.pop(event.event_id, None)
                await self._dead_letter(event, f"{reason} ({refused} times in a row)")
                self.failures = 0
                return True
        self.state = "target refusing" if status < 500 else "target failing"
        await self._failed(event, reason)
        return False

    async def _failed(self, event: OutboxEvent, reason: str) -> None:
        self.failures += 1
        self.fail(reason)
        await self.store.outbox_refused(event.id, reason)

    async def _dead_letter(self, event: OutboxEvent, reason: str) -> None:
        self.counters.dead_lettered += 1
        self.fail(f"event {event.event_id} moved to the dead-letter table: {reason}")
        await self.store.outbox_dead_letter(event.id, reason)

    async def depth(self) -> tuple[int, float | None]:
        """(events waiting, created time of the oldest) for this webhook."""
        return await self.store.outbox_stats(self.destination)
