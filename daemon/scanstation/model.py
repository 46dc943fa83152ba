"""The domain: frozen dataclasses and enums shared by every stage."""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# SPEC §5: public ids are 22-character shortuuids over this alphabet (shortuuid's default).
PUBLIC_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PUBLIC_ID_LENGTH = 22

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500
RAW_VALUE_MAX_LENGTH = 500


def new_public_id() -> str:
    """A fresh 22-character shortuuid, as SPEC §5 names them.

    The same encoding as ``shortuuid.uuid()`` (a random UUID4 in base 57, most significant
    digit first, padded to 22), without its per-call set-up: a few µs instead of ~33 µs.
    """
    number = (int.from_bytes(os.urandom(16)) & _UUID4_MASK) | _UUID4_BITS
    digits = []
    for _ in range(PUBLIC_ID_LENGTH):
        number, digit = divmod(number, 57)
        digits.append(PUBLIC_ID_ALPHABET[digit])
    return "".join(reversed(digits))


_RANDOM_BATCH = 64
_random_80: Iterator[int] = iter(())


def random_80() -> int:
    """80 random bits from the operating system's CSPRNG (os.urandom), drawn 64 numbers at a
    time: one getrandom system call per 64 ids instead of one per id.

    Safe from any thread without a lock: a list iterator hands each number out once under
    the GIL, and a thread that finds it spent draws a fresh list of its own. A forked child
    starts with none drawn (os.register_at_fork), so it never repeats its parent's.
    """
    global _random_80
    for number in _random_80:
        return number
    block = os.urandom(10 * _RANDOM_BATCH)
    numbers = iter([int.from_bytes(block[i : i + 10]) for i in range(0, len(block), 10)])
    _random_80 = numbers
    return next(numbers)


def _forget_drawn_random() -> None:
    """In a forked child: numbers drawn by the parent are never handed out again."""
    global _random_80
    _random_80 = iter(())


os.register_at_fork(after_in_child=_forget_drawn_random)


def time_ordered_uuid() -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix time in ms, then 74 random bits.

    Ids made one after another sort together, so an index on them grows at its end (a few
    pages a commit) instead of touching a random page per row — fewer bytes to the SD card.
    """
    number = (time.time_ns() // 1_000_000) << 80 | random_80()
    number = (number & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x7000 << 64) | (0x8000 << 48)
    # str(uuid.UUID(int=number)), without building the UUID object.
    h = f"{number:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# UUID version 4, RFC 4122 variant: the bits uuid.uuid4() sets in its 128-bit number.
_UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


def is_public_id(value: str) -> bool:
    """True when `value` has the shape of a public id (22 characters of the alphabet)."""
    return len(value) == PUBLIC_ID_LENGTH and all(c in PUBLIC_ID_ALPHABET for c in value)


GS1_KEYS: dict[str, str] = {
    "01": "GTIN",
    "00": "SSCC",
    "414": "GLN",
    "417": "GLN",
    "8003": "GRAI",
    "8004": "GIAI",
    "8018": "GSRN",
    "8017": "GSRN",
    "253": "GDTI",
    "255": "GCN",
    "401": "GINC",
    "402": "GSIN",
    "8006": "ITIP",
    "8010": "CPID",
    "8013": "GMN",
}
"""GS1 identification keys by Application Identifier, in the order one is chosen as a
capture's key when a value carries several (a GTIN first, then an SSCC, a GLN …)."""


def gs1_key(ais: dict[str, str]) -> tuple[str, str, str] | None:
    """(key type, AI, value) of the GS1 key in a capture's AIs, or None.

    >>> gs1_key({"00": "106141411234567897", "10": "X"})
    ('SSCC', '00', '106141411234567897')
    >>> gs1_key({"10": "ABC"}) is None
    True
    """
    for ai, kind in GS1_KEYS.items():
        value = ais.get(ai)
        if value:
            return kind, ai, value
    return None


class SessionStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"


