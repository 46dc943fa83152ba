"""The review half of the API (SPEC §6): proposals, products, exports, the live event stream,
dashboard figures, Prometheus metrics, camera preview and stored images."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import io
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image
from pydantic import BaseModel, ConfigDict, StringConstraints

from scanstation import __version__
from scanstation.catalog import CatalogError, gtin14, parse_products
from scanstation.events import Event, Subscription
from scanstation.exports import write_products_csv, write_scans_csv
from scanstation.model import CaptureStatus, ProposalStatus
from scanstation.store import PRODUCT_FIELDS, NotFound
from scanstation.views import capture_json, iso, product_json, proposal_json
from scanstation.web import queries
from scanstation.web.api import (
    API_BASE,
    Services,
    _int_param,
    _page,
    _time_param,
    services,
)
from scanstation.web.errors import ApiError, read_json

HEARTBEAT_S = 15.0
"""An SSE comment this often keeps proxies and phones from closing an idle stream."""
MAX_MJPEG_STREAMS = 4
"""Each MJPEG viewer costs bandwidth and wake-ups on the Pi; more get a 429."""
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
MJPEG_REPEAT_S = 2.0
_LIST_FIELDS = ("certifications", "images")
_TEXT_MAX = 5000


@dataclasses.dataclass
class LiveStreams:
    """Open event streams and camera viewers, so shutdown can end them cleanly."""

    subscriptions: set[Subscription] = dataclasses.field(default_factory=set)
    closing: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    mjpeg_viewers: int = 0
    stats: tuple[float, dict[str, Any]] | None = None
    """The last /stats answer and when it was made (monotonic seconds)."""


@dataclasses.dataclass
class Previews:
    """Source name → the source object, for the ones that may offer a camera preview."""

    sources: dict[str, object] = dataclasses.field(default_factory=dict)


LIVE = web.AppKey("live_streams", LiveStreams)
PREVIEWS = web.AppKey("previews", Previews)
_SHUTDOWN = Event("shutdown", {})

routes = web.RouteTableDef()


# ---- proposals ----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProposalReview(_Body):
    status: Literal["ACCEPTED", "REJECTED", "PENDING"]


@routes.get(API_BASE + "/captures/{id}/proposals")
async def capture_proposals(request: web.Request) -> web.Response:
    store = services(request).store
    public_id = request.match_info["id"]
    await queries.capture_ids(store, public_id)  # 404 for an unknown capture
    proposals = await store.list_proposals(public_id)
    return web.json_response(
        {"count": len(proposals), "results": [proposal_json(p) for p in proposals]}
    )


@routes.patch(API_BASE + "/proposals/{id}")
async def patch_proposal(request: web.Request) -> web.Response:
    svc = services(request)
    body = ProposalReview.model_validate(await read_json(request) or {})
    proposal = await queries.review_proposal(
        svc.store, request.match_info["id"], ProposalStatus(body.status)
    )
    svc.bus.publish("proposal", proposal_json(proposal))
    return web.json_response(proposal_json(proposal))


def _proposed_value(field_name: str, text: str, current: Any) -> Any:
    """A proposal's text as the value of a product field (lists gain an item)."""
    if field_name in _LIST_FIELDS:
        items = list(current or [])
        new = [v.strip() for v in text.split("|") if v.strip()]
        return items + [v for v in new if v not in items]
    if field_name == "nutrition":
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("nutrition must be a JSON object")
        return {**(current or {}), **value}
    return text


async def _apply_target(request: web.Request) -> str:
    """The optional body ``{"gtin": "…"}``: the product to apply an image-only capture to."""
    if not request.can_read_body:
        return ""
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"gtin"}:
        raise ApiError(422, 'the body must be {"gtin": "<GTIN>"} or empty', field="gtin")
    if not body.get("gtin"):
        return ""
    try:
        return gtin14(str(body["gtin"]))
    except CatalogError as exc:
        raise ApiError(422, str(exc), field="gtin") from None


