"""Enrichment proposals: list per capture, accept or reject, apply to the product."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scanstation.bus import EventKind
from scanstation.jsonlimits import JsonLimitError, loads_limited
from scanstation.model import CaptureStatus, ProposalStatus
from scanstation.payloads import capture_json, product_json, proposal_json
from scanstation.services.catalog import LIST_FIELDS, CatalogError, gtin14
from scanstation.store import NotFound, review
from scanstation.store.rows import PRODUCT_FIELDS
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError
from scanstation.web.models import (
    ApplyBody,
    ApplyResult,
    ProposalList,
    ProposalOut,
    ProposalReview,
)
from scanstation.web.openapi import operation
from scanstation.web.params import body

routes = web.RouteTableDef()


@routes.get(API_BASE + "/captures/{id}/proposals")
@operation("A capture's enrichment proposals", responses={200: ProposalList})
async def capture_proposals(request: web.Request) -> web.Response:
    store = services(request).store
    public_id = request.match_info["id"]
    await review.capture_ids(store, public_id)  # 404 for an unknown capture
    proposals = await store.list_proposals(public_id)
    return web.json_response(
        {"count": len(proposals), "results": [proposal_json(p) for p in proposals]}
    )


@routes.patch(API_BASE + "/proposals/{id}")
@operation("Accept or reject a proposal", body=ProposalReview, responses={200: ProposalOut})
async def patch_proposal(request: web.Request) -> web.Response:
    svc = services(request)
    sent = await body(request, ProposalReview)
    proposal = await review.review_proposal(
        svc.store, request.match_info["id"], ProposalStatus(sent.status)
    )
    svc.bus.publish(EventKind.PROPOSAL, proposal_json(proposal))
    return web.json_response(proposal_json(proposal))


def _proposed_value(field_name: str, text: str, current: Any) -> Any:
    """A proposal's text as the value of a product field (lists gain an item)."""
    if field_name in LIST_FIELDS:
        items = list(current or [])
        new = [v.strip() for v in text.split("|") if v.strip()]
        return items + [v for v in new if v not in items]
    if field_name == "nutrition":
        try:
            value = loads_limited(text)
        except JsonLimitError as exc:
            raise ValueError(f"nutrition: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("nutrition must be a JSON object")
        return {**(current or {}), **value}
    return text


async def _apply_target(request: web.Request) -> str:
    """The optional body ``{"gtin": "…"}``: the product to apply an image-only capture to."""
    if not request.can_read_body:
        return ""
    return (await body(request, ApplyBody)).gtin


@routes.post(API_BASE + "/captures/{id}/apply")
@operation(
    "Apply the ACCEPTED proposals to the capture's product, and walk the capture again",
    body=ApplyBody,
    responses={200: ApplyResult},
    errors=(409,),
)
async def apply_proposals(request: web.Request) -> web.Response:
    """Write the capture's ACCEPTED proposals into its product (created for its GTIN if
    missing) and attach the capture to it: a NOT_FOUND or FAILED capture is walked again
    with that product's GTIN, so it reaches the product it was applied to."""
    svc = services(request)
    store = svc.store
    public_id = request.match_info["id"]
    capture_row, gtin, product_row, _ = await review.capture_ids(store, public_id)
    accepted = [
        p for p in await store.list_proposals(public_id) if p.status is ProposalStatus.ACCEPTED
    ]
    if not accepted:
        raise ApiError(409, f"capture {public_id!r} has no ACCEPTED proposals to apply")
    applied: list[str] = []
    chosen = await _apply_target(request)
    # Which product: the one the capture already has; else the one the operator names; else
    # an accepted look-alike (``product``) proposal; else the capture's own GTIN; else an
    # accepted barcode (``gtin``) proposal.
    look_alike = next((p for p in accepted if p.field_name == "product"), None)
    gtin_proposal = next((p for p in accepted if p.field_name == "gtin"), None)
    if product_row is None and chosen:
        gtin = chosen
    elif product_row is None and look_alike is not None:
        gtin = (await review.product_by_public_id(store, look_alike.proposed_value)).gtin
        applied.append(look_alike.public_id)
    elif not gtin and product_row is None and gtin_proposal is not None:
        try:
            gtin = gtin14(gtin_proposal.proposed_value)
        except CatalogError as exc:
            raise ApiError(422, f"the accepted gtin proposal: {exc}", field="gtin") from None
        applied.append(gtin_proposal.public_id)
    if product_row is not None:
        product = await review.product_by_row_id(store, product_row)
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
            'to apply proposals to; name one with {"gtin": …} or create the product with '
            "PUT /products/{gtin} first",
        )
    fields: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    for proposal in accepted:
        name = proposal.field_name
        if proposal.public_id in applied:
            continue
        if name in ("product", "gtin"):
            skipped.append(
                {
                    "public_id": proposal.public_id,
                    "reason": f"the capture's product is {gtin}, decided before this proposal",
                }
            )
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
    if fields or existing is None:
        await store.upsert_products([{"gtin": gtin, **fields}])
    product = await store.get_product(gtin)
    # The photo becomes a reference of the product, for proposing it for later photos.
    await store.add_reference_photo(product.id, capture_row)
    capture = await store.get_capture(public_id)
    if capture.status in (CaptureStatus.NOT_FOUND, CaptureStatus.FAILED):
        await review.attach_gtin(store, capture_row, product.gtin)
        capture = await svc.pipeline.retry(public_id)
    svc.bus.publish(EventKind.PRODUCT, product_json(product))
    return web.json_response(
        {
            "product": product_json(product),
            "created": existing is None,
            "applied": applied,
            "skipped": skipped,
            "capture": capture_json(capture),
        }
    )
