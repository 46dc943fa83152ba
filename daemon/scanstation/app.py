"""The daemon: sources → pipeline → store → outbox, plus the HTTP server, in one TaskGroup.

Start-up is a flat list of steps; shutdown has one path (``stop`` set by SIGTERM/SIGINT or a
caller): sources stop first, then HTTP, the pipeline gets a moment to finish its batch, and
the store commits every queued write before it closes. Nothing acknowledged is lost; captures
still in progress are walked again on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from scanstation.bus import EventBus
from scanstation.config import Config, SourceConfig
from scanstation.health import camera_rate, source_report
from scanstation.heap import settled
from scanstation.hw import systemd
from scanstation.model import Capture, Enricher, Scan
from scanstation.pipeline import Pipeline
from scanstation.publish.mqtt import MqttLink
from scanstation.readstats import ReadStats
from scanstation.services.backup import backup_loop
from scanstation.services.noreads import NoReadRing
from scanstation.services.retention import retention_loop
from scanstation.sources.base import Camera, Source
from scanstation.store import NotFound, Store
from scanstation.store.files import private_dir
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import Services
from scanstation.web.limits import QuietAcceptErrors, limit_connections, raise_fd_limit
from scanstation.web.server import make_app
from scanstation.web.users import key_files

if TYPE_CHECKING:
    from scanstation.hw.gpio import GpioIO
    from scanstation.outputs import Outputs
    from scanstation.sources.objects import ObjectWindow

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
"""How long the pipeline may take to finish its batch at shutdown; with the outputs' 1 s and
MQTT's offline message (≤ 1.5 s) the whole stop stays under 5 s."""


@dataclass
class Daemon:
    """The running parts, handed to ``on_ready`` callers (tests, the demo's banner)."""

    config: Config
    store: Store
    pipeline: Pipeline
    bus: EventBus
    sources: list[Source]
    read_stats: ReadStats = field(default_factory=ReadStats)
    url: str = ""
    plc_links: list[Any] = field(default_factory=list)
    """The Modbus and OPC UA servers that are on ([modbus], [opcua])."""
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def build_source(config: SourceConfig) -> Source:
    """The source object for one ``[[sources]]`` entry (hardware modules imported lazily)."""
    match config.type:
        case "stdin":
            from scanstation.sources.stdin import StdinSource

            return StdinSource(config)
        case "replay":
            from scanstation.sources.replay import ReplaySource

            return ReplaySource(config)
        case "camera":
            from scanstation.sources.camera import CameraSource

            return CameraSource(config)
        case "hid":
            from scanstation.sources.hid import HidSource

            return HidSource(config)
        case "serial":
            from scanstation.sources.serial import SerialSource

            return SerialSource(config)
    raise ValueError(f"unknown source type {config.type!r}")


async def init_classifier(config: Config, store: Store) -> list[Enricher]:
    """The image enricher (classifier proposals, visual resolving), if it is on and loads.

    A model that cannot load is reported and the daemon runs on without image enrichment:
    barcodes still flow.
    """
    if not config.classifier.enabled:
        return []
    from scanstation.vision.classify import ClassifierError, LazyClassifier
    from scanstation.vision.enrich import ImageEnricher, ReferencePhoto, unpack_embedding

    try:
        # Loaded on the first photo and released when idle: RSS stays low on a barcode lane.
        classifier = LazyClassifier(config.classifier)
    except ClassifierError as exc:
        log.error("classifier off: %s", exc)
        return []
    model = classifier.model_name

    async def references() -> list[ReferencePhoto]:
        return [
            ReferencePhoto(row[0], unpack_embedding(row[3]), row[1], product_id=row[2])
            for row in await store.reference_photos(model)
        ]

    async def current_values(capture: Capture) -> dict[str, str]:
        if not capture.gtin:
            return {}
        try:
            product = await store.get_product(capture.gtin)
        except NotFound:
            return {"gtin": capture.gtin}
        return {"gtin": product.gtin, "name": product.name, "category": product.category}

    async def keep_embedding(capture: Capture, vector: bytes) -> None:
        await store.keep_embedding(capture.id, model, vector)

    log.info(
        "classifier %s ready, loaded on first use (%d threads, released after %.0f s idle)",
        model,
        config.classifier.threads,
        config.classifier.idle_unload_s,
    )
    return [
        ImageEnricher(
            classifier,
            references=references,
            current_values=current_values,
            keep_embedding=keep_embedding,
            min_confidence=config.classifier.min_confidence,
            resolve_threshold=config.classifier.resolve_threshold,
        )
    ]


