"""`scanstation fleet`: a live table of every station under a topic prefix on a broker.

It reads what stations publish anyway: the retained ``…/status`` (presence, version) and the
periodic ``…/telemetry`` (scans, fps, outbox backlog). The table logic is pure (``FleetTable``)
so it is tested without a broker; paho runs in its own thread and only feeds the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from scanstation.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandLineError
from scanstation.jsonlimits import JsonLimitError, loads_limited

STALE_FACTOR = 2.5
"""An online station silent for this many telemetry intervals is shown as stale."""
DEFAULT_INTERVAL_S = 30.0


class FleetError(CommandLineError):
    """A broker that cannot be reached or arguments that cannot work; the message says why."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """What the fleet monitor knows of one station."""

    device_id: str
    state: str
    """online | offline | stale (online but silent too long) | unknown (telemetry only)."""
    last_seen: float | None
    """Epoch seconds of the last message from the station."""
    scans: int | None
    """Captures stored by the station (telemetry ``captures_total``)."""
    fps: float | None
    """Camera frames per second (telemetry ``fps``), None when not reported."""
    outbox_depth: int | None
    """Events waiting for the broker."""
    outbox_oldest_age_s: float | None
    """Age of the oldest waiting event, None when the outbox is empty."""
    version: str
    site: str
    reconnects: int | None

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "state": self.state,
            "last_seen": self.last_seen,
            "last_seen_age_s": None if self.last_seen is None else round(now - self.last_seen, 1),
            "scans": self.scans,
            "fps": self.fps,
            "outbox_depth": self.outbox_depth,
            "outbox_oldest_age_s": self.outbox_oldest_age_s,
            "version": self.version,
            "site": self.site,
            "reconnects": self.reconnects,
        }


@dataclass
class _Device:
    state: str = "unknown"
    last_seen: float | None = None
    telemetry_at: float | None = None
    interval: float = DEFAULT_INTERVAL_S
    scans: int | None = None
    fps: float | None = None
    depth: int | None = None
    oldest: float | None = None
    version: str = ""
    site: str = ""
    reconnects: int | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class FleetTable:
    """Every station seen under ``prefix``, updated message by message (thread-safe)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self.devices: dict[str, _Device] = {}
        self.messages = 0
        self.ignored = 0
        self.asked: set[str] = set()
        """Stations sent a telemetry.now request (once each)."""
        self.refused: set[str] = set()
        """Stations that refused it (no or a wrong token)."""
        self._lock = threading.Lock()

    @property
    def subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/+/status",
            f"{self.prefix}/+/telemetry",
            f"{self.prefix}/+/cmd/telemetry.now/reply",
        ]

    def to_ask(self, topic: str) -> str | None:
        """The device to send telemetry.now after `topic` arrived: one that is online, has
        sent no telemetry yet and was not asked before (its figures then show at once, not
        after up to one telemetry interval)."""
        parts = topic.split("/")
        if len(parts) < 2 or parts[-1] != "status":
            return None
        device_id = parts[-2]
        with self._lock:
            device = self.devices.get(device_id)
            if device is None or device.state != "online" or device.telemetry_at is not None:
                return None
            if device_id in self.asked:
                return None
            self.asked.add(device_id)
        return device_id

    def reply(self, topic: str, payload: bytes) -> bool:
        """A station's answer to telemetry.now; True when it is a refusal."""
        parts = topic.split("/")
        try:
            body = loads_limited(payload)
        except JsonLimitError:
            return False
        refused = isinstance(body, dict) and body.get("ok") is False
        if refused and len(parts) >= 4:
            with self._lock:
                self.refused.add(parts[-4])
        return refused

    def update(self, topic: str, payload: bytes, now: float, *, retained: bool = False) -> bool:
        """Apply one message; False when it is not a station message or not readable.

        A retained status is history (sent before the monitor started): it sets the state but
        not "last seen", which only live messages do.
        """
        parts = topic.split("/")
        head = self.prefix.split("/")
        if len(parts) != len(head) + 2 or parts[: len(head)] != head:
            self.ignored += 1
            return False
        device_id, kind = parts[-2], parts[-1]
        if kind not in ("status", "telemetry"):
            self.ignored += 1
            return False
        if not payload:
            # A cleared retained status: the station was decommissioned.
            if kind == "status":
                with self._lock:
                    self.devices.pop(device_id, None)
            return True
        try:
            body = loads_limited(payload)
        except JsonLimitError:
            self.ignored += 1
            return False
        if not isinstance(body, dict):
            self.ignored += 1
            return False
        with self._lock:
            self.messages += 1
            device = self.devices.setdefault(device_id, _Device())
            if not retained:
                device.last_seen = now
            if kind == "status":
                state = body.get("state")
                device.state = state if state in ("online", "offline") else "unknown"
                device.version = str(body.get("version", device.version))
                device.site = str(body.get("site", device.site))
            elif kind == "telemetry":
                device.telemetry_at = now
                if device.state in ("unknown", "stale", "offline"):
                    device.state = "online"  # telemetry is only sent while connected
                outbox: dict[str, Any] = (
                    body["outbox"] if isinstance(body.get("outbox"), dict) else {}
                )
                mqtt: dict[str, Any] = body["mqtt"] if isinstance(body.get("mqtt"), dict) else {}
                scans = _number(body.get("captures_total"))
                device.scans = int(scans) if scans is not None else device.scans
                device.fps = _number(body.get("fps"))
                depth = _number(outbox.get("depth"))
                device.depth = int(depth) if depth is not None else None
                device.oldest = _number(outbox.get("oldest_age_s"))
                reconnects = _number(mqtt.get("reconnects"))
                device.reconnects = int(reconnects) if reconnects is not None else None
                device.interval = _number(body.get("telemetry_interval_s")) or device.interval
                device.version = str(body.get("version", device.version))
                device.site = str(body.get("site", device.site))
        return True

    def rows(self, now: float) -> list[DeviceRow]:
        """Problems first (offline, stale), then by device id."""
        with self._lock:
            items = list(self.devices.items())
        rows = []
        for device_id, d in items:
            state = d.state
            silent = d.telemetry_at is not None and now - d.telemetry_at > STALE_FACTOR * d.interval
            if state == "online" and silent:
                state = "stale"
            rows.append(
                DeviceRow(
                    device_id,
                    state,
                    d.last_seen,
                    d.scans,
                    d.fps,
                    d.depth,
                    d.oldest,
                    d.version,
                    d.site,
                    d.reconnects,
                )
            )
        rank = {"offline": 0, "stale": 1, "unknown": 2, "online": 3}
        return sorted(rows, key=lambda r: (rank.get(r.state, 9), r.device_id))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _cell(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def render_table(rows: Sequence[DeviceRow], now: float, *, header: str = "", limit: int = 0) -> str:
    """The table as text; ``limit`` rows at most (0: all), with a summary line on top."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    backlog = sum(r.outbox_depth or 0 for r in rows)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none yet"
    lines = [f"{header}{len(rows)} devices: {summary}; outbox backlog {backlog}"]
    columns = ("DEVICE", "STATE", "SEEN", "SCANS", "FPS", "OUTBOX", "OLDEST", "VERSION", "SITE")
    table = [columns]
    shown = rows if not limit else rows[:limit]
    for r in shown:
        table.append(
            (
                r.device_id,
                r.state,
                _age(None if r.last_seen is None else now - r.last_seen),
                _cell(r.scans),
                _cell(r.fps, ".1f"),
                _cell(r.outbox_depth),
                _age(r.outbox_oldest_age_s),
                r.version or "-",
                r.site or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(columns))]
    for line in table:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    if limit and len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more (use --json for all)")
    return "\n".join(lines)


# ---- the command -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanstation fleet",
        description="Live table of every station under a topic prefix: presence, scans, fps, "
        "outbox backlog, version.",
    )
    parser.add_argument("--config", metavar="FILE", help="take broker, TLS and credentials from it")
    parser.add_argument("--host", help="broker host (default: [mqtt] host, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="broker port (default: [mqtt] port, else 1883)")
    parser.add_argument("--prefix", help="topic prefix (default: [mqtt] topic_prefix)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="a station command token (default: [mqtt] command_token_file of --config); sent "
        "with the telemetry.now request each station gets when first seen",
    )
    parser.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")
    parser.add_argument(
        "--once", action="store_true", help="gather for --seconds (default 3), print once, exit"
    )
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--refresh", type=float, default=1.0, help="redraw interval (seconds)")
    return parser


def _connect(args: argparse.Namespace, table: FleetTable, out: TextIO) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from scanstation.config import ConfigError, load_config
    from scanstation.publish.connection import (
        MqttError,
        read_password,
        tls_context,
        tls_files,
        tls_handshake_hint,
    )

    config = None
    if args.config:
        try:
            config = load_config(args.config).mqtt
        except ConfigError as exc:
            raise FleetError(str(exc)) from None
    token_file = args.token_file or (config.command_token_file if config else None)
    token = None
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            key = "--token-file" if args.token_file else "mqtt.command_token_file"
            raise FleetError(f"{key} {token_file}: cannot read it: {exc.strerror}") from None
    host = args.host or (config.host if config and config.host else "127.0.0.1")
    port = args.port or (config.port if config else 1883)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            for topic in table.subscriptions:
                c.subscribe(topic, qos=0)
        connected.set()

    request = json.dumps({"authorization": f"Bearer {token}"} if token else {}).encode()

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        topic, payload = message.topic, bytes(message.payload)
        if topic.endswith("/cmd/telemetry.now/reply"):
            if table.reply(topic, payload) and len(table.refused) == 1:
                print(
                    "scanstation fleet: stations refuse telemetry.now without a token, so their "
                    "figures show with their next telemetry; give --token-file (or --config "
                    "with [mqtt] command_token_file), or set [mqtt] commands_without_token = "
                    '["telemetry.now"] on the stations',
                    file=sys.stderr,
                )
            return
        table.update(topic, payload, time.time(), retained=message.retain)
        if (device_id := table.to_ask(topic)) is not None:
            # Telemetry comes every 30 s; ask for it now (QoS 0, JSON authorization: 3.1.1).
            c.publish(f"{table.prefix}/{device_id}/cmd/telemetry.now", request, qos=0)

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        if config is not None:
            if config.username:
                client.username_pw_set(config.username, read_password(config.password_file))
            if (context := tls_context(config)) is not None:
                client.tls_set_context(context)
        client.connect(host, port, keepalive=30)
    except (OSError, MqttError) as exc:
        if config is not None and config.tls is not None:
            hint = tls_handshake_hint(exc, f"{host}:{port}")
            if hint:
                raise FleetError(f"{hint} ({tls_files(config)})") from None
        raise FleetError(f"cannot connect to the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    if not connected.wait(10) or refused:
        client.loop_stop()
        why = refused[0] if refused else "no answer within 10 s"
        raise FleetError(f"the broker at {host}:{port} refused the monitor: {why}")
    return client


def fleet_main(argv: list[str], out: TextIO | None = None) -> int:
    """`scanstation fleet`; returns the exit code."""
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.seconds is not None and args.seconds <= 0:
        print("scanstation fleet: --seconds must be positive", file=sys.stderr)
        return EXIT_USAGE
    if args.refresh <= 0:
        print("scanstation fleet: --refresh must be positive", file=sys.stderr)
        return EXIT_USAGE
    prefix = args.prefix
    if prefix is None and args.config:
        from scanstation.config import ConfigError, load_config

        try:
            prefix = load_config(args.config).mqtt.topic_prefix
        except ConfigError as exc:
            print(f"scanstation fleet: {exc}", file=sys.stderr)
            return EXIT_USAGE
    table = FleetTable(prefix or "scanstation")
    try:
        client = _connect(args, table, out)
    except FleetError as exc:
        print(f"scanstation fleet: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    seconds = args.seconds if args.seconds is not None else (3.0 if args.once else None)
    deadline = None if seconds is None else time.monotonic() + seconds
    live = not args.once and out.isatty()
    # --once: one answer at the end; --json: a JSON line per refresh; a terminal: a live
    # redraw; a pipe without --json: the table once at the end.
    streaming = not args.once and (args.json or live)
    try:
        while deadline is None or time.monotonic() < deadline:
            left = args.refresh if deadline is None else deadline - time.monotonic()
            time.sleep(max(min(args.refresh, left), 0))
            if streaming:
                _show(table, args, out, live=live)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if not streaming:
        _show(table, args, out, live=False, final=True)
    return EXIT_OK


def _show(
    table: FleetTable, args: argparse.Namespace, out: TextIO, *, live: bool, final: bool = False
) -> None:
    now = time.time()
    rows = table.rows(now)
    if args.json:
        body = {
            "time": now,
            "prefix": table.prefix,
            "devices": [r.as_json(now) for r in rows],
            "counts": {s: sum(1 for r in rows if r.state == s) for s in {r.state for r in rows}},
        }
        out.write(json.dumps(body, indent=2 if final else None) + "\n")
    elif live:
        import shutil

        height = shutil.get_terminal_size((100, 40)).lines
        text = render_table(rows, now, header=f"{table.prefix}: ", limit=max(height - 4, 5))
        out.write("\x1b[H\x1b[2J" + text + "\n")
    elif final:
        out.write(render_table(rows, now, header=f"{table.prefix}: ") + "\n")
    out.flush()
