"""`scanstation bench plc` and `bench quality` run end to end (tiny sizes): real servers,
real clients, real frames."""

from __future__ import annotations

import json

import pytest

from scanstation.commands.bench import plc, quality


def test_plc_bench_measures_modbus_and_opcua_latency(capsys: pytest.CaptureFixture[str]) -> None:
    assert plc.main(["--scans", "5", "--repeats", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {
        *("modbus", "modbus_poll_round_trip", "opcua", "opcua_start_loop_stall"),
        *("opcua_startup_product", "opcua_startup_bare"),
    }
    assert figures["modbus"]["n"] == 5  # every committed code was seen in the registers
    assert figures["opcua"]["n"] == 5  # and as an event
    assert 0 < figures["modbus"]["p50_ms"] < 1000
    assert figures["modbus_poll_round_trip"]["p50_ms"] > 0
    # Start-up in fresh processes: the AutoID server imports two nodesets on top of what a
    # bare asyncua server builds, so it takes longer and holds more.
    product, bare = figures["opcua_startup_product"], figures["opcua_startup_bare"]
    assert product["s"] > 0
    assert bare["s"] > 0
    assert product["rss_mb"] > bare["rss_mb"] > 0


def test_quality_bench_measures_the_indicators_beside_decoding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert quality.main(["--frames", "8", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["decode"]["n"] == 8
    assert figures["quality"]["n"] >= 6  # the frames that gave a code
    assert figures["quality"]["p50_ms"] < figures["decode"]["p50_ms"]
    assert any(k.startswith("quality EAN13") for k in figures)
