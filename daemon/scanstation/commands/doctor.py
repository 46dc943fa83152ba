"""``scanstation doctor``: on-device checks, each a one-line verdict with the fix.

What a user runs when something does not work on the station: OS and architecture, Python
and the binary wheels, the camera, device permissions, barcode scanners, storage, the clock,
the broker, the config and the systemd unit. ``--json`` prints the same for fleet tools.

Every check is a plain function of a ``Host``: the file-system root where /dev, /proc, /sys
and /etc are read, a command runner, a clock, a disk-usage probe, a TCP connector, an
importer and an input-grab probe. The defaults are the real machine; tests pass a fake /dev
tree and fake command outputs. Exit code: 0 when every check is ok, warn or skip; 1 when a
check fails; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import grp
import importlib
import json
import os
import platform
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from scanstation import __version__
from scanstation.commands.devices import list_cameras, list_input_devices, list_serial_ports
from scanstation.config import (
    CameraSourceConfig,
    Config,
    ConfigError,
    HidSourceConfig,
    SerialSourceConfig,
    load_config,
)
from scanstation.config.loader import find_config_file

Status = Literal["ok", "warn", "fail", "skip"]

UNIT = "scanstation.service"
SERVICE_USER = "scanstation"
# The unit's SupplementaryGroups= (systemd/scanstation.service): the service has these even
# when the user itself is not in them.
SERVICE_GROUPS = ("input", "video", "gpio", "dialout")
# No scanstation release is older than this: a clock before it has never been set.
EARLIEST_PLAUSIBLE = 1_767_225_600  # 2026-01-01T00:00:00Z
# Storage: below the first a warning, below the second a failure (besides [storage] disk floor).
LOW_FREE_BYTES = 1024**3
CRITICAL_FREE_BYTES = 200 * 1024**2
# V4L2 nodes that are not cameras: the Pi's codec, ISP and back-end memory-to-memory devices.
NOT_CAMERAS = re.compile(r"bcm2835-codec|bcm2835-isp|pispbe|rpivid|hevc|isp", re.IGNORECASE)
# V4L2 nodes of the Pi's CSI receivers: a camera module is opened through libcamera.
CSI_RECEIVERS = re.compile(r"unicam|rp1-cfe", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command printed and how it exited."""

    returncode: int
    """The exit status (127 when the command does not exist)."""
    stdout: str
    """Its standard output, as text."""
    stderr: str = ""
    """Its standard error, as text."""


Runner = Callable[[Sequence[str]], CommandResult]


def run_command(argv: Sequence[str]) -> CommandResult:
    """Run a command with a short timeout; a missing command is exit 127, as in a shell."""
    if shutil.which(argv[0]) is None:
        return CommandResult(127, "", f"{argv[0]}: command not found")
    try:
        done = subprocess.run(  # noqa: S603 - fixed argument lists, no shell
            list(argv), capture_output=True, text=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]}: timed out after 10 s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def grab_probe(path: Path) -> bool | None:
    """True when another program holds an exclusive grab on an input device (EVIOCGRAB fails
    with EBUSY); False when it is free; None when it cannot be opened or evdev is missing."""
    try:
        import evdev
    except ImportError:
        return None
    try:
        device = evdev.InputDevice(str(path))
    except OSError:
        return None
    try:
        device.grab()
    except OSError as exc:
        return exc.errno == errno.EBUSY
    else:
        device.ungrab()
        return False
    finally:
        device.close()


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


@dataclass(frozen=True, slots=True)
class Host:
    """Everything a check reads from the machine; tests replace each part."""

    root: Path = Path("/")
    """Where /dev, /proc, /sys, /etc and /run are looked up (a fake tree in tests)."""
    run: Runner = run_command
    """Runs a command (systemctl, journalctl, timedatectl, dpkg, rpicam-hello)."""
    clock: Callable[[], float] = time.time
    """Wall-clock seconds since the epoch."""
    disk_usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage
    """(total, used, free) bytes of the file system holding a path."""
    connect: Callable[[str, int, float], socket.socket] = _connect
    """Opens a TCP connection (host, port, timeout)."""
    import_module: Callable[[str], Any] = importlib.import_module
    """Imports a module by name (a wheel for the wrong machine fails here, not at start)."""
    grabbed: Callable[[Path], bool | None] = grab_probe
    """Whether another program holds an input device's exclusive grab."""
    machine: str = field(default_factory=platform.machine)
    """The kernel's machine name (aarch64, armv7l, x86_64)."""
    python: tuple[int, int, int] = field(
        default_factory=lambda: (sys.version_info[0], sys.version_info[1], sys.version_info[2])
    )
    """The running Python's version."""
    broker_timeout: float = 3.0
    """Seconds to wait for the broker's TCP and TLS handshake."""

    def path(self, absolute: str) -> Path:
        """An absolute machine path under ``root``."""
        return self.root / absolute.lstrip("/")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's answer."""

    name: str
    """The check, e.g. ``camera``."""
    status: Status
    """ok, warn (works, but look at it), fail (this is why it does not work) or skip."""
    summary: str
    """One line: what was found."""
    fix: str = ""
    """One line: what to do about it (empty when there is nothing to do)."""
    details: dict[str, Any] = field(default_factory=dict)
    """What the verdict is based on (device paths, versions, figures), for --json."""


