"""The finished-capture write: terminal states with their outbox events, alerts and
analytics rows in one transaction (``finish_captures``), or a capture inserted already
terminal (``add_finished_capture``)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import aiosqlite

from scanstation.model import Capture, CaptureStatus, CaptureType, build_capture, new_public_id
from scanstation.store.captures import CaptureStore, _admit
from scanstation.store.outbox import _insert_outbox
from scanstation.store.rows import (
    CAPTURE_COLUMNS,
    CAPTURE_FROM,
    MQTT_DESTINATION,
    CaptureOutcome,
    ColumnTexts,
    insert_rows,
    row_to_capture,
)
from scanstation.store.writer import Batchable


def _dumps(value: dict[str, Any]) -> str:
    """JSON of a column's object; the common empty one without the encoder."""
    return json.dumps(value) if value else "{}"


async def _resolve_in_catalog(
    db: aiosqlite.Connection, outcomes: Sequence[CaptureOutcome]
) -> list[CaptureOutcome]:
    """Outcomes whose GTIN is a catalog product: COMPLETED with it (FAILED ones stay)."""
    wanted = sorted({o.gtin for o in outcomes if o.gtin and o.status is not CaptureStatus.FAILED})
    if not wanted:
        return list(outcomes)
    marks = ",".join("?" * len(wanted))
    rows = await db.execute_fetchall(
        f"SELECT gtin, id FROM products WHERE gtin IN ({marks})", wanted
    )
    catalog = {str(r[0]): int(r[1]) for r in rows}
    return [
        dataclasses.replace(o, status=CaptureStatus.COMPLETED, product_id=catalog[o.gtin])
        if o.gtin in catalog and o.status is not CaptureStatus.FAILED
        else o
        for o in outcomes
    ]


async def _finished_in_memory(
    db: aiosqlite.Connection,
    outcomes: Sequence[CaptureOutcome],
    held: dict[int, Capture],
    now: float,
) -> list[Capture]:
    """The captures as ``finish_captures`` just wrote them, from what the caller held: only
    the products they now name are read (public id and name), in one statement."""
    product_ids = sorted({o.product_id for o in outcomes if o.product_id is not None})
    products: dict[int, tuple[str, str]] = {}
    if product_ids:
        marks = ",".join("?" * len(product_ids))
        rows = await db.execute_fetchall(
            f"SELECT id, public_id, name FROM products WHERE id IN ({marks})", product_ids
        )
        products = {int(r[0]): (str(r[1]), str(r[2])) for r in rows}
    captures = []
    for o in sorted(outcomes, key=lambda o: o.capture_id):
        product_public_id, product_name = products.get(o.product_id or 0, ("", ""))
        captures.append(
            dataclasses.replace(
                held[o.capture_id],
                status=o.status,
                gtin=o.gtin,
                gs1_dl_data=dict(o.gs1_dl_data or {}),
                product_public_id=product_public_id,
                product_name=product_name,
                error_message=o.error_message,
                checks=dict(o.checks or {}),
                qr_analysis=o.qr_analysis,
                processed_at=now,
            )
        )
    return captures


EventMaker = Callable[[Capture, int, ColumnTexts | None], tuple[str, str]]
"""A finished capture's event: (event_id, JSON text) from the capture, its sequence number
and the JSON of its columns as written for its row (None: not at hand, serialise them)."""
_MQTT_ONLY = frozenset((MQTT_DESTINATION,))
DestinationsOf = Callable[[Capture], Sequence[str]]
"""Extra outbox destinations of a finished capture (webhook outputs), besides MQTT."""

_SCAN_EVENT_INSERT = (
    "INSERT INTO scan_events (capture_id, gtin, time, device_id, source, site, "
    "lat, lon, batch, serial, expiry)"
)
_SCAN_EVENT_UPSERT = (
    # A retried capture is still one scan: its analytics row is replaced.
    " ON CONFLICT(capture_id) DO UPDATE SET gtin = excluded.gtin, "
    "batch = excluded.batch, serial = excluded.serial, expiry = excluded.expiry"
)
_CAPTURE_INSERT = (
    "INSERT INTO captures (id, session_id, public_id, status, capture_type, raw_value, "
    "gtin, symbology, symbology_identifier, source, error_message, created, modified, "
    "processed_at, gs1_dl_data, product_id, uploaded_image_key, qr_analysis, metadata, checks)"
)


