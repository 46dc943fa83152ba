"""People who log in to the web UI: named users with a role, besides the first admin.

The first admin is the station's original account: its password is the ``ui-password`` file
(generated on the first run, changed with ``scanstation set-password``) and its name is
``admin``; a login that sends only a password logs it in. Every other user lives in
``<storage>/users.json`` (mode 0600, scrypt hashes only), written by ``scanstation user``
and re-read by the running daemon when the file changes, so a new role or a removed user
takes effect on the next request.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from scanstation.config import Config
from scanstation.jsonlimits import loads_limited
from scanstation.services.roles import Role
from scanstation.web.passwords import (
    PasswordError,
    PasswordHash,
    hash_password,
    password_path,
    write_private,
)

USERS_FILE = "users.json"
FIRST_ADMIN = "admin"
"""The name of the first admin (the ``ui-password`` account); no other user may take it."""
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


class UserError(PasswordError):
    """A user that cannot be added, changed or removed; the message names the value."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password: PasswordHash
    created: float


def users_path(config: Config) -> Path:
    return config.storage.path / USERS_FILE


def key_files(config: Config) -> dict[str, Path]:
    """The station's key files as a backup names them → where they live."""
    return {
        "secrets/api_keys.json": config.api_keys_path,
        "secrets/ui-password": password_path(config),
        "secrets/users.json": users_path(config),
    }


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"user name {name!r} is not 1-32 lowercase letters, digits, '.', '_' or '-' "
            "starting with a letter or digit"
        )
    return name


class UserStore:
    """The users file, re-read when another process (the CLI) changes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def all(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return {}
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp != self._stamp:
            data = loads_limited(self.path.read_text(encoding="utf-8") or "[]")
            self._users = {
                item["name"]: User(
                    item["name"],
                    Role(item["role"]),
                    PasswordHash.decode(item["password"]),
                    float(item["created"]),
                )
                for item in data
            }
            self._stamp = stamp
        return self._users

    def get(self, name: str) -> User | None:
        return self.all().get(name)

    def _save(self, users: dict[str, User]) -> None:
        items = [
            {
                "name": u.name,
                "role": u.role.value,
                "password": u.password.encode(),
                "created": u.created,
            }
            for u in sorted(users.values(), key=lambda u: u.name)
        ]
        write_private(self.path, json.dumps(items, indent=1) + "\n")
        self._stamp = None

    def add(self, name: str, role: Role, password: str) -> User:
        check_name(name)
        if name == FIRST_ADMIN:
            raise UserError(
                f"{FIRST_ADMIN!r} is the first admin (its password is set with "
                "`scanstation set-password`); choose another name"
            )
        users = dict(self.all())
        if name in users:
            raise UserError(f"user {name!r} exists; use `scanstation user set-role` or remove it")
        user = User(name, role, hash_password(password), time.time())
        users[name] = user
        self._save(users)
        return user

    def set_role(self, name: str, role: Role) -> Role:
        """Gives ``name`` a new role; returns the role it had."""
        users = dict(self.all())
        user = self._existing(users, name)
        users[name] = User(user.name, role, user.password, user.created)
        self._save(users)
        return user.role

    def set_password(self, name: str, password: str) -> None:
        users = dict(self.all())
        user = self._existing(users, name)
        users[name] = User(user.name, user.role, hash_password(password), user.created)
        self._save(users)

    def remove(self, name: str) -> User:
        users = dict(self.all())
        user = self._existing(users, name)
        del users[name]
        self._save(users)
        return user

    @staticmethod
    def _existing(users: dict[str, User], name: str) -> User:
        if name == FIRST_ADMIN:
            raise UserError(
                f"{FIRST_ADMIN!r} is the first admin: it always has the admin role and cannot "
                "be removed; change its password with `scanstation set-password`"
            )
        user = users.get(name)
        if user is None:
            known = ", ".join(sorted(users)) or "none"
            raise UserError(f"there is no user {name!r} (users: {known})")
        return user