@dataclass(frozen=True, slots=True)
class Setup:
    """The config the checks judge against, or why there is none."""

    config: Config | None
    """The loaded config (built-in defaults when no file exists); None when it is invalid."""
    file: Path | None
    """The config file read, or None for the built-in defaults."""
    error: str = ""
    """Why the config could not be loaded."""


def load_setup(path: str | None) -> Setup:
    """Find and load the config the way ``scanstation run`` does, keeping the error."""
    file = find_config_file(path)
    try:
        return Setup(load_config(path), file)
    except ConfigError as exc:
        return Setup(None, file, str(exc))


# ---- helpers ----------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip().rstrip("\x00")
    except OSError:
        return ""


def _os_release(host: Host) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in _read(host.path("/etc/os-release")).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def _group_names(host: Host) -> dict[int, str]:
    """gid -> group name from the (possibly fake) /etc/group."""
    names: dict[int, str] = {}
    for line in _read(host.path("/etc/group")).splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            names[int(parts[2])] = parts[0]
    return names


def _service_identity(host: Host) -> tuple[str, int, set[str]]:
    """(user name, uid, group names) the daemon runs with: the unit's user and its groups plus
    SupplementaryGroups=; the current user when the service user does not exist."""
    passwd = _read(host.path("/etc/passwd")).splitlines()
    groups_file = _read(host.path("/etc/group")).splitlines()
    by_name = {line.split(":")[0]: line.split(":") for line in passwd if line.count(":") >= 3}
    if SERVICE_USER in by_name:
        user, uid, gid = SERVICE_USER, int(by_name[SERVICE_USER][2]), int(by_name[SERVICE_USER][3])
        extra = set(SERVICE_GROUPS)
    else:
        uid, gid = os.getuid(), os.getgid()
        user = next((name for name, e in by_name.items() if e[2] == str(uid)), str(uid))
        extra = set()
    names = _group_names(host)
    groups = {names.get(gid, str(gid)), *extra}
    for line in groups_file:
        parts = line.split(":")
        if len(parts) >= 4 and user in parts[3].split(","):
            groups.add(parts[0])
    return user, uid, groups


def _can_use(host: Host, path: Path, user: tuple[str, int, set[str]]) -> tuple[bool, str]:
    """Whether the service identity may read and write a device node; and its owner/mode."""
    _, uid, groups = user
    st = path.stat()
    group = _group_names(host).get(st.st_gid, str(st.st_gid))
    with contextlib.suppress(KeyError):
        group = group if group != str(st.st_gid) else grp.getgrgid(st.st_gid).gr_name
    owner = str(st.st_uid)
    with contextlib.suppress(KeyError):
        owner = pwd.getpwuid(st.st_uid).pw_name
    mode = stat.S_IMODE(st.st_mode)
    rw = (stat.S_IRUSR | stat.S_IWUSR, stat.S_IRGRP | stat.S_IWGRP, stat.S_IROTH | stat.S_IWOTH)
    ok = (
        uid == 0
        or (st.st_uid == uid and mode & rw[0] == rw[0])
        or (group in groups and mode & rw[1] == rw[1])
        or mode & rw[2] == rw[2]
    )
    return ok, f"{owner}:{group} {mode:04o}"


def _nodes(host: Host, *patterns: str) -> list[Path]:
    dev = host.path("/dev")
    found: list[Path] = []
    for pattern in patterns:
        found.extend(sorted(dev.glob(pattern)))
    return [p for p in found if not p.is_symlink()]


