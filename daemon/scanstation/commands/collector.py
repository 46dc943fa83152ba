"""`scanstation collector`: run the fleet collector, check its config, export fleet CSV.

scanstation collector --config FILE [--check-config]
scanstation collector export --config FILE [--since ISO] [--until ISO] [--site S] [--device D]
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from scanstation.collector import CollectorError
from scanstation.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, run_with_config
from scanstation.config import Config

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "device_id",
    "site",
    "seq",
    "event_id",
    "public_id",
    "status",
    "raw_value",
    "gtin",
    "created",
    "received_at",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanstation collector",
        description=(
            "The fleet collector: every station's MQTT events stored exactly once in PostgreSQL "
            "(shared subscriptions, acknowledged after COMMIT, seq gaps replayed)."
        ),
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "export"),
        default="run",
        help="run (default): collect until SIGTERM; export: capture events as CSV on stdout",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML with [collector] and [mqtt]")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the config and exit (0 or 2)"
    )
    parser.add_argument("--since", help="export: events created at or after (ISO 8601)")
    parser.add_argument("--until", help="export: events created before (ISO 8601)")
    parser.add_argument("--site", help="export: one site only")
    parser.add_argument("--device", help="export: one station only")
    return parser


def check_config(config: Config) -> list[str]:
    """What keeps this config from running a collector (empty: it can run)."""
    problems = []
    if not config.collector.database:
        problems.append(
            'collector.database is not set; e.g. database = "postgresql://collector@db/fleet"'
        )
    if not config.mqtt.host:
        problems.append("mqtt.host is not set: the collector needs the fleet's broker")
    return problems


def warnings(config: Config) -> list[str]:
    found = []
    if config.collector.command_token_file is None:
        found.append(
            "collector.command_token_file is not set: stations refuse outbox.replay without "
            "the fleet's command token, so seq gaps cannot heal"
        )
    if config.mqtt.tls is None and config.mqtt.host not in ("127.0.0.1", "localhost", "::1"):
        found.append(f"mqtt.tls is not set: events travel to {config.mqtt.host} unencrypted")
    if not config.mqtt.client_id:
        found.append(
            "mqtt.client_id is not set: the collector is scanstation-collector-"
            f"{config.device.id}; give each collector process its own stable id"
        )
    return found


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CollectorError(
            f"--{name} {text!r} is not an ISO 8601 time, e.g. 2026-12-01 or 2026-12-01T08:00Z"
        ) from None


def export(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Fleet-wide capture events as CSV (cells guarded against spreadsheet formulas)."""
    from scanstation.collector.consumer import connect_database
    from scanstation.services.exports import safe_row

    where, params = [], []
    since, until = _time(args.since, "since"), _time(args.until, "until")
    if since is not None:
        where.append("created >= %s")
        params.append(since)
    if until is not None:
        where.append("created < %s")
        params.append(until)
    for column, value in (("site", args.site), ("device_id", args.device)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    sql = (
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM capture_events"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY device_id, seq"
    )
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    rows = 0
    with connect_database(config) as conn, conn.cursor(name="export") as cur:
        cur.itersize = 5000
        cur.execute(sql, params)
        for row in cur:
            writer.writerow(safe_row(_cell(v) for v in row))
            rows += 1
    log.info("collector export: %d rows", rows)
    return EXIT_OK


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def collector_main(argv: Sequence[str]) -> int:
    return run_with_config("collector", _parser(), argv, _main)


def _main(args: argparse.Namespace, config: Config) -> int:
    problems = check_config(config)
    if problems:
        for problem in problems:
            print(f"scanstation collector: bad config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "run":
        for warning in warnings(config):
            print(f"warning: {warning}", file=sys.stderr)
    if args.check_config:
        from scanstation.collector.consumer import client_id, subscriptions

        print(
            f"config ok: collector {client_id(config)}, group {config.collector.group}, "
            f"broker {config.mqtt.host}:{config.mqtt.port}, subscribes "
            f"{', '.join(subscriptions(config))}"
        )
        return EXIT_OK
    try:
        if args.action == "export":
            return export(config, args, sys.stdout)
        return run(config)
    except CollectorError as exc:
        print(f"scanstation collector: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def run(config: Config) -> int:
    from scanstation.collector.consumer import Collector

    collector = Collector(config)

    def stop(signum: int, frame: Any) -> None:
        collector.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    collector.run()
    return EXIT_OK
