"""Enrichment proposals and visual resolving, on real photos and on classifier-shaped results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp
from aiohttp import FormData
from PIL import Image

from scanstation.model import Capture, CaptureStatus, CaptureType, Enricher
from scanstation.vision.classify import Classification, Classifier, ClassScore, read_labels
from scanstation.vision.enrich import (
    EnrichError,
    ImageEnricher,
    Match,
    ProposalDraft,
    ReferencePhoto,
    barcode_proposals,
    barcodes_in_photo,
    category_proposals,
    cosine_similarity,
    enrichment_proposals,
    nearest_product,
    pack_embedding,
    parse_retail_table,
    produce_proposals,
    resolve_reasoning,
    retail_table,
    unpack_embedding,
)
from scanstation.web.context import Services

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "data" / "images"
MODEL = "efficientnet_lite0.tflite"
LABELS = read_labels(REPO / "models" / "imagenet_labels.txt")


def result_of(*scores: tuple[str, float]) -> Classification:
    """A classifier result as the shipped model would give it for these classes."""
    top = tuple(ClassScore(label, LABELS.index(label), score) for label, score in scores)
    return Classification(top, None, MODEL, 1.0)


def load(name: str) -> Image.Image:
    with Image.open(IMAGES / f"{name}.jpg") as image:
        return image.convert("RGB")


def reframed(image: Image.Image) -> np.ndarray:
    """A second shot of the same thing: cropped off-centre, mirrored, slightly rotated."""
    width, height = image.size
    crop = image.crop(
        (int(width * 0.12), int(height * 0.08), int(width * 0.95), int(height * 0.97))
    )
    return np.asarray(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(5))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()


@pytest.mark.parametrize(
    ("photo", "category"),
    [("chelsea", "Pet supplies"), ("coffee", "Beverages > Coffee & tea")],
)
def test_category_proposals_from_real_photos(
    classifier: Classifier, photo: str, category: str
) -> None:
    result = classifier.classify((IMAGES / f"{photo}.jpg").read_bytes())
    [draft] = category_proposals(result)
    assert (draft.field_name, draft.current_value, draft.proposed_value, draft.source) == (
        "category",
        "",
        category,
        MODEL,
    )
    assert draft.confidence > 0.8
    assert result.best.label in draft.reasoning


def test_category_proposals_add_up_classes_of_one_category() -> None:
    result = result_of(("Egyptian cat", 0.38), ("tiger cat", 0.33), ("tabby", 0.17), ("lynx", 0.05))
    assert category_proposals(result) == [
        ProposalDraft(
            field_name="category",
            current_value="",
            proposed_value="Pet supplies",
            confidence=0.88,
            reasoning="the photo looks like Egyptian cat 38%, tiger cat 33%, tabby 17% "
            "(Pet supplies)",
            source=MODEL,
        )
    ]


@pytest.mark.parametrize(
    ("result", "current"),
    [
        (result_of(("espresso", 0.15), ("lynx", 0.1)), ""),  # under min_confidence
        (result_of(("lynx", 0.9)), ""),  # a class with no retail category
        (result_of(("espresso", 0.9)), "Beverages > Coffee & tea"),  # already set
    ],
)
def test_category_proposals_none_when_nothing_to_say(result: Classification, current: str) -> None:
    assert category_proposals(result, current) == []


def test_category_proposals_replace_a_different_current_category() -> None:
    [draft] = category_proposals(result_of(("espresso", 0.9)), "Bakery")
    assert (draft.current_value, draft.proposed_value) == ("Bakery", "Beverages > Coffee & tea")


@pytest.mark.parametrize(
    ("label", "plu", "name"),
    [
        ("banana", "4011", "Bananas"),
        ("Granny Smith", "4139", "Apples, Granny Smith"),
        ("lemon", "4053", "Lemons"),
        ("orange", "3107", "Oranges"),
        ("pineapple", "4430", "Pineapple"),
        ("broccoli", "4060", "Broccoli"),
    ],
)
def test_produce_proposals_give_plu_and_name(label: str, plu: str, name: str) -> None:
    result = result_of((label, 0.9), ("espresso", 0.05))
    assert produce_proposals(result) == [
        ProposalDraft(
            "plu",
            "",
            plu,
            0.9,
            f"the photo looks like {label} (90%): IFPS PLU {plu} is {name}",
            MODEL,
        ),
        ProposalDraft(
            "name",
            "",
            name,
            0.9,
            f"the photo looks like {label} (90%): loose produce {name}",
            MODEL,
        ),
    ]


def test_produce_proposals_keep_an_existing_name_and_plu() -> None:
    result = result_of(("banana", 0.9))
    assert produce_proposals(result, {"name": "Fairtrade bananas", "plu": "4011"}) == []


def test_produce_proposals_without_verified_plu_propose_only_the_name() -> None:
    drafts = produce_proposals(result_of(("fig", 0.7)))
    assert [(d.field_name, d.proposed_value) for d in drafts] == [("name", "Figs")]


def test_produce_proposals_ignore_weak_or_non_produce_results() -> None:
    assert produce_proposals(result_of(("banana", 0.1))) == []
    assert produce_proposals(result_of(("espresso", 0.9))) == []


def test_produce_proposals_use_the_best_produce_class_in_top_k() -> None:
    result = result_of(("shopping basket", 0.4), ("lemon", 0.35), ("orange", 0.2))
    assert [d.proposed_value for d in produce_proposals(result)] == ["4053", "Lemons"]


def test_barcode_proposals_one_per_new_gtin() -> None:
    found = [
        ("EAN13", "05012345678900"),
        ("EAN13", "05012345678900"),
        ("DataMatrix", "09506000134352"),
    ]
    assert barcode_proposals(found, current_gtin="09506000134352") == [
        ProposalDraft(
            "gtin",
            "09506000134352",
            "05012345678900",
            1.0,
            "a EAN13 barcode in the photo reads GTIN 05012345678900",
            "zxing-cpp",
        )
    ]


def test_barcode_proposals_reject_non_gtins() -> None:
    with pytest.raises(EnrichError, match=r"GTIN '1234' from a EAN8 code; expected 14 digits"):
        barcode_proposals([("EAN8", "1234")])


def test_enrichment_proposals_collect_every_kind() -> None:
    result = result_of(("banana", 0.8), ("lemon", 0.1))
    drafts = enrichment_proposals(result, {"category": ""}, barcodes=[("EAN13", "05012345678900")])
    assert [(d.field_name, d.proposed_value) for d in drafts] == [
        ("category", "Produce > Fruit"),
        ("plu", "4011"),
        ("name", "Bananas"),
        ("gtin", "05012345678900"),
    ]


def test_retail_table_names_only_classes_the_model_has() -> None:
    table = retail_table()
    assert set(table.categories) <= set(LABELS)
    assert set(table.produce) <= set(LABELS)
    assert all(table.categories[label].startswith("Produce") for label in table.produce)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"produce": {}}, "expected an object with 'categories'"),
        ({"categories": {}, "produce": {"banana": {"plu": "4011"}}}, "needs a name"),
        (
            {"categories": {}, "produce": {"banana": {"name": "B", "plu": "40x1"}}},
            "expected 4 or 5 digits",
        ),
    ],
)
def test_parse_retail_table_rejects_bad_tables(document: dict[str, Any], message: str) -> None:
    with pytest.raises(EnrichError, match=message):
        parse_retail_table(document)


@pytest.fixture(scope="module")
def references(classifier: Classifier) -> list[ReferencePhoto]:
    """Reference photos of four products (real, different photos), one each."""
    products = {
        "chelsea": ("P-cat-food", "Cat food, salmon"),
        "coffee": ("P-espresso", "Espresso beans 1 kg"),
        "rocket": ("P-rocket", "Model rocket kit"),
        "astronaut": ("P-poster", "Astronaut poster"),
    }
    photos = []
    for photo, (product_id, name) in products.items():
        embedding = classifier.classify(np.asarray(load(photo))).embedding
        assert embedding is not None
        photos.append(ReferencePhoto(product_id, embedding, name))
    return photos


@pytest.mark.parametrize(
    ("photo", "product"),
    [
        ("chelsea", "P-cat-food"),
        ("coffee", "P-espresso"),
        ("rocket", "P-rocket"),
        ("astronaut", "P-poster"),
    ],
)
def test_nearest_product_picks_the_right_product(
    classifier: Classifier, references: list[ReferencePhoto], photo: str, product: str
) -> None:
    embedding = classifier.classify(reframed(load(photo))).embedding
    assert embedding is not None
    match = nearest_product(embedding, references)
    assert match is not None
    assert match.product_public_id == product
    assert match.similarity > 0.8
    assert match.runner_up is not None
    assert match.runner_up < 0.4


def test_nearest_product_not_found_for_an_unknown_product(
    classifier: Classifier, references: list[ReferencePhoto]
) -> None:
    without_rocket = [r for r in references if r.product_public_id != "P-rocket"]
    embedding = classifier.classify(reframed(load("rocket"))).embedding
    assert embedding is not None
    assert nearest_product(embedding, without_rocket) is None


def test_nearest_product_counts_a_product_by_its_best_photo() -> None:
    refs = [
        ReferencePhoto("A", np.array([1.0, 0.0, 0.0], np.float32), "a"),
        ReferencePhoto("B", np.array([0.0, 1.0, 0.0], np.float32), "b"),
        ReferencePhoto("B", np.array([0.9, 0.1, 0.0], np.float32), "b"),
    ]
    # B's second photo (0.888) beats A's (0.832); B's first (0.555) does not count against it.
    match = nearest_product(np.array([0.6, 0.4, 0.0]), refs, threshold=0.5)
    assert match == Match("B", "b", 0.8882, 0.8321)
    assert resolve_reasoning(match) == "photo matches B (b) at similarity 0.89; next best 0.83"


def test_nearest_product_without_references_is_not_found() -> None:
    assert nearest_product(np.ones(4), []) is None


@pytest.mark.parametrize(
    ("query", "reference", "message"),
    [
        (np.zeros(3), np.ones(3), "expected a non-zero embedding"),
        (np.ones(3), np.ones(4), "expected the same model for both"),
        (np.array([np.nan, 1.0, 1.0]), np.ones(3), "not finite"),
    ],
)
def test_nearest_product_bad_embeddings_are_clear_errors(
    query: np.ndarray, reference: np.ndarray, message: str
) -> None:
    with pytest.raises(EnrichError, match=message):
        nearest_product(query, [ReferencePhoto("A", reference.astype(np.float32))])


def test_embedding_blob_round_trip(classifier: Classifier) -> None:
    embedding = classifier.classify(np.asarray(load("coffee"))).embedding
    assert embedding is not None
    blob = pack_embedding(embedding)
    assert len(blob) == 1280 * 4
    assert np.array_equal(unpack_embedding(blob), embedding)


@pytest.mark.parametrize("blob", [b"", b"abc"])
def test_unpack_embedding_rejects_bad_blobs(blob: bytes) -> None:
    with pytest.raises(EnrichError, match="expected a multiple of 4"):
        unpack_embedding(blob)


def test_cosine_similarity_known_values() -> None:
    assert cosine_similarity([1, 0], [0, 1]) == 0.0
    assert cosine_similarity([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [-1, 0]) == -1.0


def make_capture(gtin: str = "", key: str = "photo.jpg") -> Capture:
    return Capture(
        id=7,
        public_id="A" * 22,
        session_public_id="B" * 22,
        status=CaptureStatus.ENRICHING,
        capture_type=CaptureType.IMAGE,
        raw_value="",
        gtin=gtin,
        symbology="",
        symbology_identifier="",
        source="upload",
        error_message="",
        created=0.0,
        processed_at=None,
        gs1_dl_data={},
        product_public_id="",
        product_name="",
        uploaded_image_key=key,
        qr_analysis=None,
        metadata={},
        checks={},
        revision=0,
    )


def photo_with_barcode(photo: str, tmp_path: Path) -> Path:
    """The photo with an upright EAN-13 label on its left edge, saved as JPEG.

    The edge lies outside the square the classifier crops, so the class stays the photo's.
    """
    symbol = zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode("5012345678900", zxingcpp.BarcodeFormat.EAN13), scale=2
    )
    label = Image.fromarray(np.asarray(symbol)).convert("RGB")
    label = label.resize((label.width, 50)).rotate(90, expand=True)
    image = load(photo)
    image.paste(label, (8, (image.height - label.height) // 2))
    path = tmp_path / f"{photo}-labelled.jpg"
    image.save(path, quality=92)
    return path


async def test_image_enricher_a_barcode_in_the_photo_decides_the_gtin(
    classifier: Classifier, tmp_path: Path
) -> None:
    enricher: Enricher = ImageEnricher(classifier)
    found = await enricher.enrich(make_capture(), photo_with_barcode("coffee", tmp_path))
    assert found.gtin == "05012345678900"  # decided, so not proposed again
    assert [(p["field_name"], p["proposed_value"], p["source"]) for p in found.proposals] == [
        ("category", "Beverages > Coffee & tea", MODEL),
    ]


async def test_image_enricher_two_different_barcodes_decide_nothing(
    classifier: Classifier, tmp_path: Path
) -> None:
    path = photo_with_barcode("coffee", tmp_path)
    second = zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode("4006381333931", zxingcpp.BarcodeFormat.EAN13), scale=2
    )
    label = Image.fromarray(np.asarray(second)).convert("RGB")
    label = label.resize((label.width, 50)).rotate(90, expand=True)
    with Image.open(path) as image:
        both = image.convert("RGB")
    both.paste(label, (both.width - label.width - 8, (both.height - label.height) // 2))
    both.save(path, quality=92)
    assert sorted(g for _, g in barcodes_in_photo(path)) == ["04006381333931", "05012345678900"]
    found = await ImageEnricher(classifier).enrich(make_capture(), path)
    assert found.gtin == ""
    assert sorted(p["proposed_value"] for p in found.proposals if p["field_name"] == "gtin") == [
        "04006381333931",
        "05012345678900",
    ]


async def test_image_enricher_proposes_a_barcode_that_differs_from_the_captures_gtin(
    classifier: Classifier, tmp_path: Path
) -> None:
    enricher: Enricher = ImageEnricher(classifier)
    found = await enricher.enrich(
        make_capture(gtin="04006381333931"), photo_with_barcode("coffee", tmp_path)
    )
    assert found.gtin == ""  # the capture's own GTIN stands
    assert [(p["field_name"], p["proposed_value"], p["source"]) for p in found.proposals] == [
        ("category", "Beverages > Coffee & tea", MODEL),
        ("gtin", "05012345678900", "zxing-cpp"),
    ]


async def test_image_enricher_proposes_the_product_a_photo_looks_like(
    classifier: Classifier, references: list[ReferencePhoto], tmp_path: Path
) -> None:
    kept: list[bytes] = []

    async def refs() -> list[ReferencePhoto]:
        return references

    async def keep(capture: Capture, blob: bytes) -> None:
        kept.append(blob)

    path = tmp_path / "cat.jpg"
    Image.fromarray(reframed(load("chelsea"))).save(path)
    enricher = ImageEnricher(classifier, references=refs, keep_embedding=keep)
    found = await enricher.enrich(make_capture(), path)
    assert found.gtin == ""  # looks never decide
    looks = [p for p in found.proposals if p["field_name"] == "product"]
    assert [p["proposed_value"] for p in looks] == ["P-cat-food"]
    assert 0.6 <= looks[0]["confidence"] <= 1.0
    assert f"similarity {looks[0]['confidence']:.2f}" in looks[0]["reasoning"]
    assert [p["proposed_value"] for p in found.proposals if p["field_name"] == "category"] == [
        "Pet supplies"
    ]
    assert len(kept) == 1
    assert len(kept[0]) == 1280 * 4


async def test_image_enricher_does_not_resolve_captures_with_a_gtin(
    classifier: Classifier, references: list[ReferencePhoto], tmp_path: Path
) -> None:
    async def refs() -> list[ReferencePhoto]:
        return [ReferencePhoto(r.product_public_id, r.embedding, product_id=1) for r in references]

    path = tmp_path / "coffee.jpg"
    load("coffee").save(path)
    found = await ImageEnricher(classifier, references=refs).enrich(
        make_capture(gtin="05012345678900"), path
    )
    assert not [p for p in found.proposals if p["field_name"] == "product"]
    assert found.gtin == ""


async def test_image_enricher_without_image_proposes_nothing(classifier: Classifier) -> None:
    found = await ImageEnricher(classifier).enrich(make_capture(key=""), None)
    assert (list(found.proposals), found.gtin) == ([], "")


def test_barcodes_in_photo_reads_gtins(tmp_path: Path) -> None:
    assert barcodes_in_photo(photo_with_barcode("chelsea", tmp_path)) == [
        ("EAN13", "05012345678900")
    ]
    assert barcodes_in_photo(IMAGES / "chelsea.jpg") == []


async def test_upload_through_the_api_yields_classifier_proposals(
    aiohttp_client: Any, make_config: Any, api_key: str, classifier: Classifier
) -> None:
    # Acceptance of issue 7: real photos uploaded to the API; the cat is a cat, the espresso
    # espresso, in the proposals the capture yields.
    from conftest import wait_for_status
    from scanstation.bus import EventBus
    from scanstation.pipeline import Pipeline
    from scanstation.store import Store
    from scanstation.web.server import make_app

    config = make_config()
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config, bus=EventBus(), enrichers=[ImageEnricher(classifier)])
        runner = asyncio.create_task(pipeline.run())
        try:
            client = await aiohttp_client(
                make_app(Services(config, store, pipeline, pipeline.bus)),
                headers={"X-API-Key": api_key},
            )
            resp = await client.post("/scanner/api/v1/sessions", json={})
            session = (await resp.json())["public_id"]
            seen = {}
            for photo in ("chelsea", "coffee"):
                form = FormData()
                form.add_field("session_public_id", session)
                form.add_field(
                    "image",
                    (IMAGES / f"{photo}.jpg").read_bytes(),
                    filename=f"{photo}.jpg",
                    content_type="image/jpeg",
                )
                resp = await client.post("/scanner/api/v1/captures/upload-image", data=form)
                assert resp.status == 201, await resp.text()
                capture = await resp.json()
                done = await wait_for_status(
                    client, capture["public_id"], {"COMPLETED", "NOT_FOUND", "FAILED"}, 5.0
                )
                assert done["status"] == "NOT_FOUND"  # no product has a reference photo yet
                resp = await client.get(
                    f"/scanner/api/v1/captures/{capture['public_id']}/proposals"
                )
                seen[photo] = (await resp.json())["results"]
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    [cat] = seen["chelsea"]
    assert (cat["field_name"], cat["proposed_value"], cat["status"]) == (
        "category",
        "Pet supplies",
        "PENDING",
    )
    assert "Egyptian cat" in cat["reasoning"]
    [coffee] = seen["coffee"]
    assert (coffee["field_name"], coffee["proposed_value"], coffee["source"]) == (
        "category",
        "Beverages > Coffee & tea",
        MODEL,
    )
    assert "espresso" in coffee["reasoning"]
    assert coffee["confidence"] > 0.8
