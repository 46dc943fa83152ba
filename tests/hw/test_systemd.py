"""sd_notify over a real AF_UNIX datagram socket, the watchdog loop, and the unit file."""

from __future__ import annotations

import asyncio
import configparser
import doctest
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanstation.config import Config
from scanstation.hw import systemd
from scanstation.store import Store

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "scanstation.service"


class NotifySocket:
    """What systemd listens on: a datagram socket; `messages()` returns what arrived."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        received = []
        while True:
            try:
                received.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return received

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[NotifySocket, dict[str, str]]]:
    path = tmp_path / "notify"
    listener = NotifySocket(str(path))
    yield listener, {"NOTIFY_SOCKET": str(path)}
    listener.close()


def test_systemd_doctests_pass() -> None:
    result = doctest.testmod(systemd)
    assert result.failed == 0
    assert result.attempted > 0


def test_notify_without_socket_is_a_noop() -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.ready("up", environ={}) is False


def test_notify_ready_sends_one_datagram(
    notify_socket: tuple[NotifySocket, dict[str, str]],
) -> None:
    listener, env = notify_socket
    assert systemd.ready("storage and 2 sources up", environ=env)
    assert listener.messages() == [
        f"READY=1\nMAINPID={os.getpid()}\nSTATUS=storage and 2 sources up"
    ]


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (
            lambda env: systemd.status("scanning\n 3 sources", environ=env),
            "STATUS=scanning 3 sources",
        ),
        (lambda env: systemd.watchdog_ping(environ=env), "WATCHDOG=1"),
        (lambda env: systemd.stopping(environ=env), "STOPPING=1\nSTATUS=stopping"),
    ],
)
def test_notify_messages_match_the_protocol(
    notify_socket: tuple[NotifySocket, dict[str, str]], send: object, expected: str
) -> None:
    listener, env = notify_socket
    assert send(env)  # type: ignore[operator]
    assert listener.messages() == [expected]


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"@scanstation-test-{os.getpid()}"
    listener = NotifySocket(b"\0" + name[1:].encode())
    try:
        assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": name})
        assert listener.messages() == ["READY=1"]
    finally:
        listener.close()


def test_notify_to_a_missing_socket_returns_false(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_notify_failures_warn_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(systemd._NotifyFailures, "count", 0)
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone")}
    with caplog.at_level("DEBUG", logger="scanstation.hw.systemd"):
        for _ in range(3):
            systemd.watchdog_ping(environ=env)
    assert [r.levelname for r in caplog.records] == ["WARNING", "DEBUG", "DEBUG"]


def test_notify_relative_address_is_refused_not_raised() -> None:
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/sock"}) is False


@pytest.mark.parametrize("state", ["READY", "STATUS=two\nlines"])
def test_notify_rejects_malformed_states(state: str) -> None:
    with pytest.raises(systemd.NotifyError, match="expected one KEY=value line"):
        systemd.notify(state, environ={})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], expected: float | None
) -> None:
    assert systemd.watchdog_interval(environ) == expected


@pytest.mark.parametrize("usec", ["0", "abc", "-5"])
def test_watchdog_interval_rejects_bad_values(usec: str) -> None:
    with pytest.raises(systemd.NotifyError, match=f"WATCHDOG_USEC '{usec}'"):
        systemd.watchdog_interval({"WATCHDOG_USEC": usec})


async def test_watchdog_loop_returns_when_the_watchdog_is_off() -> None:
    async def never() -> bool:
        raise AssertionError("checks must not run without a watchdog")

    await asyncio.wait_for(systemd.watchdog_loop([never], environ={}), 1)


async def test_watchdog_loop_pings_at_half_the_interval_while_healthy(
    notify_socket: tuple[NotifySocket, dict[str, str]],
) -> None:
    listener, env = notify_socket
    env = {**env, "WATCHDOG_USEC": "100000"}  # 0.1 s: a ping every 0.05 s

    async def database() -> bool:
        return True

    task = asyncio.create_task(systemd.watchdog_loop([database], environ=env))
    await asyncio.sleep(0.33)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pings = listener.messages()
    assert set(pings) == {"WATCHDOG=1"}
    assert 5 <= len(pings) <= 8


async def test_watchdog_loop_stops_pinging_while_a_check_fails(
    notify_socket: tuple[NotifySocket, dict[str, str]],
) -> None:
    listener, env = notify_socket
    healthy = {"publisher": True}

    async def publisher() -> bool:
        return healthy["publisher"]

    task = asyncio.create_task(systemd.watchdog_loop([publisher], environ=env, interval=0.02))
    await asyncio.sleep(0.05)
    assert set(listener.messages()) == {"WATCHDOG=1"}

    healthy["publisher"] = False
    await asyncio.sleep(0.03)
    # The ping that may have been in flight when the check flipped, and the status line.
    assert listener.messages()[-1] == "STATUS=unhealthy: publisher"
    await asyncio.sleep(0.1)
    assert listener.messages() == []

    healthy["publisher"] = True
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    resumed = listener.messages()
    assert resumed[:2] == ["WATCHDOG=1", "STATUS=running"]
    assert set(resumed[2:]) == {"WATCHDOG=1"}


async def test_watchdog_loop_reports_the_failing_check_in_status(
    notify_socket: tuple[NotifySocket, dict[str, str]],
) -> None:
    listener, env = notify_socket

    async def loop_alive() -> bool:
        return True

    async def database() -> bool:
        raise OSError("disk I/O error")

    async def publisher() -> bool:
        await asyncio.sleep(10)  # wedged: counts as failed after the interval
        return True

    task = asyncio.create_task(
        systemd.watchdog_loop([loop_alive, database, publisher], environ=env, interval=0.02)
    )
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert listener.messages() == ["STATUS=unhealthy: database, publisher"]


async def test_run_checks_names_what_failed() -> None:
    async def database() -> bool:
        return True

    async def publisher() -> bool:
        return False

    result = await systemd.run_checks(
        [database, systemd.named("mqtt-link", publisher)], limit_s=0.5
    )
    assert result == systemd.CheckResult(healthy=False, failed=("mqtt-link",))


async def test_task_alive_turns_false_when_the_task_ends() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(stop.wait())
    check = systemd.task_alive("publisher", task)
    assert await check() is True
    stop.set()
    await task
    assert await check() is False
    assert check.__name__ == "publisher"


async def test_store_check_passes_on_an_open_store_and_fails_on_a_closed_one(
    config: Config,
) -> None:
    store = Store(config.db_path)
    check = systemd.store_check(store)
    await store.open()
    assert (await systemd.run_checks([check], limit_s=2)).healthy
    await store.close()
    assert await systemd.run_checks([check], limit_s=2) == systemd.CheckResult(
        healthy=False, failed=("database",)
    )


# ---- the unit file ------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """The unit as section -> key -> values (repeated keys such as DeviceAllow accumulate)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_unit_is_notify_with_watchdog_and_restart() -> None:
    service = read_unit(UNIT)["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["on-failure"]
    watchdog = service["WatchdogSec"][0]
    assert watchdog.endswith("s")
    assert int(watchdog[:-1]) >= 10
    assert service["ExecStart"][0].split()[1:4] == [
        "run",
        "--config",
        "/etc/scanstation/scanstation.toml",
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("User", ["scanstation"]),
        ("Group", ["scanstation"]),
        ("StateDirectory", ["scanstation"]),
        ("ProtectSystem", ["strict"]),
        ("ProtectHome", ["yes"]),
        ("NoNewPrivileges", ["yes"]),
        ("PrivateTmp", ["yes"]),
        ("DevicePolicy", ["closed"]),
        ("CapabilityBoundingSet", [""]),
        ("AmbientCapabilities", [""]),
        ("SystemCallFilter", ["@system-service"]),
        ("SystemCallArchitectures", ["native"]),
        ("RestrictAddressFamilies", ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]),
        ("SupplementaryGroups", ["input video gpio dialout"]),
        ("ProtectKernelModules", ["yes"]),
        ("ProtectKernelTunables", ["yes"]),
        ("ProtectControlGroups", ["yes"]),
        ("RestrictNamespaces", ["yes"]),
        ("LockPersonality", ["yes"]),
        ("MemoryDenyWriteExecute", ["no"]),
        ("RestrictRealtime", ["yes"]),
        ("RestrictSUIDSGID", ["yes"]),
        ("UMask", ["0027"]),
    ],
)
def test_unit_hardening_key(key: str, expected: list[str]) -> None:
    assert read_unit(UNIT)["Service"].get(key) == expected


