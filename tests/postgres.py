"""A real PostgreSQL for tests: the server on 127.0.0.1:5432 when one answers, else a private
cluster (Debian's postgresql packages: initdb in a temporary directory, a free port).

Each test gets a fresh, uniquely named database, dropped afterwards. Import the fixtures
explicitly in a test module: ``from postgres import pg_dsn_fixture, pg_server_fixture``
(they provide ``pg_dsn`` and ``pg_server``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PrivateCluster:
    """initdb + pg_ctl in a temporary directory, trust auth on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="scanstation-pg-"))
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the cluster as the postgres system user.
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.skip(
                "PostgreSQL is needed: nothing answers on 127.0.0.1:5432 and initdb/pg_ctl are "
                "not installed (apt-get install postgresql; scripts/test.sh does it)"
            )
        data = self.dir / "data"
        subprocess.run(
            [
                *self.as_user,
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self.as_user,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(self.dir / "log"),
                "-w",
                "-o",
                options,
                "start",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 20
        while not _answers(self.dsn):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private PostgreSQL did not start; see {self.dir}/log")
            time.sleep(0.2)

    def stop(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl:
            subprocess.run(
                [*self.as_user, pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[str]:
    """A DSN of a server's maintenance database (the system one, else a private cluster)."""
    explicit = os.environ.get("SCANSTATION_TEST_PG")
    if explicit:
        yield explicit
        return
    if _answers(SYSTEM_SERVER):
        yield SYSTEM_SERVER
        return
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster.dsn
    finally:
        cluster.stop()


@pytest.fixture(name="pg_dsn")
def pg_dsn_fixture(pg_server: str) -> Iterator[str]:
    """A fresh database for one test; dropped afterwards."""
    name = f"scanstation_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = pg_server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(pg_server, autocommit=True) as admin,
        ):
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
