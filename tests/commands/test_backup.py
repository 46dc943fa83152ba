"""`scanstation backup` and `restore` against a real daemon: a station with 10,000 captures
answers its API identically after backup -> wipe -> restore; a backup taken while captures
arrive is sound; restore refuses a running daemon and existing data; sealed backups refuse a
wrong passphrase, a changed byte and a cut-off file."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest

from conftest import SCANSTATION, DaemonProcess
from scanstation.bus import EventBus
from scanstation.config import load_config
from scanstation.model import CaptureType
from scanstation.pipeline import Pipeline
from scanstation.services.backup import BackupError, SealedWriter, is_sealed, unseal
from scanstation.services.catalog import parse_products
from scanstation.services.roles import Role
from scanstation.store import NewCapture, Store
from scanstation.store.recovery import integrity_problems
from scanstation.web.auth import ApiKeyStore
from scanstation.web.users import UserStore, users_path

API = "/scanner/api/v1"
IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"
PASSPHRASE = "correct horse battery staple"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [*SCANSTATION, *args], input=stdin, capture_output=True, text=True, timeout=300,
        check=False, env=env,
    )  # fmt: skip


async def seed(config_path: Path, captures: int, photos: int) -> None:
    """A station's data written the way the daemon writes it (store + pipeline)."""
    config = load_config(config_path)
    catalog = "gtin,name,brand\n" + "".join(
        f"{gtin},Product {i},Brand {i % 7}\n"
        for i, gtin in enumerate(["4006381333931", "5901234123457", "9506000134352"])
    )
    photo = (IMAGES / "coffee.jpg").read_bytes()
    async with Store(config.db_path) as store:
        await store.upsert_products(parse_products(catalog, "catalog.csv"))
        pipeline = Pipeline(store, config, bus=EventBus())
        task = asyncio.create_task(pipeline.run())
        values = ["4006381333931", "5901234123457", "9506000134352", "HELLO", "]C1011234"]
        done = 0
        for s in range(10):
            session = await store.create_session(source=f"lane-{s}")
            per_session = captures // 10
            for start in range(0, per_session, 500):
                batch = []
                for i in range(start, min(per_session, start + 500)):
                    new = NewCapture(CaptureType.BARCODE, raw_value=values[i % 5], source="gun")
                    if done < photos:
                        key = pipeline.save_image(photo, "jpg")
                        new = NewCapture(
                            CaptureType.IMAGE, raw_value="", source="cam0", uploaded_image_key=key
                        )
                    done += 1
                    batch.append(pipeline.create_capture(session.public_id, new))
                await asyncio.gather(*batch)
            if s % 2:
                await store.end_session(session.public_id)
        await pipeline.idle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def answers(url: str, key: str) -> dict[str, Any]:
    """Everything a client reads from the station, page by page."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(url, headers={"X-API-Key": key}) as http:

        async def get(path: str) -> Any:
            async with http.get(API + path) as resp:
                assert resp.status == 200, (path, resp.status, await resp.text())
                if resp.content_type == "application/json":
                    return await resp.json()
                return await resp.read()

        pages = []
        offset = 0
        while True:
            page = await get(f"/captures?limit=500&offset={offset}")
            pages.append(page["results"])
            offset += 500
            if page["next"] is None:
                break
        captures = [c for p in pages for c in p]
        out["captures"] = captures
        out["sessions"] = await get("/sessions?limit=100")
        out["products"] = await get("/products?limit=100")
        out["scans.csv"] = await get("/exports/scans.csv")
        out["products.csv"] = await get("/exports/products.csv")
        out["users"] = await get("/users")
        for c in captures[::997]:
            out[f"capture {c['public_id']}"] = await get(f"/captures/{c['public_id']}")
        for c in [c for c in captures if c["uploaded_image_key"]][:20]:
            out[f"image {c['public_id']}"] = await get(f"/captures/{c['public_id']}/image")
    return out


@pytest.fixture
def station(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_factory()


def test_backup_wipe_restore_of_10000_captures_gives_identical_answers(
    station: DaemonProcess, tmp_path: Path
) -> None:
    config = load_config(station.config_path)
    started = time.monotonic()
    asyncio.run(seed(station.config_path, 10_000, photos=40))
    seeded = time.monotonic() - started
    key = ApiKeyStore(config.api_keys_path).create("ops", Role.ADMIN)
    UserStore(users_path(config)).add("otto", Role.OPERATOR, "operator password")
    station.start()
    before = asyncio.run(answers(station.url, key))
    assert len(before["captures"]) == 10_000
    assert sum(1 for c in before["captures"] if c["uploaded_image_key"]) == 40

    archive = tmp_path / "station.backup"
    made = cli("backup", str(archive), "--config", str(station.config_path))  # daemon running
    assert made.returncode == 0, made.stderr
    assert "40 images" in made.stdout
    assert archive.stat().st_mode & 0o777 == 0o600
    station.stop()

    shutil.rmtree(config.storage.path)  # the wipe: a new SD card
    restored = cli("restore", str(archive), "--config", str(station.config_path))
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout

    station.start()
    after = asyncio.run(answers(station.url, key))  # the API key came back with the backup
    assert after.keys() == before.keys()
    for name in before:
        assert after[name] == before[name], name

    async def operator_logs_in() -> int:
        async with aiohttp.ClientSession(station.url) as http:
            body = {"username": "otto", "password": "operator password"}
            async with http.post("/auth/login", json=body) as resp:
                return resp.status

    assert asyncio.run(operator_logs_in()) == 200
    station.stop()
    print(f"seeded 10,000 captures in {seeded:.1f} s; backup {archive.stat().st_size} bytes")


def test_backup_while_captures_arrive_is_sound_and_restore_refuses_a_running_daemon(
    station: DaemonProcess, tmp_path: Path
) -> None:
    config = load_config(station.config_path)
    key = ApiKeyStore(config.api_keys_path).create("ops")
    station.start()

    async def scan_while(stop: asyncio.Event, acknowledged: list[str]) -> None:
        async with aiohttp.ClientSession(station.url, headers={"X-API-Key": key}) as http:
            async with http.post(f"{API}/sessions", json={}) as resp:
                session = (await resp.json())["public_id"]
            while not stop.is_set():
                body = {
                    "session_public_id": session,
                    "raw_value": "4006381333931",
                    "capture_type": "BARCODE",
                }
                async with http.post(f"{API}/captures", json=body) as resp:
                    assert resp.status == 201
                    acknowledged.append((await resp.json())["public_id"])

    async def backup_under_load() -> tuple[subprocess.CompletedProcess[str], int, list[str]]:
        stop, acknowledged = asyncio.Event(), []  # type: ignore[var-annotated]
        writer = asyncio.create_task(scan_while(stop, acknowledged))
        while len(acknowledged) < 50:
            await asyncio.sleep(0.01)
        before = len(acknowledged)
        made = await asyncio.to_thread(
            cli, "backup", str(tmp_path / "b"), "--config", str(station.config_path)
        )
        stop.set()
        await writer
        return made, before, acknowledged

    made, acknowledged_before, acknowledged = asyncio.run(backup_under_load())
    assert made.returncode == 0, made.stderr
    assert len(acknowledged) > acknowledged_before  # captures kept arriving meanwhile

    refused = cli("restore", str(tmp_path / "b"), "--config", str(station.config_path))
    assert refused.returncode == 1
    assert "the daemon answers on 127.0.0.1:" in refused.stderr
    station.stop()
    over = cli("restore", str(tmp_path / "b"), "--config", str(station.config_path))
    assert over.returncode == 2
    assert "the storage is not empty" in over.stderr
    assert "pass --force" in over.stderr
    forced = cli("restore", str(tmp_path / "b"), "--force", "--config", str(station.config_path))
    assert forced.returncode == 0, forced.stderr
    assert integrity_problems(config.db_path) == []
    with sqlite3.connect(config.db_path) as db:
        ids = {r[0] for r in db.execute("SELECT public_id FROM captures")}
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    assert set(acknowledged[:acknowledged_before]) <= ids  # all acknowledged before it began
    assert len(ids) < len(acknowledged)  # and not those after the snapshot
    assert actions[-1] == "restore"


def test_sealed_backups_refuse_a_wrong_passphrase_a_changed_byte_and_a_cut(
    station: DaemonProcess, tmp_path: Path
) -> None:
    config = load_config(station.config_path)
    asyncio.run(seed(station.config_path, 100, photos=3))
    archive = tmp_path / "sealed"
    made = cli("backup", str(archive), "--encrypt", "--config", str(station.config_path),
               stdin=PASSPHRASE + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "(encrypted)" in made.stdout
    assert is_sealed(archive)
    data = archive.read_bytes()
    assert b"Product 1" not in data
    assert b"SQLite format 3" not in data
    short = cli("backup", str(tmp_path / "x"), "--encrypt", "--config", str(station.config_path),
                stdin="short\n")  # fmt: skip
    assert short.returncode == 2
    assert "use at least 10" in short.stderr

    shutil.rmtree(config.storage.path)
    wrong = cli("restore", str(archive), "--passphrase", "--config", str(station.config_path),
                stdin="not the passphrase\n")  # fmt: skip
    assert wrong.returncode == 1
    assert "the passphrase is wrong" in wrong.stderr
    missing = cli("restore", str(archive), "--config", str(station.config_path))
    assert missing.returncode == 2
    assert "is encrypted; give its passphrase" in missing.stderr
    assert not config.db_path.exists()

    right = cli("restore", str(archive), "--passphrase", "--config", str(station.config_path),
                stdin=PASSPHRASE + "\n")  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert integrity_problems(config.db_path) == []

    # Damage checked directly on the format (no storage involved).
    changed = bytearray(data)
    changed[len(data) // 2] ^= 0x01
    cut = data[: len(data) - 40]
    for name, body in (("changed", bytes(changed)), ("cut", cut)):
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(BackupError, match=r"damaged|cut off|wrong"):
            unseal(path, PASSPHRASE, io.BytesIO())


def test_sealed_stream_round_trips_many_chunks_and_refuses_reordering(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # four chunks, the last one short
    path = tmp_path / "s"
    with path.open("wb") as f:
        writer = SealedWriter(f, PASSPHRASE)
        for i in range(0, len(payload), 65536):
            writer.write(payload[i : i + 65536])
        writer.finish()
    out = io.BytesIO()
    unseal(path, PASSPHRASE, out)
    assert out.getvalue() == payload
    # Swap the first two chunks: each is authentic, but not in that place.
    raw = path.read_bytes()
    header_end = raw.index(b"\n", raw.index(b"\n") + 1) + 1
    first_len = int.from_bytes(raw[header_end : header_end + 4], "big") + 4
    first = raw[header_end : header_end + first_len]
    second = raw[header_end + first_len : header_end + 2 * first_len]
    swapped = raw[:header_end] + second + first + raw[header_end + 2 * first_len :]
    path.write_bytes(swapped)
    with pytest.raises(BackupError, match=r"passphrase is wrong|damaged"):
        unseal(path, PASSPHRASE, io.BytesIO())


def test_restore_refuses_an_archive_whose_files_do_not_match_the_manifest(
    station: DaemonProcess, tmp_path: Path
) -> None:
    config = load_config(station.config_path)
    asyncio.run(seed(station.config_path, 20, photos=1))
    archive = tmp_path / "plain"
    assert cli("backup", str(archive), "--config", str(station.config_path)).returncode == 0
    # Rewrite the archive with one image's bytes changed (a valid tar.gz, a wrong checksum).
    forged = tmp_path / "forged"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(forged, "w:gz") as dst:
        for member in src.getmembers():
            body = src.extractfile(member)
            data = body.read() if body else b""
            if member.name.startswith("images/"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data))
    shutil.rmtree(config.storage.path)
    refused = cli("restore", str(forged), "--config", str(station.config_path))
    assert refused.returncode == 1
    assert "does not match its checksum" in refused.stderr
    assert not config.db_path.exists()
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["device_id"] == "lane-01"
    assert {"db/scanstation.db", "config/scanstation.toml"} <= manifest["files"].keys()


class Receiver(http.server.BaseHTTPRequestHandler):
    """An HTTP endpoint that keeps what is POSTed to it (the backup destination)."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_daemon_makes_scheduled_backups_keeps_the_newest_and_sends_them(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "token").write_text("backup-token\n")
    daemon = daemon_factory(
        f'[backup]\npath = "{folder}"\ninterval_h = 0.0003\nkeep = 2\n'
        f'url = "http://127.0.0.1:{server.server_port}/upload"\n'
        f'token_file = "{tmp_path / "token"}"\n'
    )
    config = load_config(daemon.config_path)
    asyncio.run(seed(daemon.config_path, 30, photos=2))
    daemon.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(config.db_path) as db:
            made, sent = db.execute(
                "SELECT count(*) FILTER (WHERE action = 'backup'),"
                " count(*) FILTER (WHERE action = 'backup.send') FROM audit_log"
                " WHERE actor = 'schedule' AND outcome = 'ok'"
            ).fetchone()
        if made >= 4 and sent >= 3:
            break
        time.sleep(0.2)
    daemon.stop()
    server.shutdown()
    assert made >= 4
    assert sent >= 3
    assert len(Receiver.received) >= 3
    headers, body = Receiver.received[0]
    assert headers["Authorization"] == "Bearer backup-token"
    assert headers["X-Scanstation-Backup"].startswith("lane-01-")
    assert body[:2] == b"\x1f\x8b"
    kept = sorted(folder.glob("lane-01-*.backup"))
    assert len(kept) == 2  # the older ones were deleted
    assert folder.stat().st_mode & 0o777 == 0o700
    # The newest one restores into fresh storage.
    other = tmp_path / "other.toml"
    other.write_text(
        f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "fresh"}"\n'
        f'[http]\nbind = "{config.http.bind}"\n'
    )
    restored = cli("restore", str(kept[-1]), "--config", str(other))
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(tmp_path / "fresh" / "scanstation.db") as db:
        assert db.execute("SELECT count(*) FROM captures").fetchone()[0] == 30