async def supervise(source: Source, emit: Callable[[Scan], Awaitable[Capture]]) -> None:
    """Run a source; a crash is logged, reported in its health, and restarted with backoff."""
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            await source.run(emit)
            return  # a finite source (stdin at EOF, a replay) ended normally
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            source.health.errors += 1
            source.health.set_state("failed", f"{type(exc).__name__}: {exc}")
            log.exception("source %s failed; restarting in %.0f s", source.name, delay)
        if time.monotonic() - started > 60:
            delay = 1.0
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 60)


async def expire_sessions(store: Store, pipeline: Pipeline, idle_timeout: float) -> None:
    """Mark idle ACTIVE sessions EXPIRED, checking a few times per timeout."""
    while True:
        await asyncio.sleep(min(max(idle_timeout / 4, 0.05), 30))
        await pipeline.sessions.expire_idle(idle_timeout)


@asynccontextmanager
async def http_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int = 256,
    header_timeout_s: float = 10.0,
) -> AsyncIterator[str]:
    # keepalive_timeout runs from the connection's start: it is also the header timeout.
    runner = web.AppRunner(
        app, shutdown_timeout=1.0, access_log=None, keepalive_timeout=header_timeout_s
    )
    await runner.setup()
    assert runner.server is not None
    limit_connections(runner.server, max_connections)
    loop = asyncio.get_running_loop()
    if not isinstance(loop.get_exception_handler(), QuietAcceptErrors):
        loop.set_exception_handler(QuietAcceptErrors())
    site = web.TCPSite(runner, host, port, backlog=min(max_connections, 1024))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        yield f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    finally:
        await runner.cleanup()


def init_sources(config: Config, extra: list[Source] | None) -> list[Source]:
    """The configured sources (the object window's cameras grouped into it) and ``extra``."""
    sources = [build_source(s) for s in config.sources if s.enabled]
    if config.object_window.enabled:
        from scanstation.sources.camera import CameraSource
        from scanstation.sources.objects import ObjectWindow

        members = config.object_window_cameras
        grouped = [s for s in sources if s.name in members and isinstance(s, CameraSource)]
        first = sources.index(grouped[0])
        sources = [s for s in sources if s not in grouped]
        sources.insert(first, ObjectWindow(config.object_window, grouped))
    return sources + (extra or [])


def object_windows(sources: list[Source]) -> list[ObjectWindow]:
    from scanstation.sources.objects import ObjectWindow

    return [s for s in sources if isinstance(s, ObjectWindow)]


def all_cameras(sources: list[Source]) -> list[Camera]:
    """Every camera, those inside an object window too (previews, counters)."""
    inside = [c for w in object_windows(sources) for c in w.cameras]
    return cameras(sources) + [c for c in inside if isinstance(c, Camera)]


def cameras(sources: list[Source]) -> list[Camera]:
    return [s for s in sources if isinstance(s, Camera)]


def software_triggers(sources: list[Source]) -> dict[str, Callable[[], None]]:
    """What opens a read window on request: object windows first, then the cameras whose
    trigger is software or gpio (the cameras inside an object window are its own)."""
    triggers: dict[str, Callable[[], None]] = {w.name: w.trigger for w in object_windows(sources)}
    triggers.update(
        {c.name: c.trigger for c in cameras(sources) if c.config.trigger != "continuous"}
    )
    return triggers


def init_gpio(config: Config, sessions: SessionButton, sources: list[Source]) -> GpioIO | None:
    """Feedback once a scan is durable, rejects when a capture finishes, the photo-eye
    opening read windows, the session button — when any pin is configured."""
    if not config.gpio.in_use:
        return None
    from scanstation.hw.gpio import GpioIO

    return GpioIO(
        config.gpio,
        trigger_listeners=(
            *(c.trigger for c in cameras(sources) if c.config.trigger == "gpio"),
            *(w.trigger for w in object_windows(sources) if w.config.trigger == "gpio"),
        ),
        # The photo-eye clearing closes an object window (its cameras keep their own window).
        release_listeners=tuple(
            w.release for w in object_windows(sources) if w.config.trigger == "gpio"
        ),
        toggle_session=lambda: sessions.toggle_session("button"),
        new_session=lambda: sessions.start_session("button"),
    )


