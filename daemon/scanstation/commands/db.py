"""`scanstation db check|recover|backup|restore`: the database's integrity, salvage and copies.

Exit codes: 0 ok (check: the database is sound), 1 a damaged database or a failed step,
2 bad usage. Stop the daemon before ``recover`` and ``restore``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scanstation.commands import run_with_config
from scanstation.store.files import SQLITE_SUFFIXES
from scanstation.store.recovery import backup, integrity_problems, raw_copy, salvage

if TYPE_CHECKING:
    from scanstation.config import Config


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config")
    parser = argparse.ArgumentParser(prog="scanstation db", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser(
        "check", parents=[common], help="SQLite's integrity check of the station's database"
    )
    sub.add_parser(
        "recover",
        parents=[common],
        help="keep a copy of the damaged file, then salvage every readable row into a new one",
    )
    b = sub.add_parser(
        "backup", parents=[common], help="a consistent copy with SQLite's backup API"
    )
    b.add_argument("file", type=Path)
    r = sub.add_parser(
        "restore", parents=[common], help="replace the database with a checked backup"
    )
    r.add_argument("file", type=Path)
    return parser


def _remove_side_files(db: Path) -> None:
    for suffix in SQLITE_SUFFIXES[1:]:
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def db_main(argv: list[str]) -> int:
    return run_with_config("db", _parser(), argv, _run)


def _run(args: argparse.Namespace, config: Config) -> int:
    db = config.db_path
    if args.action == "check":
        problems = integrity_problems(db)
        if not problems:
            print(f"{db}: ok")
            return 0
        print(f"{db}: damaged", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(
            "run `scanstation db recover` (with the daemon stopped) to salvage it", file=sys.stderr
        )
        return 1
    if args.action == "backup":
        if problems := integrity_problems(db):
            print(
                f"scanstation db backup: {db} is damaged ({problems[0]}); use recover",
                file=sys.stderr,
            )
            return 1
        backup(db, args.file)
        print(f"backed up {db} to {args.file}")
        return 0
    if args.action == "restore":
        if problems := integrity_problems(args.file):
            print(
                f"scanstation db restore: {args.file} is not a sound database ({problems[0]})",
                file=sys.stderr,
            )
            return 1
        tmp = db.with_name(db.name + ".restoring")
        tmp.unlink(missing_ok=True)
        backup(args.file, tmp)
        _remove_side_files(db)
        os.replace(tmp, db)
        print(f"restored {db} from {args.file}")
        return 0
    # recover
    if not db.is_file():
        print(f"scanstation db recover: no database at {db}", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = db.with_name(f"{db.name}.damaged-{stamp}")
    raw_copy(db, kept)
    new = db.with_name(f"{db.name}.recovered-{stamp}")
    results = salvage(db, new)
    if problems := integrity_problems(new):
        print(
            f"scanstation db recover: the salvaged copy {new} fails its check: {problems[0]}",
            file=sys.stderr,
        )
        return 1
    _remove_side_files(db)
    os.replace(new, db)
    print(f"kept the damaged file as {kept}")
    for r in results:
        note = " (part of it was unreadable)" if r.unreadable else ""
        print(f"  {r.table}: {r.copied} rows salvaged{note}")
    print(f"{db} now holds the salvaged rows; start the daemon again")
    return 0
