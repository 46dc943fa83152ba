"""Backups of a whole station and their restore: the archive format, its sealing with a
passphrase, the checks before anything is replaced, and the daemon's scheduled backups.

A backup holds a consistent copy of the database (SQLite's online backup API, through
``store.recovery.backup``, so it is safe while the daemon runs), the config file, the key
files (API keys, the first admin's password hash, the users file: the caller names them,
``web.users.key_files``) and every image under ``storage/images``, plus a manifest with each
file's SHA-256. It is a gzip'd tar, or with a passphrase that tar sealed in 1 MiB AES-256-GCM
chunks under a key derived with scrypt (a changed, reordered or cut-off chunk, or a wrong
passphrase, is refused before anything is written). A restore checks every file against the
manifest and the database's integrity before it moves anything into place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from scanstation import __version__
from scanstation.config import Config
from scanstation.services import ServiceError
from scanstation.store import audit
from scanstation.store.files import SQLITE_SUFFIXES, private_dir
from scanstation.store.recovery import backup as sqlite_backup
from scanstation.store.recovery import integrity_problems
from scanstation.store.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"SCANSTATION-BACKUP-SEALED-1\n"
CHUNK = 1 << 20
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
"""About 0.1 s and 32 MiB on a Raspberry Pi 4: guessing passphrases offline stays slow."""
MIN_PASSPHRASE = 10
DB_MEMBER = "db/scanstation.db"
CONFIG_MEMBER = "config/scanstation.toml"
IMAGES = "images/"


class BackupError(ServiceError):
    """A backup that cannot be written or restored; the message says why and what to do."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- sealing (passphrase encryption) -------------------------------------------------------


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        passphrase.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024, dklen=32
    )


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    # 7 random bytes, a 4-byte chunk counter and a last-chunk flag: no nonce repeats under
    # one key, chunks cannot be reordered, and a file cut at a chunk boundary is refused.
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