def init_outputs(
    config: Config, store: Store, gpio: GpioIO | None, read_stats: ReadStats
) -> Outputs:
    """Hand finished captures to the POS, WMS or PLC: keyboard gadget and serial at once,
    webhooks through their own rows of the durable outbox; every verdict to the read rate."""
    from scanstation.outputs import Outputs

    def reject(capture: Capture, why: str) -> None:
        if gpio is not None:
            gpio.schedule_reject(capture, [why])

    return Outputs(config, store, reject=reject if gpio else None, on_verdict=read_stats.on_capture)


def init_plc_links(
    config: Config,
    read_stats: ReadStats,
    triggers: dict[str, Callable[[], None]],
    health: dict[str, Any] | None = None,
) -> list[Any]:
    """The Modbus TCP and OPC UA servers that are enabled (each library imported only then);
    their trigger is the first camera's with a software or GPIO trigger (``health``: the
    sources' health records by name, for OPC UA's DeviceHealth)."""
    first = next(iter(triggers.items()), None)
    record = (health or {}).get(first[0]) if first else None
    links: list[Any] = []
    if config.modbus.enabled:
        from scanstation.plc.modbus import ModbusLink

        links.append(
            ModbusLink(
                config.modbus,
                read_stats,
                first[1] if first else None,
                trigger_name=first[0] if first else "",
            )
        )
    if config.opcua.enabled:
        from scanstation.plc.opcua import OpcUaLink

        links.append(
            OpcUaLink(
                config.opcua,
                read_stats,
                first[1] if first else None,
                device_name=config.device.id,
                trigger_source=first[0] if first else "",
                health=(lambda: str(record.state)) if record is not None else None,
            )
        )
    return links


def init_noread_ring(config: Config, store: Store) -> tuple[NoReadRing | None, Any]:
    """The no-read image ring and, with an upload_url, its uploader (a webhook drainer)."""
    settings = config.noread_images
    if not settings.enabled:
        return None, None
    directory = config.storage.path / "noreads"
    ring = NoReadRing(settings, directory, config.images_path, store)
    if not settings.upload_url:
        return ring, None
    from scanstation.outputs.noread_upload import NoReadUploader

    return ring, NoReadUploader(settings, directory, store)


@dataclass
class SessionButton:
    """The session button's two actions, bound to the pipeline once it exists (the button's
    pins are set up before the pipeline, whose hooks include the GPIO's reject output)."""

    pipeline: Pipeline | None = None

    async def toggle_session(self, started_by: str) -> None:
        assert self.pipeline is not None, "bound before the sources run"
        await self.pipeline.toggle_session(started_by)

    async def start_session(self, started_by: str) -> None:
        assert self.pipeline is not None, "bound before the sources run"
        await self.pipeline.start_session(started_by)


def station_telemetry(sources: list[Source], read_stats: ReadStats) -> Callable[[], dict[str, Any]]:
    """What the MQTT telemetry message says of the sources (camera fps and decode time) and
    of their reads (``read_rate``: windows by result, the rate of the last 100, quality)."""

    def telemetry() -> dict[str, Any]:
        return {
            **camera_rate(c.stats() for c in all_cameras(sources)),
            "sources": {s.name: source_report(s.health) for s in sources},
            "read_rate": read_stats.as_dict(),
        }

    return telemetry


