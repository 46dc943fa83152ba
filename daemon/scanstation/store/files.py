"""Private storage on disk: directories 0700 and database files 0600, whatever the umask."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
"""The database file and the side files SQLite keeps next to it."""


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) and make ``path`` itself mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # not ours to change (e.g. a read-only mount)
        if path.stat().st_mode & 0o777 != 0o700:
            os.chmod(path, 0o700)


def private_files(db_path: Path) -> None:
    """Create the database file 0600 if missing and make it and its side files 0600.

    SQLite creates its -wal and -shm files with the mode of the database file, so a database
    created 0600 keeps all of them private.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(OSError):
            side = db_path.with_name(db_path.name + suffix)
            if side.stat().st_mode & 0o777 != 0o600:
                os.chmod(side, 0o600)
