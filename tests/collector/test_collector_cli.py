"""`scanstation collector`: --check-config and the fleet-wide CSV export."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from collectors import collector_settings, write_toml
from postgres import pg_dsn_fixture, pg_server_fixture  # noqa: F401 (fixtures)
from scanstation.cli import main
from scanstation.collector.schema import migrate
from scanstation.collector.sink import Message, Sink


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanstation", "collector", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_accepts_a_complete_config_and_names_what_is_missing(
    tmp_path: Path,
) -> None:
    good = write_toml(
        tmp_path / "good.toml", collector_settings(tmp_path, "postgresql://c@db/fleet", 8883)
    )
    done = run_cli("--config", str(good), "--check-config")
    assert done.returncode == 0, done.stderr
    assert "config ok: collector collector-a, group scanstation-collectors" in done.stdout
    assert "$share/scanstation-collectors/scanstation/+/captures" in done.stdout

    no_db = collector_settings(tmp_path, "", 1883)
    done = run_cli("--config", str(write_toml(tmp_path / "no-db.toml", no_db)), "--check-config")
    assert done.returncode == 2
    assert "collector.database is not set" in done.stderr

    bad = collector_settings(tmp_path, "mysql://db/fleet", 1883)
    done = run_cli("--config", str(write_toml(tmp_path / "bad.toml", bad)), "--check-config")
    assert done.returncode == 2
    assert "'collector.database'" in done.stderr
    assert "postgresql://" in done.stderr

    unknown = collector_settings(tmp_path, "postgresql://c@db/fleet", 1883, batchsize=5)
    done = run_cli("--config", str(write_toml(tmp_path / "typo.toml", unknown)), "--check-config")
    assert done.returncode == 2
    assert "batchsize" in done.stderr


def test_a_collector_whose_database_does_not_answer_exits_1_naming_it(tmp_path: Path) -> None:
    settings = collector_settings(tmp_path, "postgresql://nobody@127.0.0.1:1/none", 1883)
    done = run_cli("--config", str(write_toml(tmp_path / "c.toml", settings)))
    assert done.returncode == 1
    assert "collector.database postgresql://nobody@127.0.0.1:1/none" in done.stderr


def test_export_writes_fleet_wide_csv_filtered_and_formula_safe(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        Sink(conn, "scanstation", 36500).store(
            [
                Message(
                    f"scanstation/{device}/captures",
                    json.dumps(
                        {
                            "seq": seq,
                            "event_id": f"{device}-{seq}",
                            "site": site,
                            "created": f"2026-12-0{seq}T10:00:00Z",
                            "status": "COMPLETED",
                            "raw_value": '=HYPERLINK("x")' if seq == 2 else "4006381333931",
                        }
                    ).encode(),
                    time.time(),
                )
                for device, site in (("lane-01", "store-7"), ("lane-02", "store-9"))
                for seq in (1, 2, 3)
            ]
        )
    config = write_toml(tmp_path / "c.toml", collector_settings(tmp_path, pg_dsn, 1883))
    assert main(["collector", "export", "--config", str(config)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["device_id"], r["seq"]) for r in rows] == [
        (d, str(s)) for d in ("lane-01", "lane-02") for s in (1, 2, 3)
    ]
    assert rows[1]["raw_value"] == '\'=HYPERLINK("x")'  # never a live formula
    assert rows[0]["created"].startswith("2026-12-01T10:00:00")

    args = ["--site", "store-9", "--since", "2026-12-02", "--until", "2026-12-03T12:00Z"]
    assert main(["collector", "export", "--config", str(config), *args]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["device_id"], r["seq"]) for r in rows] == [("lane-02", "2"), ("lane-02", "3")]

    assert main(["collector", "export", "--config", str(config), "--since", "yesterday"]) == 1
    assert "--since 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


def test_the_fleet_guide_shows_the_collector_example_verbatim_and_it_checks() -> None:
    repo = Path(__file__).resolve().parents[2]
    guide = (repo / "docs" / "deploy-fleet.md").read_text()
    marker = "<!-- example: docs/examples/collector.toml -->\n```toml\n"
    assert marker in guide
    block = guide.split(marker, 1)[1].split("\n```\n", 1)[0] + "\n"
    example = repo / "docs" / "examples" / "collector.toml"
    assert block == example.read_text()
    done = run_cli("--config", str(example), "--check-config")
    assert done.returncode == 0, done.stderr
    assert "config ok: collector scanstation-collector-1" in done.stdout
