"""JSON views of domain objects: one shape for the HTTP API, the event stream and MQTT."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from scanstation.model import Capture, Product, Proposal, Session, gs1_key

_second: tuple[int, str] = (-1, "")
"""The whole second last formatted by ``iso`` and its text up to the seconds (one tuple,
replaced whole: threads calling ``iso`` at once never see the parts of two seconds)."""


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC timestamp, to the millisecond (None stays
    None): ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`` with a Z.

    The text up to the seconds is kept for the last whole second (timestamps on a hot path
    come in runs of the same second); the fraction is rounded to the microsecond, half to
    even, as ``datetime.fromtimestamp`` rounds it, then cut to the millisecond.
    """
    global _second
    if ts is None:
        return None
    second = int(ts)
    if second != ts and ts >= 0:
        micro = round((ts - second) * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
    else:  # a whole second, or before 1970: no shortcut
        return (
            datetime.fromtimestamp(ts, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
    cached, text = _second
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)
    return f"{text}.{micro // 1000:03d}Z"


def session_json(session: Session) -> dict[str, Any]:
    return {
        "public_id": session.public_id,
        "status": session.status.value,
        "capture_mode": session.capture_mode.value,
        "created": iso(session.created),
        "modified": iso(session.modified),
        "metadata": session.metadata,
        "capture_count": session.capture_count,
        "photo_count": session.photo_count,
        "source": session.source,
    }


def capture_json(capture: Capture) -> dict[str, Any]:
    """A capture as Closient documents it: what is not known is null, never "" (SPEC §10)."""
    key = gs1_key(capture.gs1_dl_data)
    product = capture.product_public_id or None
    return {
        "public_id": capture.public_id,
        "session_public_id": capture.session_public_id,
        "status": capture.status.value,
        "capture_type": capture.capture_type.value,
        "raw_value": capture.raw_value,
        "gtin": capture.gtin,
        "symbology": capture.symbology,
        "symbology_identifier": capture.symbology_identifier,
        "source": capture.source,
        "error_message": capture.error_message,
        "created": iso(capture.created),
        "processed_at": iso(capture.processed_at),
        "gs1_dl_data": capture.gs1_dl_data,
        "gs1_key": {"type": key[0], "ai": key[1], "value": key[2]} if key else None,
        "product_public_id": product,
        "product_short_id": product,  # Closient's alias
        "product_name": (capture.product_name or None) if product else None,
        "uploaded_image_key": capture.uploaded_image_key or None,
        "qr_analysis": capture.qr_analysis or None,
        "metadata": capture.metadata,
        "checks": capture.checks,
        "revision": capture.revision,
    }


def capture_json_text(
    capture: Capture,
    tail: str,
    *,
    gs1_dl_data: str | None = None,
    qr_analysis: str | None = None,
    metadata: str | None = None,
    checks: str | None = None,
) -> str:
    """``json.dumps({**capture_json(capture), **extra})``, character for character, where
    ``tail`` is the rest of that object already serialised (``", \"schema\": …"``, each
    member led by ", "), built without the dict or the encoder's walk over it.

    ``gs1_dl_data``, ``qr_analysis`` (of a capture that has one), ``metadata`` and ``checks``
    may be given as the JSON text ``json.dumps`` made of them already (for the row): then
    they are serialised once.
    """
    text = encode_basestring_ascii  # a str enum member is encoded as its value
    key = gs1_key(capture.gs1_dl_data)
    product = capture.product_public_id
    if product:
        product_text = text(product)
        name = text(capture.product_name) if capture.product_name else "null"
    else:
        product_text = name = "null"
    qr = capture.qr_analysis
    qr_text = "null" if not qr else qr_analysis if qr_analysis is not None else json.dumps(qr)
    created = iso(capture.created)
    processed = iso(capture.processed_at)
    return "".join(
        (
            '{"public_id": ',
            text(capture.public_id),
            ', "session_public_id": ',
            text(capture.session_public_id),
            ', "status": ',
            text(capture.status),
            ', "capture_type": ',
            text(capture.capture_type),
            ', "raw_value": ',
            text(capture.raw_value),
            ', "gtin": ',
            text(capture.gtin),
            ', "symbology": ',
            text(capture.symbology),
            ', "symbology_identifier": ',
            text(capture.symbology_identifier),
            ', "source": ',
            text(capture.source),
            ', "error_message": ',
            text(capture.error_message),
            ', "created": ',
            "null" if created is None else text(created),
            ', "processed_at": ',
            "null" if processed is None else text(processed),
            ', "gs1_dl_data": ',
            gs1_dl_data if gs1_dl_data is not None else json.dumps(capture.gs1_dl_data),
            ', "gs1_key": ',
            f'{{"type": {text(key[0])}, "ai": {text(key[1])}, "value": {text(key[2])}}}'
            if key
            else "null",
            ', "product_public_id": ',
            product_text,
            ', "product_short_id": ',
            product_text,
            ', "product_name": ',
            name,
            ', "uploaded_image_key": ',
            text(capture.uploaded_image_key) if capture.uploaded_image_key else "null",
            ', "qr_analysis": ',
            qr_text,
            ', "metadata": ',
            metadata if metadata is not None else json.dumps(capture.metadata),
            ', "checks": ',
            checks if checks is not None else json.dumps(capture.checks),
            ', "revision": ',
            str(int(capture.revision)),
            tail,
            "}",
        )
    )


def product_json(product: Product) -> dict[str, Any]:
    return {
        "public_id": product.public_id,
        "gtin": product.gtin,
        "name": product.name,
        "brand": product.brand,
        "net_content": product.net_content,
        "ingredients": product.ingredients,
        "nutrition": product.nutrition,
        "certifications": product.certifications,
        "country_of_origin": product.country_of_origin,
        "category": product.category,
        "images": product.images,
        "completeness": product.completeness,
        "created": iso(product.created),
        "modified": iso(product.modified),
    }


def proposal_json(proposal: Proposal) -> dict[str, Any]:
    return {
        "public_id": proposal.public_id,
        "capture": proposal.capture_public_id,
        "field_name": proposal.field_name,
        "current_value": proposal.current_value,
        "proposed_value": proposal.proposed_value,
        "confidence": proposal.confidence,
        "reasoning": proposal.reasoning,
        "source": proposal.source,
        "status": proposal.status.value,
        "created": iso(proposal.created),
        "reviewed_at": iso(proposal.reviewed_at),
    }


def parse_time(text: str, now: float | None = None) -> float:
    """ISO 8601 (UTC when no offset), epoch seconds, or an age such as 7d, 12h, 30m.

    >>> parse_time("2026-01-31T12:00:00Z")
    1769860800.0
    >>> parse_time("7d", now=1_000_000.0)
    395200.0
    """
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return (time.time() if now is None else now) - int(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"time {text!r}: expected ISO 8601 (2026-01-31 or 2026-01-31T12:00:00Z), "
            "epoch seconds, or an age such as 7d, 12h, 30m"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