def _shown(host: Host, path: Path) -> str:
    """A path as the machine names it (without the fake root)."""
    with contextlib.suppress(ValueError):
        return "/" + str(path.relative_to(host.root))
    return str(path)


# ---- the checks ---------------------------------------------------------------------------


def check_os(host: Host, setup: Setup) -> Verdict:
    """OS, userland architecture and the board."""
    release = _os_release(host)
    pretty = release.get("PRETTY_NAME", "unknown OS (no /etc/os-release)")
    dpkg = host.run(["dpkg", "--print-architecture"])
    arch = dpkg.stdout.strip() if dpkg.returncode == 0 and dpkg.stdout.strip() else host.machine
    model = _read(host.path("/proc/device-tree/model")) or _read(
        host.path("/sys/firmware/devicetree/base/model")
    )
    details = {"os": pretty, "architecture": arch, "machine": host.machine, "model": model}
    board = f", {model}" if model else ""
    summary = f"{pretty}, {arch} userland on a {host.machine} kernel{board}"
    if arch in ("armhf", "armel", "armv7l", "armv6l", "i386", "i686"):
        return Verdict(
            "os",
            "fail",
            summary + ": a 32-bit OS",
            "flash Raspberry Pi OS Lite (64-bit): zxing-cpp, OpenCV, numpy and LiteRT have no "
            "32-bit ARM wheels (docs/raspberry-pi.md)",
            details,
        )
    codename = release.get("VERSION_CODENAME", "")
    if codename not in ("bookworm", "trixie"):
        return Verdict(
            "os",
            "warn",
            summary + f": untested release {codename or '?'}",
            "the tested OS is Raspberry Pi OS (64-bit) Bookworm (docs/raspberry-pi.md)",
            details,
        )
    return Verdict("os", "ok", summary, "", details)


# module, what needs it, required for every station
WHEELS: tuple[tuple[str, str, bool], ...] = (
    ("zxingcpp", "barcode decoding (zxing-cpp)", True),
    ("cv2", "cameras and images (opencv-python-headless)", True),
    ("numpy", "images (numpy)", True),
    ("PIL", "images (pillow)", True),
    ("biip", "the GS1 benchmark baseline, scanstation bench parse (biip)", False),
    ("evdev", "USB barcode guns (evdev)", False),
    ("ai_edge_litert.interpreter", "the classifier (ai-edge-litert)", False),
)


def check_python(host: Host, setup: Setup) -> Verdict:
    """Python's version and the binary wheels, imported for real."""
    version = ".".join(map(str, host.python))
    details: dict[str, Any] = {"python": version, "modules": {}}
    if host.python[:2] < (3, 11):
        return Verdict(
            "python",
            "fail",
            f"Python {version}: scanstation needs 3.11 or newer",
            "use Raspberry Pi OS Bookworm (Python 3.11) and reinstall with "
            "firmware-config/provision.sh",
            details,
        )
    missing: list[str] = []
    optional: list[str] = []
    for module, purpose, required in WHEELS:
        try:
            host.import_module(module)
        except Exception as exc:  # an ImportError, or a wheel built for another machine
            details["modules"][module] = f"missing: {exc}"
            (missing if required else optional).append(f"{purpose}: {exc}")
        else:
            details["modules"][module] = "ok"
    if missing:
        return Verdict(
            "python",
            "fail",
            f"Python {version}; cannot import " + "; ".join(missing),
            "reinstall: sudo firmware-config/provision.sh (it installs evdev's build tools "
            "gcc, libc6-dev, python3-dev)",
            details,
        )
    if optional:
        return Verdict(
            "python",
            "warn",
            f"Python {version}; cannot import " + "; ".join(optional),
            "pip install evdev (needs gcc, libc6-dev, python3-dev) / ai-edge-litert in the venv "
            "if this station uses them",
            details,
        )
    return Verdict("python", "ok", f"Python {version}; every wheel imports", "", details)


def _camera_sources(setup: Setup) -> list[CameraSourceConfig]:
    if setup.config is None:
        return []
    return [s for s in setup.config.sources if isinstance(s, CameraSourceConfig) and s.enabled]


