"""The command line as a user runs it: parse, catalog import, export, api-key."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SCANSTATION

# A checkout's own code first, when the tests run with PYTHONPATH (a shared venv).
PYTHONPATH = {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCANSTATION, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **PYTHONPATH},
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "scanstation.toml"
    path.write_text(f'[device]\nid = "lane-01"\n[storage]\npath = "{tmp_path / "var"}"\n')
    return path


def test_cli_parse_values_print_one_json_object_each(config_file: Path) -> None:
    result = run(
        "parse",
        "4006381333931",
        "]C1010950600013435217270101\x1d10ABC123",
        "--config",
        str(config_file),
        "--today",
        "2026-11-23",
    )
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (first["valid"], first["kind"], first["gtin"]) == (True, "gtin", "04006381333931")
    assert second["kind"] == "gs1"
    assert second["ais"] == {"01": "09506000134352", "17": "270101", "10": "ABC123"}
    assert second["symbology_identifier"] == "]C1"
    assert second["checks"]["expired"] is False


def test_cli_parse_stdin_accepts_the_gs_escape(config_file: Path) -> None:
    result = run(
        "parse",
        "--stdin",
        "--config",
        str(config_file),
        "--today",
        "2026-11-23",
        stdin="]d2010950600013435217200101\\x1d10LOT42\nhello world\n4006381333932\n",
    )
    assert result.returncode == 0, result.stderr
    gs1, text, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert gs1["ais"]["10"] == "LOT42"
    assert gs1["checks"]["expired"] is True
    assert gs1["checks"]["not_for_sale"] is True
    assert (text["valid"], text["kind"]) == (True, "text")
    assert bad["valid"] is False
    assert bad["errors"]


def test_cli_parse_with_a_bad_recall_list_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "scanstation.toml"
    config.write_text(f'[checks]\nrecall_list = "{tmp_path / "missing.csv"}"\n')
    result = run("parse", "4006381333931", "--config", str(config))
    assert result.returncode == 2
    assert "missing.csv" in result.stderr


def test_cli_parse_without_values_is_usage_error() -> None:
    result = run("parse")
    assert result.returncode == 2


def test_cli_catalog_import_csv_and_json_then_export(config_file: Path, tmp_path: Path) -> None:
    products_csv = tmp_path / "products.csv"
    products_csv.write_text(
        "gtin,name,brand,certifications\n4006381333931,Highlighter,STABILO,FSC|CE\n"
    )
    products_json = tmp_path / "products.json"
    products_json.write_text(json.dumps([{"gtin": "09506000134352", "name": "Demo"}]))
    for path in (products_csv, products_json):
        result = run("catalog", "import", str(path), "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert "imported 1 products" in result.stdout
    result = run("export", "products", "--config", str(config_file))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["gtin"], r["name"]) for r in rows] == [
        ("04006381333931", "Highlighter"),
        ("09506000134352", "Demo"),
    ]
    assert json.loads(rows[0]["certifications"]) == ["FSC", "CE"]
    assert int(rows[0]["completeness"]) > int(rows[1]["completeness"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("gtin,name\n4006381333932,Bad check digit\n", "line 2"),
        ("gtin,name\n12345,Too short\n", "must be 8, 12, 13 or 14 digits"),
        ("name\nNo gtin column\n", "gtin column"),
        ("gtin,colour\n4006381333931,red\n", "unknown field 'colour'"),
    ],
)
def test_cli_catalog_import_bad_rows_exit_2_naming_them(
    config_file: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run("catalog", "import", str(path), "--config", str(config_file))
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_api_key_create_prints_the_key_alone_on_the_last_line(config_file: Path) -> None:
    result = run("api-key", "create", "--label", "wms", "--config", str(config_file))
    assert result.returncode == 0
    key = result.stdout.splitlines()[-1]
    assert key.startswith("ss_")
    assert " " not in key
    stored = (config_file.parent / "var" / "api_keys.json").read_text()
    assert key not in stored  # only the hash is kept
    assert (config_file.parent / "var" / "api_keys.json").stat().st_mode & 0o777 == 0o600
    listing = run("api-key", "list", "--config", str(config_file)).stdout
    assert "wms" in listing
    assert key not in listing


def test_cli_export_scans_with_bad_since_is_usage_error(config_file: Path) -> None:
    result = run("export", "scans", "--since", "yesterday", "--config", str(config_file))
    assert result.returncode == 2
    assert "--since" in result.stderr


def readme_line(starting: str) -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith(starting))
    return line.split("   #", 1)[0].strip()


def test_cli_the_readme_parse_example_copied_literally_is_valid() -> None:
    """Pasted into a shell: single quotes keep \\x1d as four characters; parse reads it as GS."""
    line = readme_line("scanstation parse ']d2")
    command = line.replace("scanstation", " ".join(SCANSTATION), 1)
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed["valid"] is True, parsed
    assert parsed["ais"] == {"01": "09506000134352", "17": "270101", "10": "ABC123"}


def test_cli_export_without_a_config_creates_nothing(tmp_path: Path) -> None:
    """No config: the built-in storage path. A read-only command must not create it."""
    result = subprocess.run(
        [*SCANSTATION, "export", "scans"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # no ./scanstation.toml here
        env={
            "PATH": "/usr/bin:/bin",
            "SCANSTATION_STORAGE_PATH": str(tmp_path / "var"),
            **PYTHONPATH,
        },
    )
    assert result.returncode == 1
    assert f"no database at {tmp_path / 'var' / 'scanstation.db'}" in result.stderr
    assert "--config FILE" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "var").exists()
