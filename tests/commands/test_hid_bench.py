"""`scanstation bench hid` runs end to end on a real SQLite file (tiny sizes)."""

from __future__ import annotations

import json

import pytest

from scanstation.commands.bench import hid


def test_hid_bench_prints_latency_and_rate_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--scans", "3", "--burst", "4", "--guns", "2", "--repeats", "1", "--json"]
    assert hid.main([*argv, "--layouts", "ch(fr),cz"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"hid", "direct", "decoder", "decoder ch(fr)", "decoder cz"}
    assert figures["decoder cz"]["rate"] > 0
    assert set(figures["hid"]) == {"p50_ms", "p99_ms", "rate"}
    assert all(value > 0 for value in figures["hid"].values())


def test_hid_bench_rejects_nonsense_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert hid.main(["--burst", "1", "--guns", "2"]) == 2
    assert "--burst at least --guns" in capsys.readouterr().err


def test_hid_bench_rejects_an_unknown_layout(capsys: pytest.CaptureFixture[str]) -> None:
    assert hid.main(["--layouts", "us,qz"]) == 2
    assert "unknown keyboard layout 'qz'" in capsys.readouterr().err
