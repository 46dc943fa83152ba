"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and the watchdog loop.

Written with the socket module alone (no libsystemd, no sdnotify package): the protocol is
one datagram of ``KEY=value`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``. Every
call is a no-op when the variable is unset (a terminal, a test, Docker), and a failure to
notify is logged, never raised: systemd being unreachable must not stop the scanning.

The watchdog pings come from the event loop and only while every health check passes: a
wedged loop, database or publisher stops the pings and systemd restarts the service
(``WatchdogSec=`` + ``Restart=on-failure`` in systemd/scanstation.service).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scanstation.hw import HardwareError


class Pingable(Protocol):
    """What the store check needs of the store: a round trip through its writer."""

    async def ping_writer(self) -> bool: ...


log = logging.getLogger(__name__)


class _NotifyFailures:
    """Failed notifications since start (the first is logged as a warning, the rest as debug)."""

    count = 0


Check = Callable[[], Awaitable[bool]]
"""A health check: True while its part works. A raised exception or a timeout counts as False."""


class NotifyError(HardwareError):
    """A malformed notify socket address or watchdog setting (names the value and the fix)."""


def notify_address(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """The socket address from $NOTIFY_SOCKET, or None when systemd did not ask for notifications.

    A leading '@' names a Linux abstract socket (its first byte is NUL on the wire).

    >>> notify_address({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify/1"})
    b'\\x00/org/freedesktop/systemd1/notify/1'
    >>> notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"})
    '/run/systemd/notify'
    >>> notify_address({}) is None
    True
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if not address.startswith("/"):
        # systemd also allows vsock: addresses; a Pi service never gets one.
        raise NotifyError(
            f"NOTIFY_SOCKET {address!r}: expected an absolute path or an abstract name "
            "starting with '@'"
        )
    return address


def notify(*states: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=…"``) to systemd in one datagram.

    Returns True when the message was sent, False when there is no notify socket or the send
    failed (logged). Never raises for a missing or unreachable systemd.
    """
    for state in states:
        if "=" not in state or "\n" in state:
            raise NotifyError(f"notify state {state!r}: expected one KEY=value line")
    try:
        address = notify_address(environ)
    except NotifyError as exc:
        log.warning("%s", exc)
        return False
    if address is None:
        return False
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # A full receive queue must not stall the event loop: drop this one message.
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as exc:
        # Once loudly, then quietly: the watchdog would repeat it every few seconds.
        level = logging.DEBUG if _NotifyFailures.count else logging.WARNING
        _NotifyFailures.count += 1
        log.log(level, "sd_notify to %r failed: %s", address, exc)
        return False
    return True


def ready(status: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """READY=1 (storage and sources are up), with an optional status line."""
    states = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        states.append(f"STATUS={_one_line(status)}")
    return notify(*states, environ=environ)


def status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """STATUS=…: the line `systemctl status scanstation` shows."""
    return notify(f"STATUS={_one_line(text)}", environ=environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    """STOPPING=1: the clean shutdown has begun."""
    return notify("STOPPING=1", "STATUS=stopping", environ=environ)


def watchdog_ping(environ: Mapping[str, str] | None = None) -> bool:
    return notify("WATCHDOG=1", environ=environ)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of $WATCHDOG_USEC, or None when the watchdog is off.

    $WATCHDOG_PID, when set, must be this process (otherwise the setting was meant for a
    parent and leaked through the environment).

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000"})
    15.0
    >>> watchdog_interval({}) is None
    True
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        raise NotifyError(f"WATCHDOG_USEC {usec!r}: expected a positive number of microseconds")
    return int(usec) / 1e6 / 2


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one round of health checks."""

    healthy: bool
    """True when every check passed (then the watchdog was pinged)."""
    failed: tuple[str, ...]
    """Names of the checks that returned False, raised or timed out."""


def _check_name(check: Check) -> str:
    return str(getattr(check, "__name__", None) or getattr(check, "name", None) or repr(check))


async def run_checks(checks: Sequence[Check], limit_s: float) -> CheckResult:
    """Run every check concurrently, each bounded by `limit_s` seconds."""

    async def one(check: Check) -> bool:
        try:
            return bool(await asyncio.wait_for(check(), limit_s))
        except TimeoutError:
            log.warning("health check %s did not answer within %.1f s", _check_name(check), limit_s)
            return False
        except Exception:
            log.exception("health check %s failed", _check_name(check))
            return False

    results = await asyncio.gather(*(one(c) for c in checks))
    failed = tuple(_check_name(c) for c, ok in zip(checks, results, strict=True) if not ok)
    return CheckResult(not failed, failed)


async def watchdog_loop(
    checks: Sequence[Check],
    *,
    environ: Mapping[str, str] | None = None,
    interval: float | None = None,
) -> None:
    """Ping the systemd watchdog every half $WATCHDOG_USEC while every check passes.

    Returns at once when the watchdog is off. The ping itself proves the event loop runs; the
    checks prove the database and the publisher do. While a check fails no ping is sent (so
    systemd restarts the service after WatchdogSec) and STATUS names the failing part.
    """
    every = interval if interval is not None else watchdog_interval(environ)
    if every is None:
        return
    log.info("systemd watchdog: pinging every %.1f s while healthy", every)
    unhealthy: tuple[str, ...] = ()
    while True:
        result = await run_checks(checks, limit_s=every)
        if result.healthy:
            watchdog_ping(environ)
            if unhealthy:
                log.info("health checks pass again; watchdog pings resume")
                status("running", environ)
        elif result.failed != unhealthy:
            log.error("unhealthy (%s): watchdog pings stop", ", ".join(result.failed))
            status(f"unhealthy: {', '.join(result.failed)}", environ)
        unhealthy = result.failed
        await asyncio.sleep(every)


# ---- ready-made checks for app.py -------------------------------------------------------------


def named(name: str, check: Check) -> Check:
    """Give a check the name that logs and STATUS show."""

    async def wrapped() -> bool:
        return await check()

    wrapped.__name__ = name
    return wrapped


def task_alive(name: str, task: asyncio.Task[Any]) -> Check:
    """Healthy while `task` runs (a publisher whose task died is unhealthy; a broker that is
    merely unreachable is not, its reconnect loop is still running)."""

    async def check() -> bool:
        return not task.done()

    check.__name__ = name
    return check


def store_check(store: Pingable) -> Check:
    """Healthy while the writer task commits and the reader answers (a wedged or dead
    database stops the pings). The probe is an empty transaction: nothing reaches the SD card."""

    async def database() -> bool:
        return await store.ping_writer()

    return database


__all__ = [
    "Check",
    "CheckResult",
    "NotifyError",
    "named",
    "notify",
    "notify_address",
    "ready",
    "run_checks",
    "status",
    "stopping",
    "store_check",
    "task_alive",
    "watchdog_interval",
    "watchdog_loop",
    "watchdog_ping",
]
