"""`scanstation backup FILE` and `scanstation restore FILE`: the whole station in one file
(the format, its sealing and the checks are in services/backup.py).

``backup`` is safe while the daemon runs. ``restore`` runs with the daemon stopped, into
empty storage (or over existing data only with ``--force``), and checks every file against
the manifest and the database's integrity before it moves anything into place.

Exit codes: 0 ok, 1 a failed step (a damaged or undecryptable file, a running daemon),
2 bad usage (existing data without --force, a missing passphrase).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from scanstation.commands import run_with_config
from scanstation.config import Config
from scanstation.config.loader import find_config_file
from scanstation.services.backup import (
    CONFIG_MEMBER,
    IMAGES,
    MIN_PASSPHRASE,
    BackupError,
    apply_staged_restore,
    restore_backup,
    write_backup,
)
from scanstation.web.users import key_files

# ---- the commands --------------------------------------------------------------------------


def _passphrase(args: argparse.Namespace, confirm: bool) -> str | None:
    if args.passphrase_file:
        text = Path(args.passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
    elif args.encrypt:
        if not sys.stdin.isatty():
            text = sys.stdin.readline().rstrip("\r\n")
        else:
            text = getpass.getpass("Passphrase: ")
            if confirm and getpass.getpass("Repeat it: ") != text:
                raise BackupError("the two passphrases differ", code=2)
    else:
        return None
    if confirm and len(text) < MIN_PASSPHRASE:
        raise BackupError(
            f"the passphrase is {len(text)} characters; use at least {MIN_PASSPHRASE}", code=2
        )
    return text


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"scanstation {name}", description=__doc__)
    parser.add_argument("file", type=Path, help="the backup file")
    parser.add_argument("--config", metavar="FILE", help="TOML config")
    parser.add_argument(
        "--encrypt" if name == "backup" else "--passphrase",
        dest="encrypt",
        action="store_true",
        help="a passphrase, read from the first line of stdin (or asked on a terminal)",
    )
    parser.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    if name == "restore":
        parser.add_argument(
            "--force", action="store_true", help="replace the data that is there (keys included)"
        )
    return parser


def _audit(config: Config, action: str, target: str, detail: dict[str, Any]) -> None:
    from scanstation.commands.users import record_audit

    try:
        record_audit(config, action, target, detail)
    except Exception as exc:  # the backup stands even if the log cannot take the entry
        print(f"warning: could not write the audit log: {exc}", file=sys.stderr)


def _main(name: str, argv: list[str]) -> int:
    return run_with_config(name, _parser(name), argv, lambda args, config: _run(name, args, config))


def _run(name: str, args: argparse.Namespace, config: Config) -> int:
    try:
        if name == "backup":
            passphrase = _passphrase(args, confirm=True)
            manifest = write_backup(
                config, find_config_file(args.config), args.file, passphrase, key_files(config)
            )
            count = len(manifest["files"])
            images = sum(1 for n in manifest["files"] if n.startswith(IMAGES))
            _audit(
                config,
                "backup",
                str(args.file),
                {"files": count, "encrypted": passphrase is not None},
            )
            print(
                f"backed up {config.storage.path} to {args.file}: the database, {images} images, "
                f"{count - images - 1} config and key files"
                + (" (encrypted)" if passphrase else "")
            )
            return 0
        passphrase = _passphrase(args, confirm=False)
        manifest = restore_backup(
            config, args.file, passphrase, force=args.force, keys=key_files(config)
        )
        _audit(
            config,
            "restore",
            str(args.file),
            {"made": manifest["created"], "device_id": manifest["device_id"], "force": args.force},
        )
        print(f"restored {args.file} (device {manifest['device_id']}) into {config.storage.path}")
        if CONFIG_MEMBER in manifest["files"]:
            print(
                f"the backed-up config is in {config.storage.path / 'restored-config.toml'}; "
                "compare it with yours before starting the daemon"
            )
        return 0
    except BackupError as exc:
        print(f"scanstation {name}: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"scanstation {name}: {exc}", file=sys.stderr)
        return 1


def backup_main(argv: list[str]) -> int:
    return _main("backup", argv)


def restore_main(argv: list[str]) -> int:
    return _main("restore", argv)


def apply_staged(config: Config) -> bool:
    """At the daemon's (re)start, before anything opens the storage: puts a restore staged by
    the admin page in place and records it in the restored audit log. True if it did."""
    ready = apply_staged_restore(config, key_files(config))
    if ready is None:
        return False
    manifest = ready["manifest"]
    _audit(
        config,
        "restore",
        ready["archive"],
        {"made": manifest["created"], "device_id": manifest["device_id"], "from": "web",
         "requested_by": ready["requested_by"]},
    )  # fmt: skip
    print(
        f"restored a backup of {manifest['device_id']} asked for by {ready['requested_by']}",
        file=sys.stderr,
    )
    return True