@routes.post(API_BASE + "/captures/{id}/apply")
async def apply_proposals(request: web.Request) -> web.Response:
    """Write the capture's ACCEPTED proposals into its product (created for its GTIN if
    missing). A NOT_FOUND capture is then walked again, so it can resolve to the product."""
    svc = services(request)
    store = svc.store
    public_id = request.match_info["id"]
    capture_row, gtin, product_row, _ = await queries.capture_ids(store, public_id)
    accepted = [
        p for p in await store.list_proposals(public_id) if p.status is ProposalStatus.ACCEPTED
    ]
    if not accepted:
        raise ApiError(409, f"capture {public_id!r} has no ACCEPTED proposals to apply")
    # An image-only capture gets its product's GTIN from an accepted barcode proposal.
    gtin_proposal = next((p for p in accepted if p.field_name == "gtin"), None)
    applied: list[str] = []
    chosen = await _apply_target(request)
    if chosen and product_row is None:
        gtin = chosen  # the operator names the product an image-only capture shows
    elif not gtin and product_row is None and gtin_proposal is not None:
        try:
            gtin = gtin14(gtin_proposal.proposed_value)
        except CatalogError as exc:
            raise ApiError(422, f"the accepted gtin proposal: {exc}", field="gtin") from None
        applied.append(gtin_proposal.public_id)
    if product_row is not None:
        product = await queries.product_by_row_id(store, product_row)
        gtin, existing = product.gtin, product
    elif gtin:
        try:
            existing = await store.get_product(gtin)
        except NotFound:
            existing = None
    else:
        raise ApiError(
            409,
            f"capture {public_id!r} has no GTIN and no product, so there is no product record "
            "to apply proposals to; create the product with PUT /products/{gtin} first",
        )
    fields: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    for proposal in accepted:
        name = proposal.field_name
        if proposal.public_id in applied:
            continue
        if name not in PRODUCT_FIELDS:
            skipped.append(
                {"public_id": proposal.public_id, "reason": f"{name!r} is not a product field"}
            )
            continue
        current = fields.get(name, getattr(existing, name) if existing else None)
        try:
            fields[name] = _proposed_value(name, proposal.proposed_value, current)
        except ValueError as exc:
            skipped.append({"public_id": proposal.public_id, "reason": str(exc)})
            continue
        applied.append(proposal.public_id)
    if fields:
        await store.upsert_products([{"gtin": gtin, **fields}])
    product = await store.get_product(gtin) if (fields or existing) else None
    if product is not None:
        # The photo becomes a reference of the product, for resolving later photos.
        await store.add_reference_photo(product.id, capture_row)
    capture = await store.get_capture(public_id)
    if fields and capture.status is CaptureStatus.NOT_FOUND:
        capture = await svc.pipeline.retry(public_id)
    if product is not None:
        svc.bus.publish("product", product_json(product))
    return web.json_response(
        {
            "product": product_json(product) if product else None,
            "created": existing is None and bool(fields),
            "applied": applied,
            "skipped": skipped,
            "capture": capture_json(capture),
        }
    )


# ---- products -----------------------------------------------------------------------------

_Text = Annotated[str, StringConstraints(max_length=_TEXT_MAX)]


class ProductBody(_Body):
    gtin: str | None = None
    name: _Text | None = None
    brand: _Text | None = None
    net_content: _Text | None = None
    ingredients: _Text | None = None
    nutrition: dict[str, Any] | None = None
    certifications: list[Annotated[str, StringConstraints(max_length=200)]] | None = None
    country_of_origin: _Text | None = None
    category: _Text | None = None
    images: list[Annotated[str, StringConstraints(max_length=500)]] | None = None


def _gtin_param(request: web.Request) -> str:
    try:
        return gtin14(request.match_info["gtin"])
    except CatalogError as exc:
        raise ApiError(422, str(exc), field="gtin") from None


@routes.get(API_BASE + "/products")
async def list_products(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 50, 1, 500)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    order = request.query.get("order", "gtin")
    if order not in ("gtin", "name", "completeness", "-completeness", "-modified"):
        raise ApiError(
            400,
            f"order must be gtin, name, completeness, -completeness or -modified, got {order!r}",
            field="order",
        )
    max_completeness = (
        _int_param(request, "max_completeness", 100, 0, 100)
        if "max_completeness" in request.query
        else None
    )
    products, total = await queries.search_products(
        services(request).store,
        query=request.query.get("q", "")[:100],
        max_completeness=max_completeness,
        order=order,
        limit=limit,
        offset=offset,
    )
    return _page(request, [product_json(p) for p in products], total, limit, offset)


@routes.get(API_BASE + "/products/{gtin}")
async def get_product(request: web.Request) -> web.Response:
    product = await services(request).store.get_product(_gtin_param(request))
    return web.json_response(product_json(product))


