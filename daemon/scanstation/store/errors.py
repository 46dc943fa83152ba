"""The store's exception root: StoreError and its not-found / conflict refusals."""

from __future__ import annotations

import errno
import sqlite3

SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26


class StoreError(Exception):
    """A storage-level refusal; ``code`` is the HTTP-ish reason (not_found, conflict)."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class NotFound(StoreError):
    def __init__(self, what: str, public_id: str, field: str = "") -> None:
        super().__init__("not_found", f"{what} {public_id!r} does not exist", field)


class Conflict(StoreError):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__("conflict", message, field)


class DatabaseDamaged(StoreError):
    """The database file cannot be read as SQLite (garbage, truncated, malformed)."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(
            "damaged",
            f"the database {path} is damaged ({detail}); check it with `scanstation db check` "
            "and salvage it with `scanstation db recover` (see docs/security.md)",
        )
        self.path = path


class StorageFull(StoreError):
    """A write failed because the disk (or the database's file system) is full."""

    def __init__(self, path: object, detail: str = "database or disk is full") -> None:
        super().__init__(
            "disk_full",
            f"the storage at {path} is full ({detail}): new captures are refused until "
            "space is freed; they resume by themselves then",
        )


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full: SQLITE_FULL, or ENOSPC/EDQUOT from a file write."""
    if isinstance(exc, StorageFull):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == SQLITE_FULL) or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is bad (corrupt, not a database), not busy or full."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    return "malformed" in str(exc) or "not a database" in str(exc)