class SealedWriter(io.RawIOBase):
    """A write-only stream that seals what is written to ``out`` in AES-GCM chunks."""

    def __init__(self, out: BinaryIO, passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        salt, self._prefix = os.urandom(16), os.urandom(7)
        params = {
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": base64.b64encode(salt).decode(),
            "cipher": "AES-256-GCM",
            "nonce_prefix": base64.b64encode(self._prefix).decode(),
            "chunk": CHUNK,
        }
        self._header = MAGIC + json.dumps(params, sort_keys=True).encode() + b"\n"
        self._aead = AESGCM(_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
        self._out = out
        self._out.write(self._header)
        self._buf = bytearray()
        self._counter = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:
            self._seal(bytes(self._buf[:CHUNK]), final=False)
            del self._buf[:CHUNK]
        return len(data)

    def finish(self) -> None:
        self._seal(bytes(self._buf), final=True)
        self._buf.clear()

    def _seal(self, chunk: bytes, final: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, final)
        sealed = self._aead.encrypt(nonce, chunk, self._header)
        self._out.write(len(sealed).to_bytes(4, "big") + sealed)
        self._counter += 1


def is_sealed(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def unseal(path: Path, passphrase: str, out: BinaryIO) -> None:
    """Decrypts a sealed backup into ``out``; BackupError for a wrong passphrase or damage."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(len(MAGIC))
        header += f.readline(4096)
        try:
            params = json.loads(header[len(MAGIC) :])
            salt = base64.b64decode(params["salt"])
            prefix = base64.b64decode(params["nonce_prefix"])
            key = _key(passphrase, salt, int(params["n"]), int(params["r"]), int(params["p"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{path}: the sealed backup's header is damaged ({exc})") from None
        aead = AESGCM(key)
        counter = 0
        while True:
            length = f.read(4)
            if len(length) < 4:
                raise BackupError(f"{path}: the backup is cut off (chunk {counter} is missing)")
            sealed = f.read(int.from_bytes(length, "big"))
            final = f.tell() >= size
            try:
                out.write(aead.decrypt(_nonce(prefix, counter, final), sealed, header))
            except InvalidTag:
                if counter == 0:
                    raise BackupError(
                        f"{path}: the passphrase is wrong (or the file is damaged)"
                    ) from None
                raise BackupError(
                    f"{path}: chunk {counter} is damaged or the file was cut off"
                ) from None
            counter += 1
            if final:
                return


# ---- writing a backup ----------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """Reads a file while hashing it (the manifest's checksums cost no second read)."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self.f = f
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data


def _add(tar: tarfile.TarFile, name: str, path: Path, manifest: dict[str, Any]) -> None:
    with path.open("rb") as f:
        info = tarfile.TarInfo(name)
        info.size = os.fstat(f.fileno()).st_size
        info.mtime = int(path.stat().st_mtime)
        info.mode = 0o600
        reader = _Hashing(f)
        tar.addfile(info, reader)
    manifest[name] = {"size": info.size, "sha256": reader.digest.hexdigest()}


def _images(config: Config) -> Iterator[tuple[str, Path]]:
    root = config.images_path
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith((".part", ".tmp")):
            yield IMAGES + path.relative_to(root).as_posix(), path


def write_backup(
    config: Config,
    config_file: Path | None,
    dest: Path,
    passphrase: str | None,
    keys: dict[str, Path],
) -> dict[str, Any]:
    """Writes the backup to ``dest`` (atomically, mode 0600); returns its manifest."""
    if not config.db_path.is_file():
        raise BackupError(f"there is no database at {config.db_path}; nothing to back up")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "scanstation": __version__,
        "schema_version": SCHEMA_VERSION,
        "device_id": config.device.id,
        "created": time.time(),
        "encrypted": passphrase is not None,
        "files": {},
    }
    files: dict[str, Any] = manifest["files"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with tempfile.TemporaryDirectory(prefix="scanstation-backup-") as tmp:
        snapshot = Path(tmp) / "scanstation.db"
        # First the database (consistent while the daemon writes), then the images: every
        # image the snapshot names is already on disk when the folder is read.
        sqlite_backup(config.db_path, snapshot)
        if problems := integrity_problems(snapshot):
            raise BackupError(
                f"{config.db_path} is damaged ({problems[0]}); run `scanstation db recover` first"
            )
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                sealed = SealedWriter(raw, passphrase) if passphrase is not None else None
                sink: IO[bytes] = sealed if sealed is not None else raw  # type: ignore[assignment]
                gz = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0)
                with gz, tarfile.open(fileobj=gz, mode="w|") as tar:
                    _add(tar, DB_MEMBER, snapshot, files)
                    if config_file is not None and config_file.is_file():
                        _add(tar, CONFIG_MEMBER, config_file, files)
                    for name, path in keys.items():
                        if path.is_file():
                            _add(tar, name, path, files)
                    for name, path in _images(config):
                        with contextlib.suppress(FileNotFoundError):  # removed by retention
                            _add(tar, name, path, files)
                    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
                    info = tarfile.TarInfo("manifest.json")
                    info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
                    tar.addfile(info, io.BytesIO(body))
                if sealed is not None:
                    sealed.finish()
                raw.flush()
                os.fsync(raw.fileno())
            part.replace(dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    return manifest


# ---- restoring -----------------------------------------------------------------------------


def daemon_answers(config: Config) -> bool:
    """Whether something listens on the daemon's HTTP address (then it is running)."""
    host = config.http.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 (a comparison)
    with (
        contextlib.suppress(OSError),
        socket.create_connection((host, config.http.port), timeout=0.5),
    ):
        return True
    return False


def existing_data(config: Config, keys: dict[str, Path]) -> list[str]:
    """What a restore would overwrite: '' when the storage is empty."""
    found = []
    db = config.db_path
    if db.is_file() and db.stat().st_size > 0:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                counts = {
                    t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("captures", "sessions", "products")
                }
            if rows := ", ".join(f"{n} {t}" for t, n in counts.items() if n):
                found.append(f"the database {db} ({rows})")
        except sqlite3.DatabaseError:
            found.append(f"the database {db} (unreadable)")
    if any(True for _ in _images(config)):
        found.append(f"images under {config.images_path}")
    for path in keys.values():
        if path.is_file():
            found.append(str(path))
    return found


def _read_archive(archive: Path, staging: Path) -> dict[str, Any]:
    """Extracts ``archive`` (a plain tar.gz) into ``staging`` and checks it against its
    manifest; returns the manifest."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise BackupError(f"{archive}: {m.name!r} is not a plain file")
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive}: not a scanstation backup, or damaged ({exc})") from None
    manifest_path = staging / "manifest.json"
    if not manifest_path.is_file():
        raise BackupError(f"{archive}: not a scanstation backup (it has no manifest.json)")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.get('format')!r}, expected {FORMAT}")
    if int(manifest.get("schema_version", 0)) > SCHEMA_VERSION:
        raise BackupError(
            f"{archive}: made by a newer scanstation (database schema "
            f"{manifest['schema_version']}, this one knows {SCHEMA_VERSION}); upgrade first"
        )
    listed = set(manifest["files"])
    present = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    if present != listed:
        extra = sorted(present ^ listed)[:3]
        raise BackupError(f"{archive}: its files do not match its manifest ({extra})")
    for name, entry in manifest["files"].items():
        digest = hashlib.sha256()
        with (staging / name).open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise BackupError(f"{archive}: {name} does not match its checksum; the file is damaged")
    if problems := integrity_problems(staging / DB_MEMBER):
        raise BackupError(f"{archive}: the database in it is damaged ({problems[0]})")
    return manifest


def restore_backup(
    config: Config, archive: Path, passphrase: str | None, *, force: bool, keys: dict[str, Path]
) -> dict[str, Any]:
    """Checks ``archive`` completely, then puts its database, keys and images in place."""
    if daemon_answers(config):
        raise BackupError(
            f"the daemon answers on {config.http.bind}; stop it first "
            "(systemctl stop scanstation), then restore"
        )
    if not force and (found := existing_data(config, keys)):
        raise BackupError(
            "the storage is not empty: " + "; ".join(found) + ". Restore into empty storage, "
            "or pass --force to replace it",
            code=2,
        )
    storage = config.storage.path
    private_dir(storage)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=storage))
    try:
        manifest = _unpack(archive, passphrase, staging)
        _put_in_place(config, staging / "files", keys)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _unpack(archive: Path, passphrase: str | None, staging: Path) -> dict[str, Any]:
    """Decrypts (when sealed) and unpacks ``archive`` into ``staging/files``, checked."""
    plain = archive
    if is_sealed(archive):
        if passphrase is None:
            raise BackupError(f"{archive.name} is encrypted; give its passphrase", code=2)
        plain = staging / "backup.tar.gz"
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            unseal(archive, passphrase, out)
    unpacked = staging / "files"
    unpacked.mkdir(mode=0o700)
    manifest = _read_archive(plain, unpacked)
    if plain != archive:
        plain.unlink(missing_ok=True)
    return manifest


# ---- a restore asked for on the admin page, put in place while the daemon restarts -------

PENDING_DIR = ".restore-pending"
READY = "ready.json"


def stage_restore(
    config: Config, archive: Path, passphrase: str | None, requested_by: str
) -> dict[str, Any]:
    """Checks ``archive`` completely and keeps its files in ``<storage>/.restore-pending``
    for ``apply_staged_restore`` (called by the daemon's start, when nothing runs)."""
    storage = config.storage.path
    pending = storage / PENDING_DIR
    shutil.rmtree(pending, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=storage))
    try:
        manifest = _unpack(archive, passphrase, staging)
        ready = {"requested_by": requested_by, "archive": archive.name, "manifest": manifest}
        (staging / READY).write_text(json.dumps(ready), encoding="utf-8")
        staging.rename(pending)  # the marker and the files appear together
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def apply_staged_restore(config: Config, keys: dict[str, Path]) -> dict[str, Any] | None:
    """Puts a staged restore in place (the daemon must not be running); its ``ready`` record
    (who asked, the manifest) or None when none is staged."""
    pending = config.storage.path / PENDING_DIR
    ready_file = pending / READY
    if not ready_file.is_file():
        shutil.rmtree(pending, ignore_errors=True)  # a half-staged one never applies
        return None
    ready: dict[str, Any] = json.loads(ready_file.read_text(encoding="utf-8"))
    try:
        _put_in_place(config, pending / "files", keys)
    finally:
        shutil.rmtree(pending, ignore_errors=True)
    return ready


def _put_in_place(config: Config, unpacked: Path, keys: dict[str, Path]) -> None:
    db = config.db_path
    for suffix in SQLITE_SUFFIXES:
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    restored_db = unpacked / DB_MEMBER
    os.chmod(restored_db, 0o600)
    os.replace(restored_db, db)
    for name, path in keys.items():
        source = unpacked / name
        if source.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(source, 0o600)
            shutil.move(source, path)
        else:
            path.unlink(missing_ok=True)  # the station had none then: neither has it now
    images = config.images_path
    if images.exists():
        old = images.with_name(f"images.replaced-{os.getpid()}")
        images.rename(old)
        shutil.rmtree(old)
    if (unpacked / "images").is_dir():
        shutil.move(unpacked / "images", images)
        for folder in [images, *(p for p in images.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o700)
    config_copy = unpacked / CONFIG_MEMBER
    if config_copy.is_file():
        target = config.storage.path / "restored-config.toml"
        os.chmod(config_copy, 0o600)
        shutil.move(config_copy, target)


# ---- scheduled backups ---------------------------------------------------------------------

SCHEDULED_SUFFIX = ".backup"


def _scheduled(folder: Path, device: str) -> list[Path]:
    return sorted(folder.glob(f"{device}-*{SCHEDULED_SUFFIX}"), key=lambda p: p.stat().st_mtime)


def prune_scheduled(folder: Path, device: str, keep: int) -> list[Path]:
    """Deletes all but the ``keep`` newest scheduled backups of this device; returns them."""
    old = _scheduled(folder, device)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def backup_now(
    config: Config, config_file: Path | None, keys: dict[str, Path]
) -> tuple[Path, dict[str, Any]]:
    """One scheduled backup into ``[backup] path``, then the folder pruned to ``keep``."""
    settings = config.backup
    assert settings.path is not None
    private_dir(settings.path)
    passphrase = None
    if settings.passphrase_file is not None:
        passphrase = settings.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = settings.path / f"{config.device.id}-{stamp}{SCHEDULED_SUFFIX}"
    manifest = write_backup(config, config_file, dest, passphrase, keys)
    prune_scheduled(settings.path, config.device.id, settings.keep)
    return dest, manifest


async def backup_loop(
    config: Config, store: Any, config_file: Path | None, keys: dict[str, Path]
) -> None:
    """The daemon's scheduled backups: every ``[backup] interval_h`` hours (counted from the
    newest one in the folder, so a restart does not reset the clock), audited."""
    settings = config.backup
    if settings.path is None:
        return
    interval = settings.interval_h * 3600
    while True:
        existing = _scheduled(settings.path, config.device.id) if settings.path.is_dir() else []
        last = existing[-1].stat().st_mtime if existing else 0.0
        await asyncio.sleep(max(0.0, last + interval - time.time()))
        try:
            dest, manifest = await asyncio.to_thread(backup_now, config, config_file, keys)
        except (BackupError, OSError) as exc:
            log.error("scheduled backup into %s failed: %s", settings.path, exc)
            await audit.record(
                store, "schedule", "backup", target=str(settings.path), outcome="failed",
                detail={"error": str(exc)},
            )  # fmt: skip
            await asyncio.sleep(min(interval, 3600))  # try again within the hour
            continue
        log.info("scheduled backup written to %s", dest)
        await audit.record(
            store, "schedule", "backup", target=str(dest),
            detail={"files": len(manifest["files"]), "encrypted": manifest["encrypted"]},
        )  # fmt: skip
        if settings.url:
            await _send(config, store, dest)


async def _send(config: Config, store: Any, path: Path) -> None:
    """POSTs one backup to ``[backup] url``; a failure is logged and audited (the file stays)."""
    import aiohttp

    settings = config.backup
    assert settings.url is not None
    headers = {"Content-Type": "application/octet-stream", "X-Scanstation-Backup": path.name}
    outcome = "ok"
    detail: dict[str, Any] = {}
    try:
        if settings.token_file is not None:
            token = await asyncio.to_thread(settings.token_file.read_text, encoding="utf-8")
            headers["Authorization"] = f"Bearer {token.strip()}"
        f = await asyncio.to_thread(path.open, "rb")
        with f:
            timeout = aiohttp.ClientTimeout(total=3600, sock_connect=30)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(settings.url, data=f, headers=headers, allow_redirects=False) as resp,
            ):
                detail = {"status": resp.status}
                if resp.status >= 300:
                    outcome = "failed"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        outcome, detail = "failed", {"error": f"{type(exc).__name__}: {exc}"}
    if outcome != "ok":
        log.error("sending the backup %s to %s failed: %s", path.name, settings.url, detail)
    await audit.record(
        store, "schedule", "backup.send", target=settings.url, outcome=outcome, detail=detail
    )
