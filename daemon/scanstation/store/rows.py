"""Rows and domain objects: column lists, row -> dataclass converters, the records writes carry."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from scanstation.model import (
    PUBLIC_ID_ALPHABET,
    Capture,
    CaptureMode,
    CaptureStatus,
    CaptureType,
    Product,
    Proposal,
    ProposalStatus,
    Session,
    SessionStatus,
    random_80,
)

MQTT_DESTINATION = "mqtt"

# UUID version 7, RFC 9562 variant: the bits a version 7 UUID sets in its 128-bit number.
_UUID7_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID7_BITS = (0x7000 << 64) | (0x8000 << 48)


def time_ordered_public_id() -> str:
    """A public id (SPEC §5: a 22-character shortuuid) of a time-ordered UUID version 7.

    The same encoding as ``model.new_public_id`` (base 57, most significant digit first,
    padded to 22) of 48 bits of Unix time in ms and 74 random bits: ids made one after
    another sort together, so the unique index on them grows at its end.
    """
    number = (time.time_ns() // 1_000_000) << 80 | random_80()
    number = (number & _UUID7_MASK) | _UUID7_BITS
    # Four digits a division of the 128-bit number (five of them leave the top two digits:
    # 2**128 < 57**22), each four split in two pairs (3249 = 57**2) by small-int arithmetic.
    pairs = _BASE57_PAIRS
    number, a = divmod(number, _BASE57_QUAD)
    number, b = divmod(number, _BASE57_QUAD)
    number, c = divmod(number, _BASE57_QUAD)
    number, d = divmod(number, _BASE57_QUAD)
    number, e = divmod(number, _BASE57_QUAD)
    return "".join(
        (
            pairs[number],
            pairs[e // 3249],
            pairs[e % 3249],
            pairs[d // 3249],
            pairs[d % 3249],
            pairs[c // 3249],
            pairs[c % 3249],
            pairs[b // 3249],
            pairs[b % 3249],
            pairs[a // 3249],
            pairs[a % 3249],
        )
    )


_BASE57_SQUARED = 57 * 57
_BASE57_QUAD = _BASE57_SQUARED * _BASE57_SQUARED  # 3249 ** 2
_BASE57_PAIRS = tuple(a + b for a in PUBLIC_ID_ALPHABET for b in PUBLIC_ID_ALPHABET)


CAPTURE_COLUMNS = """
    c.id, c.public_id, s.public_id AS session_public_id, c.status, c.capture_type, c.raw_value,
    c.gtin, c.symbology, c.symbology_identifier, c.source, c.error_message, c.created,
    c.processed_at, c.gs1_dl_data, COALESCE(p.public_id, '') AS product_public_id,
    COALESCE(p.name, '') AS product_name, c.uploaded_image_key, c.qr_analysis, c.metadata,
    c.checks, c.revision
"""


UNFINISHED_STATUSES = ("PENDING", "LOOKING_UP", "ENRICHING", "RESOLVING", "FAILED")
"""The statuses indexed by captures_unfinished (in progress, and FAILED)."""
UNFINISHED_TERM = "c.status IN ('PENDING', 'LOOKING_UP', 'ENRICHING', 'RESOLVING', 'FAILED')"
"""captures_unfinished's own WHERE, word for word: a query must repeat it to use the index."""


def period_of_captures(
    since: float | None, until: float | None, id_column: str, time_column: str
) -> tuple[str, list[float]]:
    """SQL condition for scan events in [since, until): "1" without bounds.

    An event's time is its capture's created time and its key the capture's row id, so the
    events of the period lie between the lowest id created at or after ``since`` (found on
    captures_created) and the highest created before ``until``: a range of the events' own
    row ids, read in order, with the time checked on each (exact under any clock step).
    """
    terms: list[str] = []
    params: list[float] = []
    if since is not None:
        terms.append(
            # On the index: what follows ``since`` (not the rows before it, by rowid).
            f"{id_column} >= (SELECT COALESCE(MIN(id), 1 << 62) FROM captures "
            f"INDEXED BY captures_created WHERE created >= ?) AND {time_column} >= ?"
        )
        params += [since, since]
    if until is not None:
        terms.append(
            # Back from the newest: what follows ``until`` (not the history before it).
            f"{id_column} <= COALESCE((SELECT id FROM captures NOT INDEXED WHERE created < ? "
            f"ORDER BY id DESC LIMIT 1), 0) AND {time_column} < ?"
        )
        params += [until, until]
    return " AND ".join(terms) or "1", params


