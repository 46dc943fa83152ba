"""In-process event bus: capture and session changes for the live UI stream and feedback.

Each subscriber has a bounded queue; a slow subscriber loses its oldest events (and is told
how many) instead of making memory grow. Durable delivery is the outbox's job, not this.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    """The named events of the bus; the value is the SSE event name the UI listens for."""

    CAPTURE = "capture"
    """A capture was created or changed status (data: the capture's JSON view)."""
    SESSION = "session"
    """A session started, ended or expired (data: the session's JSON view)."""
    NOREAD = "noread"
    """A camera's read window closed without a code (data: the noreads event)."""
    ALERT = "alert"
    """A capture's checks found it expired or recalled (data: capture id and checks)."""
    PRODUCT = "product"
    """A catalog product was created or changed (data: the product's JSON view)."""
    CATALOG = "catalog"
    """Products were imported in bulk (data: {"imported": count})."""
    PROPOSAL = "proposal"
    """An enrichment proposal was reviewed (data: the proposal's JSON view)."""
    SHUTDOWN = "shutdown"
    """The daemon is stopping: live streams end."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[Event]
    dropped: int = 0

    async def get(self) -> Event:
        return await self.queue.get()


@dataclass
class EventBus:
    maxsize: int = 256
    _subscribers: set[Subscription] = field(default_factory=set)

    def publish(self, kind: EventKind, data: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Send an event to every subscriber; ``data`` may be a function that builds it,
        called only when someone listens (the hot path has no subscriber most of the time)."""
        if not self._subscribers:
            return
        event = Event(kind, data() if callable(data) else data)
        for sub in self._subscribers:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        sub = Subscription(asyncio.Queue(self.maxsize))
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
