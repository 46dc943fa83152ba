"""`scanstation user add|list|remove|set-role|set-password`: who may log in, and their role.

The password of ``user add`` and ``user set-password`` is read from standard input (its first
line) when stdin is not a terminal, else asked twice without echo. Every change is written to
the audit log. Exit codes: 0 ok, 1 a failed write, 2 bad usage (the message names the value).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import sys
from typing import Any

from scanstation.commands import run_with_config
from scanstation.config import Config
from scanstation.services import ServiceError
from scanstation.services.exports import safe_row
from scanstation.services.roles import ROLE_NAMES, Role, parse_role
from scanstation.web.passwords import PasswordError, check_new_password
from scanstation.web.users import FIRST_ADMIN, UserStore, users_path


def cli_actor() -> str:
    """How the audit log names a change made on the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def record_audit(config: Config, action: str, target: str, detail: dict[str, Any]) -> None:
    """One audit entry from the command line (the daemon may be running: SQLite WAL)."""
    from scanstation.store import Store, audit

    async def main() -> None:
        async with Store(config.db_path, synchronous=config.storage.synchronous) as store:
            await audit.record(store, cli_actor(), action, target=target, detail=detail)

    asyncio.run(main())


def read_new_password(prompt: str = "Password") -> str:
    """The first line of stdin when it is not a terminal, else asked twice without echo."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        check_new_password(password)
        return password
    password = getpass.getpass(f"{prompt}: ")
    check_new_password(password)
    if getpass.getpass("Repeat it: ") != password:
        raise PasswordError("the two entries differ")
    return password


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config")
    parser = argparse.ArgumentParser(prog="scanstation user", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", parents=[common], help="add a user with a role")
    add.add_argument("name")
    add.add_argument("--role", required=True, help=" | ".join(ROLE_NAMES))
    sub.add_parser("list", parents=[common], help="list users and roles (CSV)")
    rm = sub.add_parser("remove", parents=[common], help="remove a user (ends their sessions)")
    rm.add_argument("name")
    sr = sub.add_parser("set-role", parents=[common], help="give a user another role")
    sr.add_argument("name")
    sr.add_argument("role", help=" | ".join(ROLE_NAMES))
    sp = sub.add_parser(
        "set-password", parents=[common], help="a new password (ends the user's sessions)"
    )
    sp.add_argument("name")
    return parser


def user_main(argv: list[str]) -> int:
    return run_with_config("user", _parser(), argv, _main)


def _main(args: argparse.Namespace, config: Config) -> int:
    users = UserStore(users_path(config))
    try:
        return _run(args, config, users)
    except (ServiceError, PasswordError) as exc:
        print(f"scanstation user {args.action}: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print(f"scanstation user {args.action}: cancelled", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"scanstation user {args.action}: cannot write {users.path}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, config: Config, users: UserStore) -> int:
    if args.action == "list":
        writer = csv.writer(sys.stdout)
        writer.writerow(["name", "role", "created"])
        writer.writerow([FIRST_ADMIN, Role.ADMIN.value, "(first admin)"])
        for user in sorted(users.all().values(), key=lambda u: u.name):
            writer.writerow(safe_row([user.name, user.role.value, round(user.created, 3)]))
        return 0
    if args.action == "add":
        role = parse_role(args.role)
        user = users.add(args.name, role, read_new_password(f"Password for {args.name}"))
        record_audit(config, "user.add", user.name, {"role": role.value})
        print(f"added {user.name} with the {role.value} role ({users.path})")
        return 0
    if args.action == "set-role":
        role = parse_role(args.role)
        before = users.set_role(args.name, role)
        record_audit(config, "user.set-role", args.name, {"from": before.value, "to": role.value})
        print(f"{args.name}: {before.value} -> {role.value}; a running daemon applies it now")
        return 0
    if args.action == "set-password":
        users.set_password(args.name, read_new_password(f"New password for {args.name}"))
        record_audit(config, "user.set-password", args.name, {})
        print(f"{args.name}: password changed; their open sessions have ended")
        return 0
    user = users.remove(args.name)
    record_audit(config, "user.remove", user.name, {"role": user.role.value})
    print(f"removed {user.name}; their open sessions have ended")
    return 0
