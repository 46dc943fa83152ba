"""The station's counters as Prometheus metric families, rendered by prometheus-client for
``GET /metrics`` (web/routes/metrics.py imports this module on the first scrape, so a station
nobody scrapes never loads prometheus-client).

Each app has its own ``CollectorRegistry`` (never the library's global one: two apps in one
process, as in the tests, would register the same names twice). One collector turns a
snapshot of the station into metric families: the handler awaits what needs the database
(captures by status, the outbox), then renders synchronously, so two requests never share a
snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from scanstation import __version__
from scanstation.model import CaptureStatus
from scanstation.readstats import RESULTS, WINDOW
from scanstation.web.context import Services
from scanstation.web.routes.stats import mqtt_state

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format's content type (version 0.0.4), as prometheus-client names it."""

CAMERA_METRICS = (
    ("frames", "counter", "Frames grabbed."),
    ("decoded_frames", "counter", "Frames decoded (unchanged frames are skipped)."),
    ("decodes", "counter", "Codes decoded."),
    ("reads", "counter", "Reads reported (after duplicate suppression)."),
    ("no_reads", "counter", "Read windows that closed without a code."),
    ("reconnects", "counter", "Times the camera was opened again after losing it."),
    ("fps", "gauge", "Frames grabbed per second (last 60 frames)."),
    ("decode_ms", "gauge", "Median decode time of the last 100 frames, ms."),
)
"""Camera counters for Prometheus: (CameraStats field, metric type, help)."""


@dataclass
class Snapshot:
    """What one scrape reports: the parts read from the database, taken by the handler."""

    svc: Services
    by_status: dict[str, int]
    outbox_depth: int
    outbox_oldest: float | None
    now: float = field(default_factory=time.time)


def _gauge(name: str, help_text: str, labels: dict[str, str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


def station_metrics(snap: Snapshot) -> Iterator[Metric]:
    """Every metric family of one scrape, in the order the exposition lists them."""
    svc = snap.svc
    yield _gauge(
        "scanstation_build_info",
        "Version of the running daemon.",
        {"version": __version__, "device_id": svc.config.device.id},
        1,
    )
    captures = GaugeMetricFamily(
        "scanstation_captures", "Captures in the database by status.", labels=["status"]
    )
    for status in CaptureStatus:
        captures.add_metric([status.value], snap.by_status.get(status.value, 0))
    yield captures
    counters = svc.pipeline.counters
    yield _counter(
        "scanstation_pipeline_captures_created_total",
        "Captures created since the daemon started.",
        counters.created,
    )
    finished = CounterMetricFamily(
        "scanstation_pipeline_captures_finished_total",
        "Captures walked to a terminal status since the daemon started.",
        labels=["status"],
    )
    for finished_status, n in sorted(counters.finished.items()):
        finished.add_metric([finished_status], n)
    yield finished
    yield _gauge(
        "scanstation_pipeline_queue_depth",
        "Captures waiting for the walk.",
        {},
        svc.pipeline.queue.qsize(),
    )
    yield _gauge(
        "scanstation_pipeline_last_batch_seconds",
        "Duration of the last pipeline batch.",
        {},
        counters.last_batch_ms / 1000,
    )
    yield _gauge(
        "scanstation_outbox_depth", "MQTT events waiting for a PUBACK.", {}, snap.outbox_depth
    )
    oldest = snap.outbox_oldest
    yield _gauge(
        "scanstation_outbox_oldest_age_seconds",
        "Age of the oldest event in the outbox (0 when empty).",
        {},
        round(snap.now - oldest, 3) if oldest is not None else 0,
    )
    yield _counter(
        "scanstation_store_commits_total", "SQLite transactions committed.", svc.store.commits
    )
    yield _counter(
        "scanstation_store_writes_total", "Writes committed (grouped).", svc.store.writes
    )
    up = GaugeMetricFamily(
        "scanstation_source_up", "1 when the source is running.", labels=["source", "kind"]
    )
    scans = CounterMetricFamily(
        "scanstation_source_scans_total", "Reads a source has delivered.", labels=["source"]
    )
    errors = CounterMetricFamily(
        "scanstation_source_errors_total", "Errors a source has reported.", labels=["source"]
    )
    for name, health in svc.sources.items():
        up.add_metric([name, health.kind], int(health.state == "running"))
        scans.add_metric([name], health.scans)
        errors.add_metric([name], health.errors)
    yield from (up, scans, errors)
    cameras = {name: stats() for name, stats in svc.camera_stats.items()}
    for attr, kind, help_text in CAMERA_METRICS:
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(
                f"scanstation_camera_{attr}_total", help_text, labels=["source"]
            )
        else:
            family = GaugeMetricFamily(f"scanstation_camera_{attr}", help_text, labels=["source"])
        for name, camera in cameras.items():
            family.add_metric([name], getattr(camera, attr))
        yield family
    yield from read_rate_metrics(svc)
    mqtt = mqtt_state(svc)
    yield _gauge(
        "scanstation_mqtt_connected",
        "1 while connected to the broker.",
        {"state": str(mqtt.get("state", ""))},
        int(bool(mqtt.get("connected")) or mqtt.get("state") == "connected"),
    )
    yield _gauge(
        "scanstation_live_subscribers", "Open live event streams.", {}, svc.bus.subscriber_count
    )


def read_rate_metrics(svc: Services) -> Iterator[Metric]:
    """Read windows by result and the read rate of the last 100, per source (readstats)."""
    reads = CounterMetricFamily(
        "scanstation_reads_total",
        "Read windows by result: good, noread, multiple (more than one code) or rejected "
        "(by the match rules).",
        labels=["source", "result"],
    )
    rate = GaugeMetricFamily(
        "scanstation_read_rate_ratio",
        f"Good windows over all windows, last {WINDOW} windows (1 when none yet).",
        labels=["source", "window"],
    )
    quality = GaugeMetricFamily(
        "scanstation_read_quality_score",
        "Mean quality score (0-100, indicative) of the last good reads.",
        labels=["source"],
    )
    alarm = GaugeMetricFamily(
        "scanstation_read_quality_alarm",
        "1 while the mean quality score is below [quality] alarm_below.",
        labels=["source"],
    )
    for source, report in svc.read_stats.reports().items():
        for result in RESULTS:
            reads.add_metric([source, result], report.totals[result])
        rate.add_metric([source, str(WINDOW)], report.rate)
        if report.quality.score is not None:
            quality.add_metric([source], report.quality.score)
            alarm.add_metric([source], int(report.quality.alarm))
    yield from (reads, rate, quality, alarm)


class StationCollector:
    """A prometheus-client collector over the snapshot the handler has just taken."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        if self.snapshot is not None:
            yield from station_metrics(self.snapshot)


@dataclass
class Exposition:
    """The app's registry and its one collector."""

    registry: CollectorRegistry
    collector: StationCollector

    @classmethod
    def new(cls) -> Exposition:
        collector = StationCollector()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        return cls(registry, collector)

    def render(self, snapshot: Snapshot) -> bytes:
        # Synchronous from setting the snapshot to reading it: no other request interleaves.
        self.collector.snapshot = snapshot
        try:
            return generate_latest(self.registry)
        finally:
            self.collector.snapshot = None
