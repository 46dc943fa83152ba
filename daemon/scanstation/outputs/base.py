"""What every output shares: its filter, its match rules, its formatting, its counters.

Keyboard and serial outputs are *live*: a read is sent at once, in order, or not at all (a
POS must never receive a scan minutes late, after the cashier has moved on). They queue the
formatted text in memory and a writer task sends it; anything older than ``max_age_ms`` when
its turn comes is dropped and counted. Webhooks are *durable* instead: they drain the outbox.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scanstation.barcode.format import FormatFields, Formatter
from scanstation.barcode.match import CompiledRules, compile_rules
from scanstation.config import (
    KeyboardGadgetOutputConfig,
    OutputFilter,
    SerialOutputConfig,
    WebhookOutputConfig,
    output_name,
)
from scanstation.model import Capture


class OutputError(Exception):
    """The root of the outputs' errors: an output that cannot deliver or is badly configured."""


log = logging.getLogger(__name__)

AnyOutputConfig = KeyboardGadgetOutputConfig | SerialOutputConfig | WebhookOutputConfig
WrittenListener = Callable[[str, Capture, float], None]
"""Called with (output name, capture, seconds from the capture's commit to the write)."""

QUEUE_LIMIT = 1000
LATENCY_WINDOW = 1000


def accepts(rules: OutputFilter, capture: Capture) -> bool:
    """True when ``capture`` passes an output's filter (capture type, status, source)."""
    return (
        capture.capture_type.value in rules.capture_types
        and capture.status.value in rules.statuses
        and (not rules.sources or capture.source in rules.sources)
    )


def formatter_for(config: AnyOutputConfig) -> Formatter:
    return Formatter.build(
        format=config.format,
        mode=config.mode,
        gtin_digits=config.gtin_digits,
        no_gtin=config.no_gtin,
        prefix=config.prefix,
        suffix=config.suffix,
        aim_prefix=config.aim_prefix,
    )


@dataclass
class SinkCounters:
    """What an output did since start (for /status, telemetry and the tests)."""

    sent: int = 0
    """Reads written (keyboard, serial) or posted with a 2xx (webhook)."""
    skipped: int = 0
    """Reads the filter, the match rules or the format left out."""
    dropped: int = 0
    """Reads not sent: too old by their turn, queue full, device missing."""
    failures: int = 0
    """Failed writes or POSTs."""
    dead_lettered: int = 0
    """Webhook events moved to the dead-letter table."""
    last_error: str = ""
    """The latest failure, in words."""
    latencies_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )
    """Capture committed → written, for the latest reads (keyboard, serial)."""


class Sink:
    """One configured output: filter, match rules, formatting and counters."""

    def __init__(self, config: AnyOutputConfig) -> None:
        self.config = config
        self.name = output_name(config)
        self.rules: CompiledRules = compile_rules(config.match)
        self.formatter = formatter_for(config)
        self.counters = SinkCounters()
        self.state = "starting"
        """ok, starting, or what is wrong (device missing, port closed, target down)."""

    def wants(self, capture: Capture) -> bool:
        return accepts(self.config.filter, capture)

    def mismatch(self, capture: Capture) -> str:
        """Why this output's match rules refuse ``capture`` ("" when they accept it)."""
        if self.rules.empty:
            return ""
        return self.rules.reason(FormatFields.from_capture(capture), key=capture.id)

    def fail(self, message: str) -> None:
        self.counters.failures += 1
        if message != self.counters.last_error:
            log.warning("output %s: %s", self.name, message)
        self.counters.last_error = message

    def status(self) -> dict[str, Any]:
        """A JSON-able summary for /status and telemetry."""
        latencies = sorted(self.counters.latencies_ms)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
        return {
            "name": self.name,
            "type": self.config.type,
            "state": self.state,
            "sent": self.counters.sent,
            "skipped": self.counters.skipped,
            "dropped": self.counters.dropped,
            "failures": self.counters.failures,
            "dead_lettered": self.counters.dead_lettered,
            "last_error": self.counters.last_error,
            "latency_p99_ms": round(p99, 3) if p99 is not None else None,
        }


@dataclass(frozen=True, slots=True)
class LiveRead:
    """A formatted read waiting for a live output's writer."""

    capture: Capture
    text: str
    """What to send, prefix and suffix included (no terminator)."""
    committed_at: float
    """time.perf_counter() when the capture's terminal status was committed."""
    remainder: tuple[bytes, ...] = ()
    """Bytes still to write when a direct write was cut short (the device was busy)."""


class LiveSink(Sink):
    """An output that sends reads as they come (keyboard gadget, serial), in order."""

    config: KeyboardGadgetOutputConfig | SerialOutputConfig

    def __init__(self, config: KeyboardGadgetOutputConfig | SerialOutputConfig) -> None:
        super().__init__(config)
        self.queue: asyncio.Queue[LiveRead] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.listeners: list[WrittenListener] = []
        self.busy = False
        """True while the writer task is writing a read (a direct write would overtake it)."""

    @property
    def idle(self) -> bool:
        """Nothing queued or being written: a new read may be written directly, in order."""
        return not self.busy and self.queue.empty()

    def try_now(self, read: LiveRead) -> bool:
        """Write ``read`` straight away if the device takes it without waiting.

        True when the read is dealt with (written, or handed on with a remainder); False to
        queue it for the writer task. Saves the hop to another task: the first key reaches
        the device inside the pipeline's hook, right after the commit.
        """
        return False

    def offer(self, capture: Capture, committed_at: float) -> None:
        """Format ``capture`` and queue it for the writer (never blocks the pipeline)."""
        text = self.formatter.text(FormatFields.from_capture(capture))
        if text is None:
            self.counters.skipped += 1
            return
        read = LiveRead(capture, text, committed_at)
        if self.idle and self.try_now(read):
            return
        if self.queue.full():
            self.counters.dropped += 1
            self.fail(f"{QUEUE_LIMIT} reads waiting: the output is not keeping up; dropping")
            return
        self.queue.put_nowait(read)

    def stale(self, read: LiveRead) -> bool:
        """True when ``read`` waited longer than max_age_ms (it is then dropped, counted)."""
        limit = self.config.max_age_ms / 1000
        if limit and time.perf_counter() - read.committed_at > limit:
            self.counters.dropped += 1
            self.fail(
                f"read {read.capture.public_id} waited over max_age_ms = "
                f"{self.config.max_age_ms}; not sent"
            )
            return True
        return False

    def written(self, read: LiveRead) -> None:
        latency = time.perf_counter() - read.committed_at
        self.counters.sent += 1
        self.counters.latencies_ms.append(latency * 1000)
        self.state = "ok"
        for listener in self.listeners:
            listener(self.name, read.capture, latency)

    async def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
