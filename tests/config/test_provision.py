"""firmware-config/provision.sh refuses what cannot work, before it changes anything.

A 32-bit OS and an old Python are faked the way the script sees them: a `dpkg` that answers
armhf, a `python3` that is 3.9, first on PATH (this machine is neither). The real install in
an arm64 rootfs, twice, is scripts/arm64-smoke.sh's job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "firmware-config" / "provision.sh"


def fake_command(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def provision(fake_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    env["PATH"] = f"{fake_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        ["bash", str(PROVISION), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def test_refuses_a_32_bit_os_with_what_to_flash(fake_bin: Path) -> None:
    fake_command(fake_bin, "dpkg", "echo armhf\n")
    result = provision(fake_bin)
    assert result.returncode == 1
    assert "provision: refusing: this is a 32-bit OS (armhf)." in result.stderr
    assert 'Flash "Raspberry Pi OS Lite (64-bit)"' in result.stderr
    # Refused before the plan: nothing would be installed.
    assert "apt-get" not in result.stdout
    assert "venv" not in result.stdout


def test_refuses_python_older_than_3_11(fake_bin: Path) -> None:
    fake_command(fake_bin, "dpkg", "echo arm64\n")
    fake_command(
        fake_bin,
        "python3",
        'case "$1" in --version) echo "Python 3.9.2";; *) exit 1;; esac\n',
    )
    result = provision(fake_bin)
    assert result.returncode == 1
    assert (
        "provision: refusing: Python 3.9.2 is too old; scanstation needs Python 3.11 or newer."
        in result.stderr
    )
    assert "apt-get" not in result.stdout


def test_without_systemd_it_enables_without_starting_and_says_so(fake_bin: Path) -> None:
    if Path("/run/systemd/system").is_dir():
        pytest.skip("SKIPPED: systemd runs here; this is about chroots and containers")
    if shutil.which("dpkg-query") is None:
        pytest.skip("SKIPPED: not a Debian-based system (no dpkg-query)")
    result = provision(fake_bin, "--profile", "kiosk")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(
        "==> systemd is not running (a chroot, an image build or a container): "
        "the unit is enabled but not started, udev is not reloaded\n"
    )
    planned = [line for line in out.splitlines() if line.startswith("+ ")]
    # systemctl enables offline; without systemctl, the link it would make.
    assert {
        "+ systemctl enable scanstation.service",
        "+ ln -sfn /etc/systemd/system/"
        "scanstation.service /etc/systemd/system/multi-user.target.wants/"
        "scanstation.service",
    } & set(planned)
    assert not [line for line in planned if line.startswith(("+ udevadm", "+ systemctl restart"))]
    assert "skipped: udevadm control --reload and trigger" in out
    assert "==> skipped without a running systemd: udev reload, unit start" in out
