"""Agreement with GS1's Barcode Syntax Engine on ../shared/conformance/gs1-vectors.json."""

from __future__ import annotations

import json
from typing import Any

from conftest import shared_path
from scanstation.barcode.interpret import Interpretation, interpret

TARGET = 99.0

# How each kind of vector reaches the interpreter on the device. Bracketed HRI is what
# zxing-cpp returns by default, with the symbology identifier reported beside the text (a
# GS1 symbol); UPC-E symbols arrive as 8 digits under ]E0. Everything else is the raw value.
SYMBOLOGY_BY_KIND = {"element_string_bracketed": "]C1", "upce": "]E0"}

# For Digital Link vectors the question is "is this a valid GS1 Digital Link?": a URL we
# keep as a plain URL (no GS1 key in its path, or a scheme GS1 does not accept) answers no.
DL_KINDS = {"digital_link", "compressed_digital_link"}


def _load() -> list[dict[str, Any]]:
    vectors = shared_path("conformance", "gs1-vectors.json")
    return list(json.loads(vectors.read_text(encoding="utf-8"))["vectors"])


def _accepted(vector: dict[str, Any], result: Interpretation) -> bool:
    if vector["kind"] in DL_KINDS:
        return result.valid and result.kind == "digital_link"
    return result.valid


def _agrees(vector: dict[str, Any], result: Interpretation) -> bool:
    if _accepted(vector, result) != vector["valid"]:
        return False
    return not vector["valid"] or result.ais == vector["expected"]


def test_interpret_agrees_with_gs1_syntax_engine() -> None:
    vectors = _load()
    misses = []
    for vector in vectors:
        result = interpret(
            vector["input"], symbology_identifier=SYMBOLOGY_BY_KIND.get(vector["kind"], "")
        )
        if not _agrees(vector, result):
            misses.append((vector["id"], vector["kind"], vector["input"], result.kind))
    agreement = 100 * (len(vectors) - len(misses)) / len(vectors)
    print(f"\nGS1 agreement: {len(vectors) - len(misses)}/{len(vectors)} = {agreement:.2f}%")
    for miss in misses:
        print("  disagree:", *miss)
    assert agreement >= TARGET, misses


def test_interpret_raw_agreement_is_reported() -> None:
    """The same comparison with every value passed raw (no symbology inferred from its kind)."""
    vectors = _load()
    agreed = sum(_agrees(v, interpret(v["input"])) for v in vectors)
    share = 100 * agreed / len(vectors)
    print(f"\nGS1 agreement, raw values only: {agreed}/{len(vectors)} = {share:.2f}%")
    assert agreed / len(vectors) >= 0.97


def test_interpret_beats_biip_on_the_vectors() -> None:
    vectors = _load()
    ours = sum(
        _agrees(v, interpret(v["input"], symbology_identifier=SYMBOLOGY_BY_KIND.get(v["kind"], "")))
        for v in vectors
    )
    assert ours > sum(bool(v["biip_agrees"]) for v in vectors)
