"""Read-rate statistics end to end: a triggered camera reading real sample files at scripted
times (tests/lane.py), the real pipeline and outputs, and what /metrics, /stats and telemetry
then say."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from lane import lane_config, running_lane, samples
from scanstation import app
from scanstation.web.auth import ApiKeyStore

API = "/scanner/api/v1"


async def test_read_rate_counts_a_scripted_sequence_of_windows(tmp_path: Path) -> None:
    # The Code 128 label is not an accepted symbology: its window is a reject.
    config = lane_config(
        tmp_path, match={"symbologies": ["EAN13", "QRCode"]}, quality={"alarm_below": 99}
    )
    key = ApiKeyStore(config.api_keys_path).create()
    async with running_lane(config) as lane:
        for name in ("01-ean13.jpg", "07-empty.jpg", "06-two-codes.jpg", "05-code128.jpg"):
            await lane.window(name)
        await lane.window("01-ean13.jpg")

        stats = lane.daemon.read_stats
        report = stats.reports()["lane"]
        assert report.totals == {"good": 2, "noread": 1, "multiple": 1, "rejected": 1}
        assert report.rate == 2 / 5
        assert report.last_result == "4006381333931"
        # Every read carries its quality indicators; the source's trend is their mean.
        rows = await lane.daemon.store.fetchall(
            "SELECT raw_value, metadata FROM captures WHERE raw_value != ''"
        )
        scores = [int(json.loads(m)["quality_score"]) for _, m in rows]
        assert len(scores) == 5
        assert all(0 < s <= 100 for s in scores)
        assert report.quality.score == pytest.approx(sum(scores) / len(scores))
        assert report.quality.alarm  # the sample photos score well below 99
        # Telemetry carries the same figures (an additive field).
        telemetry = app.station_telemetry(lane.daemon.sources, stats)()
        assert telemetry["read_rate"]["lane"]["totals"] == report.totals
        assert telemetry["read_rate"]["lane"]["rate_100"] == 0.4

        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
            async with http.get(lane.daemon.url + API + "/metrics") as resp:
                metrics = samples(await resp.text())
            async with http.get(lane.daemon.url + API + "/stats") as resp:
                body = await resp.json()
    for result, n in {"good": 2, "noread": 1, "multiple": 1, "rejected": 1}.items():
        labels = (("result", result), ("source", "lane"))
        assert metrics[("scanstation_reads_total", labels)] == n
    rate = ("scanstation_read_rate_ratio", (("source", "lane"), ("window", "100")))
    assert metrics[rate] == 0.4
    assert 0 < metrics[("scanstation_read_quality_score", (("source", "lane"),))] <= 100
    assert metrics[("scanstation_read_quality_alarm", (("source", "lane"),))] == 1  # below 99
    assert body["read_rate"]["lane"]["last_100"]["multiple"] == 1
    [hour] = body["read_rate"]["lane"]["per_hour"]
    assert (hour["good"], hour["rate"]) == (2, 0.4)