@routes.put(API_BASE + "/products/{gtin}")
async def put_product(request: web.Request) -> web.Response:
    """Create or update one product; fields left out keep their stored values."""
    svc = services(request)
    gtin = _gtin_param(request)
    body = ProductBody.model_validate(await read_json(request) or {})
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    if "gtin" in fields:
        try:
            same = gtin14(fields.pop("gtin")) == gtin
        except CatalogError as exc:
            raise ApiError(422, str(exc), field="gtin") from None
        if not same:
            raise ApiError(422, f"the body's gtin differs from the path's {gtin}", field="gtin")
    try:
        await svc.store.get_product(gtin)
        created = False
    except NotFound:
        created = True
    await svc.store.upsert_products([{"gtin": gtin, **fields}])
    product = await svc.store.get_product(gtin)
    svc.bus.publish("product", product_json(product))
    return web.json_response(product_json(product), status=201 if created else 200)


@routes.post(API_BASE + "/products/import")
async def import_products(request: web.Request) -> web.Response:
    """A CSV or JSON catalog as the body (or as the ``file`` part of a multipart form)."""
    svc = services(request)
    content_type = request.content_type
    if content_type.startswith("multipart/"):
        text, filename = None, "upload"
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    filename = part.filename or "upload"
                    text = (await part.read()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the catalog must be UTF-8 text", field="file") from None
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            # aiohttp's multipart reader reports a malformed body this way.
            raise ApiError(400, f"the multipart body is malformed: {exc}") from None
        if text is None:
            raise ApiError(422, "the form needs a file part with the catalog", field="file")
    elif content_type in ("text/csv", "application/json", "text/plain"):
        try:
            text = (await request.read()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the catalog must be UTF-8 text") from None
        filename = "upload.json" if content_type == "application/json" else "upload.csv"
    else:
        raise ApiError(415, f"send the catalog as text/csv or application/json, got {content_type}")
    try:
        products = parse_products(text, filename)
    except CatalogError as exc:
        raise ApiError(422, str(exc)) from None
    count = await svc.store.upsert_products(products)
    svc.bus.publish("catalog", {"imported": count})
    return web.json_response({"imported": count}, status=200)


# ---- exports ------------------------------------------------------------------------------


def _csv_response(text: str, filename: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@routes.get(API_BASE + "/exports/scans.csv")
async def export_scans(request: web.Request) -> web.Response:
    out = io.StringIO()
    await write_scans_csv(
        services(request).store,
        out,
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return _csv_response(out.getvalue(), f"scans-{stamp}.csv")


@routes.get(API_BASE + "/exports/products.csv")
async def export_products(request: web.Request) -> web.Response:
    out = io.StringIO()
    await write_products_csv(services(request).store, out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return _csv_response(out.getvalue(), f"products-{stamp}.csv")


# ---- live events --------------------------------------------------------------------------


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@routes.get(API_BASE + "/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: capture, session, proposal, product, alert … as they happen."""
    svc = services(request)
    live = request.app[LIVE]
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",
    }
    if request.method == "HEAD":  # the headers alone; a stream would never end
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    with svc.bus.subscribe() as sub:
        live.subscriptions.add(sub)
        try:
            await response.write(b"retry: 3000\n\n")
            await response.write(_sse("hello", {"time": iso(time.time()), "version": __version__}))
            reported = 0
            while not live.closing.is_set():
                try:
                    event = await asyncio.wait_for(sub.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if event is _SHUTDOWN:
                    await response.write(_sse("shutdown", {}))
                    break
                if sub.dropped > reported:
                    # A slow reader lost events: tell it to re-read the lists it shows.
                    await response.write(_sse("dropped", {"count": sub.dropped - reported}))
                    reported = sub.dropped
                await response.write(_sse(event.kind, event.data))
        except ConnectionResetError:  # the reader went away
            return response
        finally:
            live.subscriptions.discard(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _end_streams(app: web.Application) -> None:
    """on_shutdown: wake every event stream and camera viewer so they finish cleanly."""
    live = app[LIVE]
    live.closing.set()
    for sub in list(live.subscriptions):
        if sub.queue.full():
            sub.queue.get_nowait()
        sub.queue.put_nowait(_SHUTDOWN)


# ---- dashboard and metrics ----------------------------------------------------------------


def _midnight(timezone: str, now: float) -> float:
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def mqtt_state(svc: Services) -> dict[str, Any]:
    """The MQTT publisher's report (``svc.mqtt.state``, an MqttState) with a one-word
    ``state`` (connected | disconnected | off) and a ``detail`` line for the dashboard."""
    publisher = getattr(svc, "mqtt", None)
    if publisher is None:
        if not svc.config.mqtt.host:
            return {"state": "off", "detail": "no [mqtt] host configured; the outbox keeps events"}
        return {"state": "unknown", "detail": "the MQTT publisher is not running"}
    value: Any = getattr(publisher, "state", None)
    if callable(value):
        value = value()
    if hasattr(value, "as_dict"):
        report = dict(value.as_dict())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        report = dataclasses.asdict(value)
    elif isinstance(value, dict):
        report = dict(value)
    else:
        return {"state": str(value or "unknown")}
    if report.get("enabled") is False:
        word = "off"
    else:
        word = "connected" if report.get("connected") else "disconnected"
    detail = report.get("last_error") if word == "disconnected" else report.get("broker")
    return {**report, "state": word, "detail": str(detail or "")}


def _sources_json(svc: Services, app: web.Application) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "kind": h.kind,
            "state": h.state,
            "detail": h.detail,
            "scans": h.scans,
            "errors": h.errors,
            "last_scan_at": iso(h.last_scan_at),
            "since": iso(h.since),
            "preview": _has_preview(_preview_source(svc, app, name)),
        }
        for name, h in svc.sources.items()
    ]


STATS_TTL_S = 2.0
"""Dashboards on several screens share one /stats computation within this window."""


@routes.get(API_BASE + "/stats")
async def stats(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    if live.stats is not None and time.monotonic() - live.stats[0] < STATS_TTL_S:
        return web.json_response(live.stats[1])
    body = await _stats(request)
    live.stats = (time.monotonic(), body)
    return web.json_response(body)


async def _stats(request: web.Request) -> dict[str, Any]:
    svc = services(request)
    now = time.time()
    figures = await queries.dashboard(
        svc.store, midnight=_midnight(svc.config.device.timezone, now), now=now
    )
    depth, oldest = await svc.store.outbox_stats()
    body = dataclasses.asdict(figures)
    body["per_hour"] = [{**h, "hour": iso(h["hour"])} for h in figures.per_hour]
    body.update(
        {
            "time": iso(now),
            "device_id": svc.config.device.id,
            "site": svc.config.device.site,
            "version": __version__,
            "outbox": {
                "depth": depth,
                "oldest_age_s": round(now - oldest, 1) if oldest is not None else None,
            },
            "mqtt": mqtt_state(svc),
            "sources": _sources_json(svc, request.app),
            "pipeline": {
                "created": svc.pipeline.counters.created,
                "finished": svc.pipeline.counters.finished,
                "queued": svc.pipeline.queue.qsize(),
                "last_batch_ms": round(svc.pipeline.counters.last_batch_ms, 2),
            },
            "live_subscribers": svc.bus.subscriber_count,
        }
    )
    return body


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


# ---- camera preview -----------------------------------------------------------------------


def _preview_source(svc: Services, app: web.Application | None, name: str) -> object | None:
    registry: Mapping[str, object] = app[PREVIEWS].sources if app is not None else {}
    source = registry.get(name)
    if source is None:
        extra = getattr(svc, "previews", None)  # if the daemon hands sources over this way
        if isinstance(extra, Mapping):
            source = extra.get(name)
    return source


def _has_preview(source: object | None) -> bool:
    return source is not None and callable(getattr(source, "latest_jpeg", None))


def _require_preview(request: web.Request) -> object:
    svc = services(request)
    name = request.match_info["name"]
    source = _preview_source(svc, request.app, name)
    if source is None and name not in svc.sources:
        raise ApiError(404, f"there is no source named {name!r}", field="name")
    if not _has_preview(source):
        kind = svc.sources[name].kind if name in svc.sources else "this"
        raise ApiError(409, f"source {name!r} ({kind}) has no camera preview", field="name")
    assert source is not None
    return source


async def _latest_jpeg(source: object) -> bytes | None:
    latest = source.latest_jpeg  # type: ignore[attr-defined]
    if inspect.iscoroutinefunction(latest):
        value = await latest()
    else:
        value = await asyncio.to_thread(latest)  # JPEG encoding takes milliseconds
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and value else None


@routes.get(API_BASE + "/sources/{name}/snapshot.jpg")
async def snapshot(request: web.Request) -> web.Response:
    frame = await _latest_jpeg(_require_preview(request))
    if frame is None:
        raise ApiError(
            409, f"source {request.match_info['name']!r} has no frame yet; try again shortly"
        )
    return web.Response(
        body=bytes(frame), content_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )


async def _frames(source: object, fps: int, closing: asyncio.Event) -> AsyncIterator[bytes]:
    """New frames at most ``fps`` a second: the source's own ``mjpeg_frames`` when it has
    one, else its newest JPEG polled (a still scene re-sent every ``MJPEG_REPEAT_S``)."""
    own = getattr(source, "mjpeg_frames", None)
    if callable(own):
        async for frame in own(max_fps=float(fps)):
            if closing.is_set():
                return
            yield bytes(frame)
        return
    last: bytes | None = None
    sent_at = 0.0
    while not closing.is_set():
        frame = await _latest_jpeg(source)
        now = time.monotonic()
        if frame is not None and (frame is not last or now - sent_at > MJPEG_REPEAT_S):
            last, sent_at = frame, now
            yield frame
        await asyncio.sleep(1 / fps)


@routes.get(API_BASE + "/sources/{name}/stream.mjpg")
async def mjpeg_stream(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace of the source's newest JPEG, at most ``fps`` a second."""
    source = _require_preview(request)
    fps = _int_param(request, "fps", 10, 1, 30)
    if request.method == "HEAD":  # the headers alone; a stream would never end
        return web.Response(
            headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store",
            }
        )
    live = request.app[LIVE]
    if live.mjpeg_viewers >= MAX_MJPEG_STREAMS:
        raise ApiError(429, f"{MAX_MJPEG_STREAMS} camera previews are already open")
    live.mjpeg_viewers += 1
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        await response.write(b"--frame\r\n")
        async for frame in _frames(source, fps, live.closing):
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
            # The closing boundary goes out with the frame: browsers show a part only once
            # they see the boundary after it.
            await response.write(head.encode() + frame + b"\r\n--frame\r\n")
        return response
    except ConnectionResetError:  # the viewer went away
        return web.StreamResponse()
    finally:
        live.mjpeg_viewers -= 1


# ---- stored images ------------------------------------------------------------------------


def _thumbnail(path: Path, width: int) -> bytes:
    with Image.open(path, formats=["JPEG", "PNG", "WEBP"]) as image:
        image.thumbnail((width, width * 4))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=80)
        return out.getvalue()


@routes.get(API_BASE + "/captures/{id}/image")
async def capture_image(request: web.Request) -> web.StreamResponse:
    """The capture's stored image; ``?width=N`` gives a JPEG thumbnail N pixels wide."""
    svc = services(request)
    public_id = request.match_info["id"]
    _, _, _, key = await queries.capture_ids(svc.store, public_id)
    if not key:
        raise ApiError(404, f"capture {public_id!r} has no stored image")
    root = svc.config.images_path.resolve()
    path = (root / key).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in IMAGE_TYPES:
        raise ApiError(404, f"capture {public_id!r} has no readable image")
    if not path.is_file():
        raise ApiError(404, f"the image of capture {public_id!r} is gone (retention?)")
    cache = {"Cache-Control": "private, max-age=86400, immutable"}  # keys are never reused
    if "width" in request.query:
        width = _int_param(request, "width", 320, 32, 1024)
        try:
            data = await asyncio.to_thread(_thumbnail, path, width)
        except OSError as exc:
            raise ApiError(
                404, f"the image of capture {public_id!r} cannot be read: {exc}"
            ) from None
        return web.Response(body=data, content_type="image/jpeg", headers=cache)
    return web.FileResponse(
        path, headers={**cache, "Content-Type": IMAGE_TYPES[path.suffix.lower()]}
    )


# ---- wiring -------------------------------------------------------------------------------


def setup_api_more(app: web.Application, previews: Mapping[str, object] | None = None) -> None:
    app[LIVE] = LiveStreams()
    app[PREVIEWS] = Previews(dict(previews or {}))
    app.on_shutdown.append(_end_streams)

    app.router.add_routes(routes)
