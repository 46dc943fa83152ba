"""``GET /metrics``: Prometheus text exposition of the station's counters."""

from __future__ import annotations

import time

from aiohttp import web

from scanstation import __version__
from scanstation.model import CaptureStatus
from scanstation.web.context import API_BASE, services
from scanstation.web.routes.stats import mqtt_state

routes = web.RouteTableDef()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Metrics:
    """Prometheus text exposition format 0.0.4, one family at a time."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


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


@routes.get(API_BASE + "/metrics")
async def metrics(request: web.Request) -> web.Response:
    svc = services(request)
    now = time.time()
    by_status = await svc.store.status_counts()
    depth, oldest = await svc.store.outbox_stats()
    m = _Metrics()
    m.family(
        "scanstation_build_info",
        "gauge",
        "Version of the running daemon.",
        [({"version": __version__, "device_id": svc.config.device.id}, 1)],
    )
    m.family(
        "scanstation_captures",
        "gauge",
        "Captures in the database by status.",
        [({"status": s.value}, by_status.get(s.value, 0)) for s in CaptureStatus],
    )
    m.family(
        "scanstation_pipeline_captures_created_total",
        "counter",
        "Captures created since the daemon started.",
        [({}, svc.pipeline.counters.created)],
    )
    m.family(
        "scanstation_pipeline_captures_finished_total",
        "counter",
        "Captures walked to a terminal status since the daemon started.",
        [({"status": s}, n) for s, n in sorted(svc.pipeline.counters.finished.items())],
    )
    m.family(
        "scanstation_pipeline_queue_depth",
        "gauge",
        "Captures waiting for the walk.",
        [({}, svc.pipeline.queue.qsize())],
    )
    m.family(
        "scanstation_pipeline_last_batch_seconds",
        "gauge",
        "Duration of the last pipeline batch.",
        [({}, svc.pipeline.counters.last_batch_ms / 1000)],
    )
    m.family(
        "scanstation_outbox_depth", "gauge", "MQTT events waiting for a PUBACK.", [({}, depth)]
    )
    m.family(
        "scanstation_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest event in the outbox (0 when empty).",
        [({}, round(now - oldest, 3) if oldest is not None else 0)],
    )
    m.family(
        "scanstation_store_commits_total",
        "counter",
        "SQLite transactions committed.",
        [({}, svc.store.commits)],
    )
    m.family(
        "scanstation_store_writes_total",
        "counter",
        "Writes committed (grouped).",
        [({}, svc.store.writes)],
    )
    m.family(
        "scanstation_source_up",
        "gauge",
        "1 when the source is running.",
        [
            ({"source": n, "kind": h.kind}, int(h.state == "running"))
            for n, h in svc.sources.items()
        ],
    )
    m.family(
        "scanstation_source_scans_total",
        "counter",
        "Reads a source has delivered.",
        [({"source": n}, h.scans) for n, h in svc.sources.items()],
    )
    m.family(
        "scanstation_source_errors_total",
        "counter",
        "Errors a source has reported.",
        [({"source": n}, h.errors) for n, h in svc.sources.items()],
    )
    cameras = {name: stats() for name, stats in svc.camera_stats.items()}
    for field, kind, help_text in CAMERA_METRICS:
        m.family(
            f"scanstation_camera_{field}{'_total' if kind == 'counter' else ''}",
            kind,
            help_text,
            [({"source": name}, getattr(c, field)) for name, c in cameras.items()],
        )
    mqtt = mqtt_state(svc)
    m.family(
        "scanstation_mqtt_connected",
        "gauge",
        "1 while connected to the broker.",
        [
            (
                {"state": str(mqtt.get("state", ""))},
                int(bool(mqtt.get("connected")) or mqtt.get("state") == "connected"),
            )
        ],
    )
    m.family(
        "scanstation_live_subscribers",
        "gauge",
        "Open live event streams.",
        [({}, svc.bus.subscriber_count)],
    )
    return web.Response(
        text=m.text(), content_type="text/plain", charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip
