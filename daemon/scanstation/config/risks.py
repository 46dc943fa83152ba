"""Settings that are valid but risky: `run --check-config` and the daemon's start warn of them.

Each warning names the key and the risk, so the operator can decide; none stops the daemon.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanstation.config.loader import Config

VOLATILE = (Path("/tmp"), Path("/run"), Path("/dev/shm"), Path("/var/tmp"))  # noqa: S108 (warned of, not used)
"""Folders that are (or often are) memory file systems, emptied at reboot."""
PSEUDO = (Path("/dev"), Path("/proc"), Path("/sys"))


def _within(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _storage_risks(path: Path) -> list[str]:
    path = Path(os.path.abspath(path))
    if _within(path, PSEUDO):
        return [f"storage.path = {str(path)!r} is on a device or kernel file system: nothing "
                "written there is kept (captures would be lost)"]  # fmt: skip
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode):
        return [f"storage.path = {str(path)!r} is not a directory: the database cannot be "
                "created there"]  # fmt: skip
    if _within(path, VOLATILE):
        return [f"storage.path = {str(path)!r} is usually a memory file system: captures and "
                "the outbox are lost at reboot"]  # fmt: skip
    return []


def risky_settings(config: Config) -> list[str]:
    """One line per risky value: ``key = value: the risk``."""
    risks = _storage_risks(config.storage.path)
    if config.storage.disk_floor_mb == 0:
        risks.append(
            "storage.disk_floor_mb = 0: no free-space reserve, so a full disk is found only "
            "when a write fails (keep at least 50)"
        )
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (this is the check for it)
        risks.append(
            f"http.bind = {config.http.bind!r} listens on every interface: the UI and API are "
            "reachable from every network this device is on (bind one address, or firewall)"
        )
    qr = config.qr_analysis
    if qr.allow_private_networks:
        risks.append(
            "qr_analysis.allow_private_networks = true: a scanned QR code can make the station "
            "request addresses on its own network (SSRF); lab use only"
        )
    for text in qr.allow_networks:
        if _wide_or_sensitive(ipaddress.ip_network(text, strict=False)):
            risks.append(
                f"qr_analysis.allow_networks entry {text!r} is very wide or covers loopback / "
                "link-local (cloud metadata): a scanned QR code can reach those addresses"
            )
    if qr.allow_endpoints:
        risks.append(
            f"qr_analysis.allow_endpoints = {qr.allow_endpoints!r}: a scanned QR code can make "
            "the station request these servers although they are not public; lab use only"
        )
    mqtt = config.mqtt
    if mqtt.host and mqtt.tls is None and not _is_loopback(mqtt.host):
        risks.append(
            f"mqtt.host = {mqtt.host!r} without [mqtt.tls]: captures, credentials and command "
            "tokens cross the network in clear text"
        )
    if mqtt.tls is not None and mqtt.tls.insecure:
        risks.append("mqtt.tls.insecure = true: the broker's certificate is not verified")
    open_commands = sorted(set(mqtt.commands_without_token) - {"telemetry.now"})
    if open_commands:
        risks.append(
            f"mqtt.commands_without_token = {open_commands!r}: any client on the broker can "
            "run these"
        )
    if config.modbus.enabled and not _is_loopback(config.modbus.host):
        risks.append(
            f"modbus.listen = {config.modbus.listen!r}: Modbus TCP has no authentication; anyone "
            "who reaches this address can read the counters and fire the trigger"
        )
    if config.opcua.enabled and not _is_loopback(config.opcua.host):
        risks.append(
            f"opcua.endpoint = {config.opcua.endpoint!r}: served without a security policy; "
            "anyone who reaches it can browse and call Scan"
        )
    return risks


def _wide_or_sensitive(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if network.version == 4:
        sensitive = ("127.0.0.1", "169.254.169.254")
        return network.prefixlen <= 8 or any(ipaddress.ip_address(a) in network for a in sensitive)
    return network.prefixlen <= 32 or ipaddress.ip_address("::1") in network


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
