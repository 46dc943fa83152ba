"""The API's request and response models (pydantic), defined once.

The handlers validate their bodies and query strings with the request models (a 422 naming
the field when a body breaks one, a 400 for a query parameter), and ``web/openapi.py`` builds
``GET /scanner/api/v1/openapi.json`` from these same classes: there is no second copy of the
schema. The response models describe what ``payloads.py`` renders; the tests validate real
responses against them (and schemathesis checks every operation against the document).
Field names and limits follow the Closient scanner API reference (SPEC §10).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from scanstation.model import (
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    PUBLIC_ID_ALPHABET,
    PUBLIC_ID_LENGTH,
    RAW_VALUE_MAX_LENGTH,
)
from scanstation.services.roles import Role
from scanstation.web.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH

PUBLIC_ID_PATTERN = f"^[{PUBLIC_ID_ALPHABET}]{{{PUBLIC_ID_LENGTH}}}$"
"""SPEC §10: ``^[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{22}$``."""
CAPTURE_TYPE_PATTERN = "^(BARCODE|IMAGE|MANUAL)$"
GTIN_PATTERN = "^([0-9]{8}|[0-9]{12,14})?$"
AI_PATTERN = "^[0-9]{2,4}$"
AI_VALUE_MAX_LENGTH = 90
"""The longest value any GS1 Application Identifier takes."""

PublicId = Annotated[str, StringConstraints(pattern=PUBLIC_ID_PATTERN)]
CaptureTypeName = Literal["BARCODE", "IMAGE", "MANUAL"]
CaptureStatusName = Literal[
    "PENDING", "LOOKING_UP", "ENRICHING", "RESOLVING", "COMPLETED", "NOT_FOUND", "FAILED"
]
SessionStatusName = Literal["ACTIVE", "COMPLETED", "EXPIRED"]
CaptureModeName = Literal["barcode_scan", "product_photography", "both"]

MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_MAX_VALUE_LENGTH)]
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": METADATA_MAX_KEYS,
    "propertyNames": {"minLength": 1, "maxLength": METADATA_MAX_KEY_LENGTH},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": METADATA_MAX_VALUE_LENGTH},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
    "description": (
        f"Up to {METADATA_MAX_KEYS} keys of at most {METADATA_MAX_KEY_LENGTH} characters; "
        f"values (strings, numbers, booleans or null) of at most {METADATA_MAX_VALUE_LENGTH} "
        "characters. Over that is a 422 naming the key."
    ),
}
Metadata = Annotated[
    dict[str, Any] | None,
    Field(default=None, json_schema_extra={"anyOf": [METADATA_SCHEMA, {"type": "null"}]}),
]
"""Checked by ``model.validate_metadata`` in the handler, which names the offending key."""

Gs1Data = dict[
    Annotated[str, StringConstraints(pattern=AI_PATTERN)],
    Annotated[str, StringConstraints(max_length=AI_VALUE_MAX_LENGTH)],
]


class Body(BaseModel):
    """A request body: unknown fields are a 422 naming them."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query parameters: unknown ones are ignored (browsers and proxies add their own)."""

    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    """A response body (documentation and response checks; payloads.py renders it). Every
    field is always present, so the document lists them all as required."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


# ---- errors -------------------------------------------------------------------------------


class ErrorDetail(Out):
    code: str = Field(description="A stable word: invalid, not_found, conflict, forbidden …")
    message: str = Field(description="What was wrong, naming the value and what was expected.")
    field: str = Field(description='The offending input (e.g. "gtin", "metadata.k"), or "".')


class ErrorBody(Out):
    """Every error, whatever its status (SPEC §6)."""

    error: ErrorDetail


# ---- sessions -----------------------------------------------------------------------------


class ConfigChange(Body):
    """A change to the configuration file, previewed or applied from the settings page."""

    changes: dict[str, Any] = Field(description="section.key → value (null removes)")
    base_sha256: str | None = Field(
        None, description="The file's digest the preview showed; applied only if it still matches"
    )


class SessionCreate(Body):
    capture_mode: CaptureModeName = "both"
    metadata: Metadata = None
    source: Annotated[str, StringConstraints(max_length=40)] = "api"


class SessionOut(Out):
    public_id: PublicId
    status: SessionStatusName
    capture_mode: CaptureModeName
    created: datetime
    modified: datetime
    metadata: dict[str, Any]
    capture_count: int
    photo_count: int
    source: str


class SessionStatusOut(Out):
    public_id: PublicId
    status: SessionStatusName
    capture_count: int
    photo_count: int
    captures_by_status: dict[str, int]
    in_progress: int
    complete: bool


class PageQuery(Query):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10**9)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class SessionQuery(PageQuery):
    status: Annotated[SessionStatusName | None, BeforeValidator(_upper)] = Field(
        None, description="Any case."
    )


# ---- captures -----------------------------------------------------------------------------


def _gtin14(value: str) -> str:
    """A client's GTIN normalised to GTIN-14 ("" stays ""); ValueError names what is wrong."""
    from scanstation.services.catalog import CatalogError, gtin14

    if value == "":
        return ""
    try:
        return gtin14(value)
    except CatalogError as exc:
        raise ValueError(str(exc)) from None


Gtin = Annotated[
    str,
    StringConstraints(max_length=14),
    AfterValidator(_gtin14),  # names the value and what was expected, check digit included
    Field(
        description="A GTIN-8, -12, -13 or -14 with its check digit, stored as GTIN-14; "
        '"" for none.',
        json_schema_extra={"pattern": GTIN_PATTERN},
    ),
]


class CaptureCreate(Body):
    """POST /captures (SPEC §10): what a Closient client sends, kept as sent."""

    session_public_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    capture_type: Annotated[str, StringConstraints(pattern=CAPTURE_TYPE_PATTERN)]
    raw_value: Annotated[str, StringConstraints(min_length=1, max_length=RAW_VALUE_MAX_LENGTH)]
    gtin: Gtin = ""
    gs1_dl_data: Gs1Data | None = Field(
        None,
        description="Application Identifier → value as the client parsed it; merged with the "
        "station's own parse (the station's wins a conflict, recorded in checks.conflicts).",
    )
    metadata: Metadata = None
    symbology: Annotated[str, StringConstraints(max_length=40)] = ""

    @field_validator("gs1_dl_data")
    @classmethod
    def _ai01_is_a_gtin(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """An AI 01 the client sends is a GTIN like ``gtin``: checked, made GTIN-14."""
        if value and "01" in value:
            try:
                value = {**value, "01": _gtin14(value["01"]) or ""}
            except ValueError as exc:
                raise ValueError(f"AI 01: {exc}") from None
        return value

    symbology_identifier: Annotated[str, StringConstraints(max_length=3)] = ""
    source: Annotated[str, StringConstraints(max_length=40)] = "api"


class CaptureUpload(Body):
    """POST /captures/upload-image, the text parts of the multipart form (SPEC §10)."""

    session_public_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    capture_type: Annotated[str, StringConstraints(pattern="^(BARCODE|IMAGE)$")] = "IMAGE"
    raw_value: Annotated[str, StringConstraints(max_length=RAW_VALUE_MAX_LENGTH)] = ""
    gtin: Gtin = ""
    metadata: Annotated[
        str, Field(description="A JSON object, with the limits of a capture's metadata.")
    ] = ""


class CaptureUploadForm(CaptureUpload):
    """The whole multipart form as documented (the image part is read as a stream)."""

    image: bytes = Field(
        description="A JPEG, PNG or WebP photo; checked by its content, re-encoded without EXIF.",
        json_schema_extra={"format": "binary", "contentMediaType": "application/octet-stream"},
    )


class CaptureQuery(PageQuery):
    session: str | None = Field(None, max_length=40, description="A session's public id.")
    session_public_id: str | None = Field(None, max_length=40, description="Alias of session.")
    status: Annotated[CaptureStatusName | None, BeforeValidator(_upper)] = Field(
        None, description="Any case."
    )
    since: str | None = Field(
        None, max_length=40, description="ISO 8601, epoch seconds, or an age such as 7d."
    )
    until: str | None = Field(None, max_length=40, description="As since.")


class QrHop(BaseModel):
    url: str
    status_code: int | None
    headers: dict[str, str]


class QrAnalysisOut(BaseModel):
    """Where a captured URL leads (SPEC §5); only present for http(s) values."""

    model_config = ConfigDict(extra="allow")

    initial_url: str
    final_url: str
    hops: list[QrHop]
    hop_count: int
    resolver_domain: str
    resolver_type: Literal["CLOSIENT", "GS1_DL", "URL_SHORTENER", "DIRECT", "UNKNOWN"]
    is_closient_resolver: bool
    extracted_gtin: str
    error_message: str


class Gs1KeyOut(Out):
    """The GS1 key the capture identifies: GTIN, SSCC, GLN, GRAI, GIAI …"""

    type: str = Field(description="GTIN, SSCC, GLN, GRAI, GIAI, GSRN, GDTI, GINC, GSIN …")
    ai: str = Field(description="Its Application Identifier, e.g. 00 for an SSCC.")
    value: str


class CaptureOut(Out):
    """A capture (SPEC §5, §10): always-present fields, and null where nothing is known."""

    public_id: PublicId
    session_public_id: PublicId
    status: CaptureStatusName
    capture_type: CaptureTypeName
    raw_value: str
    gtin: Annotated[str, StringConstraints(pattern="^([0-9]{14})?$")]
    symbology: str
    symbology_identifier: str
    source: str
    error_message: str
    created: datetime
    processed_at: datetime | None
    gs1_dl_data: dict[str, str]
    gs1_key: Gs1KeyOut | None
    product_public_id: PublicId | None
    product_short_id: PublicId | None = Field(description="Closient's alias of product_public_id.")
    product_name: str | None
    uploaded_image_key: str | None
    qr_analysis: QrAnalysisOut | None
    metadata: dict[str, Any]
    checks: dict[str, Any] = Field(
        description="Expiry, recall, restricted circulation; conflicts between what the client "
        "sent and the station's own parse."
    )
    revision: int


class Page(Out):
    count: int
    next: str | None
    previous: str | None


class CapturePage(Page):
    results: list[CaptureOut]


class SessionPage(Page):
    results: list[SessionOut]


# ---- proposals and the catalog ------------------------------------------------------------


class ProposalReview(Body):
    status: Literal["ACCEPTED", "REJECTED", "PENDING"]


class ApplyBody(Body):
    """POST /captures/{id}/apply: optionally, the product an image-only capture shows."""

    gtin: Gtin = ""


class ProposalOut(Out):
    public_id: PublicId
    capture: PublicId
    field_name: str
    current_value: str
    proposed_value: str
    confidence: float
    reasoning: str
    source: str
    status: Literal["PENDING", "ACCEPTED", "REJECTED"]
    created: datetime
    reviewed_at: datetime | None


class ProposalList(Out):
    count: int
    results: list[ProposalOut]


_Text = Annotated[str, StringConstraints(max_length=5000)]


class ProductBody(Body):
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


class ProductOut(Out):
    public_id: PublicId
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
    completeness: int = Field(ge=0, le=100)
    created: datetime
    modified: datetime


class ProductPage(Page):
    results: list[ProductOut]


class ProductQuery(PageQuery):
    q: str = Field("", description="Text in the name, brand or GTIN.")
    order: Literal["gtin", "name", "completeness", "-completeness", "-modified"] = "gtin"
    max_completeness: int | None = Field(None, ge=0, le=100)


class ImportResult(Out):
    imported: int


class Skipped(Out):
    public_id: str
    reason: str


class ApplyResult(Out):
    product: ProductOut | None
    created: bool
    applied: list[str]
    skipped: list[Skipped]
    capture: CaptureOut


# ---- the rest -----------------------------------------------------------------------------


class TimeRange(Query):
    since: str | None = Field(
        None, max_length=40, description="ISO 8601, epoch seconds, or an age such as 7d."
    )
    until: str | None = Field(None, max_length=40, description="As since.")


class AuditQuery(PageQuery):
    action: str = Field(
        "", max_length=40, description="An action (login) or its prefix (user, config)."
    )
    since: str | None = Field(
        None, max_length=40, description="ISO 8601, epoch seconds, or an age such as 7d."
    )
    until: str | None = Field(None, max_length=40, description="As since.")


class ImageQuery(Query):
    width: int | None = Field(None, ge=32, le=1024, description="A JPEG thumbnail this wide.")


class StreamQuery(Query):
    fps: int = Field(10, ge=1, le=30, description="Frames a second at most.")


class Triggered(Out):
    source: str
    triggered: bool


class UiSessionOut(BaseModel):
    """The web UI's login session: its CSRF token (also in the csrftoken cookie). Asked with
    an API key instead, only csrf_token (null) and api_key (true) are present."""

    model_config = ConfigDict(extra="forbid")

    csrf_token: str | None
    created: float | None = None
    idle_timeout_s: float | None = None
    expires: float | None = None
    api_key: bool | None = Field(None, description="True when asked with an API key instead.")
    username: str | None = Field(None, description="Who is logged in (key:<id> for an API key).")
    role: Role | None = Field(None, description="That user's or key's role.")


class LoggedOut(Out):
    logged_out: bool


class HealthOut(Out):
    status: Literal["ok", "degraded"]
    version: str
    db: str
    sources: dict[str, str]


class LoginBody(Body):
    password: Annotated[str, StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
    username: Annotated[str, StringConstraints(max_length=64)] = Field(
        "", description="A named user; empty or admin logs in the first admin."
    )


class AnyObject(BaseModel):
    """A JSON object whose fields are described in docs/api.md (figures, states)."""

    model_config = ConfigDict(extra="allow")


class NoReadFrame(Out):
    """One frame kept in the no-read image ring."""

    name: str = Field(description="File name: <ms since epoch>-<source>-<capture id>.jpg")
    source: str
    capture_public_id: str
    time: str = Field(description="When the capture was created (ISO 8601, UTC).")
    bytes: int


class NoReadRingOut(Out):
    """The no-read image ring, newest frame first."""

    enabled: bool = Field(description="False when [noread_images] enabled = false.")
    count: int
    bytes: int
    results: list[NoReadFrame]


class NoReadQuery(Query):
    download: bool = Field(False, description="Send the frame as an attachment.")
