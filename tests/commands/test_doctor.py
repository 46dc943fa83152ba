"""`scanstation doctor`: every failing check on a fake machine tree, and once for real here.

The fakes are what this machine lacks: a /dev, /sys and /proc tree with a camera, input
devices and serial ports (real files with real modes), and command outputs (systemctl,
journalctl, timedatectl, rpicam-hello) injected through ``Host``. The broker checks use
real sockets on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conftest import SCANSTATION
from scanstation.commands.doctor import (
    CHECKS,
    CommandResult,
    Host,
    Setup,
    Verdict,
    as_json,
    check_broker,
    check_camera,
    check_clock,
    check_config,
    check_os,
    check_permissions,
    check_python,
    check_scanner,
    check_storage,
    check_unit,
    exit_code,
    format_text,
    load_setup,
    run_checks,
)
from scanstation.config import parse_config

NOW = 1_780_000_000.0  # 2026-05-28
LIBCAMERA_LIST = """Available cameras
-----------------
0 : imx708_wide [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
"""


def fake_runner(outputs: Mapping[tuple[str, ...], CommandResult]):  # type: ignore[no-untyped-def]
    """A command runner answering from a table; anything else is 'command not found'."""

    def run(argv: Sequence[str]) -> CommandResult:
        for prefix, result in outputs.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return result
        return CommandResult(127, "", f"{argv[0]}: command not found")

    return run


class Machine:
    """A fake machine tree: /etc, /dev, /sys and /proc as real files under a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        gid = os.getgid()
        self.write(
            "etc/os-release",
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n',
        )
        # The service user (uid 999) exists; the test's own gid is named by each test.
        self.write(
            "etc/passwd",
            "root:x:0:0::/root:/bin/bash\n"
            "scanstation:x:999:999::/var/lib/scanstation:/usr/sbin/nologin\n",
        )
        self.groups = {"scanstation": 999}
        self.own_group = gid
        self.name_own_group("staff")
        (root / "dev").mkdir(exist_ok=True)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def name_own_group(self, name: str) -> None:
        """The group that owns the fake device nodes (the test's gid) gets this name."""
        lines = [f"{n}:x:{g}:" for n, g in self.groups.items() if g != self.own_group]
        lines.append(f"{name}:x:{self.own_group}:")
        self.write("etc/group", "\n".join(lines) + "\n")

    def device(self, relative: str, mode: int) -> Path:
        path = self.write(f"dev/{relative}", "")
        path.chmod(mode)
        return path

    def camera(self, node: str, name: str, mode: int = 0o660) -> None:
        self.write(f"sys/class/video4linux/{node}/name", name + "\n")
        self.device(node, mode)

    def input_device(self, node: str, name: str, vendor: str = "0c2e") -> None:
        base = f"sys/class/input/{node}/device"
        self.write(f"{base}/name", name + "\n")
        self.write(f"{base}/id/vendor", vendor + "\n")
        self.write(f"{base}/id/product", "0b61\n")
        # Letters, digits and Enter: a keyboard-wedge scanner.
        self.write(
            f"{base}/capabilities/key",
            "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe\n",
        )
        self.device(f"input/{node}", 0o660)

    def process(self, pid: int, comm: str, opened: str) -> None:
        self.write(f"proc/{pid}/comm", comm + "\n")
        fd = self.root / f"proc/{pid}/fd"
        fd.mkdir(parents=True, exist_ok=True)
        (fd / "5").symlink_to(opened)

    def host(self, **changes: object) -> Host:
        defaults: dict[str, object] = {
            "root": self.root,
            "run": fake_runner({("dpkg",): CommandResult(0, "arm64\n")}),
            "clock": lambda: NOW,
            "disk_usage": lambda path: (32 * 1024**3, 8 * 1024**3, 24 * 1024**3),
            "grabbed": lambda path: False,
            "machine": "aarch64",
            "python": (3, 11, 2),
        }
        defaults.update(changes)
        return Host(**defaults)  # type: ignore[arg-type]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path / "machine")


def setup_of(data: Mapping[str, object], tmp_path: Path) -> Setup:
    merged = {"storage": {"path": str(tmp_path / "state")}, **data}
    return Setup(parse_config(dict(merged), "test.toml", environ={}), tmp_path / "test.toml")


CAMERA_SOURCE = {
    "sources": [{"type": "camera", "name": "cam0", "backend": "opencv", "device": "0"}]
}
HID_SOURCE = {"sources": [{"type": "hid", "name": "gun", "device": "auto"}]}


# ---- camera ---------------------------------------------------------------------------


def test_camera_missing_fails_when_a_camera_source_is_configured(
    machine: Machine, tmp_path: Path
) -> None:
    # The Pi's codec and ISP nodes are video devices but not cameras.
    machine.camera("video10", "bcm2835-codec-decode")
    machine.camera("video13", "bcm2835-isp")
    verdict = check_camera(machine.host(), setup_of(CAMERA_SOURCE, tmp_path))
    assert verdict.status == "fail"
    assert verdict.summary == "no camera found (configured: cam0 backend opencv)"
    assert "rpicam-hello --list-cameras" in verdict.fix


def test_camera_missing_is_fine_without_a_camera_source(machine: Machine, tmp_path: Path) -> None:
    verdict = check_camera(machine.host(), setup_of(HID_SOURCE, tmp_path))
    assert (verdict.status, verdict.summary) == ("ok", "no camera, and no camera source configured")


def test_camera_names_libcamera_modules_and_usb_cameras(machine: Machine, tmp_path: Path) -> None:
    machine.camera("video0", "rp1-cfe")
    machine.camera("video8", "HD Pro Webcam C920")
    run = fake_runner({("rpicam-hello", "--list-cameras"): CommandResult(0, LIBCAMERA_LIST)})
    verdict = check_camera(machine.host(run=run), setup_of(CAMERA_SOURCE, tmp_path))
    assert verdict.status == "ok"
    assert verdict.summary == "found libcamera imx708_wide, V4L2 /dev/video8 (HD Pro Webcam C920)"


def test_camera_picamera2_source_without_a_module_fails(machine: Machine, tmp_path: Path) -> None:
    machine.camera("video0", "HD Pro Webcam C920")
    source = {"sources": [{"type": "camera", "name": "cam0", "backend": "picamera2"}]}
    verdict = check_camera(machine.host(), setup_of(source, tmp_path))
    assert verdict.status == "fail"
    assert "a picamera2 source needs a camera module" in verdict.summary


# ---- permissions ---------------------------------------------------------------------


def test_permissions_fail_names_each_node_the_service_cannot_open(
    machine: Machine, tmp_path: Path
) -> None:
    machine.camera("video0", "HD Pro Webcam C920", mode=0o600)  # root-only, as without udev rules
    machine.device("gpiochip0", 0o660)
    machine.device("ttyACM0", 0o660)
    machine.name_own_group("staff")  # not one of the service's groups
    verdict = check_permissions(machine.host(), setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert "cannot open /dev/video0" in verdict.summary
    assert "/dev/gpiochip0" in verdict.summary
    assert "/dev/ttyACM0" in verdict.summary
    assert "0600" in verdict.summary
    assert "provision.sh" in verdict.fix
    assert "usermod -aG video,input,gpio,dialout scanstation" in verdict.fix


def test_permissions_ok_through_the_units_supplementary_groups(
    machine: Machine, tmp_path: Path
) -> None:
    machine.camera("video0", "HD Pro Webcam C920", mode=0o660)
    machine.input_device("event3", "Honeywell Imaging & Mobility 1900")
    machine.name_own_group("video")  # the nodes' group is one the unit gives the service
    verdict = check_permissions(machine.host(), setup_of({}, tmp_path))
    assert verdict.status == "ok"
    assert verdict.summary.endswith("may open all 2 device nodes")


# ---- scanner -------------------------------------------------------------------------


def test_scanner_grabbed_by_another_program_fails_and_names_it(
    machine: Machine, tmp_path: Path
) -> None:
    machine.input_device("event3", "Honeywell Imaging & Mobility 1900")
    machine.process(4242, "kiosk-browser", "/dev/input/event3")
    host = machine.host(grabbed=lambda path: path.name == "event3")
    verdict = check_scanner(host, setup_of(HID_SOURCE, tmp_path))
    assert verdict.status == "fail"
    assert verdict.summary == "scanner grabbed: /dev/input/event3 by kiosk-browser (pid 4242)"
    assert "grab = false" in verdict.fix


def test_scanner_grabbed_by_the_station_itself_is_fine(machine: Machine, tmp_path: Path) -> None:
    machine.input_device("event3", "Honeywell Imaging & Mobility 1900")
    machine.process(311, "scanstation", "/dev/input/event3")
    host = machine.host(grabbed=lambda path: True)
    verdict = check_scanner(host, setup_of(HID_SOURCE, tmp_path))
    assert verdict.status == "ok"
    assert verdict.summary == (
        "scanner: /dev/input/event3 (Honeywell Imaging & Mobility 1900), "
        "grabbed by scanstation itself"
    )


def test_scanner_missing_fails_when_a_hid_source_is_configured(
    machine: Machine, tmp_path: Path
) -> None:
    machine.input_device("event0", "AT Translated Set 2 keyboard", vendor="0001")
    verdict = check_scanner(machine.host(), setup_of(HID_SOURCE, tmp_path))
    assert verdict.status == "fail"
    assert "no input device looks like a barcode scanner" in verdict.summary


def test_scanner_present_and_free(machine: Machine, tmp_path: Path) -> None:
    machine.input_device("event3", "Honeywell Imaging & Mobility 1900")
    verdict = check_scanner(machine.host(), setup_of(HID_SOURCE, tmp_path))
    assert verdict.status == "ok"
    assert verdict.summary == ("scanner: /dev/input/event3 (Honeywell Imaging & Mobility 1900)")


# ---- clock ---------------------------------------------------------------------------


def test_clock_unsynchronised_fails_when_expiry_checks_depend_on_it(
    machine: Machine, tmp_path: Path
) -> None:
    run = fake_runner({("timedatectl",): CommandResult(0, "no\n")})
    verdict = check_clock(machine.host(run=run), setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert (
        verdict.summary
        == "2026-05-28 20:26:40 UTC, not synchronised by NTP (expiry checks depend on it)"
    )
    assert "timedatectl timesync-status" in verdict.fix


def test_clock_unsynchronised_is_a_warning_for_an_offline_scanner(
    machine: Machine, tmp_path: Path
) -> None:
    run = fake_runner({("timedatectl",): CommandResult(0, "no\n")})
    verdict = check_clock(machine.host(run=run), setup_of({"checks": {"expiry": False}}, tmp_path))
    assert verdict.status == "warn"


def test_clock_never_set_fails(machine: Machine, tmp_path: Path) -> None:
    run = fake_runner({("timedatectl",): CommandResult(0, "no\n")})
    verdict = check_clock(machine.host(run=run, clock=lambda: 86_400.0), setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert (
        verdict.summary
        == "the clock says 1970-01-02 00:00:00 UTC, before this release: it was never set"
    )


def test_clock_synchronised(machine: Machine, tmp_path: Path) -> None:
    run = fake_runner({("timedatectl",): CommandResult(0, "yes\n")})
    verdict = check_clock(machine.host(run=run), setup_of({}, tmp_path))
    assert (verdict.status, verdict.summary) == (
        "ok",
        "2026-05-28 20:26:40 UTC, synchronised by NTP",
    )


# ---- broker (real sockets on loopback) -------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def test_broker_unreachable_fails_with_the_address(machine: Machine, tmp_path: Path) -> None:
    port = _closed_port()
    setup = setup_of({"mqtt": {"host": "127.0.0.1", "port": port}}, tmp_path)
    verdict = check_broker(machine.host(broker_timeout=1.0), setup)
    assert verdict.status == "fail"
    assert verdict.summary == f"127.0.0.1:{port} unreachable: Connection refused"
    assert f"nc -vz 127.0.0.1 {port}" in verdict.fix


def test_broker_answering_plain_tcp(
    machine: Machine, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    setup = setup_of({"mqtt": {"host": "127.0.0.1", "port": port}}, tmp_path)
    verdict = check_broker(machine.host(), setup)
    assert verdict.status == "ok"
    assert verdict.summary.startswith(f"127.0.0.1:{port} answers (TCP, ")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on loopback with a self-signed certificate for 'localhost'."""
    if shutil.which("openssl") is None:
        pytest.skip("SKIPPED: openssl is not installed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], cert
    server.close()
    thread.join(timeout=5)


def test_broker_tls_verified_with_the_configured_ca(
    machine: Machine, tmp_path: Path, tls_broker: tuple[int, Path]
) -> None:
    port, cert = tls_broker
    setup = setup_of(
        {"mqtt": {"host": "localhost", "port": port, "tls": {"ca": str(cert)}}}, tmp_path
    )
    verdict = check_broker(machine.host(), setup)
    assert verdict.status == "ok", verdict
    assert "TLSv1.3, verified" in verdict.summary


def test_broker_tls_with_the_wrong_ca_fails(
    machine: Machine, tmp_path: Path, tls_broker: tuple[int, Path]
) -> None:
    port, _ = tls_broker
    # The system CAs do not know the broker's self-signed certificate.
    setup = setup_of({"mqtt": {"host": "localhost", "port": port, "tls": {}}}, tmp_path)
    verdict = check_broker(machine.host(), setup)
    assert verdict.status == "fail"
    assert "TLS handshake failed" in verdict.summary
    assert "CERTIFICATE_VERIFY_FAILED" in verdict.summary


# ---- the other checks ----------------------------------------------------------------


def test_os_32_bit_fails_with_the_way_out(machine: Machine, tmp_path: Path) -> None:
    machine.write("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    host = machine.host(run=fake_runner({("dpkg",): CommandResult(0, "armhf\n")}))
    verdict = check_os(host, setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert verdict.summary == (
        "Debian GNU/Linux 12 (bookworm), armhf userland on a aarch64 kernel, "
        "Raspberry Pi 4 Model B Rev 1.4: a 32-bit OS"
    )
    assert "Raspberry Pi OS Lite (64-bit)" in verdict.fix


def test_python_missing_wheel_fails(machine: Machine, tmp_path: Path) -> None:
    def importer(name: str) -> object:
        if name == "zxingcpp":
            raise ImportError("No module named 'zxingcpp'")
        return object()

    verdict = check_python(machine.host(import_module=importer), setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert "barcode decoding (zxing-cpp): No module named 'zxingcpp'" in verdict.summary


def test_python_too_old_fails(machine: Machine, tmp_path: Path) -> None:
    verdict = check_python(machine.host(python=(3, 9, 2)), setup_of({}, tmp_path))
    assert (verdict.status, verdict.summary) == (
        "fail",
        "Python 3.9.2: scanstation needs 3.11 or newer",
    )


def test_storage_low_fails_and_sd_card_is_named(machine: Machine, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    dev = state.stat().st_dev
    card = machine.root / "sys/devices/platform/emmc2bus/mmc0/block/mmcblk0/mmcblk0p2"
    card.mkdir(parents=True)
    link = machine.root / f"sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    link.parent.mkdir(parents=True)
    link.symlink_to(card)
    host = machine.host(disk_usage=lambda path: (32 * 1024**3, 32 * 1024**3, 50 * 1024**2))
    verdict = check_storage(host, setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert verdict.summary == (
        f"{state}: 0.0 GiB free of 32.0 GiB on mmcblk0p2 (SD card)"
        " (below the floor: new images are refused)"
    )


def test_config_invalid_fails_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "scanstation.toml"
    bad.write_text('[storage]\npath = "/var/lib/scanstation"\ncolour = "blue"\n')
    verdict = check_config(Host(), load_setup(str(bad)))
    assert verdict.status == "fail"
    assert "storage.colour" in verdict.summary
    assert "--check-config" in verdict.fix


def test_unit_failed_shows_the_last_journal_error(machine: Machine, tmp_path: Path) -> None:
    (machine.root / "run/systemd/system").mkdir(parents=True)
    run = fake_runner(
        {
            ("systemctl", "show"): CommandResult(
                0,
                "LoadState=loaded\nActiveState=failed\nSubState=failed\nUnitFileState=enabled\n"
                "NRestarts=10\nResult=exit-code\n",
            ),
            ("journalctl",): CommandResult(
                0,
                "scanstation run: database is locked\n"
                "scanstation: bad config: sources.0.device: /dev/video9 does not exist\n",
            ),
        }
    )
    verdict = check_unit(machine.host(run=run), setup_of({}, tmp_path))
    assert verdict.status == "fail"
    assert verdict.summary == (
        "scanstation.service failed (failed), enabled, 10 restarts; last error: "
        "scanstation: bad config: sources.0.device: /dev/video9 does not exist"
    )
    assert verdict.details["last_errors"][0] == "scanstation run: database is locked"


def test_unit_skipped_without_systemd(machine: Machine, tmp_path: Path) -> None:
    verdict = check_unit(machine.host(), setup_of({}, tmp_path))
    assert verdict.status == "skip"


# ---- the whole report ----------------------------------------------------------------


def test_exit_code_is_1_only_when_a_check_fails() -> None:
    assert (
        exit_code([Verdict("a", "ok", ""), Verdict("b", "warn", ""), Verdict("c", "skip", "")]) == 0
    )
    assert exit_code([Verdict("a", "ok", ""), Verdict("b", "fail", "")]) == 1


def test_text_report_has_one_line_per_check_and_the_fixes(machine: Machine, tmp_path: Path) -> None:
    machine.camera("video0", "HD Pro Webcam C920", mode=0o600)
    run = fake_runner(
        {("dpkg",): CommandResult(0, "arm64\n"), ("timedatectl",): CommandResult(0, "no\n")}
    )
    verdicts = run_checks(machine.host(run=run), setup_of(CAMERA_SOURCE, tmp_path))
    text = format_text(verdicts)
    lines = text.splitlines()
    assert [line.split()[1] for line in lines if not line.startswith(" ")][:-1] == [
        "os",
        "python",
        "camera",
        "permissions",
        "scanner",
        "storage",
        "clock",
        "broker",
        "config",
        "unit",
    ]
    assert lines[-1] == "7 ok, 0 warn, 2 fail, 1 skip"
    assert "FAIL  permissions" in text
    assert "FAIL  clock" in text
    # A fix under each failure; nothing to fix for the rest.
    assert sum(line.lstrip().startswith("fix: ") for line in lines) == 2


def test_a_crashing_check_is_reported_not_hidden(machine: Machine, tmp_path: Path) -> None:
    def check_broken(host: Host, setup: Setup) -> Verdict:
        raise RuntimeError("boom")

    (verdict,) = run_checks(machine.host(), setup_of({}, tmp_path), [check_broken])
    assert (verdict.name, verdict.status) == ("broken", "fail")
    assert verdict.summary == "the check itself failed: RuntimeError: boom"


# ---- for real, on this machine ---------------------------------------------------------


def test_doctor_runs_for_real_here(tmp_path: Path) -> None:
    config = tmp_path / "scanstation.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "state"}"\n')
    text = subprocess.run(
        [*SCANSTATION, "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    verdict_lines = [line for line in text.stdout.splitlines() if not line.startswith(" ")][:-1]
    names = [check.__name__.removeprefix("check_") for check in CHECKS]
    assert [line.split()[1] for line in verdict_lines] == names, text.stdout
    assert all(line.split()[0] in ("OK", "WARN", "FAIL", "SKIP") for line in verdict_lines)
    assert "OK    config" in text.stdout  # the file given is valid

    report = subprocess.run(
        [*SCANSTATION, "doctor", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(report.stdout)
    assert data["schema"] == "scanstation.doctor/1"
    assert [c["name"] for c in data["checks"]] == names
    assert {c["status"] for c in data["checks"]} <= {"ok", "warn", "fail", "skip"}
    failed = any(c["status"] == "fail" for c in data["checks"])
    assert data["ok"] is not failed
    assert report.returncode == text.returncode == (1 if failed else 0)
    assert data["checks"][1]["details"]["modules"]["zxingcpp"] == "ok"  # the real wheels import


def test_json_report_round_trips(machine: Machine, tmp_path: Path) -> None:
    verdicts = run_checks(machine.host(), setup_of({}, tmp_path))
    data = json.loads(json.dumps(as_json(verdicts), default=str))
    assert data["ok"] == (exit_code(verdicts) == 0)
    assert [c["name"] for c in data["checks"]] == [v.name for v in verdicts]
    assert data["checks"][0]["details"]["architecture"] == "arm64"
