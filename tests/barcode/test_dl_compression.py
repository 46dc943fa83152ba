"""Compressed GS1 Digital Link: GS1's toolkit vectors, identical AIs both ways, and the CLI.

tests/data/dl_compression_vectors.json comes from GS1's reference implementation
(GS1DigitalLinkToolkit.js, run once by scripts/gen_dl_compression_data.js): each URI with
what the toolkit compresses it to (optimised, unoptimised, with non-GS1 pairs compressed)
and the AIs it decompresses that back to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import shared_path
from scanstation.barcode import dlcompress
from scanstation.barcode.gs1.engine import parse_digital_link
from scanstation.barcode.interpret import interpret

DATA = Path(__file__).resolve().parents[1] / "data" / "dl_compression_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(DATA.read_text("utf-8"))["vectors"]
# The toolkit keeps numbers in JavaScript doubles: values of 16 digits and more lose their
# last digits (an SSCC, AI 8017), so its strings for those encode another number.
BEYOND_DOUBLES = {
    v["uri"] for v in VECTORS if any(len(x) > 15 and x.isdigit() for x in v["ais"].values())
}
EXACT = [v for v in VECTORS if v["uri"] not in BEYOND_DOUBLES]


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["uri"].split("/", 3)[3] for v in vectors]


@pytest.mark.parametrize("vector", EXACT, ids=ids(EXACT))
def test_dl_compress_matches_gs1_toolkit(vector: dict[str, Any]) -> None:
    uri = vector["uri"]
    assert dlcompress.compress(uri) == vector["compressed"]
    assert dlcompress.compress(uri, optimise=False) == vector["compressed_unoptimised"]
    assert dlcompress.compress(uri, compress_other=True) == vector["compressed_other_pairs"]


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_dl_compressed_and_uncompressed_give_identical_ais(vector: dict[str, Any]) -> None:
    uri = vector["uri"]
    plain = interpret(uri)
    assert (plain.kind, plain.valid) == ("digital_link", True), plain.error_message
    forms = [dlcompress.compress(uri), dlcompress.compress(uri, optimise=False)]
    if uri not in BEYOND_DOUBLES:
        forms.append(vector["compressed"])  # the toolkit's own string
    for compressed in forms:
        result = interpret(compressed)
        assert (result.kind, result.valid, result.ais) == ("digital_link", True, plain.ais)
        assert result.gtin == plain.gtin


@pytest.mark.parametrize("vector", EXACT, ids=ids(EXACT))
def test_dl_toolkit_strings_decompress_to_the_original_ais(vector: dict[str, Any]) -> None:
    """Where the toolkit itself drops leading zeros (3922=0299 -> 299), we keep them."""
    original = dict(parse_digital_link(vector["uri"]).ais)
    assert dict(dlcompress.decompress(vector["compressed"]).ais) == original
    toolkit = vector["toolkit_decompressed_ais"]
    differs = {ai for ai in original if toolkit.get(ai) != original[ai]}
    assert all(toolkit[ai].lstrip("0") == original[ai].lstrip("0") for ai in differs)


def test_dl_conformance_vectors_of_compressed_links_decode() -> None:
    """The compressed Digital Link cases of ../shared/conformance/gs1-vectors.json."""
    data = json.loads(shared_path("conformance", "gs1-vectors.json").read_text("utf-8"))
    cases = [c for c in data["vectors"] if c["kind"] == "compressed_digital_link"]
    assert len(cases) >= 2
    for case in cases:
        result = interpret(case["input"])
        assert (case["id"], result.kind, result.valid, result.ais) == (
            case["id"],
            "digital_link",
            case["valid"],
            case["expected"],
        )


def test_dl_gs1_documentation_example() -> None:
    assert dlcompress.uncompress("https://id.gs1.org/ARHKVAdpQg") == (
        "https://id.gs1.org/01/09780345418913"
    )


def test_dl_partly_compressed_keeps_the_primary_key_in_the_path() -> None:
    tail = dlcompress.to_base64(dlcompress.ais_to_binary([("10", "AB-123"), ("17", "270101")]))
    result = interpret(f"https://example.com/01/09506000134352/{tail}")
    assert (result.kind, result.valid) == ("digital_link", True)
    assert result.ais == {"01": "09506000134352", "10": "AB-123", "17": "270101"}


def test_dl_custom_path_prefix_is_kept() -> None:
    uri = "https://brand.example/products/01/09506000134352/10/L7"
    compressed = dlcompress.compress(uri)
    assert compressed.startswith("https://brand.example/products/")
    assert dlcompress.uncompress(compressed) == uri


def test_dl_bad_check_digit_in_compressed_form_is_a_plain_url_but_uncompress_says_why() -> None:
    """A Base64 path that decodes to broken AIs is more likely a short link than a DL."""
    binary = dlcompress.ais_to_binary([("01", "09506000134353")])  # check digit should be 2
    uri = "https://id.gs1.org/" + dlcompress.to_base64(binary)
    assert interpret(uri).kind == "url"
    result = run_parse("--uncompress", uri)
    assert result.returncode == 1
    assert "check digit" in result.stderr.lower()


def test_dl_random_short_link_paths_stay_plain_urls() -> None:
    import random

    rng = random.Random(19)
    paths = ["".join(rng.choice(dlcompress.BASE64) for _ in range(7)) for _ in range(3000)]
    kinds = {interpret(f"https://sho.rt/{path}").kind for path in paths}
    assert kinds == {"url"}


@pytest.mark.parametrize(
    "url",
    ["https://example.com/about", "https://example.com/index", "https://example.com/ARHK"],
)
def test_dl_plain_urls_are_not_mistaken_for_compressed_links(url: str) -> None:
    assert interpret(url).kind == "url"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://id.gs1.org/01/09506000134352?note=Cr%C3%A8me", "beyond ASCII"),
        ("https://example.com/about", "not a valid uncompressed Digital Link"),
        ("https://id.gs1.org/01/09506000134353", "check digit"),
    ],
)
def test_dl_compress_errors_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(dlcompress.CompressionError, match=message):
        dlcompress.compress(uri, compress_other=True)


def run_parse(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanstation", "parse", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dl_cli_compress_and_uncompress_round_trip() -> None:
    uris = [v["uri"] for v in EXACT[:6]]
    compressed = run_parse("--compress", *uris)
    assert compressed.returncode == 0, compressed.stderr
    lines = compressed.stdout.splitlines()
    assert lines == [v["compressed"] for v in EXACT[:6]]
    back = run_parse("--uncompress", *lines)
    assert back.returncode == 0, back.stderr
    assert [dict(parse_digital_link(u).ais) for u in back.stdout.splitlines()] == [
        dict(parse_digital_link(u).ais) for u in uris
    ]


def test_dl_cli_uncompress_rejects_a_plain_url() -> None:
    result = run_parse("--uncompress", "https://example.com/about")
    assert result.returncode == 1
    assert "scanstation parse: 'https://example.com/about':" in result.stderr
