"""Scan sessions started, ended and expired: the store's change plus its bus announcement.

The HTTP API, MQTT commands, the session button, the pipeline's rolling sessions and the
expiry loop all call these, so every change is announced once, in one shape (the session's
JSON view).
"""

from __future__ import annotations

from typing import Any

from scanstation.bus import EventBus, EventKind
from scanstation.model import CaptureMode, Session
from scanstation.payloads import session_json
from scanstation.store import NotFound, Store


class Sessions:
    """Session operations over one store, announced on one bus."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    def announce(self, session: Session) -> None:
        self.bus.publish(EventKind.SESSION, session_json(session))

    async def start(
        self,
        *,
        capture_mode: CaptureMode,
        metadata: dict[str, Any] | None = None,
        source: str = "",
    ) -> Session:
        """A new ACTIVE session."""
        session = await self.store.create_session(
            capture_mode=capture_mode, metadata=metadata, source=source
        )
        self.announce(session)
        return session

    async def end(self, public_id: str) -> Session:
        """Ends an ACTIVE session (NotFound / Conflict from the store otherwise)."""
        session = await self.store.end_session(public_id)
        self.announce(session)
        return session

    async def end_latest(self) -> Session | None:
        """Ends the newest ACTIVE session; None when there was none."""
        active = await self.store.latest_active_session(None)
        return None if active is None else await self.end(active.public_id)

    async def expire_idle(self, idle_timeout: float) -> list[str]:
        """Marks ACTIVE sessions idle for ``idle_timeout`` seconds EXPIRED; their public ids."""
        expired = await self.store.expire_idle_sessions(idle_timeout)
        for public_id in expired:
            try:
                self.announce(await self.store.get_session(public_id))
            except NotFound:  # deleted meanwhile: nothing left to announce
                continue
        return expired