def check_camera(host: Host, setup: Setup) -> Verdict:
    """Which cameras are present: camera modules (libcamera) and V4L2/USB cameras."""
    nodes = [c for c in list_cameras(host.root) if not NOT_CAMERAS.search(c.name)]
    csi = [c for c in nodes if CSI_RECEIVERS.search(c.name)]
    usb = [c for c in nodes if c not in csi]
    libcamera: list[str] = []
    listing = host.run(["rpicam-hello", "--list-cameras"])
    if listing.returncode == 127:
        listing = host.run(["libcamera-hello", "--list-cameras"])
    if listing.returncode == 0:
        libcamera = re.findall(r"^\s*\d+\s*:\s*(\S+)", listing.stdout, re.MULTILINE)
    found = [f"libcamera {name}" for name in libcamera] or [
        f"CSI receiver {c.path} ({c.name})" for c in csi
    ]
    found += [f"V4L2 {c.path} ({c.name})" for c in usb]
    wanted = _camera_sources(setup)
    details = {
        "libcamera": libcamera,
        "v4l2": [asdict(c) for c in nodes],
        "configured": [f"{s.name}:{s.backend}" for s in wanted],
    }
    live = [s for s in wanted if s.backend != "file"]
    if not found:
        if not live:
            return Verdict(
                "camera", "ok", "no camera, and no camera source configured", "", details
            )
        return Verdict(
            "camera",
            "fail",
            "no camera found (configured: "
            + ", ".join(f"{s.name} backend {s.backend}" for s in live)
            + ")",
            "camera module: check the ribbon cable and `rpicam-hello --list-cameras`; USB: "
            "replug it and look for /dev/video0 (`scanstation devices`)",
            details,
        )
    needs_module = any(s.backend == "picamera2" for s in live)
    if needs_module and not libcamera and not csi:
        return Verdict(
            "camera",
            "fail",
            "found " + ", ".join(found) + ", but a picamera2 source needs a camera module",
            "connect the camera module (and camera_auto_detect=1 in config.txt), or use "
            'backend = "opencv" for a USB camera',
            details,
        )
    return Verdict("camera", "ok", "found " + ", ".join(found), "", details)


def check_permissions(host: Host, setup: Setup) -> Verdict:
    """Whether the service may open cameras, input devices, GPIO chips and serial ports."""
    user = _service_identity(host)
    nodes = _nodes(host, "video*", "input/event*", "gpiochip*", "ttyACM*", "ttyUSB*", "ttyAMA*")
    denied: list[str] = []
    modes: dict[str, str] = {}
    for node in nodes:
        try:
            ok, mode = _can_use(host, node, user)
        except OSError:
            continue
        modes[_shown(host, node)] = mode
        if not ok:
            denied.append(f"{_shown(host, node)} ({mode})")
    details = {"user": user[0], "groups": sorted(user[2]), "devices": modes}
    who = f"user {user[0]} (groups {', '.join(sorted(user[2]))})"
    if not nodes:
        return Verdict(
            "permissions", "ok", "no camera, input, GPIO or serial device nodes", "", details
        )
    if denied:
        return Verdict(
            "permissions",
            "fail",
            f"{who} cannot open " + ", ".join(denied),
            "install the udev rules and groups: sudo firmware-config/provision.sh (or "
            "`sudo usermod -aG video,input,gpio,dialout " + user[0] + "` and log in again)",
            details,
        )
    return Verdict(
        "permissions", "ok", f"{who} may open all {len(nodes)} device nodes", "", details
    )


def _holders(host: Host, device: Path) -> list[str]:
    """Processes that have a device open, as 'name (pid N)', from /proc/*/fd."""
    target = _shown(host, device)
    found: list[str] = []
    for fd_dir in sorted(host.path("/proc").glob("[0-9]*/fd")):
        try:
            links = list(fd_dir.iterdir())
        except OSError:
            continue
        for link in links:
            with contextlib.suppress(OSError):
                if str(link.readlink()) == target:
                    pid = fd_dir.parent.name
                    found.append(f"{_read(fd_dir.parent / 'comm') or '?'} (pid {pid})")
                    break
    return found


