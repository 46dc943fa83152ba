"""Enrichment proposals from what the classifier saw, and visual resolving by embedding.

Pure functions: a `Classification` (scanstation.vision.classify) in, `ProposalDraft`s out, each with
its confidence, a reasoning a reviewer can check, and its source. The store gives each draft a
public id and PENDING status; a reviewer accepts or rejects it.

- `category_proposals`: the retail category of the photo, from a table of ImageNet classes
  (data/imagenet_retail.json); the scores of top-k classes that share a category add up.
- `produce_proposals`: for loose fruit and vegetables, the produce name and its IFPS PLU code.
- `barcode_proposals`: GTINs of barcodes read in the photo.
- `nearest_product`: which product's reference photos look most like this one (cosine
  similarity of embeddings), above a threshold; `product_proposal` makes it a proposal
  (looks only ever propose; a GTIN read from the capture decides the product).
- `ImageEnricher`: the pipeline's plug-in (``Pipeline(enrichers=[ImageEnricher(...)])``)
  doing all of the above for a capture's stored photo, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from scanstation.vision import VisionError
from scanstation.vision.classify import Classification, Classifier, LazyClassifier

if TYPE_CHECKING:
    from scanstation.model import Capture, Enrichment

DEFAULT_MIN_CONFIDENCE = 0.2
# Measured with the shipped model: unrelated photos score 0.08-0.23, reframed copies of one
# photo 0.87-0.97 (tests/data/images); 0.6 leaves room for a second shot of the product.
DEFAULT_RESOLVE_THRESHOLD = 0.6


class EnrichError(VisionError, ValueError):
    """An input the enrichment functions cannot use; the message names it and what was expected."""


@dataclass(frozen=True, slots=True)
class ProposalDraft:
    """A proposed change to one product field, before the store gives it an id and status."""

    field_name: str
    """The product field it would set: ``category``, ``name``, ``plu`` or ``gtin``; or
    ``product``: the capture looks like this product (proposed_value is its public id)."""
    current_value: str
    """The field's value now (empty when unknown or unset)."""
    proposed_value: str
    """The value proposed, e.g. ``Produce > Fruit`` or ``4011``."""
    confidence: float
    """How sure the source is, 0-1."""
    reasoning: str
    """Why, in words a reviewer can check, e.g. ``classifier: banana 0.93``."""
    source: str
    """Who proposes it, e.g. the classifier model's file name or ``zxing-cpp``."""


@dataclass(frozen=True, slots=True)
class ProduceItem:
    """A loose fruit or vegetable sold by weight or by the unit."""

    name: str
    """The produce name a till shows, e.g. ``Bananas``."""
    plu: str
    """The IFPS PLU code, e.g. ``4011`` (empty when the table has none verified)."""


@dataclass(frozen=True, slots=True)
class RetailTable:
    """ImageNet class names mapped to retail categories and produce items."""

    categories: Mapping[str, str]
    """Class name -> retail category, e.g. ``banana`` -> ``Produce > Fruit``."""
    produce: Mapping[str, ProduceItem]
    """Class name -> produce item, for loose fruit and vegetables."""


@dataclass(frozen=True, slots=True)
class ReferencePhoto:
    """A product's reference photo, as an embedding (kept from accepted captures)."""

    product_public_id: str
    """The product the photo shows."""
    embedding: npt.NDArray[np.float32]
    """The classifier's embedding of the photo."""
    product_name: str = ""
    """The product's name, for the reasoning."""
    product_id: int | None = None
    """The store's row id of the product, when the caller has it."""


@dataclass(frozen=True, slots=True)
class Match:
    """The product whose reference photo is nearest to a capture's photo."""

    product_public_id: str
    """The matched product."""
    product_name: str
    """Its name (may be empty)."""
    similarity: float
    """Cosine similarity of the two embeddings, -1..1 (1: the same direction)."""
    runner_up: float | None
    """The best similarity among other products, for the reasoning (None when no other)."""
    product_id: int | None = None
    """The store's row id of the product, as the reference photo carried it."""