def test_unit_allows_only_the_devices_a_station_uses() -> None:
    service = read_unit(UNIT)["Service"]
    assert "PrivateDevices" not in service  # it would hide /dev/input
    assert service["DeviceAllow"] == [
        "char-input r",
        "char-video4linux rw",
        "char-media rw",
        "char-dma_heap rw",
        "char-gpiochip rw",
        "char-ttyACM rw",
        "char-ttyUSB rw",
        "char-ttyAMA rw",
        "char-hidg rw",
    ]


def test_unit_runs_without_root() -> None:
    service = read_unit(UNIT)["Service"]
    assert service.get("User") != ["root"]
    assert "PermissionsStartOnly" not in service
    assert not any(cmd.startswith(("+", "!")) for cmd in service.get("ExecStartPre", []))


def test_unit_verifies_with_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("SKIPPED: systemd-analyze is not installed; only the parsed keys were checked")
    # verify looks for ExecStart's binary: point it at one that exists on this machine.
    unit = tmp_path / "scanstation.service"
    unit.write_text(
        UNIT.read_text().replace(
            "/opt/scanstation/venv/bin/scanstation", shutil.which("true") or "/bin/true"
        )
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Lines about other units on this machine (not ours) are not our business.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "scanstation" in line]
    assert ours == [], "\n".join(ours)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the daemon under a (pretend) systemd ----------------------------------------------------


def test_daemon_notifies_ready_pings_the_watchdog_and_says_stopping(
    daemon_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    try:
        daemon = daemon_factory()
        daemon.start()
        received: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and received.count("WATCHDOG=1") < 3:
            received += listener.messages()
            time.sleep(0.05)
        daemon.stop()
        time.sleep(0.1)
        received += listener.messages()
    finally:
        listener.close()
    ready = [m for m in received if m.startswith("READY=1")]
    assert len(ready) == 1
    assert received.index(ready[0]) < received.index("WATCHDOG=1")
    assert received.count("WATCHDOG=1") >= 3
    assert any(m.startswith("STOPPING=1") for m in received)