SESSION_RANGE_TERM = (
    "c.id BETWEEN COALESCE(s.first_capture_id, 0) AND COALESCE(s.last_capture_id, 0)"
)
"""A session's captures lie in the row ids between its first and last (captures_session
is gone: the range is read by rowid, the session filter applied on it)."""


CAPTURE_FROM = """
    captures c JOIN sessions s ON s.id = c.session_id LEFT JOIN products p ON p.id = c.product_id
"""


PRODUCT_FIELDS = (
    "name",
    "brand",
    "net_content",
    "ingredients",
    "nutrition",
    "certifications",
    "country_of_origin",
    "category",
    "images",
)


_JSON_PRODUCT_FIELDS = {"nutrition": "{}", "certifications": "[]", "images": "[]"}


_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_MAX_VARIABLES = 999
"""Parameters a statement may bind on every SQLite the station may run on (the limit was 999
before SQLite 3.32): a 20-column capture row goes 32 rows a statement."""
_VALUES_SQL: dict[tuple[str, int, int, str], str] = {}


async def insert_rows(
    db: aiosqlite.Connection,
    head: str,
    width: int,
    rows: Sequence[tuple[Any, ...]],
    tail: str = "",
) -> None:
    """``head VALUES (…), (…), … tail`` for many rows of ``width`` columns in a few
    statements: chunks of 256, 128, … 1 rows (as many as bind at most 999 parameters), each
    one multi-row statement.

    One statement is one step of SQLite: the GIL is released once per chunk instead of once
    per row as executemany does, and no row is bound from Python alone. The chunk sizes are
    fixed so each table's statements stay few (the connection's statement cache keeps them).
    """
    start, count = 0, len(rows)
    for size in _CHUNKS:
        if size * width > _MAX_VARIABLES and size > 1:
            continue
        while count - start >= size:
            key = (head, width, size, tail)
            sql = _VALUES_SQL.get(key)
            if sql is None:
                one = "(" + ", ".join("?" * width) + ")"
                sql = _VALUES_SQL[key] = f"{head} VALUES {', '.join([one] * size)}{tail}"
            await db.execute(sql, list(itertools.chain.from_iterable(rows[start : start + size])))
            start += size


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def row_to_capture(row: sqlite3.Row | tuple[Any, ...]) -> Capture:
    return Capture(
        id=row[0],
        public_id=row[1],
        session_public_id=row[2],
        status=CaptureStatus(row[3]),
        capture_type=CaptureType(row[4]),
        raw_value=row[5],
        gtin=row[6],
        symbology=row[7],
        symbology_identifier=row[8],
        source=row[9],
        error_message=row[10],
        created=row[11],
        processed_at=row[12],
        gs1_dl_data=_loads(row[13], {}),
        product_public_id=row[14],
        product_name=row[15],
        uploaded_image_key=row[16],
        qr_analysis=_loads(row[17], None),
        metadata=_loads(row[18], {}),
        checks=_loads(row[19], {}),
        revision=row[20],
    )


SESSION_COLUMNS = (
    "id, public_id, status, capture_mode, created, modified, metadata, capture_count, "
    "photo_count, source"
)


def row_to_session(row: sqlite3.Row | tuple[Any, ...]) -> Session:
    return Session(
        id=row[0],
        public_id=row[1],
        status=SessionStatus(row[2]),
        capture_mode=CaptureMode(row[3]),
        created=row[4],
        modified=row[5],
        metadata=_loads(row[6], {}),
        capture_count=row[7],
        photo_count=row[8],
        source=row[9],
    )


PRODUCT_COLUMNS = (
    "id, public_id, gtin, name, brand, net_content, ingredients, nutrition, certifications, "
    "country_of_origin, category, images, completeness, created, modified"
)


