"""`scanstation bench collector` end to end at a tiny size: its figures come from real runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from postgres import pg_dsn_fixture, pg_server_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients missing")
def test_bench_collector_runs_every_mode_and_reports_its_figures(pg_server: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanstation",
            "--log-level",
            "WARNING",
            "bench",
            "collector",
            "--database",
            pg_server,
            "--events",
            "600",
            "--rounds",
            "1",
            "--rate",
            "300",
            "--seconds",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["events"] == 600
    for key in ("bare_insert_events_per_s", "collector_1_events_per_s", "collector_2_events_per_s"):
        assert report[key] > 0
    assert 0 < report["latency_p50_ms"] <= report["latency_p99_ms"]
    assert len(report["runs"]["2"]) == 1
    # Each mode's range of rounds, and where the CPU of a collector run went.
    low, high = report["spread_events_per_s"]["2"]
    assert low == high == report["collector_2_events_per_s"]
    assert {"collectors", "broker", "postgresql", "bench"} <= set(report["cpu_us_per_event"]["2"])
    assert report["cpu_us_per_event"]["2"]["collectors"] > 0
    assert report["publishers_alone_events_per_s"]["stations"] > 0