async def _insert_scan_events(db: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> None:
    await insert_rows(db, _SCAN_EVENT_INSERT, 11, rows, _SCAN_EVENT_UPSERT)


async def _take_seqs(db: aiosqlite.Connection, count: int) -> int:
    """Reserve ``count`` capture event sequence numbers; returns the first."""
    rows = list(
        await db.execute_fetchall(
            "INSERT INTO counters (name, value) VALUES ('capture_seq', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value "
            "RETURNING value",
            (count,),
        )
    )
    return int(rows[0][0]) - count + 1


_TERMINAL_VALUES = tuple(s.value for s in CaptureStatus if s.terminal)
_TERMINAL_MARKS = ",".join("?" * len(_TERMINAL_VALUES))


def _terminal_rows(
    capture: Capture,
    outcome: CaptureOutcome,
    seq: int,
    make_event: EventMaker,
    scan_event_defaults: dict[str, Any],
    destinations: DestinationsOf | None,
    now: float,
    outbox: list[tuple[Any, ...]],
    analytics: list[tuple[Any, ...]],
    texts: ColumnTexts | None = None,
) -> frozenset[str]:
    """Append a finished capture's outbox rows (its event for every destination, then its
    alert) and its analytics row: each capture's rows together, in capture order. Returns
    the destinations written to."""
    event_id, text = make_event(capture, seq, texts)
    extra = destinations(capture) if destinations else ()
    written = _MQTT_ONLY
    outbox.append((MQTT_DESTINATION, "captures", event_id, seq, text, now))
    if extra:
        for destination in extra:
            outbox.append((destination, "captures", event_id, seq, text, now))
        written = written.union(extra)
    if outcome.alert is not None:
        alert = {**outcome.alert, "event_id": new_public_id()}
        outbox.append((MQTT_DESTINATION, "alerts", alert["event_id"], None, json.dumps(alert), now))
    if outcome.scan_event is not None:
        row = {**scan_event_defaults, **outcome.scan_event}
        analytics.append(
            (
                capture.id,
                row["gtin"],
                capture.created,
                row["device_id"],
                capture.source,
                row.get("site", ""),
                row.get("lat"),
                row.get("lon"),
                row.get("batch", ""),
                row.get("serial", ""),
                row.get("expiry", ""),
            )
        )
    return written


class _FinishedInsert(NamedTuple):
    """A capture whose walk was done before its insert: stored already terminal (a named
    tuple: made once per capture on the hot path, cheaper than a frozen dataclass)."""

    capture: Capture
    """As it would be stored PENDING (row id 0: assigned by the insert)."""
    outcome: CaptureOutcome
    idle_timeout: float
    make_event: EventMaker
    scan_event_defaults: dict[str, Any]
    destinations: DestinationsOf | None


async def _insert_finished(
    db: aiosqlite.Connection, items: list[_FinishedInsert]
) -> list[tuple[Capture, frozenset[str]] | str]:
    """Insert captures already terminal, with their events, alerts and analytics rows, for
    one group: the catalog is read once for the group's GTINs. Returns each capture as
    stored with the outbox destinations it wrote, or for a refused one its session's status
    ("" when the session does not exist)."""
    admitted = await _admit(
        db,
        [
            (
                i.capture.session_public_id,
                i.capture.created,
                i.idle_timeout,
                i.capture.capture_type is CaptureType.IMAGE,
            )
            for i in items
        ],
    )
    wanted = sorted(
        {
            i.outcome.gtin
            for i in items
            if i.outcome.gtin and i.outcome.status is not CaptureStatus.FAILED
        }
    )
    catalog: dict[str, tuple[int, str, str]] = {}
    if wanted:
        marks = ",".join("?" * len(wanted))
        rows = await db.execute_fetchall(
            f"SELECT gtin, id, public_id, name FROM products WHERE gtin IN ({marks})", wanted
        )
        catalog = {str(r[0]): (int(r[1]), str(r[2]), str(r[3])) for r in rows}
    count = sum(1 for a in admitted if not isinstance(a, str))
    seq = await _take_seqs(db, count) if count else 0
    now = time.time()
    results: list[tuple[Capture, frozenset[str]] | str] = []
    inserts: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    analytics: list[tuple[Any, ...]] = []
    for item, admission in zip(items, admitted, strict=True):
        if isinstance(admission, str):
            results.append(admission)
            continue
        session_id, capture_id = admission
        o, c = item.outcome, item.capture
        product_id, product_public_id, product_name = None, "", ""
        status = o.status
        if status is not CaptureStatus.FAILED and o.gtin in catalog:
            status = CaptureStatus.COMPLETED
            product_id, product_public_id, product_name = catalog[o.gtin]
        # Built field by field: dataclasses.replace costs more than the insert's own SQL.
        capture = build_capture(
            id=capture_id,
            public_id=c.public_id,
            session_public_id=c.session_public_id,
            status=status,
            capture_type=c.capture_type,
            raw_value=c.raw_value,
            gtin=o.gtin,
            symbology=c.symbology,
            symbology_identifier=c.symbology_identifier,
            source=c.source,
            error_message=o.error_message,
            created=c.created,
            processed_at=now,
            gs1_dl_data=dict(o.gs1_dl_data or {}),
            product_public_id=product_public_id,
            product_name=product_name,
            uploaded_image_key=c.uploaded_image_key,
            qr_analysis=o.qr_analysis,
            metadata=c.metadata,
            checks=dict(o.checks or {}),
            revision=c.revision,
        )
        # Each column's JSON is made once: for the row, and again in the event's text.
        gs1_text = _dumps(capture.gs1_dl_data)
        qr_text = json.dumps(o.qr_analysis) if o.qr_analysis is not None else None
        metadata_text = _dumps(c.metadata)
        checks_text = _dumps(capture.checks)
        inserts.append(
            (
                capture_id,
                session_id,
                c.public_id,
                status.value,
                c.capture_type.value,
                c.raw_value,
                o.gtin,
                c.symbology,
                c.symbology_identifier,
                c.source,
                o.error_message,
                c.created,
                now,
                now,
                gs1_text,
                product_id,
                c.uploaded_image_key,
                qr_text,
                metadata_text,
                checks_text,
            )
        )
        written = _terminal_rows(
            capture,
            o,
            seq,
            item.make_event,
            item.scan_event_defaults,
            item.destinations,
            now,
            outbox,
            analytics,
            (gs1_text, qr_text, metadata_text, checks_text),
        )
        seq += 1
        results.append((capture, written))
    if inserts:
        await insert_rows(db, _CAPTURE_INSERT, 20, inserts)
        await _insert_outbox(db, outbox)
        if analytics:
            await _insert_scan_events(db, analytics)
    return results


class FinishStore(CaptureStore):
    """Captures reaching their terminal status, with what that status sends and counts."""

    async def add_finished_capture(
        self,
        pending: Capture,
        outcome: CaptureOutcome,
        make_event: EventMaker,
        scan_event_defaults: dict[str, Any],
        destinations: DestinationsOf | None = None,
        *,
        idle_timeout: float,
    ) -> Capture:
        """Insert a capture already walked — terminal, with its outbox events, alert and
        analytics row — in one transaction; durable when this returns.

        ``pending`` is the capture as ``new_capture`` made it, ``outcome`` its terminal
        state (``capture_id`` is ignored: the insert assigns the row id). As in
        ``finish_captures(resolve=True)``, an outcome that is not FAILED and whose GTIN is a
        catalog product becomes COMPLETED with it: the catalog is read inside the write, once
        per group of inserts. Refusals as ``add_capture``.
        """
        item = _FinishedInsert(
            pending, outcome, idle_timeout, make_event, scan_event_defaults, destinations
        )
        result: tuple[Capture, frozenset[str]] | str = await self.write(
            Batchable(_insert_finished, item), urgent=True
        )
        if isinstance(result, str):
            raise self._refused(pending.session_public_id, result)
        capture, written = result
        if written is _MQTT_ONLY:
            self.outbox_changed.set()
        else:
            self._signal_outbox(written)
        return capture

    async def finish_captures(
        self,
        outcomes: Sequence[CaptureOutcome],
        make_event: EventMaker,
        scan_event_defaults: dict[str, Any],
        destinations: DestinationsOf | None = None,
        *,
        before: Sequence[Capture] | None = None,
        resolve: bool = False,
    ) -> list[Capture]:
        """Write terminal states, their capture events (outbox), analytics rows and alerts.

        One transaction: the outbox event of a capture exists exactly when its terminal
        status does. ``make_event(capture, seq)`` builds the event payload; it goes to MQTT
        and to each extra destination ``destinations(capture)`` names (webhook outputs).
        ``before``: the captures as the caller holds them (one per outcome); the finished
        captures are then built from them in memory instead of being read back.
        ``resolve``: look each GTIN up in the catalog inside the transaction — an outcome
        that is not FAILED and whose GTIN is a catalog product becomes COMPLETED with that
        product — so the walk needs no read of its own before this write.
        """
        now = time.time()
        held = {c.id: c for c in before} if before is not None else {}
        in_memory = before is not None and all(o.capture_id in held for o in outcomes)
        ids = [o.capture_id for o in outcomes]
        marks = ",".join("?" * len(ids))
        written: frozenset[str] = frozenset()

        async def op(db: aiosqlite.Connection) -> list[Capture]:
            nonlocal outcomes, ids, marks, written
            # A capture reaches its terminal status once: one walked twice (created while
            # the start-up resume read it as unfinished) gets no second event and no second
            # seq — consumers count on one gap-free seq per capture.
            waiting = {
                row[0]
                for row in await db.execute_fetchall(
                    f"SELECT id FROM captures WHERE id IN ({marks}) AND status NOT IN "
                    f"({_TERMINAL_MARKS})",
                    (*ids, *_TERMINAL_VALUES),
                )
            }
            if len(waiting) < len(outcomes):
                outcomes = [o for o in outcomes if o.capture_id in waiting]
                ids = [o.capture_id for o in outcomes]
                marks = ",".join("?" * len(ids))
                if not outcomes:
                    return []
            if resolve:
                outcomes = await _resolve_in_catalog(db, outcomes)
            updates = [
                (
                    o.status.value,
                    o.gtin,
                    json.dumps(o.gs1_dl_data or {}),
                    o.product_id,
                    o.error_message,
                    json.dumps(o.checks or {}),
                    json.dumps(o.qr_analysis) if o.qr_analysis is not None else None,
                    now,
                    now,
                    o.capture_id,
                )
                for o in outcomes
            ]
            await db.executemany(
                "UPDATE captures SET status = ?, gtin = ?, gs1_dl_data = ?, product_id = ?, "
                "error_message = ?, checks = ?, qr_analysis = ?, processed_at = ?, modified = ? "
                "WHERE id = ?",
                updates,
            )
            if in_memory:
                captures = await _finished_in_memory(db, outcomes, held, now)
            else:
                rows = await db.execute_fetchall(
                    f"SELECT {CAPTURE_COLUMNS} FROM {CAPTURE_FROM} WHERE c.id IN ({marks}) "
                    "ORDER BY c.id",
                    ids,
                )
                captures = [row_to_capture(r) for r in rows]
            seq = await _take_seqs(db, len(captures)) if captures else 0
            outbox: list[tuple[Any, ...]] = []
            analytics: list[tuple[Any, ...]] = []
            by_id = {o.capture_id: o for o in outcomes}
            for offset, capture in enumerate(captures):
                written |= _terminal_rows(
                    capture,
                    by_id[capture.id],
                    seq + offset,
                    make_event,
                    scan_event_defaults,
                    destinations,
                    now,
                    outbox,
                    analytics,
                )
            await _insert_outbox(db, outbox)
            if analytics:
                await _insert_scan_events(db, analytics)
            return captures

        captures = await self.write(op)
        self._signal_outbox(written)
        return captures
