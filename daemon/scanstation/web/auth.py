"""API keys for machines: created by `scanstation api-key create`, stored hashed."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from scanstation.jsonlimits import loads_limited
from scanstation.services.roles import Role

KEY_PREFIX = "ss_"


def hash_key(key: str) -> str:
    # API keys carry 256 bits of randomness, so a plain SHA-256 is enough (no stretching).
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    """The public part of the key (its first characters), to tell keys apart in lists."""
    sha256: str
    label: str
    created: float
    role: Role = Role.ADMIN
    """What the key may do (keys made before roles existed are admin keys)."""


class ApiKeyStore:
    """A JSON file of hashed API keys (mode 0600), re-read when another process changes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._records: list[ApiKeyRecord] = []

    def records(self) -> list[ApiKeyRecord]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._mtime, self._records = None, []
            return []
        if mtime != self._mtime:
            data = loads_limited(self.path.read_text(encoding="utf-8") or "[]")
            self._records = [
                ApiKeyRecord(**{**item, "role": Role(item.get("role", Role.ADMIN))})
                for item in data
            ]
            self._mtime = mtime
        return self._records

    def create(self, label: str = "", role: Role = Role.ADMIN) -> str:
        """Make a new key, store its hash and return the key (shown once, never stored)."""
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(key_id, hash_key(key), label, time.time(), role)
        records = [*self.records(), record]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([_as_dict(r) for r in records], f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        return key

    def verify(self, key: str | None) -> ApiKeyRecord | None:
        if not key or not key.startswith(KEY_PREFIX):
            return None
        digest = hash_key(key)
        for record in self.records():
            if hmac.compare_digest(record.sha256, digest):
                return record
        return None


def _as_dict(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "sha256": record.sha256,
        "label": record.label,
        "created": record.created,
        "role": record.role.value,
    }