def test_a_backup_uploaded_on_the_admin_api_replaces_the_station_on_restart(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    # Station A: 20 captures, backed up.
    a_config = tmp_path / "a.toml"
    a_config.write_text(f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "a"}"\n')
    asyncio.run(seed(a_config, 20, photos=2))
    key_a = ApiKeyStore(load_config(a_config).api_keys_path).create("a")
    archive = tmp_path / "a.backup"
    assert cli("backup", str(archive), "--config", str(a_config)).returncode == 0
    # Station B: other data, running.
    daemon = daemon_factory()
    b = load_config(daemon.config_path)
    asyncio.run(seed(daemon.config_path, 10, photos=0))
    key_b = ApiKeyStore(b.api_keys_path).create("b")
    daemon.start()

    async def upload(body: bytes, key: str) -> tuple[int, Any]:
        headers = {"X-API-Key": key, "Content-Type": "application/octet-stream"}
        async with (
            aiohttp.ClientSession(daemon.url) as http,
            http.post(f"{API}/restore", data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()

    async def count(key: str) -> tuple[int, int]:
        async with (
            aiohttp.ClientSession(daemon.url, headers={"X-API-Key": key}) as http,
            http.get(f"{API}/captures?limit=1") as resp,
        ):
            return resp.status, (await resp.json()).get("count", -1)

    status, answer = asyncio.run(upload(b"not a backup at all", key_b))
    assert status == 422
    assert answer["error"]["field"] == "file"
    assert asyncio.run(count(key_b)) == (200, 10)  # nothing changed

    status, answer = asyncio.run(upload(archive.read_bytes(), key_b))
    assert status == 200, answer
    assert answer["restoring"] is True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if asyncio.run(count(key_a))[0] == 200:
                break
        except aiohttp.ClientError:
            pass  # restarting
        time.sleep(0.2)
    assert asyncio.run(count(key_a)) == (200, 20)  # A's data and A's keys
    assert asyncio.run(count(key_b))[0] == 401
    assert daemon.proc is not None
    assert daemon.proc.poll() is None  # the same process, restarted in place
    daemon.stop()
    with sqlite3.connect(b.db_path) as db:
        action, detail = db.execute(
            "SELECT action, detail FROM audit_log ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert action == "restore"
    assert json.loads(detail)["requested_by"] == f"key:{key_b.split('_')[1]}"
    assert not (b.storage.path / ".restore-pending").exists()