class CaptureMode(enum.StrEnum):
    BARCODE_SCAN = "barcode_scan"
    PRODUCT_PHOTOGRAPHY = "product_photography"
    BOTH = "both"


class CaptureType(enum.StrEnum):
    BARCODE = "BARCODE"
    IMAGE = "IMAGE"
    MANUAL = "MANUAL"


class CaptureStatus(enum.StrEnum):
    PENDING = "PENDING"
    LOOKING_UP = "LOOKING_UP"
    ENRICHING = "ENRICHING"
    RESOLVING = "RESOLVING"
    COMPLETED = "COMPLETED"
    NOT_FOUND = "NOT_FOUND"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        """COMPLETED, NOT_FOUND and FAILED end the walk; the others are in progress."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {CaptureStatus.COMPLETED, CaptureStatus.NOT_FOUND, CaptureStatus.FAILED}
)


class ProposalStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class Scan:
    """One read handed over by a source (camera, HID gun, serial scanner, stdin, replay).

    Sources produce these; the ingest stage turns each into a durable Capture.
    """

    source: str
    """The configured source name, e.g. ``cam0`` or ``gun1``."""
    raw_value: str
    """The decoded text exactly as read, GS (ASCII 29) separators kept. Empty for no-read images."""
    symbology_identifier: str = ""
    """AIM symbology identifier such as ``]E0``, ``]d2``, ``]Q3`` (empty when unknown)."""
    symbology: str = ""
    """Human name of the symbology, e.g. ``EAN13``, ``DataMatrix`` (empty when unknown)."""
    capture_type: CaptureType = CaptureType.BARCODE
    image: bytes | None = None
    """Encoded image (JPEG/PNG) to keep with the capture: a product photo or a no-read frame."""
    image_ext: str = "jpg"
    metadata: dict[str, str] = field(default_factory=dict)
    read_at: float = field(default_factory=time.time)
    """Wall-clock time of the read (seconds since the epoch)."""


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    public_id: str
    status: SessionStatus
    capture_mode: CaptureMode
    created: float
    modified: float
    metadata: dict[str, Any]
    capture_count: int
    photo_count: int
    source: str


@dataclass(frozen=True, slots=True)
class Capture:
    id: int
    public_id: str
    session_public_id: str
    status: CaptureStatus
    capture_type: CaptureType
    raw_value: str
    gtin: str
    symbology: str
    symbology_identifier: str
    source: str
    error_message: str
    created: float
    processed_at: float | None
    gs1_dl_data: dict[str, str]
    product_public_id: str
    product_name: str
    uploaded_image_key: str
    qr_analysis: dict[str, Any] | None
    metadata: dict[str, Any]
    checks: dict[str, Any]
    revision: int


CAPTURE_FIELDS = (
    "id",
    "public_id",
    "session_public_id",
    "status",
    "capture_type",
    "raw_value",
    "gtin",
    "symbology",
    "symbology_identifier",
    "source",
    "error_message",
    "created",
    "processed_at",
    "gs1_dl_data",
    "product_public_id",
    "product_name",
    "uploaded_image_key",
    "qr_analysis",
    "metadata",
    "checks",
    "revision",
)
"""Capture's fields in order, as ``build_capture`` sets them (a test holds it to the class)."""
_CAPTURE_SETTERS: tuple[Any, ...] = tuple(Capture.__dict__[name].__set__ for name in CAPTURE_FIELDS)


