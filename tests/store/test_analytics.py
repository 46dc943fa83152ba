"""Analytics over a real store filled through the real pipeline: GTINs, batches, recalls,
completeness, and `scanstation report`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import SCANSTATION
from scanstation.commands.report import parse_time, report_main
from scanstation.config import Config
from scanstation.model import Scan
from scanstation.pipeline import Pipeline
from scanstation.store import Store
from scanstation.store.analytics import (
    BatchCount,
    GtinCount,
    ProductCompleteness,
    ReportError,
    batch_counts,
    completeness_report,
    gtin_counts,
    recall_report,
)

GS = "\x1d"
DEMO = "09506000134352"  # GS1's example GTIN
STABILO = "04006381333931"
UNKNOWN = "05901234123457"  # valid, not in the catalog

# Real scan values: GS1 DataMatrix element strings and plain EANs, as the sources hand them on.
LANE_1 = [
    ("cam0", f"0109506000134352{GS}10ABC123{GS}21S0001"),
    ("cam0", f"0109506000134352{GS}10ABC123{GS}21S0002"),
    ("cam0", "01095060001343521727010110ABC123"),
    ("gun1", "01095060001343521725010110XYZ9"),
    ("gun1", "4006381333931"),
    ("gun1", "5901234123457"),
    ("gun1", "not a barcode at all"),
]
LANE_2 = [
    ("cam0", f"0109506000134352{GS}10ABC123{GS}21S0003"),
    ("cam0", "4006381333931"),
    ("cam0", "5901234123457"),
    ("cam0", "5901234123457"),
]


async def scan_all(pipeline: Pipeline, scans: list[tuple[str, str]]) -> None:
    captures = [await pipeline.ingest(Scan(source=s, raw_value=v)) for s, v in scans]
    await pipeline.process([c.id for c in captures])


async def fill(store: Store, make_config: Callable[..., Config]) -> Config:
    """Two lanes at two stores scan the same products into one database; returns lane 1."""
    lane1 = make_config(device={"id": "lane-01", "site": "store-7"})
    lane2 = make_config(device={"id": "lane-02", "site": "store-9"})
    await store.upsert_products(
        [
            {"gtin": DEMO, "name": "GS1 demo product", "brand": "GS1", "net_content": "500 g"},
            {
                "gtin": STABILO,
                "name": "STABILO BOSS ORIGINAL highlighter",
                "brand": "STABILO",
                "net_content": "1 piece",
                "ingredients": "ink",
                "nutrition": {"energy_kj": 0},
                "certifications": ["FSC"],
                "country_of_origin": "DE",
                "category": "Stationery",
                "images": ["stabilo.jpg"],
            },
            {"gtin": "00000096385074", "name": "", "brand": "Never scanned"},
        ]
    )
    await scan_all(Pipeline(store, lane1), LANE_1)
    await scan_all(Pipeline(store, lane2), LANE_2)
    return lane1


@pytest.fixture
async def filled(make_config: Callable[..., Config]) -> AsyncIterator[tuple[Store, Config]]:
    config = make_config()
    async with Store(config.db_path) as store:
        yield store, await fill(store, make_config)


async def test_gtin_counts_rank_the_most_scanned_first(filled: tuple[Store, Config]) -> None:
    store, _ = filled
    rows = await gtin_counts(store)
    assert [(r.gtin, r.scans, r.batches, r.devices, r.in_catalog) for r in rows] == [
        (DEMO, 5, 2, 2, True),
        (UNKNOWN, 3, 0, 2, False),
        (STABILO, 2, 0, 2, True),
    ]
    assert rows[0].product_name == "GS1 demo product"
    assert rows[1].completeness is None
    assert rows[0].first_seen <= rows[0].last_seen <= time.time()


async def test_gtin_counts_limit_and_period(filled: tuple[Store, Config]) -> None:
    store, _ = filled
    assert [r.gtin for r in await gtin_counts(store, limit=1)] == [DEMO]
    assert await gtin_counts(store, since=time.time() + 60) == []
    assert await gtin_counts(store, until=time.time() - 3600) == []


async def test_batch_counts_tell_where_each_batch_passed(filled: tuple[Store, Config]) -> None:
    store, _ = filled
    rows = await batch_counts(store, gtin=DEMO)
    first, second = rows
    assert (first.gtin, first.batch, first.scans, first.serials) == (DEMO, "ABC123", 4, 3)
    assert first.expiry == "270101"
    assert first.sites == ("store-7", "store-9")
    assert first.devices == ("lane-01", "lane-02")
    assert first.sources == ("cam0",)
    assert (second.batch, second.expiry, second.scans, second.sources) == (
        "XYZ9",
        "250101",
        1,
        ("gun1",),
    )
    assert all(not r.recalled for r in rows)


async def test_batch_counts_cover_plain_eans_without_batch(filled: tuple[Store, Config]) -> None:
    store, _ = filled
    rows = await batch_counts(store, gtin=STABILO)
    assert [(r.batch, r.scans, r.devices) for r in rows] == [("", 2, ("lane-01", "lane-02"))]


async def test_batch_counts_keep_a_site_name_with_a_comma(
    make_config: Callable[..., Config],
) -> None:
    depot = make_config(device={"id": "dock-1", "site": "Depot, Hall 2"})
    async with Store(depot.db_path) as store:
        await scan_all(Pipeline(store, depot), [("cam0", f"0109506000134352{GS}10ABC123")])
        (row,) = await batch_counts(store)
    assert (row.sites, row.devices, row.sources) == (("Depot, Hall 2",), ("dock-1",), ("cam0",))


@pytest.mark.parametrize(
    ("recall_csv", "expected"),
    [
        # One batch recalled: only its scans.
        (f"gtin,batch\n{DEMO},ABC123\n", [(DEMO, "ABC123", 4)]),
        # A whole GTIN recalled (empty batch): every batch of it, as GTIN-13 in the file.
        ("gtin,batch\n4006381333931,\n", [(STABILO, "", 2)]),
        # Recalled, never scanned here.
        (f"gtin,batch\n{DEMO},NOPE\n", []),
    ],
)
async def test_recall_report_finds_the_scanned_recalled_batches(
    filled: tuple[Store, Config],
    tmp_path: Path,
    recall_csv: str,
    expected: list[tuple[str, str, int]],
) -> None:
    store, _ = filled
    path = tmp_path / "recalls.csv"
    path.write_text(recall_csv)
    report = await recall_report(store, path)
    assert [(h.gtin, h.batch, h.scans) for h in report.hits] == expected
    assert report.entries == 1
    assert report.scans == sum(e[2] for e in expected)
    assert all(h.recalled for h in report.hits)


async def test_recall_report_names_a_bad_recall_list(
    filled: tuple[Store, Config], tmp_path: Path
) -> None:
    store, _ = filled
    path = tmp_path / "recalls.csv"
    path.write_text("gtin,batch\n1234567890123,A\n")
    with pytest.raises(ReportError, match="'1234567890123' is not a GTIN"):
        await recall_report(store, path)


async def test_completeness_report_puts_scanned_incomplete_products_first(
    filled: tuple[Store, Config],
) -> None:
    store, _ = filled
    report = await completeness_report(store)
    assert report.products == 3
    assert report.complete == 1
    assert report.rows == (
        ProductCompleteness(
            DEMO,
            "GS1 demo product",
            40,
            (
                "ingredients",
                "nutrition",
                "certifications",
                "country_of_origin",
                "category",
                "images",
            ),
            5,
        ),
        ProductCompleteness(
            "00000096385074",
            "",
            10,
            (
                "name",
                "net_content",
                "ingredients",
                "nutrition",
                "certifications",
                "country_of_origin",
                "category",
                "images",
            ),
            0,
        ),
        ProductCompleteness(STABILO, "STABILO BOSS ORIGINAL highlighter", 100, (), 2),
    )
    assert report.buckets == {"0-24": 1, "25-49": 1, "50-74": 0, "75-99": 0, "100": 1}
    assert report.average == 50.0
    assert list(report.missing_fields.items())[:2] == [("category", 2), ("certifications", 2)]
    assert report.missing_fields["name"] == 1
    assert [(g.gtin, g.scans) for g in report.not_in_catalog] == [(UNKNOWN, 3)]


async def test_completeness_report_of_an_empty_catalog(store: Store) -> None:
    report = await completeness_report(store)
    assert (report.products, report.average, report.rows, report.not_in_catalog) == (
        0,
        0.0,
        (),
        (),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T12:00:00Z", 1769860800.0),
        ("2026-01-31T13:00:00+01:00", 1769860800.0),
        ("2026-01-31T12:00:00", 1769860800.0),
        ("2026-01-31", 1769817600.0),
        ("1769860800", 1769860800.0),
        ("7d", 1_000_000.0 - 7 * 86400),
        ("12h", 1_000_000.0 - 12 * 3600),
        ("30m", 1_000_000.0 - 1800),
    ],
)
def test_parse_time_accepts_iso_epoch_and_ages(text: str, expected: float) -> None:
    assert parse_time(text, now=1_000_000.0) == expected


def test_parse_time_names_what_it_expected() -> None:
    with pytest.raises(ReportError, match=r"time 'last week': expected ISO 8601"):
        parse_time("last week")


def test_analytics_doctests_pass() -> None:
    import doctest

    import scanstation.store.analytics

    result = doctest.testmod(scanstation.store.analytics)
    assert (result.failed, result.attempted > 0) == (0, True)


# ---- scanstation report ------------------------------------------------------------------------


@pytest.fixture
def config_file(make_config: Callable[..., Config], tmp_path: Path) -> Path:
    """A config file next to a filled database (closed again: reports open it themselves)."""
    config = make_config()

    async def build() -> None:
        async with Store(config.db_path) as store:
            await fill(store, make_config)

    asyncio.run(build())
    recalls = tmp_path / "recalls.csv"
    recalls.write_text(f"gtin,batch\n{DEMO},ABC123\n")
    path = tmp_path / "scanstation.toml"
    path.write_text(
        f'[device]\nid = "lane-01"\n[storage]\npath = "{config.storage.path}"\n'
        f'[checks]\nrecall_list = "{recalls}"\n'
    )
    return path


def run_report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = report_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_gtins_prints_a_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_report(["gtins", "--config", str(config_file)], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "GTIN",
        "SCANS",
        "BATCHES",
        "DEVICES",
        "COMPLETE",
        "FIRST",
        "LAST",
        "PRODUCT",
    ]
    assert lines[2].split()[:5] == [DEMO, "5", "2", "2", "40%"]
    assert lines[3].endswith("(not in catalog)")
    assert len(lines) == 5


def test_report_gtins_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_report(
        ["gtins", "--config", str(config_file), "--json", "--limit", "1"], capsys
    )
    data = json.loads(out)
    assert code == 0
    assert [
        {k: v for k, v in row.items() if k not in ("first_seen", "last_seen")} for row in data
    ] == [
        {
            "gtin": DEMO,
            "product_name": "GS1 demo product",
            "in_catalog": True,
            "completeness": 40,
            "scans": 5,
            "batches": 2,
            "devices": 2,
        }
    ]
    assert data[0]["first_seen"].endswith("Z")


def test_report_recalls_uses_the_configured_list(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_report(["recalls", "--config", str(config_file)], capsys)
    assert code == 0
    assert out.splitlines()[0].endswith(": 1 GTIN on the list; 1 recalled batch scanned 4 times.")
    assert out.splitlines()[3].split() == [
        DEMO,
        "ABC123",
        "270101",
        "4",
        "3",
        *out.splitlines()[3].split()[5:9],
        "store-7,store-9",
        "lane-01,lane-02",
    ]


def test_report_recalls_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_report(["recalls", "--config", str(config_file), "--json"], capsys)
    data: dict[str, Any] = json.loads(out)
    assert code == 0
    assert (data["entries"], len(data["hits"])) == (1, 1)
    assert data["hits"][0]["sites"] == ["store-7", "store-9"]


def test_report_batches_for_one_gtin_given_as_gtin13(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_report(
        ["batches", "--config", str(config_file), "--gtin", "4006381333931", "--json"], capsys
    )
    assert code == 0
    assert [(b["gtin"], b["batch"], b["scans"]) for b in json.loads(out)] == [(STABILO, "", 2)]


def test_report_completeness_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_report(["completeness", "--config", str(config_file)], capsys)
    assert code == 0
    assert out.splitlines()[0] == "3 products, average completeness 50.0%, 1 complete."
    assert "Scanned but not in the catalog:" in out
    assert UNKNOWN in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["sales"], 2, "invalid choice: 'sales'"),
        (["gtins", "--since", "yesterday-ish"], 2, "time 'yesterday-ish': expected ISO 8601"),
        (["gtins", "--limit", "0"], 2, "--limit must be 1 or more"),
        (["batches", "--gtin", "123"], 2, "--gtin '123': GTIN '123' must be 8, 12, 13 or 14"),
    ],
)
def test_report_bad_usage_exits_2(
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    got, _, err = run_report([*argv, "--config", str(config_file)], capsys)
    assert got == code
    assert message in err


def test_report_recalls_without_a_list_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(f'[storage]\npath = "{tmp_path}"\n')
    code, _, err = run_report(["recalls", "--config", str(path)], capsys)
    assert code == 2
    assert "give --recall-list FILE or set [checks] recall_list" in err


def test_report_without_a_database_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "none"}"\n')
    code, _, err = run_report(["gtins", "--config", str(path)], capsys)
    assert code == 1
    assert f"no database at {tmp_path / 'none' / 'scanstation.db'}" in err
    assert not (tmp_path / "none").exists()  # a report never creates a database


def test_report_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scanstation.toml"
    path.write_text("[gpio]\nlaser = 4\n")
    code, _, err = run_report(["gtins", "--config", str(path)], capsys)
    assert code == 2
    assert "unknown key 'gpio.laser'" in err


def test_result_types_are_frozen() -> None:
    row = GtinCount(DEMO, "", False, None, 1, 0, 1, 0.0, 0.0)
    with pytest.raises(AttributeError):
        row.scans = 2  # type: ignore[misc]
    assert BatchCount(DEMO, "", "", 1, 0, (), (), (), 0.0, 0.0).recalled is False


def test_report_runs_as_a_scanstation_command(config_file: Path) -> None:
    result = subprocess.run(
        [*SCANSTATION, "report", "gtins", "--config", str(config_file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [row["gtin"] for row in json.loads(result.stdout)] == [DEMO, UNKNOWN, STABILO]
