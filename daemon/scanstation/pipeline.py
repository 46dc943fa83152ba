"""The capture state machine: PENDING → LOOKING_UP → ENRICHING → RESOLVING → terminal.

A capture whose walk is local (a code's value: interpretation, GS1 checks, a catalog look-up
by GTIN) is walked before its insert and reaches the disk once: terminal, with its outbox
events and analytics row, in one group commit; it is acknowledged after that commit.
Captures that need the network (URL analysis) or their image (enrichers) are walked in
batches: two writes reach the disk, the PENDING insert (acknowledged once committed) and the
terminal state with its outbox events and analytics row in one transaction. The stages
between are held in memory; a capture left PENDING by a crash is walked again on the next
start (the walk is idempotent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import inspect
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scanstation import __version__
from scanstation.barcode.interpret import (
    Interpretation,
    RecallList,
    interpret,
    without_symbology_identifier,
)
from scanstation.bus import EventBus, EventKind
from scanstation.config import Config
from scanstation.model import (
    Capture,
    CaptureMode,
    CaptureStatus,
    Enricher,
    Enrichment,
    Scan,
    Session,
    gs1_key,
    time_ordered_uuid,
)
from scanstation.payloads import capture_json, capture_json_text, iso
from scanstation.qr.analysis import QrAnalyzer
from scanstation.services.sessions import Sessions
from scanstation.store import (
    CaptureOutcome,
    ColumnTexts,
    Conflict,
    NewCapture,
    Store,
    StoreError,
    build_outcome,
    is_disk_full,
)

log = logging.getLogger(__name__)

CAPTURE_EVENT_SCHEMA = "scanstation.capture/1"
BATCH_SIZE = 512

WALK_RETRIES = 3
"""Retries of a batch that failed for a reason other than a full disk."""
QR_CONCURRENCY = 8
"""URL chains followed at once within one batch."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What LOOKING_UP found out about one capture."""

    capture: Capture
    interpretation: Interpretation | None
    gtin: str
    """The GTIN that decides the product: read from the value, else the client's."""
    error: str = ""
    qr_analysis: dict[str, Any] | None = None
    """Where the capture's URL leads (SPEC §5), when it is an http(s) URL."""
    ais: dict[str, str] = field(default_factory=dict)
    """The client's gs1_dl_data merged with the station's parse (the station's wins)."""
    conflicts: dict[str, Any] = field(default_factory=dict)
    """Where the client and the station's parse disagree: {"gtin": {"client", "station"},
    "gs1_dl_data": {ai: {"client", "station"}}}; kept in the capture's checks."""


@dataclass
class PipelineCounters:
    created: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    last_batch_ms: float = 0.0


class DiskFull(StoreError):
    def __init__(self, free_mb: float, floor_mb: int, path: Path) -> None:
        super().__init__(
            "disk_full",
            f"only {free_mb:.0f} MB free on {path}, below the floor of {floor_mb} MB "
            "([storage] disk_floor_mb): new captures are refused until space is freed",
        )


@dataclass
class DiskGuard:
    """Free-space check against [storage] disk_floor_mb, measured at most once a second."""

    path: Path
    floor_mb: int
    free_mb: float = float("inf")
    _checked_at: float = -1.0

    def check(self) -> None:
        if self.floor_mb <= 0:
            return
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            try:
                self.free_mb = shutil.disk_usage(self.path).free / 1e6
            except OSError:
                self.free_mb = float("inf")  # the path not existing yet is not "full"
        if self.free_mb < self.floor_mb:
            raise DiskFull(self.free_mb, self.floor_mb, self.path)