def build_capture(
    *,
    id: int,
    public_id: str,
    session_public_id: str,
    status: CaptureStatus,
    capture_type: CaptureType,
    raw_value: str,
    gtin: str,
    symbology: str,
    symbology_identifier: str,
    source: str,
    error_message: str,
    created: float,
    processed_at: float | None,
    gs1_dl_data: dict[str, str],
    product_public_id: str,
    product_name: str,
    uploaded_image_key: str,
    qr_analysis: dict[str, Any] | None,
    metadata: dict[str, Any],
    checks: dict[str, Any],
    revision: int,
) -> Capture:
    """``Capture(...)`` — the same frozen object, every field set — at half its cost.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; this
    sets the slots through their descriptors (~2 µs instead of ~4 for 21 fields). A capture
    is built twice on the ingest path (pending on the loop, terminal in the writer).
    """
    capture: Capture = object.__new__(Capture)
    setters = _CAPTURE_SETTERS
    setters[0](capture, id)
    setters[1](capture, public_id)
    setters[2](capture, session_public_id)
    setters[3](capture, status)
    setters[4](capture, capture_type)
    setters[5](capture, raw_value)
    setters[6](capture, gtin)
    setters[7](capture, symbology)
    setters[8](capture, symbology_identifier)
    setters[9](capture, source)
    setters[10](capture, error_message)
    setters[11](capture, created)
    setters[12](capture, processed_at)
    setters[13](capture, gs1_dl_data)
    setters[14](capture, product_public_id)
    setters[15](capture, product_name)
    setters[16](capture, uploaded_image_key)
    setters[17](capture, qr_analysis)
    setters[18](capture, metadata)
    setters[19](capture, checks)
    setters[20](capture, revision)
    return capture


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    public_id: str
    gtin: str
    name: str
    brand: str
    net_content: str
    ingredients: str
    nutrition: dict[str, Any]
    certifications: list[str]
    country_of_origin: str
    category: str
    images: list[str]
    completeness: int
    created: float
    modified: float


@dataclass(frozen=True, slots=True)
class Proposal:
    id: int
    public_id: str
    capture_public_id: str
    field_name: str
    current_value: str
    proposed_value: str
    confidence: float
    reasoning: str
    source: str
    status: ProposalStatus
    created: float
    reviewed_at: float | None


class MetadataError(ValueError):
    """Metadata over the limits of SPEC §5; ``field`` names the offending part."""

    def __init__(self, message: str, field: str = "metadata") -> None:
        super().__init__(message)
        self.field = field


def validate_metadata(metadata: object) -> dict[str, Any]:
    """Check SPEC §5's limits: ≤ 50 keys, keys ≤ 40 characters, values ≤ 500 characters.

    Values may be strings, numbers, booleans or null; a value's length is that of its text.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise MetadataError(f"metadata must be an object, got {type(metadata).__name__}")
    if len(metadata) > METADATA_MAX_KEYS:
        raise MetadataError(
            f"metadata has {len(metadata)} keys; at most {METADATA_MAX_KEYS} are allowed"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise MetadataError(f"metadata key {key!r} must be a non-empty string")
        if len(key) > METADATA_MAX_KEY_LENGTH:
            raise MetadataError(
                f"metadata key {key[:50]!r} is {len(key)} characters; "
                f"at most {METADATA_MAX_KEY_LENGTH} are allowed",
                field=f"metadata.{key[:METADATA_MAX_KEY_LENGTH]}",
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise MetadataError(
                f"metadata value for {key!r} must be a string, number, boolean or null",
                field=f"metadata.{key}",
            )
        if len(str(value)) > METADATA_MAX_VALUE_LENGTH:
            raise MetadataError(
                f"metadata value for {key!r} is {len(str(value))} characters; "
                f"at most {METADATA_MAX_VALUE_LENGTH} are allowed",
                field=f"metadata.{key}",
            )
    return dict(metadata)


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What an enricher adds to a capture: proposal drafts and, optionally, a GTIN read in it.

    Resolution never comes from looks: a product that merely looks like the photo is a
    proposal (``field_name="product"``, its similarity as confidence) a reviewer may accept.
    """

    proposals: Sequence[dict[str, Any]] = ()
    gtin: str = ""
    """A GTIN-14 read from a barcode in the photo: it decides the product as one in the
    capture's value would (used when the value and the client name none)."""


class Enricher(Protocol):
    """A stage plug-in run in ENRICHING (e.g. the TFLite classifier for images)."""

    async def enrich(self, capture: Capture, image_path: Path | None) -> Enrichment: ...


Emit = Callable[[Scan], Awaitable[Capture]]
"""Hands one Scan to the pipeline; returns once the capture is durable (safe to beep)."""
