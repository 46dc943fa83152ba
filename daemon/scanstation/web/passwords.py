"""The web UI password: scrypt-hashed in <storage>/ui-password, set by `set-password`."""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from scanstation.config import Config, ConfigError, load_config
from scanstation.web import WebError

PASSWORD_FILE = "ui-password"  # noqa: S105 (a file name, not a password)
INITIAL_PASSWORD_NOTE = "initial-ui-password.txt"  # noqa: S105 (a file name)
MIN_LENGTH = 8
MAX_LENGTH = 1024
"""Longer inputs are refused before hashing, so a huge body cannot buy CPU time."""

# scrypt cost: n=2**14, r=8 takes about 50 ms and 16 MB on a Raspberry Pi 4; enough to make
# offline guessing slow, little enough that a login does not stall the device.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


class PasswordError(WebError, ValueError):
    """A password that cannot be set or a password file that cannot be read."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One stored password hash, as written on the single line of the password file."""

    n: int
    """scrypt CPU/memory cost."""
    r: int
    """scrypt block size."""
    p: int
    """scrypt parallelism."""
    salt: bytes
    """16 random bytes."""
    digest: bytes
    """32-byte scrypt output."""

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    @classmethod
    def decode(cls, text: str) -> PasswordHash:
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise PasswordError(
                f"password hash {text[:20]!r}… is not in the form scrypt$n$r$p$salt$digest; "
                "run `scanstation set-password` to write a new one"
            )
        try:
            return cls(
                int(parts[1]),
                int(parts[2]),
                int(parts[3]),
                base64.b64decode(parts[4], validate=True),
                base64.b64decode(parts[5], validate=True),
            )
        except ValueError:
            raise PasswordError(
                "the password hash has a bad number or base64 field; run "
                "`scanstation set-password` to write a new one"
            ) from None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32
    )


def hash_password(password: str) -> PasswordHash:
    check_new_password(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest)


def verify_password(password: str, stored: PasswordHash) -> bool:
    """True when ``password`` matches (constant-time compare; blocking: run it in a thread)."""
    if not password or len(password) > MAX_LENGTH:
        return False
    digest = _scrypt(password, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(digest, stored.digest)


def check_new_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(
            f"the password is {len(password)} characters; use at least {MIN_LENGTH}"
        )
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"the password is longer than {MAX_LENGTH} characters")


def password_path(config: Config) -> Path:
    return config.storage.path / PASSWORD_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600 (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


def set_password(config: Config, password: str) -> Path:
    """Store the hash of ``password`` as the UI password; returns the file written."""
    path = password_path(config)
    write_private(path, hash_password(password).encode() + "\n")
    # A generated first-run password is no longer valid: do not leave it lying around.
    with contextlib.suppress(FileNotFoundError):
        (config.storage.path / INITIAL_PASSWORD_NOTE).unlink()
    return path


class PasswordStore:
    """The stored UI password hash, re-read when `scanstation set-password` changes the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._hash: PasswordHash | None = None

    def current(self) -> PasswordHash | None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._mtime, self._hash = None, None
            return None
        if mtime != self._mtime:
            self._hash = PasswordHash.decode(self.path.read_text(encoding="utf-8"))
            self._mtime = mtime
        return self._hash

    def verify(self, password: str) -> bool:
        """Blocking (scrypt): call it through ``asyncio.to_thread``. No password set: False."""
        try:
            stored = self.current()
        except PasswordError:
            return False
        return stored is not None and verify_password(password, stored)


def ensure_ui_password(config: Config, out: TextIO = sys.stderr) -> Path | None:
    """First run: when no UI password is set, generate one and say where it is written.

    Returns the 0600 file holding the generated password (None when a password was set).
    """
    if password_path(config).exists():
        return None
    password = secrets.token_urlsafe(12)
    set_password(config, password)
    note = config.storage.path / INITIAL_PASSWORD_NOTE
    write_private(note, password + "\n")
    print(f"No web UI password was set: generated one, stored in {note} (mode 0600).", file=out)
    print(
        "Log in with it, then change it with `scanstation set-password` (which deletes that file).",
        file=out,
    )
    return note


def set_password_main(argv: list[str]) -> int:
    """`scanstation set-password [--config F] [--stdin]`: set the web UI password."""
    parser = argparse.ArgumentParser(
        prog="scanstation set-password",
        description="Set the web UI password (stored scrypt-hashed, mode 0600).",
    )
    parser.add_argument("--config", help="TOML config (default: the usual search)")
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"scanstation set-password: bad config: {exc}", file=sys.stderr)
        return 2
    try:
        if args.stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("New web UI password: ")
            check_new_password(password)
            if getpass.getpass("Repeat it: ") != password:
                print("scanstation set-password: the two entries differ", file=sys.stderr)
                return 2
        path = set_password(config, password)
    except PasswordError as exc:
        print(f"scanstation set-password: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("scanstation set-password: cancelled", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"scanstation set-password: cannot write the password: {exc}", file=sys.stderr)
        return 1
    print(f"web UI password set (scrypt hash in {path}); a running daemon picks it up now")
    return 0
