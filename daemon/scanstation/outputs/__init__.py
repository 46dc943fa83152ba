"""Outputs: hand every read to the POS, the WMS or a PLC (keyboard gadget, serial, webhook).

Wiring (app.py)::

    outputs = Outputs(config, store, reject=gpio_reject, on_verdict=read_stats.on_capture)
    pipeline.destinations = outputs.destinations   # webhook rows, in the terminal commit
    pipeline.on_finished.append(outputs.on_capture) # keyboard and serial, right after it
    tasks.create_task(outputs.run())                # writers and webhook drainers

A finished capture first meets the global match rules (``[match]``), then each output's
filter and match rules. A read that fails match rules set to ``on_mismatch = "reject"``
goes to no output: the reject callback fires (the conveyor's reject output) and an
``alerts`` (or ``noreads``) event is queued for MQTT instead. Every fresh capture's verdict
(rejected or not) goes to ``on_verdict``: the read-rate statistics count a rejected code as a
rejected window, never as a good read (a capture finished more than ``STALE_S`` after its
read is neither rejected nor counted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scanstation.barcode.format import FormatFields
from scanstation.barcode.match import CompiledRules, compile_rules
from scanstation.config import (
    Config,
    KeyboardGadgetOutputConfig,
    MatchRules,
    SerialOutputConfig,
    WebhookOutputConfig,
    unique_output_names,
)
from scanstation.model import Capture
from scanstation.outputs.base import LiveSink, Sink, WrittenListener
from scanstation.outputs.gadget import KeyboardGadgetSink
from scanstation.outputs.serial_out import SerialSink
from scanstation.outputs.webhook import WebhookSink
from scanstation.payloads import iso
from scanstation.store import Store

__all__ = ["Outputs", "RejectCallback", "VerdictListener"]

log = logging.getLogger(__name__)

RejectCallback = Callable[[Capture, str], Awaitable[None] | None]
"""Called once for a read the match rules reject, with the reason (drives the reject output)."""
VerdictListener = Callable[[Capture, bool], None]
"""Told of every fresh finished capture and whether the match rules rejected it (read-rate
statistics count a rejected code as a rejected window, not a good read)."""

STALE_S = 30.0
"""A capture finished this long after its read (resumed after a restart, retried) is not
rejected or alerted any more: the item has left the lane."""


class Outputs:
    """Every configured ``[[outputs]]`` entry, behind three hooks for the pipeline."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        reject: RejectCallback | None = None,
        match: MatchRules | None = None,
        clock: Callable[[], float] = time.time,
        on_verdict: VerdictListener | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.reject = reject
        self.on_verdict = on_verdict
        self.clock = clock
        # Global rules: passed in, or a [match] table once Config has one.
        rules: MatchRules | None = match if match is not None else getattr(config, "match", None)
        self.rules: CompiledRules | None = compile_rules(rules) if rules is not None else None
        self.global_rules = rules
        unique_output_names(config.outputs)  # two drainers on one destination would double-post
        self.live: list[LiveSink] = []
        self.webhooks: list[WebhookSink] = []
        for output in config.outputs:
            if not output.enabled:
                continue
            if isinstance(output, KeyboardGadgetOutputConfig):
                self.live.append(KeyboardGadgetSink(output))
            elif isinstance(output, SerialOutputConfig):
                self.live.append(SerialSink(output))
            elif isinstance(output, WebhookOutputConfig):
                self.webhooks.append(WebhookSink(output, store))
        self.rejected = 0
        """Reads the match rules rejected since start."""
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def sinks(self) -> list[Sink]:
        return [*self.live, *self.webhooks]

    def add_listener(self, listener: WrittenListener) -> None:
        """Call ``listener(output name, capture, seconds since commit)`` after each live write."""
        for sink in self.live:
            sink.listeners.append(listener)

    # ---- the match rules ------------------------------------------------------------------

    def _global_mismatch(self, capture: Capture) -> str:
        # Only reads are matched: a product photo or a no-read frame has no code to compare.
        if self.rules is None or self.rules.empty or not capture.raw_value:
            return ""
        return self.rules.reason(FormatFields.from_capture(capture), key=capture.id)

    # ---- Pipeline.destinations (inside the terminal transaction: pure, quick) -------------

    def destinations(self, capture: Capture) -> list[str]:
        """The webhook destinations whose filter and match rules accept ``capture``."""
        if not self.webhooks:
            return []
        try:
            if self._global_mismatch(capture):
                return []
            return [
                sink.destination
                for sink in self.webhooks
                if sink.wants(capture) and not sink.mismatch(capture)
            ]
        except Exception:  # a bug here must never roll back the terminal commit
            log.exception("choosing webhook destinations for %s failed", capture.public_id)
            return []

    # ---- Pipeline.on_finished (right after the commit) ------------------------------------

    async def on_capture(self, capture: Capture) -> None:
        """Hand a finished capture to the live outputs, or reject it. Never raises: a
        failing output must not stall the pipeline that calls this."""
        try:
            await self._hand_on(capture)
        except Exception:
            log.exception("handing %s to the outputs failed", capture.public_id)

    async def _hand_on(self, capture: Capture) -> None:
        committed_at = time.perf_counter()
        fresh = capture.revision <= 1 and self.clock() - capture.created <= STALE_S
        refusals: list[tuple[str, MatchRules]] = []
        if (reason := self._global_mismatch(capture)) and self.global_rules is not None:
            refusals.append((reason, self.global_rules))
            for sink in self.sinks:
                if sink.wants(capture):
                    sink.counters.skipped += 1
        else:
            for sink in self.sinks:
                if not sink.wants(capture):
                    continue
                if why := sink.mismatch(capture):
                    sink.counters.skipped += 1
                    if sink.config.match.on_mismatch == "reject":
                        refusals.append((f"{sink.name}: {why}", sink.config.match))
                elif isinstance(sink, LiveSink):
                    if fresh:
                        sink.offer(capture, committed_at)
                    else:
                        sink.counters.skipped += 1  # a retry or a resumed capture: too late
        if fresh and self.on_verdict is not None:
            try:
                self.on_verdict(capture, bool(refusals))
            except Exception:
                log.exception("the verdict listener failed for %s", capture.public_id)
        if refusals and fresh:
            await self._rejected(capture, refusals)

    async def _rejected(self, capture: Capture, refusals: list[tuple[str, MatchRules]]) -> None:
        self.rejected += 1
        reason = "; ".join(why for why, _ in refusals)
        log.info("read %s rejected by the match rules: %s", capture.public_id, reason)
        if self.reject is not None:
            try:
                result = self.reject(capture, reason)
                if result is not None:
                    await result
            except Exception:
                log.exception("the reject callback failed for %s", capture.public_id)
        topic = refusals[0][1].event_topic
        if topic == "none":
            return
        payload = {
            "time": iso(self.clock()),
            "device_id": self.config.device.id,
            "source": capture.source,
            "capture_public_id": capture.public_id,
            "reason": "match",
            "detail": reason,
            "raw_value": capture.raw_value,
            "gtin": capture.gtin,
            "symbology_identifier": capture.symbology_identifier,
            "image_key": capture.uploaded_image_key,
        }
        # Queued now, not awaited: the pipeline must not wait for this commit before its next
        # batch, and the event is written ahead of that batch's rows.
        written: asyncio.Future[Any]
        try:
            written = self.store.queue_outbox_event(topic, payload)
        except asyncio.QueueFull:
            written = asyncio.ensure_future(self.store.add_outbox_event(topic, payload))
        self._tasks.add(written)
        written.add_done_callback(self._event_done)

    def _event_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("queueing the match event failed: %s", task.exception())

    # ---- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every output's writer or drainer until cancelled."""
        if not self.sinks:
            await asyncio.Event().wait()  # nothing to do; stay up like the other stages
        async with asyncio.TaskGroup() as tasks:
            for sink in self.live:
                tasks.create_task(sink.run(), name=f"output-{sink.name}")
            for webhook in self.webhooks:
                tasks.create_task(webhook.run(), name=f"output-{webhook.name}")

    async def idle(self, limit_s: float = 5.0) -> None:
        """Wait until every live output has written what it was given (tests, shutdown)."""

        async def drained() -> None:
            for sink in self.live:
                await sink.queue.join()
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

        await asyncio.wait_for(drained(), limit_s)

    async def status(self) -> list[dict[str, Any]]:
        """One summary per output, for /status and telemetry."""
        out = []
        for sink in self.sinks:
            entry = sink.status()
            if isinstance(sink, WebhookSink):
                depth, oldest = await sink.depth()
                entry["queued"] = depth
                entry["oldest_age_s"] = round(self.clock() - oldest, 1) if oldest else None
            out.append(entry)
        return out
