"""JSON views of domain objects: one shape for the HTTP API, the event stream and MQTT."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from scanstation.model import Capture, Product, Proposal, Session, gs1_key


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC timestamp (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
