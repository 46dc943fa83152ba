"""Connection limits for the HTTP server: a cap with eviction, quiet accept errors, fd limit.

aiohttp closes a connection that has no complete request within its keep-alive timeout
(counted from the connection's start, so a client trickling headers is cut off too); the
daemon sets that to ``[http] header_timeout_s``. On top of it, ``limit_connections`` caps
open connections at ``[http] max_connections``: when a new one would pass the cap, the
longest-idle connection (no request in progress) is closed, so a crowd of slow clients can
never lock out /healthz; if every connection is busy, the newcomer is closed.

Called on the event loop thread only.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

FD_HEADROOM = 128
"""File descriptors kept for the database, images, the broker and logs besides connections."""

QUIET_INTERVAL_S = 10.0
"""Accept errors (EMFILE and friends) are logged at most once per this interval, with a count."""

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionLimiter:
    """Tracks the server's connections in age order and evicts to stay under the cap."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.evicted = 0
        """Idle connections closed to make room since start."""
        self.refused = 0
        """New connections closed because every slot was busy since start."""
        self._open: OrderedDict[RequestHandler, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, handler: RequestHandler) -> None:
        self._open[handler] = time.monotonic()
        if len(self._open) <= self.max_connections:
            return
        for old in self._open:
            if old is not handler and not getattr(old, "_request_in_progress", False):
                self.evicted += 1
                self._open.pop(old)
                old.force_close()
                return
        self.refused += 1
        self._open.pop(handler)
        handler.force_close()

    def closed(self, handler: RequestHandler) -> None:
        self._open.pop(handler, None)


def limit_connections(server: web.Server, max_connections: int) -> ConnectionLimiter:
    """Hook a ``ConnectionLimiter`` into an aiohttp low-level server (``runner.server``)."""
    limiter = ConnectionLimiter(max_connections)
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        made(handler, transport)
        limiter.opened(handler)

    def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
        limiter.closed(handler)
        lost(handler, exc)

    # RequestHandler calls these on its manager: the instance attributes take precedence.
    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]
    return limiter


class QuietAcceptErrors:
    """An event-loop exception handler that turns a flood of accept errors (out of file
    descriptors) into one log line per interval with a count; the rest goes on as before."""

    def __init__(self, interval_s: float = QUIET_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.count = 0
        """Accept errors since start."""
        self._pending = 0
        self._last = 0.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
            loop.default_exception_handler(context)
            return
        self.count += 1
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            log.error(
                "HTTP: %d connection(s) could not be accepted since the last report (%d in "
                "all): %s; raise LimitNOFILE or lower [http] max_connections",
                self._pending,
                self.count,
                exc.strerror,
            )
            self._pending, self._last = 0, now


def raise_fd_limit(max_connections: int) -> str:
    """Lift the soft RLIMIT_NOFILE to the hard limit; a warning ("" if none) when it is still
    too low for ``max_connections`` plus the daemon's own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, max(wanted, 4096))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (
            f"the open-file limit is {soft} (hard {hard}), below the {wanted} that "
            f"[http] max_connections = {max_connections} needs; set LimitNOFILE=8192 in the "
            "unit (systemd/scanstation.service has it) or lower max_connections"
        )
    return ""
