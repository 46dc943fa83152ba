"""`scanstation user` and `api-key create --role` as an operator types them, and what they
leave behind: the users file (0600, hashes only), the API keys' roles, the audit log."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import SCANSTATION


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [*SCANSTATION, *args], input=stdin, capture_output=True, text=True, timeout=60,
        check=False, env=env,
    )  # fmt: skip


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "scanstation.toml"
    path.write_text(f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "var"}"\n')
    return path


def audit_rows(config_file: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(config_file.parent / "var" / "scanstation.db") as db:
        rows = db.execute("SELECT action, target, detail FROM audit_log ORDER BY id").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def test_user_add_list_set_role_remove(config_file: Path) -> None:
    c = str(config_file)
    added = run("user", "add", "otto", "--role", "operator", "--config", c, stdin="shift lead pw\n")
    assert added.returncode == 0, added.stderr
    assert "added otto with the operator role" in added.stdout
    users_file = config_file.parent / "var" / "users.json"
    assert users_file.stat().st_mode & 0o777 == 0o600
    assert "shift lead pw" not in users_file.read_text()
    assert json.loads(users_file.read_text())[0]["password"].startswith("scrypt$")

    listed = run("user", "list", "--config", c)
    rows = list(csv.reader(io.StringIO(listed.stdout)))
    assert [r[:2] for r in rows] == [["name", "role"], ["admin", "admin"], ["otto", "operator"]]

    changed = run("user", "set-role", "otto", "viewer", "--config", c)
    assert changed.returncode == 0
    assert "operator -> viewer" in changed.stdout
    removed = run("user", "remove", "otto", "--config", c)
    assert removed.returncode == 0
    assert [r[:2] for r in csv.reader(io.StringIO(run("user", "list", "--config", c).stdout))] == [
        ["name", "role"],
        ["admin", "admin"],
    ]
    assert [(a, t) for a, t, _ in audit_rows(config_file)] == [
        ("user.add", "otto"),
        ("user.set-role", "otto"),
        ("user.remove", "otto"),
    ]
    assert json.loads(audit_rows(config_file)[1][2]) == {"from": "operator", "to": "viewer"}


def test_user_mistakes_exit_2_and_name_the_value(config_file: Path) -> None:
    c = str(config_file)
    bad_role = run("user", "add", "otto", "--role", "boss", "--config", c, stdin="long enough\n")
    assert bad_role.returncode == 2
    assert "role 'boss' is not one of viewer, operator, admin" in bad_role.stderr
    short = run("user", "add", "otto", "--role", "viewer", "--config", c, stdin="short\n")
    assert short.returncode == 2
    assert "use at least 8" in short.stderr
    bad_name = run("user", "add", "Otto Smith", "--role", "viewer", "--config", c, stdin="x" * 9)
    assert bad_name.returncode == 2
    assert "'Otto Smith'" in bad_name.stderr
    first = run("user", "remove", "admin", "--config", c)
    assert first.returncode == 2
    assert "first admin" in first.stderr
    nobody = run("user", "set-role", "ghost", "viewer", "--config", c)
    assert nobody.returncode == 2
    assert "there is no user 'ghost'" in nobody.stderr
    assert not (config_file.parent / "var" / "users.json").exists()


def test_api_key_create_with_a_role(config_file: Path) -> None:
    c = str(config_file)
    made = run("api-key", "create", "--role", "viewer", "--label", "wall", "--config", c)
    assert made.returncode == 0, made.stderr
    assert "with the viewer role" in made.stdout
    key = made.stdout.strip().splitlines()[-1]
    default = run("api-key", "create", "--config", c)
    assert "with the admin role" in default.stdout
    listed = list(csv.DictReader(io.StringIO(run("api-key", "list", "--config", c).stdout)))
    assert [(k["label"], k["role"]) for k in listed] == [("wall", "viewer"), ("", "admin")]
    assert listed[0]["key_id"] == key.split("_")[1]
    bad = run("api-key", "create", "--role", "boss", "--config", c)
    assert bad.returncode == 2
    assert "invalid choice: 'boss'" in bad.stderr
    actions = [(a, json.loads(d)["role"]) for a, _, d in audit_rows(config_file)]
    assert actions == [("api-key.create", "viewer"), ("api-key.create", "admin")]
