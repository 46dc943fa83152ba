"""A damaged database's check, backup and salvage (``scanstation db``), with plain sqlite3.

Run with the daemon stopped. ``salvage`` copies every row still readable into a fresh
database built by the current migrations; rows on unreadable pages are skipped and counted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from scanstation.store.files import SQLITE_SUFFIXES, private_files
from scanstation.store.schema import MIGRATIONS

SKIP_TRIES = 64
"""Rowid jumps tried past an unreadable page before a table's salvage gives up."""


@dataclass(frozen=True, slots=True)
class TableSalvage:
    """What salvage got out of one table."""

    table: str
    copied: int
    """Rows read from the damaged file and written to the new one."""
    unreadable: bool
    """True when some of the table could not be read (rows on bad pages are lost)."""


def integrity_problems(path: Path, limit: int = 20) -> list[str]:
    """SQLite's integrity check of ``path``: an empty list when the database is sound."""
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


def backup(src: Path, dest: Path) -> None:
    """A consistent copy of a readable database with SQLite's online backup API (mode 0600)."""
    private_files(dest)
    with (
        contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(dest)) as target,
    ):
        source.backup(target)


def raw_copy(src: Path, dest: Path) -> list[Path]:
    """Byte copies of the database file and its side files (for a file SQLite cannot read)."""
    copied = []
    for suffix in SQLITE_SUFFIXES:
        side = src.with_name(src.name + suffix)
        if side.is_file():
            target = dest.with_name(dest.name + suffix)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out, side.open("rb") as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
            copied.append(target)
    return copied


def create_schema(path: Path) -> None:
    """A new, empty database at ``path`` with the current schema."""
    private_files(path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for number, script in enumerate(MIGRATIONS, start=1):
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};COMMIT;")


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in db.execute(f'PRAGMA table_info("{table}")')]


def salvage(src: Path, dest: Path) -> list[TableSalvage]:
    """Copy every readable row of ``src`` into a new database at ``dest`` (which must not
    exist), table by table, skipping unreadable pages."""
    create_schema(dest)
    results = []
    with (
        contextlib.closing(sqlite3.connect(dest, isolation_level=None)) as target,
        contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source,
    ):
        target.execute("PRAGMA foreign_keys=OFF")
        tables = [
            str(r[0])
            for r in target.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            results.append(_salvage_table(source, target, table))
    return results


def _salvage_table(
    source: sqlite3.Connection, target: sqlite3.Connection, table: str
) -> TableSalvage:
    try:
        have = set(_columns(source, table))
    except sqlite3.DatabaseError:
        return TableSalvage(table, 0, True)
    columns = [c for c in _columns(target, table) if c in have]
    if not columns:
        return TableSalvage(table, 0, unreadable=not have)
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * (len(columns) + 1))
    insert = f'INSERT OR IGNORE INTO "{table}" (rowid, {names}) VALUES ({marks})'
    copied, last, unreadable, tries, jump = 0, None, False, 0, 1
    target.execute("BEGIN")
    while tries <= SKIP_TRIES:
        where, args = ("", ()) if last is None else ("WHERE rowid > ?", (last,))
        try:
            for row in source.execute(
                f'SELECT rowid, {names} FROM "{table}" {where} ORDER BY rowid', args
            ):
                target.execute(insert, row)
                copied += 1
                last, jump = row[0], 1
            break
        except sqlite3.DatabaseError:
            # A bad page: jump past it (further each time) and read on.
            unreadable, tries = True, tries + 1
            last = (last or 0) + jump
            jump *= 2
    target.execute("COMMIT")
    return TableSalvage(table, copied, unreadable)
