"""The deployment guides: every example config validates with `scanstation run --check-config`,
each guide shows its example verbatim, and the provisioning files are well-formed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from examples import example, make_referenced_files, with_files_under
from scanstation.config import load_config

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware-config"
PROVISION = FIRMWARE / "provision.sh"
DEPLOYMENTS = ["checkout-lane", "kiosk", "conveyor", "fleet"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanstation", "run", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        env=env or CLEAN_ENV,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_example_passes_check_config(name: str, tmp_path: Path) -> None:
    root = tmp_path / "etc"
    make_referenced_files(root)
    result = check_config(with_files_under(name, root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config ok: device ")


@pytest.mark.parametrize(
    ("name", "key", "path"),
    [
        ("checkout-lane", "checks.recall_list", "/etc/scanstation/recalls.csv"),
        ("checkout-lane", "mqtt.password_file", "/etc/scanstation/mqtt-password"),
        ("conveyor", "mqtt.tls.ca", "/etc/scanstation/tls/ca.pem"),
        ("fleet", "mqtt.tls.key", "/etc/scanstation/tls/station.key"),
    ],
)
def test_check_config_fails_on_a_missing_referenced_file_naming_the_key(
    name: str, key: str, path: str
) -> None:
    """What happened to a newcomer: --check-config said ok, then `run` exited 2 anyway."""
    if Path(path).exists():
        pytest.skip(f"{path} exists on this machine")
    result = check_config(example(name))
    assert result.returncode == 2
    assert f"{example(name)}: {key} = '{path}': no such file (expected " in result.stderr
    assert "config ok" not in result.stdout


def test_check_config_fails_on_a_recall_list_that_does_not_load(tmp_path: Path) -> None:
    root = tmp_path / "etc"
    make_referenced_files(root)
    (root / "recalls.csv").write_text("gtin,batch\n4006381333932,X\n")  # wrong check digit
    result = check_config(with_files_under("checkout-lane", root))
    assert result.returncode == 2
    assert "checks.recall_list: Recall list" in result.stderr
    assert "'4006381333932' is not a GTIN" in result.stderr


def test_run_refuses_to_start_on_a_missing_file_with_the_same_message(tmp_path: Path) -> None:
    config = tmp_path / "lane.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "var"}"\n[checks]\nrecall_list = "{tmp_path / "r.csv"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "scanstation", "run", "--config", str(config)],
        capture_output=True, text=True, env=CLEAN_ENV, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"checks.recall_list = '{tmp_path / 'r.csv'}': no such file" in result.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was written


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_guide_shows_its_example_verbatim(name: str) -> None:
    guide = (REPO / "docs" / f"deploy-{name}.md").read_text()
    marker = f"<!-- example: docs/examples/{name}.toml -->\n```toml\n"
    assert marker in guide, f"deploy-{name}.md must embed docs/examples/{name}.toml"
    block = guide.split(marker, 1)[1].split("\n```\n", 1)[0] + "\n"
    assert block == example(name).read_text()


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_example_uses_the_fixed_storage_path(name: str) -> None:
    assert load_config(example(name), environ={}).storage.path == Path("/var/lib/scanstation")


def test_checkout_lane_reads_2d_codes_and_checks_expiry_and_recalls() -> None:
    config = load_config(example("checkout-lane"), environ={})
    (camera,) = config.sources
    assert camera.type == "camera"
    assert {"DataMatrix", "QRCode", "EAN13"} <= set(camera.formats)  # type: ignore[union-attr]
    assert config.checks.expiry is True
    assert config.checks.recall_list == Path("/etc/scanstation/recalls.csv")
    assert (config.gpio.no_read, config.gpio.buzzer) == (27, 22)  # the alert is visible
    assert [o.type for o in config.outputs] == ["keyboard_gadget"]


def test_kiosk_reads_a_hid_gun_with_a_session_button() -> None:
    config = load_config(example("kiosk"), environ={})
    assert [(s.type, s.name) for s in config.sources] == [("hid", "gun1")]
    assert config.gpio.session_button == 26
    assert config.session.auto is False
    assert config.mqtt.host == ""


def test_conveyor_triggers_from_the_photo_eye_and_rejects() -> None:
    config = load_config(example("conveyor"), environ={})
    (camera,) = config.sources
    assert camera.trigger == "gpio"  # type: ignore[union-attr]
    assert config.gpio.trigger_input is not None
    assert config.gpio.reject_output is not None
    assert set(config.gpio.reject_on) == {"no_read", "not_found", "failed"}
    assert config.gpio.reject_deadline_ms > 0


def test_fleet_uses_mutual_tls() -> None:
    config = load_config(example("fleet"), environ={})
    assert config.mqtt.port == 8883
    assert config.mqtt.tls is not None
    assert (config.mqtt.tls.ca, config.mqtt.tls.cert, config.mqtt.tls.key) == (
        Path("/etc/scanstation/tls/fleet-ca.pem"),
        Path("/etc/scanstation/tls/station.pem"),
        Path("/etc/scanstation/tls/station.key"),
    )
    assert config.mqtt.tls.insecure is False


def test_fleet_device_id_comes_from_the_environment(tmp_path: Path) -> None:
    root = tmp_path / "etc"
    make_referenced_files(root)
    result = check_config(
        with_files_under("fleet", root), {**CLEAN_ENV, "SCANSTATION_DEVICE_ID": "lane-77"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config ok: device lane-77,")


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_every_gpio_triggered_camera_has_a_trigger_input(name: str) -> None:
    config = load_config(example(name), environ={})
    gpio_cameras = [s.name for s in config.sources if getattr(s, "trigger", "") == "gpio"]
    assert not gpio_cameras or config.gpio.trigger_input is not None


def test_a_broken_example_would_fail_check_config(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(example("conveyor").read_text().replace("reject_pulse_ms", "reject_pulse"))
    result = check_config(broken)
    assert result.returncode == 2
    assert "unknown key 'gpio.reject_pulse'" in result.stderr


# ---- firmware-config -----------------------------------------------------------------------


def test_provision_script_is_valid_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(PROVISION)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert os.access(PROVISION, os.X_OK)


SHELL_SCRIPTS = sorted(
    [*(REPO / "scripts").glob("*.sh"), *FIRMWARE.glob("*.sh"), REPO / ".ci" / "run"]
)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_are_shellcheck_clean(script: Path) -> None:
    """Every script a user or CI runs (provisioning, the tests, the arm64 smoke)."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("SKIPPED: shellcheck is not installed (apt install shellcheck)")
    result = subprocess.run(
        [shellcheck, "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def run_provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PROVISION), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=CLEAN_ENV,
    )


def test_provision_help_and_bad_options() -> None:
    assert run_provision("--help").returncode == 0
    bad = run_provision("--frobnicate")
    assert bad.returncode == 2
    assert "unknown option '--frobnicate'" in bad.stderr
    wrong_profile = run_provision("--profile", "bakery", "--dry-run")
    assert wrong_profile.returncode == 2
    assert "expected checkout-lane, kiosk, conveyor or fleet" in wrong_profile.stderr


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_provision_dry_run_plans_a_station(name: str) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("SKIPPED: not a Debian-based system (no dpkg-query)")
    result = run_provision("--profile", name, "--dry-run")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    # The [pi] extra only where Raspberry Pi OS's python3-picamera2 is installed.
    on_pi_os = (
        "install ok installed"
        in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", "python3-picamera2"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )
    for step in (
        "python3 -m venv --system-site-packages /opt/scanstation/venv",
        "/opt/scanstation/venv/bin/pip install --disable-pip-version-check --upgrade "
        + (f"{REPO}\\[pi\\]" if on_pi_os else f"{REPO}\n"),
        "+ ln -sfn /opt/scanstation/venv/bin/scanstation /usr/local/bin/scanstation",
        "+ systemctl enable scanstation.service",
        "/etc/systemd/system/scanstation.service",
        "/etc/udev/rules.d/99-scanstation.rules",
    ):
        assert step in plan, f"missing from the plan: {step}\n{plan}"
    if not Path("/etc/scanstation/scanstation.toml").exists():
        # The config it would install is the example, verbatim.
        assert "write /etc/scanstation/scanstation.toml (mode 0640, owner root:scanstation)" in plan
        assert example(name).read_text().splitlines()[0] in plan


def test_config_txt_fragment_is_key_value_lines() -> None:
    settings = []
    for line in (FIRMWARE / "config.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[a-z_0-9]+=\S+", line), f"not a config.txt setting: {line!r}"
        settings.append(line)
    assert settings == ["camera_auto_detect=1", "dtparam=watchdog=on", "dtparam=audio=off"]


UDEV_KEY = re.compile(
    r'^(?P<key>[A-Z_]+)(\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$'
)
UDEV_KEYS = {
    "ACTION",
    "SUBSYSTEM",
    "SUBSYSTEMS",
    "KERNEL",
    "ATTR",
    "ATTRS",
    "ENV",
    "IMPORT",
    "GROUP",
    "MODE",
    "SYMLINK",
    "GOTO",
    "LABEL",
    "TAG",
}


def udev_rules(path: Path) -> list[list[str]]:
    """Each rule as its list of key-operator-value terms (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rules.append([term.strip() for term in re.split(r",\s*(?=[A-Z])", line)])
    return rules


def test_udev_rules_are_well_formed() -> None:
    rules = udev_rules(FIRMWARE / "99-scanstation.rules")
    assert rules
    for rule in rules:
        for term in rule:
            match = UDEV_KEY.match(term)
            assert match, f"not a udev key: {term!r} in {rule}"
            assert match["key"] in UDEV_KEYS, term
        assert any(UDEV_KEY.match(t)["op"] in ("==", "!=") for t in rule) or rule[0].startswith(  # type: ignore[index]
            "LABEL"
        ), f"a rule without a match applies to every device: {rule}"
    labels = [t for r in rules for t in r if t.startswith("LABEL=")]
    gotos = [t for r in rules for t in r if t.startswith("GOTO=")]
    assert [g.split("=", 1)[1] for g in gotos] == [label.split("=", 1)[1] for label in labels]


def test_udev_rules_cover_the_scanner_vendors() -> None:
    text = (FIRMWARE / "99-scanstation.rules").read_text()
    for vendor in ("05e0", "0c2e", "05f9", "1eab"):  # Zebra, Honeywell, Datalogic, Newland
        assert vendor in text
    assert 'SYMLINK+="scanner-%k"' in text


def test_firmware_docs_exist_and_cover_their_topics() -> None:
    setup = (FIRMWARE / "scanner-setup.md").read_text()
    for topic in ("Enter", "AIM", "GS", "Zebra", "Honeywell", "Datalogic", "Newland"):
        assert topic in setup
    wear = (FIRMWARE / "sd-card.md").read_text()
    for topic in ("synchronous", "Storage=volatile", "log2ram", "Overlay File System"):
        assert topic in wear


def test_examples_are_plain_toml() -> None:
    for name in DEPLOYMENTS:
        data: dict[str, Any] = tomllib.loads(example(name).read_text())
        assert "storage" in data


def test_pi_zero_profile_passes_check_config_and_its_guide_shows_it() -> None:
    result = check_config(example("pi-zero"))
    assert result.returncode == 0, result.stderr
    config = load_config(example("pi-zero"), environ={})
    [camera] = config.sources
    assert camera.decode_threads == 1  # type: ignore[union-attr]
    assert config.classifier.idle_unload_s > 0
    guide = (REPO / "docs" / "deploy-pi-zero.md").read_text()
    marker = "<!-- example: docs/examples/pi-zero.toml -->\n```toml\n"
    assert marker in guide
    assert guide.split(marker, 1)[1].split("\n```\n", 1)[0] + "\n" == example("pi-zero").read_text()


def test_fleet_guide_certificates_make_a_broker_the_stations_accept(tmp_path: Path) -> None:
    """The guide's openssl commands, run as written: the broker's certificate verifies for
    its name against the fleet CA, and the broker accepts the station's certificate."""
    import socket
    import ssl

    sys.path.insert(0, str(REPO / "tests"))
    from mosquitto import Broker

    guide = (REPO / "docs" / "deploy-fleet.md").read_text()
    block = guide.split(
        "<!-- certificates: tests/config/test_deploy_examples.py runs this block -->\n```sh\n", 1
    )[1]
    script = block.split("\n```\n", 1)[0]
    subprocess.run(["sh", "-e", "-c", script], cwd=tmp_path, check=True, capture_output=True)
    conf = guide.split("# mosquitto.conf\n", 1)[1].split("\n```", 1)[0]
    tls_lines = [
        line.replace("/etc/mosquitto/certs", str(tmp_path))
        for line in conf.splitlines()
        if line.split(" ", 1)[0] in ("cafile", "certfile", "keyfile", "require_certificate",
                                       "use_identity_as_username")
    ]  # fmt: skip
    assert len(tls_lines) == 5, conf
    broker = Broker(tmp_path / "broker", extra_conf="\n".join(tls_lines)).start()
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "fleet-ca.pem"))
        context.load_cert_chain(str(tmp_path / "station.pem"), str(tmp_path / "station.key"))
        with (
            socket.create_connection(("127.0.0.1", broker.port), 5) as raw,
            context.wrap_socket(raw, server_hostname="mqtt.fleet.example.com") as tls,
        ):
            client_id = b"lane-03"
            body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
            tls.sendall(bytes([0x10, len(body)]) + body)  # CONNECT
            assert tls.recv(4) == b"\x20\x02\x00\x00"  # CONNACK: accepted
        wrong_name = ssl.create_default_context(cafile=str(tmp_path / "fleet-ca.pem"))
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection(("127.0.0.1", broker.port), 5) as raw,
        ):
            wrong_name.wrap_socket(raw, server_hostname="other.example.com")
    finally:
        broker.stop()