def check_scanner(host: Host, setup: Setup) -> Verdict:
    """A scanner-like input device, and whether another program grabs it."""
    devices = [d for d in list_input_devices(host.root) if d.scanner]
    serial = list_serial_ports(host.root)
    config = setup.config
    wants_hid = config is not None and any(
        isinstance(s, HidSourceConfig) and s.enabled for s in config.sources
    )
    wants_serial = config is not None and any(
        isinstance(s, SerialSourceConfig) and s.enabled for s in config.sources
    )
    details: dict[str, Any] = {
        "input": [asdict(d) for d in devices],
        "serial": [asdict(p) for p in serial],
    }
    if not devices:
        found_serial = ", ".join(p.path for p in serial)
        if wants_hid:
            return Verdict(
                "scanner",
                "fail",
                "no input device looks like a barcode scanner (a hid source is configured)"
                + (f"; serial ports: {found_serial}" if found_serial else ""),
                "plug the scanner in and run `scanstation devices`; a scanner in serial or "
                "HID-POS mode needs a serial source or reprogramming (firmware-config/"
                "scanner-setup.md)",
                details,
            )
        if wants_serial and not serial:
            return Verdict(
                "scanner",
                "fail",
                "no serial port for the configured serial source",
                "plug the scanner in and run `scanstation devices`",
                details,
            )
        summary = "no scanner-like input device" + (
            f"; serial ports: {found_serial}" if found_serial else ""
        )
        return Verdict("scanner", "ok", summary, "", details)
    grabbed: list[str] = []
    named: list[str] = []
    for device in devices:
        node = host.path(device.path)
        named.append(f"{device.path} ({device.name})")
        if not host.grabbed(node):
            continue
        holders = _holders(host, node)
        others = [h for h in holders if not h.startswith("scanstation ")]
        if holders and not others:
            named[-1] += ", grabbed by scanstation itself"
        elif others:
            grabbed.append(f"{device.path} by {', '.join(others)}")
        else:
            # /proc/<pid>/fd of other users' processes is readable by root only.
            grabbed.append(f"{device.path} by another program (sudo shows which)")
    details["grabbed"] = grabbed
    if grabbed:
        return Verdict(
            "scanner",
            "fail",
            "scanner grabbed: " + "; ".join(grabbed),
            "stop the program holding it (another scanstation, a kiosk browser's HID "
            "handler), or set grab = false on the hid source",
            details,
        )
    return Verdict("scanner", "ok", "scanner: " + "; ".join(named), "", details)


def _block_device(host: Host, path: Path) -> str:
    """The kernel name of the block device holding path (mmcblk0p2, sda1, nvme0n1p2), or ""."""
    with contextlib.suppress(OSError):
        dev = path.stat().st_dev
        sys_link = host.path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        return sys_link.resolve().name if sys_link.exists() else ""
    return ""


def check_storage(host: Host, setup: Setup) -> Verdict:
    """Free space where the database lives, and whether that is an SD card."""
    storage = setup.config.storage.path if setup.config else Path("/var/lib/scanstation")
    floor = setup.config.storage.disk_floor_mb * 1024**2 if setup.config else 0
    probe = storage
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    total, _, free = host.disk_usage(probe)
    device = _block_device(host, probe)
    sd = device.startswith("mmcblk")
    details = {"path": str(storage), "free_bytes": free, "total_bytes": total, "device": device}
    where = f"{storage}: {free / 1024**3:.1f} GiB free of {total / 1024**3:.1f} GiB"
    where += f" on {device}" + (" (SD card)" if sd else "") if device else ""
    if free < max(CRITICAL_FREE_BYTES, floor):
        return Verdict(
            "storage",
            "fail",
            where + " (below the floor: new images are refused)",
            "free space (sudo journalctl --vacuum-size=50M, apt clean) or lower "
            "[storage] image_retention_days",
            details,
        )
    if free < LOW_FREE_BYTES:
        return Verdict("storage", "warn", where, "free space soon: less than 1 GiB left", details)
    if sd:
        return Verdict(
            "storage",
            "ok",
            where,
            "",
            {**details, "note": "SD card: see firmware-config/sd-card.md for wear and power cuts"},
        )
    return Verdict("storage", "ok", where, "", details)


