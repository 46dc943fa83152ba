"""Strict TOML configuration, environment overrides, `scanstation run --check-config`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import SCANSTATION
from scanstation.config import ConfigError, load_config, parse_config

SPEC_FIXED_KEYS = """
[device]
id = "lane-01"
[storage]
path = "/var/lib/scanstation"     # the SQLite database and images live here
[http]
bind = "127.0.0.1:8080"
[mqtt]
host = "broker.example.com"      # no [mqtt] section or host = "": MQTT off, the outbox keeps events
port = 8883
topic_prefix = "scanstation"
[qr_analysis]
allow_private_networks = false
[[sources]]
type = "camera"                  # camera | hid | serial | stdin
name = "cam0"
[[outputs]]
type = "webhook"                 # keyboard_gadget | serial | webhook
url = "https://wms.example.com/scans"
"""


PYTHONPATH = {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCANSTATION, "run", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        # PYTHONPATH kept: a checkout tested with a shared venv runs its own code.
        env={"PATH": "/usr/bin:/bin", **PYTHONPATH, **(env or {})},
        timeout=60,
        check=False,
    )


def test_config_spec_fixed_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(SPEC_FIXED_KEYS)
    config = load_config(path, environ={})
    assert config.device.id == "lane-01"
    assert config.storage.path == Path("/var/lib/scanstation")
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix) == (
        "broker.example.com",
        8883,
        "scanstation",
    )
    assert config.qr_analysis.allow_private_networks is False
    assert [(s.type, s.name) for s in config.sources] == [("camera", "cam0")]
    assert config.outputs[0].url == "https://wms.example.com/scans"


def test_config_check_config_ok_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(SPEC_FIXED_KEYS)
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "config ok" in result.stdout


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[http]\nbindd = "x"\n', "http.bindd"),
        ("[nosuchsection]\na = 1\n", "nosuchsection"),
        ('[[sources]]\ntype = "hid"\nname = "g"\nlayuot = "de"\n', "sources.0.hid.layuot"),
        ('[device]\nid = "lane-01"\ncolour = "red"\n', "device.colour"),
    ],
)
def test_config_unknown_key_exits_2_naming_key_and_file(
    tmp_path: Path, toml: str, named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = check_config(path)
    assert result.returncode == 2
    assert named in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[http]\nbind = "nonsense"\n', "http.bind"),
        ("[mqtt]\nport = 99999\n", "mqtt.port"),
        ('[device]\ntimezone = "Mars/Olympus"\n', "device.timezone"),
        ('[[sources]]\ntype = "laser"\nname = "x"\n', "sources.0"),
        (
            '[[sources]]\ntype = "stdin"\nname = "a"\n[[sources]]\ntype = "stdin"\nname = "a"\n',
            "sources",
        ),
        ("[http\n", "not valid TOML"),
        ('[qr_analysis]\nallow_endpoints = ["localhost:8099"]\n', "qr_analysis.allow_endpoints"),
        ('[qr_analysis]\nallow_endpoints = ["127.0.0.1"]\n', "expected address:port"),
    ],
)
def test_config_bad_value_exits_2_with_reason(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = check_config(path)
    assert result.returncode == 2
    assert named in result.stderr


def test_config_missing_file_exits_2(tmp_path: Path) -> None:
    result = check_config(tmp_path / "absent.toml")
    assert result.returncode == 2
    assert "absent.toml" in result.stderr


def test_config_environment_overrides_file_values(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(SPEC_FIXED_KEYS)
    config = load_config(
        path,
        environ={
            "SCANSTATION_HTTP_BIND": "0.0.0.0:9000",
            "SCANSTATION_MQTT_PORT": "1884",
            "SCANSTATION_QR_ANALYSIS_MAX_HOPS": "3",
            "SCANSTATION_DEVICE_ID": "lane-07",
            "SCANSTATION_SESSION_AUTO": "false",
        },
    )
    assert config.http.port == 9000
    assert config.mqtt.port == 1884
    assert config.qr_analysis.max_hops == 3
    assert config.device.id == "lane-07"
    assert config.session.auto is False


def test_config_unknown_environment_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(SPEC_FIXED_KEYS)
    with pytest.raises(ConfigError, match="SCANSTATION_HTTP_BINDD"):
        load_config(path, environ={"SCANSTATION_HTTP_BINDD": "x"})
    result = check_config(path, env={"SCANSTATION_NOPE_KEY": "1"})
    assert result.returncode == 2
    assert "SCANSTATION_NOPE_KEY" in result.stderr


def test_config_defaults_need_no_file() -> None:
    config = parse_config({}, environ={})
    assert config.http.bind == "127.0.0.1:8080"
    assert config.mqtt.host == ""
    assert config.qr_analysis.allow_private_networks is False
    assert config.storage.synchronous == "full"