def row_to_product(row: sqlite3.Row | tuple[Any, ...]) -> Product:
    return Product(
        id=row[0],
        public_id=row[1],
        gtin=row[2],
        name=row[3],
        brand=row[4],
        net_content=row[5],
        ingredients=row[6],
        nutrition=_loads(row[7], {}),
        certifications=_loads(row[8], []),
        country_of_origin=row[9],
        category=row[10],
        images=_loads(row[11], []),
        completeness=row[12],
        created=row[13],
        modified=row[14],
    )


PROPOSAL_COLUMNS = """
    pr.id, pr.public_id, c.public_id, pr.field_name, pr.current_value, pr.proposed_value,
    pr.confidence, pr.reasoning, pr.source, pr.status, pr.created, pr.reviewed_at
"""


def row_to_proposal(row: sqlite3.Row | tuple[Any, ...]) -> Proposal:
    return Proposal(
        id=row[0],
        public_id=row[1],
        capture_public_id=row[2],
        field_name=row[3],
        current_value=row[4],
        proposed_value=row[5],
        confidence=row[6],
        reasoning=row[7],
        source=row[8],
        status=ProposalStatus(row[9]),
        created=row[10],
        reviewed_at=row[11],
    )


def product_completeness(fields: dict[str, Any]) -> int:
    """Share (0–100) of the catalog fields a product has filled in, name counting double."""
    weights = dict.fromkeys(PRODUCT_FIELDS, 1) | {"name": 2}
    filled = sum(w for name, w in weights.items() if fields.get(name) not in (None, "", [], {}))
    return round(100 * filled / sum(weights.values()))


@dataclass(frozen=True, slots=True)
class NewCapture:
    """What a caller knows of a capture before it is stored."""

    capture_type: CaptureType
    raw_value: str = ""
    gtin: str = ""
    symbology: str = ""
    symbology_identifier: str = ""
    source: str = ""
    gs1_dl_data: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    uploaded_image_key: str = ""


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """A capture's terminal state, written with its events in one transaction."""

    capture_id: int
    status: CaptureStatus
    gtin: str = ""
    gs1_dl_data: dict[str, str] | None = None
    product_id: int | None = None
    error_message: str = ""
    checks: dict[str, Any] | None = None
    qr_analysis: dict[str, Any] | None = None
    scan_event: dict[str, Any] | None = None
    """Analytics row (gtin, batch, serial, expiry, …) or None when there is no GTIN."""
    alert: dict[str, Any] | None = None
    """Payload of an ``alerts`` event (expired or recalled item), or None."""


ColumnTexts = tuple[str, str | None, str, str]
"""The JSON text of a capture's gs1_dl_data, qr_analysis (None: none), metadata and checks,
as written for its row."""


_OUTCOME_SETTERS: tuple[Any, ...] = tuple(
    CaptureOutcome.__dict__[f.name].__set__ for f in dataclasses.fields(CaptureOutcome)
)


def build_outcome(
    capture_id: int,
    status: CaptureStatus,
    gtin: str,
    gs1_dl_data: dict[str, str] | None,
    product_id: int | None,
    error_message: str,
    checks: dict[str, Any] | None,
    qr_analysis: dict[str, Any] | None,
    scan_event: dict[str, Any] | None,
    alert: dict[str, Any] | None,
) -> CaptureOutcome:
    """``CaptureOutcome(...)`` with every field given, in order — the same frozen object —
    its slots set through their descriptors (half the frozen ``__init__``'s cost; one per
    capture on the hot path). A test holds the order to the class's."""
    outcome: CaptureOutcome = object.__new__(CaptureOutcome)
    s = _OUTCOME_SETTERS
    s[0](outcome, capture_id)
    s[1](outcome, status)
    s[2](outcome, gtin)
    s[3](outcome, gs1_dl_data)
    s[4](outcome, product_id)
    s[5](outcome, error_message)
    s[6](outcome, checks)
    s[7](outcome, qr_analysis)
    s[8](outcome, scan_event)
    s[9](outcome, alert)
    return outcome


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A row of the outbox: one MQTT message waiting for its PUBACK."""

    id: int
    topic: str
    """Topic suffix under the device prefix: captures, alerts, noreads."""
    event_id: str
    seq: int | None
    payload: str
    created: float
    attempts: int