class Pipeline:
    """Turns scans into durable captures and walks them to a terminal status."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        bus: EventBus | None = None,
        enrichers: Sequence[Enricher] = (),
        queue_size: int = 8192,
        qr_analyzer: QrAnalyzer | None = None,
        on_finished: Sequence[Callable[[Capture], Awaitable[None] | None]] = (),
        destinations: Callable[[Capture], Sequence[str]] | None = None,
    ) -> None:
        """``on_finished``: hooks run right after a capture's terminal commit (outputs, GPIO);
        ``destinations``: extra outbox destinations of a finished capture (webhooks)."""
        self.store = store
        self.config = config
        self.bus = bus or EventBus()
        self.sessions = Sessions(store, self.bus)
        self.enrichers = list(enrichers)
        self.qr = qr_analyzer or (
            QrAnalyzer(config.qr_analysis) if config.qr_analysis.enabled else None
        )
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=queue_size)
        self.counters = PipelineCounters()
        self.tz = ZoneInfo(config.device.timezone)
        self.recalls = (
            RecallList.load(config.checks.recall_list) if config.checks.recall_list else None
        )
        self.gs_substitutes = tuple(config.gs1.gs_substitutes)
        self._rolling: dict[str, str] = {}
        self._session_lock = asyncio.Lock()
        self._queued: dict[int, Capture] = {}
        """Captures created here and queued: the walk need not read them back."""
        self.disk = DiskGuard(config.storage.path, config.storage.disk_floor_mb)
        self._idle = asyncio.Event()
        self._idle.set()
        self._walk_inserts = 0
        """Captures being inserted PENDING for the walk (their commit not yet returned)."""
        self.destinations = destinations
        """Extra outbox destinations of a finished capture (webhook outputs), besides MQTT."""
        self.on_finished: list[Callable[[Capture], Awaitable[None] | None]] = list(on_finished)
        self._event_tail: tuple[Config, str] | None = None
        """The members every capture event ends with (device, site, location, version), as
        JSON text, for the configuration they were made from."""

    # ---- entry points --------------------------------------------------------------------

    async def create_capture(self, session_public_id: str, new: NewCapture) -> Capture:
        """Store a capture (durable on return): walked already when its walk is local.

        A capture whose walk needs neither the network (URL analysis) nor its image
        (enrichers) is walked here, before its insert, and stored terminal with its events in
        one group commit: the capture returned is terminal. Any other is stored PENDING and
        queued for the walk. Refused with DiskFull when free space is below the configured
        floor: a capture that cannot be kept is refused visibly, never dropped silently later.
        """
        self.disk.check()
        pending = self.store.new_capture(session_public_id, new)
        idle_timeout = self.config.session.idle_timeout
        outcome = self._local_outcome(pending)
        if outcome is None:
            self._walk_inserts += 1
            try:
                capture = await self.store.add_capture(
                    session_public_id, new, idle_timeout=idle_timeout, pending=pending
                )
            finally:
                self._walk_inserts -= 1
            self.counters.created += 1
            self.bus.publish(EventKind.CAPTURE, lambda: capture_json(capture))
            self._idle.clear()
            self._queued[capture.id] = capture
            await self.queue.put(capture.id)
            return capture
        capture = await self.store.add_finished_capture(
            pending,
            outcome,
            self._capture_event,
            self._scan_event_defaults(),
            self.destinations,
            idle_timeout=idle_timeout,
        )
        self.counters.created += 1
        # The live stream sees the capture arrive, then its terminal status, as for a walk
        # (built only when the stream has a listener).
        row_id = capture.id
        self.bus.publish(
            EventKind.CAPTURE, lambda: capture_json(dataclasses.replace(pending, id=row_id))
        )
        try:
            await self._finished(capture)
        except Exception:  # the capture is on disk: a hook failing must not fail its ack
            log.exception("a finished-capture hook failed on %s", capture.public_id)
        return capture

    def _local_outcome(self, pending: Capture) -> CaptureOutcome | None:
        """The terminal outcome of a capture whose walk is local, or None when its walk needs
        the network (an http(s) URL or Digital Link to analyse) or its image (enrichers).

        Also None while captures made earlier are being stored for the walk or walked:
        captures reach their terminal status (outputs type them, GPIO rejects) in the order
        they were made, so a lane's reads are never reordered behind a slow URL.
        """
        if self._walk_inserts or not self._idle.is_set():
            return None
        if self.enrichers and pending.uploaded_image_key:
            return None
        today = dt.datetime.now(self.tz).date() if self.config.checks.expiry else None
        lookup = self._look_up(pending, today)
        if (
            self.qr is not None
            and not lookup.error
            and lookup.interpretation is not None
            and lookup.interpretation.kind in ("url", "digital_link")
        ):
            return None
        return self._resolve(lookup, None)

    async def ingest(self, scan: Scan) -> Capture:
        """A source's read → a durable capture in the source's session."""
        image_key = ""
        if scan.image is not None:
            image_key = await asyncio.to_thread(self.save_image, scan.image, scan.image_ext)
        new = NewCapture(
            capture_type=scan.capture_type,
            raw_value=scan.raw_value,
            symbology=scan.symbology,
            symbology_identifier=scan.symbology_identifier,
            source=scan.source,
            metadata=dict(scan.metadata),
            uploaded_image_key=image_key,
        )
        session_id = await self._session_for(scan.source)
        try:
            capture = await self.create_capture(session_id, new)
        except Conflict:
            # The session ended or expired between lookup and insert: open a new one.
            self._rolling.pop(scan.source, None)
            capture = await self.create_capture(await self._session_for(scan.source), new)
        if scan.metadata.get("noread") == "true":
            await self._report_noread(capture, scan)
        return capture

    async def _report_noread(self, capture: Capture, scan: Scan) -> None:
        """A read window closed without a code: the `noreads` event (SPEC §7), durable."""
        event = {
            "time": iso(scan.read_at),
            "device_id": self.config.device.id,
            "site": self.config.device.site,
            "source": scan.source,
            "image_key": capture.uploaded_image_key,
            "capture_public_id": capture.public_id,
            "metadata": dict(scan.metadata),
        }
        await self.store.add_outbox_event("noreads", event)
        self.bus.publish(EventKind.NOREAD, event)

    async def retry(self, public_id: str) -> Capture:
        capture = await self.store.retry_capture(public_id)
        self.bus.publish(EventKind.CAPTURE, lambda: capture_json(capture))
        self._idle.clear()
        await self.queue.put(capture.id)
        return capture

    # ---- sessions started and ended from the device (button, MQTT command) ---------------

    async def start_session(self, started_by: str) -> Session:
        """End the newest ACTIVE session (if any) and start a new one."""
        await self.end_session()
        return await self.sessions.start(
            capture_mode=CaptureMode(self.config.session.capture_mode),
            metadata={"started_by": started_by},
        )

    async def end_session(self) -> Session | None:
        """End the newest ACTIVE session; None when there was none."""
        active = await self.store.latest_active_session(None)
        if active is None:
            return None
        ended = await self.sessions.end(active.public_id)
        self._rolling = {k: v for k, v in self._rolling.items() if v != active.public_id}
        return ended

    async def toggle_session(self, started_by: str) -> None:
        """A session button's short press: end the ACTIVE session, or start one."""
        if await self.end_session() is None:
            await self.start_session(started_by)

    def save_image(self, data: bytes, ext: str) -> str:
        """Write an image under storage/images/YYYY/MM/DD/; returns its key (relative path)."""
        day = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        key = f"{day}/{uuid.uuid4().hex}.{ext}"
        path = self.config.images_path / key
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            # The capture row that names this image is committed durably after this returns.
            os.fsync(f.fileno())
        tmp.rename(path)
        return key

    async def _session_for(self, source: str) -> str:
        """The rolling session of a source (auto), or the newest ACTIVE session."""
        async with self._session_lock:
            if (cached := self._rolling.get(source)) is not None:
                return cached
            want_source = source if self.config.session.auto else None
            session = await self.store.latest_active_session(want_source)
            idle = self.config.session.idle_timeout
            if session is None or session.modified < time.time() - idle:
                session = await self.sessions.start(
                    capture_mode=CaptureMode(self.config.session.capture_mode),
                    source=source if self.config.session.auto else "",
                    metadata={"started_by": source},
                )
            self._rolling[source] = session.public_id
            return session.public_id

    # ---- the walk ------------------------------------------------------------------------

    async def run(self) -> None:
        """Walk queued captures until cancelled, starting with those a stop left unfinished."""
        try:
            await self._walk()
        finally:
            await self.close()

    async def _walk(self) -> None:
        self._idle.clear()
        unfinished = await self.store.unfinished_capture_ids()
        if unfinished:
            log.info("resuming %d captures left in progress", len(unfinished))
        for start in range(0, len(unfinished), BATCH_SIZE):
            await self.process(unfinished[start : start + BATCH_SIZE])
        if self.queue.empty():
            self._idle.set()
        while True:
            ids = [await self.queue.get()]
            while len(ids) < BATCH_SIZE and not self.queue.empty():
                ids.append(self.queue.get_nowait())
            await self._process_until_done(ids)
            if self.queue.empty():
                self._idle.set()

    async def _process_until_done(self, ids: list[int]) -> None:
        """Walk a batch; a full disk is waited out (retried every second, so the walk resumes
        by itself once space is freed), other failures are retried a few times."""
        failures = 0
        while True:
            try:
                await self.process(ids)
                return
            except Exception as exc:
                if is_disk_full(exc):
                    if failures == 0:
                        log.warning("walking %d captures waits for free disk space", len(ids))
                    failures = 1
                else:
                    failures += 1
                    if failures > WALK_RETRIES:
                        log.exception(
                            "walking %d captures failed %d times; they resume on the next start",
                            len(ids),
                            failures,
                        )
                        return
                    log.warning("walking %d captures failed (%s); retrying", len(ids), exc)
                await asyncio.sleep(1)

    async def idle(self) -> None:
        """Wait until every queued capture has been walked (for shutdown, tests, benchmarks)."""
        await self._idle.wait()

    async def process(self, ids: Sequence[int]) -> list[Capture]:
        """Walk one batch of captures from PENDING to their terminal status."""
        started = time.perf_counter()
        queued = self._queued
        known = [queued.pop(i) for i in ids if i in queued]
        unknown = [i for i in ids if i not in queued] if len(known) < len(ids) else []
        read = await self.store.get_captures_by_id(unknown) if unknown else []
        captures = [c for c in known + read if not c.status.terminal]
        if not captures:
            return []
        # LOOKING_UP, ENRICHING and RESOLVING are stages of this walk in memory, not writes:
        # a crash mid-walk leaves the captures PENDING on disk and the next start walks them
        # again (the walk is idempotent). The live stream sees PENDING, then terminal.
        # Expiry is judged against one date per batch, in the device's timezone.
        today = dt.datetime.now(self.tz).date() if self.config.checks.expiry else None
        lookups = await self._analyze_urls([self._look_up(c, today) for c in captures])
        enrichments = await self._enrich(lookups)
        # The catalog is consulted inside the terminal write (finish_captures(resolve=True)):
        # no read between the inserts and this write, so under load the terminal states of
        # one group join the same commit as the next group's inserts.
        outcomes = [self._resolve(lk, enrichments.get(lk.capture.id)) for lk in lookups]
        finished = await self.store.finish_captures(
            outcomes,
            self._capture_event,
            self._scan_event_defaults(),
            self.destinations,
            before=[lk.capture for lk in lookups],
            resolve=True,
        )
        self.counters.batches += 1
        self.counters.last_batch_ms = (time.perf_counter() - started) * 1000
        for capture in finished:
            await self._finished(capture)
        return finished

    async def _finished(self, capture: Capture) -> None:
        """A capture reached its terminal status on disk: count it, publish it, run the
        on_finished hooks (outputs, GPIO)."""
        status = capture.status.value
        self.counters.finished[status] = self.counters.finished.get(status, 0) + 1
        self.bus.publish(EventKind.CAPTURE, functools.partial(capture_json, capture))
        if capture.checks.get("not_for_sale"):
            self.bus.publish(EventKind.ALERT, {"capture": capture.public_id, **capture.checks})
        for hook in self.on_finished:
            result = hook(capture)
            if inspect.isawaitable(result):
                await result

    def _look_up(self, capture: Capture, today: dt.date | None) -> Lookup:
        """Interpret the raw value (GTIN, GS1, Digital Link, URL, text) and merge it with what
        the client sent (its gtin and gs1_dl_data): the station's parse wins a conflict."""
        client_gtin, client_ais = client_sent(capture)
        raw = capture.raw_value
        if not raw:
            return Lookup(capture, None, client_gtin, ais=client_ais)
        try:
            result = interpret(
                raw,
                symbology_identifier=capture.symbology_identifier,
                gs_substitutes=self.gs_substitutes,
                today=today,
                recalls=self.recalls,
            )
        except Exception as exc:  # a bug in interpretation must not stall the batch
            log.exception("interpreting %r failed", raw)
            error = f"could not interpret {raw!r}: {exc}"
            return Lookup(capture, None, client_gtin, error=error, ais=client_ais)
        if not result.valid:
            # FAILED, but what the client sent stays on the capture.
            return Lookup(capture, result, client_gtin, error=result.error_message, ais=client_ais)
        conflicts: dict[str, Any] = {}
        if client_gtin and result.gtin and client_gtin != result.gtin:
            conflicts["gtin"] = {"client": client_gtin, "station": result.gtin}
        differing = {
            ai: {"client": value, "station": result.ais[ai]}
            for ai, value in client_ais.items()
            if ai in result.ais and result.ais[ai] != value
        }
        if differing:
            conflicts["gs1_dl_data"] = differing
        ais = {**client_ais, **result.ais}
        sent_01 = ais.get("01", "")
        gtin = result.gtin or client_gtin or (sent_01 if len(sent_01) == 14 else "")
        return Lookup(capture, result, gtin, ais=ais, conflicts=conflicts)

    async def _analyze_urls(self, lookups: list[Lookup]) -> list[Lookup]:
        """Follow the redirect chain of every URL and Digital Link (QR analysis)."""
        qr = self.qr
        todo = [
            i
            for i, lk in enumerate(lookups)
            if not lk.error
            and lk.interpretation is not None
            and lk.interpretation.kind in ("url", "digital_link")
        ]
        if qr is None or not todo:
            return lookups
        limit = asyncio.Semaphore(QR_CONCURRENCY)

        async def analyze(lookup: Lookup) -> dict[str, Any]:
            url = without_symbology_identifier(lookup.capture.raw_value.strip())
            async with limit:
                return await qr.analyze(url)

        analyses = await asyncio.gather(*(analyze(lookups[i]) for i in todo))
        out = list(lookups)
        for i, analysis in zip(todo, analyses, strict=True):
            lookup = out[i]
            gtin = lookup.gtin or analysis["extracted_gtin"]
            # A URL that could not be followed and names no GS1 key cannot be resolved: FAILED
            # (a retry once the network is back analyses afresh). A Digital Link's key (GTIN,
            # SSCC, GLN, GRAI …) is known without the network: it goes on, with the analysis
            # error recorded.
            failed = bool(analysis["error_message"]) and not gtin and not gs1_key(lookup.ais)
            error = f"QR analysis: {analysis['error_message']}" if failed else ""
            out[i] = dataclasses.replace(lookup, gtin=gtin, error=error, qr_analysis=analysis)
        return out

    async def close(self) -> None:
        """Release what the pipeline holds open (the QR analysis HTTP session)."""
        if self.qr is not None:
            await self.qr.close()

    async def _enrich(self, lookups: Sequence[Lookup]) -> dict[int, Enrichment]:
        results: dict[int, Enrichment] = {}
        if not self.enrichers:
            return results
        for lookup in lookups:
            capture = lookup.capture
            if lookup.error or not capture.uploaded_image_key:
                continue
            image = self.config.images_path / capture.uploaded_image_key
            # Enrichers see what LOOKING_UP found (the GTIN read from the value or sent).
            capture = dataclasses.replace(capture, gtin=lookup.gtin)
            proposals: list[dict[str, Any]] = []
            gtin = ""
            for enricher in self.enrichers:
                try:
                    found = await enricher.enrich(capture, image)
                except Exception:
                    log.exception("enricher %r failed on %s", enricher, capture.public_id)
                    continue
                proposals.extend(found.proposals)
                gtin = gtin or found.gtin
            if proposals:
                await self.store.add_proposals(capture.id, proposals)
            results[capture.id] = Enrichment(proposals, gtin)
        return results

    def _resolve(
        self,
        lookup: Lookup,
        enrichment: Enrichment | None,
    ) -> CaptureOutcome:
        """The terminal outcome. The GTIN decides: the value's, else the client's, else one read
        in the photo; the terminal write itself attaches the catalog product with that GTIN
        (COMPLETED). Looks never attach a product (they are proposals). A capture of another
        GS1 key (SSCC, GLN, GRAI, GIAI …) is COMPLETED with that key: nothing to look up."""
        capture, result = lookup.capture, lookup.interpretation
        ais = dict(lookup.ais)
        checks = dict(result.checks) if result else {}
        if lookup.conflicts:
            checks["conflicts"] = lookup.conflicts
        if lookup.error:
            return CaptureOutcome(
                capture.id,
                CaptureStatus.FAILED,
                gtin=lookup.gtin,
                gs1_dl_data=ais,
                error_message=lookup.error,
                checks=checks,
                qr_analysis=lookup.qr_analysis,
            )
        gtin = lookup.gtin or (enrichment.gtin if enrichment else "")
        key = gs1_key(ais)
        other_key = not gtin and key is not None and key[0] != "GTIN"
        status = CaptureStatus.COMPLETED if other_key else CaptureStatus.NOT_FOUND
        scan_event = None
        if gtin:
            scan_event = {
                "gtin": gtin,
                "batch": ais.get("10", ""),
                "serial": ais.get("21", ""),
                "expiry": ais.get("17", ""),
            }
        alert = None
        if checks.get("not_for_sale"):
            alert = {
                "time": iso(time.time()),
                "device_id": self.config.device.id,
                "source": capture.source,
                "capture_public_id": capture.public_id,
                "gtin": gtin,
                "raw_value": capture.raw_value,
                "checks": checks,
            }
        return build_outcome(
            capture.id, status, gtin, ais, None, "", checks, lookup.qr_analysis, scan_event, alert
        )

    def _scan_event_defaults(self) -> dict[str, Any]:
        location = self.config.device.location
        return {
            "device_id": self.config.device.id,
            "site": self.config.device.site,
            "lat": location.lat if location else None,
            "lon": location.lon if location else None,
        }

    def _capture_event(
        self, capture: Capture, seq: int, texts: ColumnTexts | None = None
    ) -> tuple[str, str]:
        """A finished capture's event (SPEC §7): its event_id and its JSON text.

        The text is what ``json.dumps`` gives of ``capture_event_payload``'s dict, built
        without it; ``texts`` are the JSON of the capture's gs1_dl_data, qr_analysis,
        metadata and checks as the store serialised them for the row (serialised once).
        """
        event_id = time_ordered_uuid()
        config = self.config
        cached = self._event_tail
        if cached is None or cached[0] is not config:
            location = config.device.location
            constant = json.dumps(
                {
                    "device_id": config.device.id,
                    "site": config.device.site,
                    "location": {"lat": location.lat, "lon": location.lon} if location else None,
                    "version": __version__,
                }
            )
            cached = self._event_tail = (config, ", " + constant[1:-1])
        tail = f', "schema": "{CAPTURE_EVENT_SCHEMA}", "event_id": "{event_id}", "seq": {int(seq)}'
        if texts is None:
            text = capture_json_text(capture, tail + cached[1])
        else:
            gs1_dl_data, qr_analysis, metadata, checks = texts
            text = capture_json_text(
                capture,
                tail + cached[1],
                gs1_dl_data=gs1_dl_data,
                qr_analysis=qr_analysis,
                metadata=metadata,
                checks=checks,
            )
        return event_id, text

    def capture_event_payload(self, capture: Capture, seq: int, event_id: str) -> dict[str, Any]:
        """The event of ``_capture_event`` as a dict (its shape, field by field)."""
        location = self.config.device.location
        return {
            **capture_json(capture),
            "schema": CAPTURE_EVENT_SCHEMA,
            "event_id": event_id,
            "seq": seq,
            "device_id": self.config.device.id,
            "site": self.config.device.site,
            "location": {"lat": location.lat, "lon": location.lon} if location else None,
            "version": __version__,
        }


def client_sent(capture: Capture) -> tuple[str, dict[str, str]]:
    """The GTIN and gs1_dl_data the client sent with a capture, as a walk starts from them.

    A walked capture holds the merged values; where the station's parse won a conflict, the
    client's own value lives on in ``checks["conflicts"]``, so walking again (retry) gives
    the same result and records the same disagreement.
    """
    if not capture.checks:  # a new capture: nothing walked yet
        return capture.gtin, dict(capture.gs1_dl_data)
    conflicts = capture.checks.get("conflicts") or {}
    gtin = str((conflicts.get("gtin") or {}).get("client", capture.gtin))
    ais = dict(capture.gs1_dl_data)
    for ai, pair in (conflicts.get("gs1_dl_data") or {}).items():
        ais[str(ai)] = str(pair.get("client", ais.get(ai, "")))
    return gtin, ais
