"""`scanstation report recalls|completeness|gtins`: the analytics reports as a table or ``--json``.

The reports themselves are queries over the store (store/analytics.py); this is their command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from scanstation import payloads
from scanstation.commands import CommandLineError, run_with_config
from scanstation.config import Config
from scanstation.payloads import iso
from scanstation.store import Store
from scanstation.store.analytics import (
    BatchCount,
    CompletenessReport,
    GtinCount,
    RecallReport,
    ReportError,
    batch_counts,
    completeness_report,
    gtin_counts,
    recall_report,
)

# ---- the command ---------------------------------------------------------------------------


def parse_time(text: str, now: float | None = None) -> float:
    """`payloads.parse_time`, with a bad value as a ReportError (exit 2)."""
    try:
        return payloads.parse_time(text, now)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _day(ts: float) -> str:
    return (iso(ts) or "")[:16].replace("T", " ")


def _jsonable(value: Any) -> Any:
    data = asdict(value)
    for key in ("first_seen", "last_seen"):
        if key in data:
            data[key] = iso(data[key])
    for key in ("hits", "rows", "not_in_catalog"):
        if key in data:
            data[key] = [_jsonable(item) for item in getattr(value, key)]
    return data


def print_gtins(rows: Sequence[GtinCount], out: TextIO) -> None:
    _table(
        out,
        ["GTIN", "SCANS", "BATCHES", "DEVICES", "COMPLETE", "FIRST", "LAST", "PRODUCT"],
        [
            (
                r.gtin,
                r.scans,
                r.batches,
                r.devices,
                "-" if r.completeness is None else f"{r.completeness}%",
                _day(r.first_seen),
                _day(r.last_seen),
                r.product_name if r.in_catalog else "(not in catalog)",
            )
            for r in rows
        ],
    )


def print_batches(rows: Sequence[BatchCount], out: TextIO) -> None:
    _table(
        out,
        ["GTIN", "BATCH", "EXPIRY", "SCANS", "SERIALS", "FIRST", "LAST", "SITES", "DEVICES"],
        [
            (
                b.gtin,
                b.batch or "(none)",
                b.expiry,
                b.scans,
                b.serials,
                _day(b.first_seen),
                _day(b.last_seen),
                ",".join(b.sites),
                ",".join(b.devices),
            )
            for b in rows
        ],
    )


def print_recalls(report: RecallReport, out: TextIO) -> None:
    gtins = "GTIN" if report.entries == 1 else "GTINs"
    batches = "batch" if len(report.hits) == 1 else "batches"
    print(
        f"Recall list {report.recall_list}: {report.entries} {gtins} on the list; "
        f"{len(report.hits)} recalled {batches} scanned {report.scans} times.",
        file=out,
    )
    if report.hits:
        print_batches(report.hits, out)


def print_completeness(report: CompletenessReport, out: TextIO) -> None:
    print(
        f"{report.products} products, average completeness {report.average}%, "
        f"{report.complete} complete.",
        file=out,
    )
    print(
        "By completeness: " + ", ".join(f"{k}%: {v}" for k, v in report.buckets.items()), file=out
    )
    if report.missing_fields:
        print(
            "Missing most often: "
            + ", ".join(f"{k} ({v})" for k, v in report.missing_fields.items()),
            file=out,
        )
    if report.rows:
        print(file=out)
        _table(
            out,
            ["GTIN", "COMPLETE", "SCANS", "NAME", "MISSING"],
            [
                (r.gtin, f"{r.completeness}%", r.scans, r.name, ", ".join(r.missing))
                for r in report.rows
            ],
        )
    if report.not_in_catalog:
        print("\nScanned but not in the catalog:", file=out)
        print_gtins(report.not_in_catalog, out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanstation report",
        description="Analytics over the scans kept on this station.",
    )
    parser.add_argument(
        "what",
        choices=["gtins", "batches", "recalls", "completeness"],
        help="gtins: scans per GTIN · batches: scans per GTIN and batch · recalls: scanned "
        "batches on the recall list · completeness: the product completeness report",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config (default as for run)")
    parser.add_argument("--since", help="ISO 8601 time, epoch seconds, or an age such as 7d")
    parser.add_argument("--until", help="ISO 8601 time, epoch seconds, or an age such as 1d")
    parser.add_argument("--gtin", help="batches: only this GTIN (8 to 14 digits)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")
    parser.add_argument(
        "--recall-list", type=Path, help="recalls: CSV gtin,batch (default: [checks] recall_list)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    return parser


async def _report(args: argparse.Namespace, db_path: Path, recall_list: Path | None) -> Any:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    async with Store(db_path) as store:
        match args.what:
            case "gtins":
                return await gtin_counts(store, since=since, until=until, limit=args.limit)
            case "batches":
                gtin = None
                if args.gtin:
                    from scanstation.services.catalog import gtin14

                    try:
                        gtin = gtin14(args.gtin)
                    except Exception as exc:
                        raise ReportError(f"--gtin {args.gtin!r}: {exc}") from None
                rows = await batch_counts(store, gtin=gtin, since=since, until=until)
                return rows if args.limit is None else rows[: args.limit]
            case "recalls":
                assert recall_list is not None
                return await recall_report(store, recall_list, since=since, until=until)
            case _:
                return await completeness_report(store, since=since, until=until, limit=args.limit)


def report_main(argv: list[str]) -> int:
    """`scanstation report gtins|batches|recalls|completeness`: 0 ok, 1 failure, 2 bad usage."""
    return run_with_config("report", _parser(), argv, _run)


def _run(args: argparse.Namespace, config: Config) -> int:
    if args.limit is not None and args.limit < 1:
        raise CommandLineError("--limit must be 1 or more")
    recall_list = args.recall_list or config.checks.recall_list
    if args.what == "recalls" and recall_list is None:
        print(
            "scanstation report recalls: no recall list; give --recall-list FILE or set "
            "[checks] recall_list",
            file=sys.stderr,
        )
        return 2
    if not config.db_path.is_file():
        print(
            f"scanstation report: no database at {config.db_path} (has the daemon run with "
            "this config?)",
            file=sys.stderr,
        )
        return 1
    try:
        result = asyncio.run(_report(args, config.db_path, recall_list))
    except ReportError as exc:
        print(f"scanstation report {args.what}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"scanstation report {args.what}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout
    if args.json:
        data = [_jsonable(r) for r in result] if isinstance(result, list) else _jsonable(result)
        json.dump(data, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif args.what == "gtins":
        print_gtins(result, out)
    elif args.what == "batches":
        print_batches(result, out)
    elif args.what == "recalls":
        print_recalls(result, out)
    else:
        print_completeness(result, out)
    return 0


__all__ = ["parse_time", "report_main"]