def check_clock(host: Host, setup: Setup) -> Verdict:
    """Whether the clock is synchronised (TLS certificates and expiry checks depend on it)."""
    now = host.clock()
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    result = host.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    synced: bool | None = None
    if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
        synced = result.stdout.strip() == "yes"
    details = {"now": shown, "ntp_synchronized": synced}
    if now < EARLIEST_PLAUSIBLE:
        return Verdict(
            "clock",
            "fail",
            f"the clock says {shown}, before this release: it was never set",
            "connect to a network with NTP (systemd-timesyncd), or fit an RTC; TLS to the "
            "broker and expiry checks fail until then",
            details,
        )
    if synced is False:
        # A station whose TLS or expiry checks depend on the date fails; one that only scans
        # offline keeps working, so it is a warning there.
        config = setup.config
        needs = [
            what
            for what, used in (
                ("TLS to the broker", config is not None and config.mqtt.tls is not None),
                ("expiry checks", config is not None and config.checks.expiry),
            )
            if used
        ]
        return Verdict(
            "clock",
            "fail" if needs else "warn",
            f"{shown}, not synchronised by NTP"
            + (f" ({' and '.join(needs)} depend on it)" if needs else ""),
            "check the network and `timedatectl timesync-status` (systemd-timesyncd); a Pi "
            "has no real-time clock and keeps time only while synchronised",
            details,
        )
    if synced is None:
        return Verdict(
            "clock", "ok", f"{shown} (synchronisation not known without timedatectl)", "", details
        )
    return Verdict("clock", "ok", f"{shown}, synchronised by NTP", "", details)


def check_broker(host: Host, setup: Setup) -> Verdict:
    """Whether the configured broker answers, through TLS with verification when configured."""
    if setup.config is None:
        return Verdict(
            "broker", "skip", "no valid config to read [mqtt] from", "fix the config first"
        )
    mqtt = setup.config.mqtt
    if not mqtt.host:
        return Verdict("broker", "ok", "MQTT off ([mqtt] host is empty): the outbox keeps events")
    target = f"{mqtt.host}:{mqtt.port}"
    details: dict[str, Any] = {"host": mqtt.host, "port": mqtt.port, "tls": mqtt.tls is not None}
    started = time.monotonic()
    try:
        sock = host.connect(mqtt.host, mqtt.port, host.broker_timeout)
    except OSError as exc:
        return Verdict(
            "broker",
            "fail",
            f"{target} unreachable: {exc.strerror or exc}",
            "check [mqtt] host and port, the network and the firewall (`nc -vz "
            f"{mqtt.host} {mqtt.port}`); events wait in the outbox meanwhile",
            details,
        )
    with sock:
        if mqtt.tls is None:
            ms = (time.monotonic() - started) * 1000
            return Verdict(
                "broker", "ok", f"{target} answers (TCP, {ms:.0f} ms, no TLS)", "", details
            )
        from scanstation.publish.connection import MqttError, tls_context

        try:
            context = tls_context(mqtt)
        except MqttError as exc:
            return Verdict("broker", "fail", str(exc), "fix [mqtt.tls] ca, cert and key", details)
        assert context is not None
        try:
            with context.wrap_socket(sock, server_hostname=mqtt.host) as tls:
                version = tls.version()
        except (ssl.SSLError, OSError) as exc:
            clock_hint = " (or the clock is wrong: see the clock check)"
            return Verdict(
                "broker",
                "fail",
                f"{target}: TLS handshake failed: {exc}",
                "check [mqtt.tls] ca is the broker's CA and the host name matches its "
                f"certificate{clock_hint}",
                details,
            )
    ms = (time.monotonic() - started) * 1000
    return Verdict(
        "broker", "ok", f"{target} answers ({version}, verified, {ms:.0f} ms)", "", details
    )


def check_config(host: Host, setup: Setup) -> Verdict:
    """Whether the config validates (what `run --check-config` says)."""
    where = str(setup.file) if setup.file else "built-in defaults (no config file)"
    if setup.config is None:
        return Verdict(
            "config",
            "fail",
            f"{where}: {setup.error}",
            "fix that key (docs/configuration.md), then `scanstation run --check-config`",
        )
    config = setup.config
    sources = ", ".join(f"{s.type}:{s.name}" for s in config.sources) or "none"
    summary = (
        f"{where}: device {config.device.id}, sources {sources}, mqtt {config.mqtt.host or 'off'}"
    )
    if setup.file is None:
        return Verdict(
            "config",
            "warn",
            summary,
            "copy an example: sudo cp docs/examples/kiosk.toml /etc/scanstation/scanstation.toml",
        )
    return Verdict("config", "ok", summary)


