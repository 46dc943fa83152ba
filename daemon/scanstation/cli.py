"""The command line: `scanstation <command>`; turns arguments into a Config and runs it.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config (naming the offending key).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from scanstation import __version__
from scanstation.barcode.interpret import InterpretError
from scanstation.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandLineError
from scanstation.config import Config, ConfigError, load_config
from scanstation.config.loader import find_config_file

log = logging.getLogger("scanstation")

# Sub-commands whose implementation lives with the capability they belong to.
DELEGATED: dict[str, tuple[str, str, str]] = {
    "decode": ("scanstation.barcode.decode", "decode_main", "decode barcodes in images and videos"),
    "devices": (
        "scanstation.commands.devices",
        "devices_main",
        "list cameras, scanner-like input devices and serial ports; --record a scanner",
    ),
    "hid-replay": (
        "scanstation.commands.devices",
        "hid_replay_main",
        "decode a recorded HID event stream into scans",
    ),
    "fleet": ("scanstation.commands.fleet", "fleet_main", "live table of every device on a broker"),
    "collector": (
        "scanstation.commands.collector",
        "collector_main",
        "the fleet collector: every station's events exactly once in PostgreSQL; export CSV",
    ),
    "report": (
        "scanstation.commands.report",
        "report_main",
        "analytics: scans per GTIN and batch, recalled batches scanned, catalog completeness",
    ),
    "db": (
        "scanstation.commands.db",
        "db_main",
        "database integrity check, salvage of a damaged file, backup and restore",
    ),
    "doctor": (
        "scanstation.commands.doctor",
        "doctor_main",
        "on-device checks with a verdict and a fix each; --json for fleets",
    ),
    "set-password": (
        "scanstation.web.passwords",
        "set_password_main",
        "set the web UI password",
    ),
    "backup": (
        "scanstation.commands.backup",
        "backup_main",
        "one file with the database, config, keys and images (safe while the daemon runs)",
    ),
    "restore": (
        "scanstation.commands.backup",
        "restore_main",
        "restore a backup (daemon stopped; into empty storage, or over it with --force)",
    ),
    "user": (
        "scanstation.commands.users",
        "user_main",
        "web UI users and their roles: add | list | remove | set-role | set-password",
    ),
}
BENCHMARKS = (
    "ingest",
    "pipeline",
    "parse",
    "decode",
    "classify",
    "hid",
    "pages",
    "outputs",
    "jsonlimits",
    "wear",
    "memory",
    "plc",
    "quality",
    "collector",
)


class UsageError(CommandLineError):
    """Bad arguments or a bad input file (exit 2)."""


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config (default: /etc/scanstation/scanstation.toml, then ./scanstation.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanstation", description="Edge scanning appliance: scan, interpret, keep, publish."
    )
    parser.add_argument("--version", action="version", version=f"scanstation {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SCANSTATION_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the daemon")
    _config_arg(p)
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")

    p = sub.add_parser(
        "demo",
        help="a self-contained station on loopback that plays a scene of every feature once",
    )
    from scanstation.commands.demo import add_arguments as demo_arguments

    demo_arguments(p)

    p = sub.add_parser("parse", help="interpret raw barcode values (GS1, GTIN, Digital Link)")
    p.add_argument("values", nargs="*", metavar="VALUE")
    p.add_argument("--stdin", action="store_true", help="read one value per line from stdin")
    p.add_argument("--today", help="judge expiry against this date (YYYY-MM-DD)")
    form = p.add_mutually_exclusive_group()
    form.add_argument(
        "--compress",
        action="store_true",
        help="print each Digital Link URI in GS1's compressed form instead of interpreting it",
    )
    form.add_argument(
        "--uncompress",
        action="store_true",
        help="print each compressed Digital Link URI uncompressed instead of interpreting it",
    )
    _config_arg(p)

    p = sub.add_parser("catalog", help="the local product catalog")
    catalog_sub = p.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    imp = catalog_sub.add_parser("import", help="load products from CSV or JSON")
    imp.add_argument("file", type=Path)
    _config_arg(imp)

    p = sub.add_parser("export", help="CSV exports to stdout")
    p.add_argument("what", choices=["scans", "products"])
    p.add_argument("--since", help="ISO 8601 time or epoch seconds")
    p.add_argument("--until", help="ISO 8601 time or epoch seconds")
    _config_arg(p)

    p = sub.add_parser("api-key", help="API keys for machines")
    key_sub = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = key_sub.add_parser("create", help="create a key; printed alone on the last line")
    create.add_argument("--label", default="", help="a note to tell keys apart")
    create.add_argument(
        "--role",
        default="admin",
        choices=["admin", "operator", "viewer"],
        help="what the key may do (default admin)",
    )
    _config_arg(create)
    lst = key_sub.add_parser("list", help="list keys (ids and labels, never the keys)")
    _config_arg(lst)

    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)

    sub.add_parser("bench", help="benchmarks: " + " | ".join(BENCHMARKS), add_help=False)

    p = sub.add_parser("completion", help="print a bash or zsh completion script")
    from scanstation.commands.completion import add_arguments as completion_arguments

    completion_arguments(p)
    return parser


# ---- helpers ----------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def _time_arg(text: str | None, name: str) -> float | None:
    from scanstation.payloads import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise UsageError(f"--{name}: {exc}") from None


def ensure_api_key(config: Config, out: TextIO) -> str | None:
    """First run: make an API key when there is none; returns the new key (else None)."""
    from scanstation.web.auth import ApiKeyStore

    keys = ApiKeyStore(config.api_keys_path)
    if keys.records():
        return None
    key = keys.create(label="first run")
    note = config.storage.path / "initial-api-key.txt"
    note.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    print(f"No API key existed: generated one, stored in {note} (mode 0600).", file=out)
    print("Create more with `scanstation api-key create`; delete that file once noted.", file=out)
    return key


def _run_until_signalled(
    config: Config,
    *,
    seconds: float | None = None,
    on_ready: Callable[[Any], None] | None = None,
    extra_sources: list[Any] | None = None,
    config_path: Path | None = None,
) -> bool:
    """Runs the daemon; True when it stopped to restart (the settings page applied a change)."""
    from scanstation import app

    restarting: list[bool] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if seconds is not None:
            loop.call_later(seconds, stop.set)

        def restart() -> None:
            restarting.append(True)
            stop.set()

        await app.run(
            config,
            stop,
            on_ready=on_ready,
            extra_sources=extra_sources,
            config_path=config_path,
            restart=restart if config_path is not None else None,
        )

    asyncio.run(main())
    return bool(restarting)


# ---- commands ---------------------------------------------------------------------------


def referenced_file_problems(config: Config) -> list[str]:
    """The files the config names that are missing or unusable, each with its key (exit 2)."""
    from scanstation.config.files import file_problems

    problems = file_problems(config)
    if not problems and config.mqtt.host and config.mqtt.tls is not None:
        from scanstation.publish.connection import MqttError, tls_context

        try:
            tls_context(config.mqtt)
        except MqttError as exc:
            problems.append(str(exc))
    return problems


def cmd_run(args: argparse.Namespace) -> int:
    from scanstation.config.risks import risky_settings

    config = _load(args)
    problems = referenced_file_problems(config)
    if problems:
        origin = find_config_file(getattr(args, "config", None))
        where = f"{origin}: " if origin else ""
        raise ConfigError("\n".join(f"{where}{problem}" for problem in problems))
    risks = risky_settings(config)
    for risk in risks:
        # Valid, so the daemon runs; said on every start, where the journal keeps it.
        print(f"warning: {risk}", file=sys.stderr)
    if args.check_config:
        names = ", ".join(f"{s.type}:{s.name}" for s in config.sources) or "none"
        outputs = ", ".join(f"{o.type}:{o.name or o.type}" for o in config.outputs) or "none"
        print(
            f"config ok: device {config.device.id}, storage {config.storage.path}, "
            f"http {config.http.bind}, sources {names}, outputs {outputs}, "
            f"mqtt {config.mqtt.host or 'off'}"
        )
        return EXIT_OK
    from scanstation.web.passwords import ensure_ui_password

    # Everything the daemon writes (database, images, keys) is its own: 0600 files, 0700
    # folders, whatever umask the shell or service manager gave it.
    os.umask(0o077)
    ensure_api_key(config, sys.stderr)
    ensure_ui_password(config, sys.stderr)
    from scanstation.commands.backup import apply_staged

    path = find_config_file(args.config)
    # A change applied on the settings page (or a restore uploaded there) stops the daemon
    # cleanly; it starts again here with the file read again (validated before it was
    # written) and the staged restore put in place while nothing holds the storage.
    apply_staged(config)
    while _run_until_signalled(config, config_path=path):
        log.info("restarting with the configuration %s", path)
        config = _load(args)
        apply_staged(config)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from scanstation.commands.demo import demo_main

    return demo_main(args, _run_until_signalled, ensure_api_key)


def _parse_values(args: argparse.Namespace) -> Iterable[str]:
    """The values to parse; the four characters \\x1d stand for GS (a shell's single quotes
    do not expand them), as they do in the replay files."""
    from scanstation.barcode.scantext import restore_gs

    for value in args.values:
        yield restore_gs(value, ["\\x1d"])
    if args.stdin:
        for line in sys.stdin:
            value = line.rstrip("\r\n")
            if value:
                yield restore_gs(value, ["\\x1d"])


def cmd_parse(args: argparse.Namespace) -> int:
    from datetime import date

    from scanstation.barcode.interpret import RecallList, interpret

    if not args.values and not args.stdin:
        raise UsageError("give one or more VALUEs, or --stdin")
    if args.compress or args.uncompress:
        return _convert_digital_links(args)
    config = _load(args)
    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError:
        raise UsageError(f"--today {args.today!r}: expected YYYY-MM-DD") from None
    if today is None and config.checks.expiry:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        today = datetime.now(ZoneInfo(config.device.timezone)).date()
    recalls = RecallList.load(config.checks.recall_list) if config.checks.recall_list else None
    for value in _parse_values(args):
        result = interpret(
            value, gs_substitutes=config.gs1.gs_substitutes, today=today, recalls=recalls
        )
        print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
    return EXIT_OK


def _convert_digital_links(args: argparse.Namespace) -> int:
    """`parse --compress` / `--uncompress`: one converted URI a line; failures on stderr."""
    from scanstation.barcode import dlcompress
    from scanstation.barcode.gs1.engine import parse_digital_link
    from scanstation.barcode.scantext import split_scan

    failed = False
    for value in _parse_values(args):
        uri = split_scan(value)[1]  # a leading AIM identifier (]Q1) is not part of the URI
        try:
            if args.compress:
                print(dlcompress.compress(uri), flush=True)
            else:
                plain = dlcompress.uncompress(uri)
                parsed = parse_digital_link(plain)
                if parsed.errors:
                    raise dlcompress.CompressionError(
                        f"it decompresses to {plain}, which breaks a GS1 rule: "
                        f"{parsed.errors[0].message}"
                    )
                print(plain, flush=True)
        except dlcompress.CompressionError as exc:
            print(f"scanstation parse: {value!r}: {exc}", file=sys.stderr)
            failed = True
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_catalog(args: argparse.Namespace) -> int:
    from scanstation.services.catalog import CatalogError, read_products
    from scanstation.store import Store

    config = _load(args)
    try:
        products = read_products(args.file)
    except CatalogError as exc:
        raise UsageError(str(exc)) from None

    async def main() -> int:
        async with Store(config.db_path, synchronous=config.storage.synchronous) as store:
            return await store.upsert_products(products)

    count = asyncio.run(main())
    from scanstation.commands.users import record_audit

    record_audit(config, "catalog.import", str(args.file), {"products": count})
    print(f"imported {count} products into {config.db_path}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from scanstation.services.exports import write_products_csv, write_scans_csv
    from scanstation.store import Store

    config = _load(args)
    since, until = _time_arg(args.since, "since"), _time_arg(args.until, "until")
    if not config.db_path.is_file():
        # A read-only command: it never creates a database (nor its folder) to export from.
        origin = find_config_file(args.config) or "the built-in defaults"
        raise RuntimeError(
            f"no database at {config.db_path} (storage.path from {origin}); "
            "give the station's config with --config FILE (has the daemon run with it?)"
        )

    async def main() -> None:
        async with Store(config.db_path) as store:
            if args.what == "scans":
                await write_scans_csv(store, sys.stdout, since=since, until=until)
            else:
                await write_products_csv(store, sys.stdout)

    asyncio.run(main())
    return EXIT_OK


def cmd_api_key(args: argparse.Namespace) -> int:
    from scanstation.services.exports import safe_row
    from scanstation.web.auth import ApiKeyStore

    config = _load(args)
    keys = ApiKeyStore(config.api_keys_path)
    if args.key_command == "list":
        writer = csv.writer(sys.stdout)
        writer.writerow(["key_id", "label", "created", "role"])
        for record in keys.records():
            writer.writerow(
                safe_row([record.key_id, record.label, record.created, record.role.value])
            )
        return EXIT_OK
    from scanstation.commands.users import record_audit
    from scanstation.services.roles import Role

    role = Role(args.role)
    key = keys.create(label=args.label, role=role)
    key_id = key.split("_")[1]
    record_audit(config, "api-key.create", key_id, {"label": args.label, "role": role.value})
    print(
        f"Created an API key with the {role.value} role (stored hashed in "
        f"{config.api_keys_path}); it is shown only now:"
    )
    print(key)
    return EXIT_OK


def cmd_delegated(args: argparse.Namespace) -> int:
    module_name, function, _ = DELEGATED[args.command]
    module = importlib.import_module(module_name)
    return int(getattr(module, function)(list(args.args)))


def bench_help() -> str:
    """`scanstation bench --help`: the benchmarks, each with its module's first line."""
    from scanstation.commands.bench import summary

    lines = ["usage: scanstation bench NAME [options]", "", "benchmarks:"]
    for name in BENCHMARKS:
        lines.append(f"  {name:<11} {summary(name)}")
    lines += ["", "`scanstation bench NAME --help` shows the options of one."]
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name is None and {"-h", "--help"} & set(args.args):
        print(bench_help())
        return EXIT_OK
    if args.name is None:
        raise UsageError(f"name a benchmark: {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"scanstation.commands.bench.{args.name}")
    return int(module.main(list(args.args)))


def cmd_completion(args: argparse.Namespace) -> int:
    from scanstation.commands.completion import completion_script, full_parser

    parser = full_parser(build_parser(), DELEGATED, BENCHMARKS)
    sys.stdout.write(completion_script(parser, args.shell))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "demo": cmd_demo,
    "parse": cmd_parse,
    "catalog": cmd_catalog,
    "export": cmd_export,
    "api-key": cmd_api_key,
    "bench": cmd_bench,
    "completion": cmd_completion,
    **dict.fromkeys(DELEGATED, cmd_delegated),
}


def _split_global_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options before the command, the command and its arguments)."""
    head: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        head.append(option)
        if option == "--log-level" and rest:
            head.append(rest.pop(0))
    return head, rest


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    head, rest = _split_global_options(argv)
    if rest and (rest[0] in DELEGATED or rest[0] == "bench"):
        # These commands own their options (argparse's REMAINDER would drop a leading --x).
        args = parser.parse_args([*head, rest[0]])
        args.args = rest[1:]
        if rest[0] == "bench":
            args.name = rest[1] if len(rest) > 1 and not rest[1].startswith("-") else None
            args.args = rest[2:] if args.name else rest[1:]
            if args.name is not None and args.name not in BENCHMARKS:
                parser.error(
                    f"unknown benchmark {args.name!r}; choose from {', '.join(BENCHMARKS)}"
                )
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"scanstation: bad config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandLineError as exc:  # UsageError and the sub-commands' own (exit 2)
        print(f"scanstation {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InterpretError as exc:  # a bad recall list named by the config
        print(f"scanstation {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        log.debug("failure", exc_info=True)
        print(f"scanstation {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