def parse_retail_table(document: Mapping[str, Any]) -> RetailTable:
    """A RetailTable from the JSON shape of data/imagenet_retail.json."""
    categories = document.get("categories")
    produce = document.get("produce", {})
    if not isinstance(categories, dict) or not isinstance(produce, dict):
        raise EnrichError(
            "retail table: expected an object with 'categories' {class: category} and "
            "'produce' {class: {name, plu}}"
        )
    items = {}
    for label, item in produce.items():
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise EnrichError(f"retail table: produce {label!r} needs a name, got {item!r}")
        plu = str(item.get("plu", ""))
        if plu and not (plu.isdigit() and len(plu) in (4, 5)):
            raise EnrichError(
                f"retail table: produce {label!r} has PLU {plu!r}; expected 4 or 5 digits"
            )
        items[str(label)] = ProduceItem(item["name"], plu)
    return RetailTable({str(k): str(v) for k, v in categories.items()}, items)


@cache
def retail_table() -> RetailTable:
    """The shipped table (scanstation/data/imagenet_retail.json), read once."""
    text = resources.files("scanstation").joinpath("data/imagenet_retail.json").read_text("utf-8")
    return parse_retail_table(json.loads(text))


def _percent(score: float) -> str:
    return f"{score:.0%}"


def category_proposals(
    result: Classification,
    current_category: str = "",
    *,
    table: RetailTable | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[ProposalDraft]:
    """The retail category of the photo, when the top-k classes point to one firmly enough.

    Scores of classes sharing a category add up (tabby 0.17 + tiger cat 0.33 + Egyptian cat
    0.38 make Pet supplies 0.88). Nothing is proposed when the best category is under
    `min_confidence` or already the product's category.
    """
    table = table or retail_table()
    totals: dict[str, float] = {}
    seen: dict[str, list[str]] = {}
    for item in result.top:
        category = table.categories.get(item.label)
        if category is None:
            continue
        totals[category] = totals.get(category, 0.0) + item.score
        seen.setdefault(category, []).append(f"{item.label} {_percent(item.score)}")
    if not totals:
        return []
    category, confidence = max(totals.items(), key=lambda kv: kv[1])
    confidence = min(1.0, round(confidence, 4))
    if confidence < min_confidence or category == current_category:
        return []
    return [
        ProposalDraft(
            field_name="category",
            current_value=current_category,
            proposed_value=category,
            confidence=confidence,
            reasoning=f"the photo looks like {', '.join(seen[category])} ({category})",
            source=result.model,
        )
    ]


def produce_proposals(
    result: Classification,
    current: Mapping[str, str] | None = None,
    *,
    table: RetailTable | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[ProposalDraft]:
    """Produce name and IFPS PLU code for loose fruit or vegetables at a checkout lane.

    Uses the best-scoring produce class among the top-k; proposes ``name`` when the product
    has none and ``plu`` when the table has a code for it. `current` holds the product's
    current values by field name.
    """
    table = table or retail_table()
    current = current or {}
    best = next((item for item in result.top if item.label in table.produce), None)
    if best is None or best.score < min_confidence:
        return []
    produce = table.produce[best.label]
    why = f"the photo looks like {best.label} ({_percent(best.score)})"
    drafts = []
    if produce.plu and current.get("plu", "") != produce.plu:
        drafts.append(
            ProposalDraft(
                field_name="plu",
                current_value=current.get("plu", ""),
                proposed_value=produce.plu,
                confidence=round(best.score, 4),
                reasoning=f"{why}: IFPS PLU {produce.plu} is {produce.name}",
                source=result.model,
            )
        )
    if not current.get("name"):
        drafts.append(
            ProposalDraft(
                field_name="name",
                current_value="",
                proposed_value=produce.name,
                confidence=round(best.score, 4),
                reasoning=f"{why}: loose produce {produce.name}",
                source=result.model,
            )
        )
    return drafts


def barcode_proposals(
    found: Iterable[tuple[str, str]], current_gtin: str = "", *, source: str = "zxing-cpp"
) -> list[ProposalDraft]:
    """A ``gtin`` proposal for each distinct GTIN read in the photo, as (format, GTIN-14) pairs.

    A decoded barcode has passed its check digit, so its confidence is 1.0; a GTIN equal to the
    product's current one is not proposed again.
    """
    drafts = []
    seen = set()
    for symbology, gtin in found:
        if not (gtin.isdigit() and len(gtin) == 14):
            raise EnrichError(f"GTIN {gtin!r} from a {symbology} code; expected 14 digits")
        if gtin in seen or gtin == current_gtin:
            continue
        seen.add(gtin)
        drafts.append(
            ProposalDraft(
                field_name="gtin",
                current_value=current_gtin,
                proposed_value=gtin,
                confidence=1.0,
                reasoning=f"a {symbology} barcode in the photo reads GTIN {gtin}",
                source=source,
            )
        )
    return drafts


def enrichment_proposals(
    result: Classification,
    current: Mapping[str, str] | None = None,
    *,
    barcodes: Iterable[tuple[str, str]] = (),
    table: RetailTable | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[ProposalDraft]:
    """Every proposal for one photo: category, produce (name, PLU) and barcodes read in it."""
    current = current or {}
    return [
        *category_proposals(
            result, current.get("category", ""), table=table, min_confidence=min_confidence
        ),
        *produce_proposals(result, current, table=table, min_confidence=min_confidence),
        *barcode_proposals(barcodes, current.get("gtin", "")),
    ]


def _unit(vector: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if not array.size or not np.isfinite(norm) or norm == 0.0:
        raise EnrichError(f"{what} is empty, zero or not finite; expected a non-zero embedding")
    return array / norm


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two embeddings, -1..1."""
    ua, ub = _unit(a, "embedding"), _unit(b, "embedding")
    if ua.shape != ub.shape:
        raise EnrichError(f"embeddings of {ua.size} and {ub.size} values; expected the same size")
    return float(np.dot(ua, ub))


def nearest_product(
    embedding: npt.ArrayLike,
    references: Sequence[ReferencePhoto],
    threshold: float = DEFAULT_RESOLVE_THRESHOLD,
) -> Match | None:
    """The product whose reference photo is most similar, if at least `threshold`; else None.

    A product with several reference photos counts by its best one.
    """
    if not references:
        return None
    query = _unit(embedding, "the capture's embedding")
    matrix = np.stack(
        [_unit(r.embedding, f"reference of {r.product_public_id}") for r in references]
    )
    if matrix.shape[1] != query.size:
        raise EnrichError(
            f"reference embeddings have {matrix.shape[1]} values, the capture's {query.size}; "
            "expected the same model for both"
        )
    similarities = matrix @ query
    best_per_product: dict[str, tuple[float, ReferencePhoto]] = {}
    for reference, similarity in zip(references, similarities.tolist(), strict=True):
        known = best_per_product.get(reference.product_public_id)
        if known is None or similarity > known[0]:
            best_per_product[reference.product_public_id] = (similarity, reference)
    ranked = sorted(best_per_product.values(), key=lambda pair: pair[0], reverse=True)
    similarity, best = ranked[0]
    if similarity < threshold:
        return None
    runner_up = round(ranked[1][0], 4) if len(ranked) > 1 else None
    return Match(
        best.product_public_id,
        best.product_name,
        round(similarity, 4),
        runner_up,
        best.product_id,
    )


def pack_embedding(embedding: npt.ArrayLike) -> bytes:
    """An embedding as bytes for a SQLite BLOB: little-endian float32, 4 bytes per value."""
    return np.asarray(embedding, dtype="<f4").reshape(-1).tobytes()


def unpack_embedding(blob: bytes) -> npt.NDArray[np.float32]:
    """The embedding `pack_embedding` stored (read-only)."""
    if not blob or len(blob) % 4:
        raise EnrichError(
            f"embedding blob of {len(blob)} bytes; expected a multiple of 4 (float32)"
        )
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def resolve_reasoning(match: Match) -> str:
    """Words for the capture's log: which product and how close."""
    name = f" ({match.product_name})" if match.product_name else ""
    other = f"; next best {match.runner_up:.2f}" if match.runner_up is not None else ""
    return (
        f"photo matches {match.product_public_id}{name} at similarity {match.similarity:.2f}{other}"
    )


# ---- the pipeline's ENRICHING / RESOLVING plug-in ------------------------------------------

ReferenceSource = Callable[[], Awaitable[Sequence[ReferencePhoto]]]
"""Returns the reference photos to resolve against (the store's, kept from accepted captures)."""
CurrentValues = Callable[["Capture"], Awaitable[Mapping[str, str]]]
"""Returns a capture's product's current field values (category, name, plu, gtin), or {}."""
EmbeddingSink = Callable[["Capture", bytes], Awaitable[None]]
"""Keeps a capture's packed embedding, to become a reference photo when it is accepted."""


def barcodes_in_photo(path: Path) -> list[tuple[str, str]]:
    """(format, GTIN-14) of every GTIN-bearing barcode zxing-cpp reads in a photo file."""
    from scanstation.barcode.decode import DecodeError, decode_frame, load_image
    from scanstation.barcode.interpret import interpret

    try:
        frame = load_image(path)
    except DecodeError:
        return []
    found = []
    for code in decode_frame(frame):
        meaning = interpret(code.text, symbology_identifier=code.symbology_identifier)
        if meaning.valid and meaning.gtin:
            found.append((code.format, meaning.gtin))
    return found


class ImageEnricher:
    """ENRICHING for photos: `pipeline.Enricher` over the classifier.

    For a capture with a stored image: classify it (in a thread), read any barcodes in it,
    draft the category / produce / barcode proposals. A GTIN read in the photo decides the
    product when the capture has none of its own (``Enrichment.gtin``); the product whose
    reference photo looks nearest (above `resolve_threshold`) is only ever a ``product``
    proposal with its similarity: looks never attach a product, nor override a barcode.
    """

    def __init__(
        self,
        classifier: Classifier | LazyClassifier,
        *,
        references: ReferenceSource | None = None,
        current_values: CurrentValues | None = None,
        keep_embedding: EmbeddingSink | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        resolve_threshold: float = DEFAULT_RESOLVE_THRESHOLD,
        read_barcodes: bool = True,
        table: RetailTable | None = None,
    ) -> None:
        self.classifier = classifier
        self.references = references
        self.current_values = current_values
        self.keep_embedding = keep_embedding
        self.min_confidence = min_confidence
        self.resolve_threshold = resolve_threshold
        self.read_barcodes = read_barcodes
        self.table = table

    def __repr__(self) -> str:
        return f"ImageEnricher({self.classifier.model_name})"

    async def enrich(self, capture: Capture, image_path: Path | None) -> Enrichment:
        from scanstation.model import Enrichment

        if image_path is None:
            return Enrichment()
        data = await asyncio.to_thread(image_path.read_bytes)
        result = await self.classifier.classify_async(data)
        barcodes = (
            await asyncio.to_thread(barcodes_in_photo, image_path) if self.read_barcodes else []
        )
        # A barcode in the photo names the product when the capture itself names none; two
        # different GTINs in one photo decide nothing (both are proposed, a reviewer picks).
        distinct = sorted({gtin for _, gtin in barcodes})
        read_gtin = distinct[0] if not capture.gtin and len(distinct) == 1 else ""
        gtin = capture.gtin or read_gtin
        known = dataclasses.replace(capture, gtin=gtin)
        current = dict(await self.current_values(known)) if self.current_values else {}
        current["gtin"] = current.get("gtin") or gtin
        drafts = enrichment_proposals(
            result,
            current,
            barcodes=barcodes,
            table=self.table,
            min_confidence=self.min_confidence,
        )
        if result.embedding is not None:
            if self.keep_embedding is not None:
                await self.keep_embedding(capture, pack_embedding(result.embedding))
            if not gtin and self.references is not None:
                match = nearest_product(
                    result.embedding, await self.references(), self.resolve_threshold
                )
                if match is not None:
                    drafts.append(product_proposal(match, result.model))
        return Enrichment([asdict(d) for d in drafts], read_gtin)


def product_proposal(match: Match, source: str) -> ProposalDraft:
    """The product a photo looks like, as a proposal: accepting and applying it attaches the
    capture to that product (the capture's GTIN becomes the product's, and it is walked again).
    """
    return ProposalDraft(
        field_name="product",
        current_value="",
        proposed_value=match.product_public_id,
        confidence=max(0.0, min(1.0, match.similarity)),
        reasoning=resolve_reasoning(match),
        source=source,
    )
