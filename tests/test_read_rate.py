"""Read-rate statistics end to end: a triggered camera reading real sample files at scripted
times, the real pipeline and outputs, and what /metrics, /stats and telemetry then say.

The camera is the daemon's CameraSource on a FakeCamera fed with the bundled sample images
(one file per trigger window), and its clock is the test's: each frame is grabbed at the time
the script gives it, so a window with nothing in it closes exactly when the script says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from scanstation import app
from scanstation.barcode.decode import load_image
from scanstation.config import CameraSourceConfig, Config, parse_config
from scanstation.readstats import ReadStats
from scanstation.sources.camera import CameraSource, bundled_samples_dir
from scanstation.sources.frames import FakeCamera
from scanstation.web.auth import ApiKeyStore

API = "/scanner/api/v1"
SAMPLES = bundled_samples_dir()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t


def lane_config(tmp_path: Path, **match: Any) -> Config:
    return parse_config(
        {
            "device": {"id": "lane-7"},
            "storage": {"path": str(tmp_path / "var")},
            "http": {"bind": f"127.0.0.1:{free_port()}"},
            "classifier": {"enabled": False},
            "qr_analysis": {"enabled": False},
            "match": match,
        },
        environ={},
    )


def triggered_camera(clock: Clock) -> tuple[CameraSource, FakeCamera]:
    cam = FakeCamera(on_frame=clock.set)
    source = CameraSource(
        CameraSourceConfig(
            type="camera", name="lane", trigger="software", read_window_ms=1000, backend="file"
        ),
        backend=cam,
        clock=clock,
    )
    return source, cam


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_read_rate_counts_a_scripted_sequence_of_windows(tmp_path: Path) -> None:
    # The Code 128 label is not an accepted symbology: its window is a reject.
    config = lane_config(tmp_path, symbologies=["EAN13", "QRCode"])
    key = ApiKeyStore(config.api_keys_path).create()
    clock = Clock()
    source, cam = triggered_camera(clock)
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        app.run(config, stop, on_ready=ready.set_result, extra_sources=[source])
    )
    try:
        daemon = await asyncio.wait_for(ready, 20)
        stats: ReadStats = daemon.read_stats

        def windows() -> int:
            report = stats.reports().get("lane")
            return sum(report.totals.values()) if report else 0

        script = [
            ("01-ean13.jpg", "good"),
            ("07-empty.jpg", "noread"),
            ("06-two-codes.jpg", "multiple"),
            ("05-code128.jpg", "rejected"),
            ("01-ean13.jpg", "good"),
        ]
        for n, (name, _) in enumerate(script):
            t = 10.0 * (n + 1)
            clock.set(t)
            source.trigger()
            cam.push(load_image(SAMPLES / name), at=t + 0.1)
            # A frame after the window: an empty window closes as a no-read on it.
            cam.push(load_image(SAMPLES / "07-empty.jpg"), at=t + 1.5)
            await until(lambda n=n: windows() == n + 1)

        report = stats.reports()["lane"]
        assert report.totals == {"good": 2, "noread": 1, "multiple": 1, "rejected": 1}
        assert report.rate == 2 / 5
        assert report.last_result == "4006381333931"
        # Telemetry carries the same figures (an additive field).
        telemetry = app.station_telemetry(daemon.sources, stats)()
        assert telemetry["read_rate"]["lane"]["totals"] == report.totals
        assert telemetry["read_rate"]["lane"]["rate_100"] == 0.4

        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
            async with http.get(daemon.url + API + "/metrics") as resp:
                metrics = samples(await resp.text())
            async with http.get(daemon.url + API + "/stats") as resp:
                body = await resp.json()
        for result, n in {"good": 2, "noread": 1, "multiple": 1, "rejected": 1}.items():
            labels = (("result", result), ("source", "lane"))
            assert metrics[("scanstation_reads_total", labels)] == n
        rate = ("scanstation_read_rate_ratio", (("source", "lane"), ("window", "100")))
        assert metrics[rate] == 0.4
        assert body["read_rate"]["lane"]["last_100"]["multiple"] == 1
        [hour] = body["read_rate"]["lane"]["per_hour"]
        assert (hour["good"], hour["rate"]) == (2, 0.4)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