async def run(
    config: Config,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Daemon], None] | None = None,
    extra_sources: list[Source] | None = None,
    config_path: Path | None = None,
    restart: Callable[[], None] | None = None,
) -> None:
    """Run the daemon until ``stop`` is set. ``restart`` (with ``config_path``, the file the
    config came from) lets the settings page restart it with the file read again."""
    private_dir(config.storage.path)  # 0700 whatever the umask: captures are private
    if warning := raise_fd_limit(config.http.max_connections):
        log.warning("%s", warning)
    async with Store(
        config.db_path,
        synchronous=config.storage.synchronous,
        commit_interval_ms=config.storage.commit_interval_ms,
    ) as store:
        bus = EventBus()
        enrichers = await init_classifier(config, store)
        sources = init_sources(config, extra_sources)
        button = SessionButton()
        gpio = init_gpio(config, button, sources)
        read_stats = ReadStats(quality_alarm=config.quality.alarm_below)
        outputs = init_outputs(config, store, gpio, read_stats)
        ring, uploader = init_noread_ring(config, store)
        pipeline = Pipeline(
            store,
            config,
            bus=bus,
            enrichers=enrichers,
            # GPIO first: the reject output fires before the outputs write.
            on_finished=[
                *([gpio.on_capture] if gpio else []),
                outputs.on_capture,
                *([ring.on_capture] if ring else []),
            ],
            destinations=outputs.destinations,
        )
        button.pipeline = pipeline
        triggers = software_triggers(sources)
        plc_links = init_plc_links(
            config,
            read_stats,
            triggers,
            {s.name: s.health for s in [*sources, *all_cameras(sources)]},
        )
        # Always started: with no [mqtt] host it idles and the outbox keeps every event.
        api_keys = ApiKeyStore(config.api_keys_path)
        mqtt = MqttLink(
            config,
            store,
            pipeline,
            triggers=triggers,
            telemetry=station_telemetry(sources, read_stats),
            api_key_role=lambda token: getattr(api_keys.verify(token), "role", None),
        )
        services = Services(
            config,
            store,
            pipeline,
            bus,
            sources={
                **{s.name: s.health for s in sources},
                **{c.name: c.health for c in all_cameras(sources) if c not in sources},
            },
            triggers=triggers,
            camera_stats={c.name: c.stats for c in all_cameras(sources)},
            mqtt=mqtt,
            config_path=config_path,
            restart=restart,
            read_stats=read_stats,
            noreads=ring,
        )
        emit = gpio.feedback_emit(pipeline.ingest) if gpio else pipeline.ingest
        daemon = Daemon(config, store, pipeline, bus, sources, read_stats, plc_links=plc_links)
        previews: dict[str, object] = {s.name: s for s in sources}
        previews.update({c.name: c for c in all_cameras(sources)})
        app = make_app(services, previews=previews)
        try:
            async with (
                http_server(
                    app,
                    config.http.host,
                    config.http.port,
                    max_connections=config.http.max_connections,
                    header_timeout_s=config.http.header_timeout_s,
                ) as url,
                asyncio.TaskGroup() as tg,
            ):
                daemon.url = url
                source_tasks = [
                    tg.create_task(supervise(s, emit), name=f"source-{s.name}") for s in sources
                ]
                pipeline_task = tg.create_task(pipeline.run(), name="pipeline")
                outputs_task = tg.create_task(outputs.run(), name="outputs")
                mqtt_task = tg.create_task(mqtt.run(), name="mqtt")
                background = [
                    tg.create_task(
                        expire_sessions(store, pipeline, config.session.idle_timeout),
                        name="session-expiry",
                    ),
                    tg.create_task(
                        retention_loop(config.images_path, config.storage.image_retention_days),
                        name="image-retention",
                    ),
                    tg.create_task(
                        backup_loop(config, store, config_path, key_files(config)),
                        name="backups",
                    ),
                    # systemd's watchdog is fed only while the database and these tasks live
                    # (a broker that is merely unreachable does not count as unhealthy).
                    tg.create_task(
                        systemd.watchdog_loop(
                            [
                                systemd.store_check(store),
                                systemd.task_alive("pipeline", pipeline_task),
                                systemd.task_alive("publisher", mqtt_task),
                            ]
                        ),
                        name="systemd-watchdog",
                    ),
                ]
                if gpio is not None:
                    background.append(tg.create_task(gpio.run(), name="gpio"))
                if uploader is not None:
                    background.append(tg.create_task(uploader.run(), name="noread-upload"))
                for link in plc_links:
                    background.append(tg.create_task(link.run(), name=type(link).__name__))
                daemon.tasks = [*source_tasks, pipeline_task, outputs_task, mqtt_task, *background]
                log.info("scanstation %s ready on %s", config.device.id, url)
                systemd.ready(f"{len(sources)} sources, {url}")
                if on_ready is not None:
                    on_ready(daemon)
                with settled() as frozen:
                    log.debug("%d objects of start-up kept out of the collector", frozen)
                    await stop.wait()

                # One shutdown path, < 5 s: no new scans; the walk finishes its batch (what
                # it cannot finish resumes on the next start); outputs write what they hold;
                # MQTT says offline. The store then commits every queued write.
                log.info("stopping: sources first, then the pipeline")
                systemd.stopping()
                for task in source_tasks + background:
                    task.cancel()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pipeline.idle(), STOP_GRACE_S)
                with contextlib.suppress(TimeoutError):
                    await outputs.idle(1.0)
                for task in (pipeline_task, outputs_task, mqtt_task):
                    task.cancel()
        finally:
            await pipeline.close()  # the QR analysis HTTP session (also when run() never ran)
    log.info("stopped")