def check_unit(host: Host, setup: Setup) -> Verdict:
    """The systemd unit's state and the last errors in its journal."""
    if not host.path("/run/systemd/system").is_dir():
        return Verdict(
            "unit",
            "skip",
            "systemd is not running here (a container or a chroot)",
            "",
        )
    shown = host.run(
        [
            "systemctl",
            "show",
            UNIT,
            "--property=LoadState,ActiveState,SubState,UnitFileState,NRestarts,Result",
        ]
    )
    if shown.returncode != 0:
        return Verdict("unit", "warn", f"systemctl show failed: {shown.stderr.strip()}", "")
    state = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    details: dict[str, Any] = {"state": state}
    if state.get("LoadState") == "not-found":
        return Verdict(
            "unit",
            "warn",
            f"{UNIT} is not installed",
            "sudo firmware-config/provision.sh installs and enables it",
            details,
        )
    summary = (
        f"{UNIT} {state.get('ActiveState', '?')} ({state.get('SubState', '?')}), "
        f"{state.get('UnitFileState', '?')}, {state.get('NRestarts', '0')} restarts"
    )
    journal = host.run(
        [
            "journalctl",
            "--unit",
            UNIT,
            "--priority",
            "err",
            "--lines",
            "5",
            "--no-pager",
            "--output",
            "cat",
            "--boot",
        ]
    )
    errors = (
        [line for line in journal.stdout.splitlines() if line.strip()]
        if journal.returncode == 0
        else []
    )
    details["last_errors"] = errors
    last = f"; last error: {errors[-1]}" if errors else ""
    if (
        state.get("ActiveState") in ("failed", "inactive")
        or state.get("SubState") == "auto-restart"
    ):
        return Verdict(
            "unit",
            "fail",
            summary + last,
            "read `journalctl -u scanstation -n 50`, fix the cause, then "
            "`sudo systemctl restart scanstation`",
            details,
        )
    if state.get("UnitFileState") not in ("enabled", "enabled-runtime", "static"):
        return Verdict("unit", "warn", summary + last, "sudo systemctl enable scanstation", details)
    if errors:
        return Verdict(
            "unit", "warn", summary + last, "read `journalctl -u scanstation -p err`", details
        )
    return Verdict("unit", "ok", summary, "", details)


Check = Callable[[Host, Setup], Verdict]
CHECKS: tuple[Check, ...] = (
    check_os,
    check_python,
    check_camera,
    check_permissions,
    check_scanner,
    check_storage,
    check_clock,
    check_broker,
    check_config,
    check_unit,
)


def run_checks(host: Host, setup: Setup, checks: Sequence[Check] = CHECKS) -> list[Verdict]:
    """Every check in order; a check that crashes is reported as failed, never hidden."""
    verdicts: list[Verdict] = []
    for check in checks:
        name = check.__name__.removeprefix("check_")
        try:
            verdicts.append(check(host, setup))
        except Exception as exc:
            verdicts.append(
                Verdict(
                    name,
                    "fail",
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "report this with `scanstation doctor --json`",
                )
            )
    return verdicts


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 when nothing failed (ok, warn and skip), else 1."""
    return 1 if any(v.status == "fail" for v in verdicts) else 0


def format_text(verdicts: Sequence[Verdict]) -> str:
    """One line per check, a fix line under each that has one, and a closing count."""
    lines: list[str] = []
    width = max(len(v.name) for v in verdicts)
    for v in verdicts:
        lines.append(f"{v.status.upper():<4}  {v.name:<{width}}  {v.summary}")
        if v.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {v.fix}")
    counts = {s: sum(v.status == s for v in verdicts) for s in ("ok", "warn", "fail", "skip")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def as_json(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The report for fleet tools: version, overall status and every verdict."""
    return {
        "schema": "scanstation.doctor/1",
        "version": __version__,
        "hostname": socket.gethostname(),
        "ok": exit_code(verdicts) == 0,
        "checks": [asdict(v) for v in verdicts],
    }


def doctor_main(argv: list[str], host: Host | None = None) -> int:
    """``scanstation doctor [--json] [--config FILE]``."""
    parser = argparse.ArgumentParser(
        prog="scanstation doctor",
        description="On-device checks, each with a verdict and the fix. "
        "Exit 0 when every check is ok, warn or skip; 1 when one fails.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document (for fleets)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config (default: /etc/scanstation/scanstation.toml, then ./scanstation.toml)",
    )
    args = parser.parse_args(argv)
    verdicts = run_checks(host or Host(), load_setup(args.config))
    if args.json:
        print(json.dumps(as_json(verdicts), indent=2, default=str))
    else:
        print(format_text(verdicts))
    return exit_code(verdicts)
