"""The local product catalog: reading CSV or JSON files of products, GTINs checked."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from scanstation.barcode.gtin import GtinError
from scanstation.barcode.gtin import gtin_14 as _gtin_14
from scanstation.jsonlimits import JsonLimitError, loads_limited
from scanstation.services import ServiceError
from scanstation.store.rows import PRODUCT_FIELDS

LIST_FIELDS = ("certifications", "images")


class CatalogError(ServiceError, ValueError):
    """A product file that cannot be imported; the message names the row and the value."""


def gtin14(value: str) -> str:
    """A GTIN-8/12/13/14 with a valid check digit as GTIN-14; CatalogError otherwise."""
    text = str(value).strip()
    if not text.isdigit() or len(text) not in (8, 12, 13, 14):
        raise CatalogError(f"GTIN {text!r} must be 8, 12, 13 or 14 digits")
    try:
        return _gtin_14(text)
    except GtinError as exc:
        raise CatalogError(f"GTIN {text!r}: {exc}") from None


def _product(raw: dict[str, Any], where: str) -> dict[str, Any]:
    if "gtin" not in raw or raw["gtin"] in (None, ""):
        raise CatalogError(f"{where}: gtin is required")
    unknown = set(raw) - {"gtin", *PRODUCT_FIELDS}
    if unknown:
        raise CatalogError(
            f"{where}: unknown field {sorted(unknown)[0]!r}; expected gtin and any of "
            f"{', '.join(PRODUCT_FIELDS)}"
        )
    try:
        product: dict[str, Any] = {"gtin": gtin14(raw["gtin"])}
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    for name in PRODUCT_FIELDS:
        if name not in raw or raw[name] is None:
            continue
        value = raw[name]
        if name in LIST_FIELDS and isinstance(value, str):
            value = [v.strip() for v in value.split("|") if v.strip()]
        elif name == "nutrition" and isinstance(value, str):
            try:
                value = loads_limited(value) if value.strip() else {}
            except JsonLimitError:
                raise CatalogError(f"{where}: nutrition must be a JSON object") from None
        product[name] = value
    return product


CATALOG_MAX_BYTES = 256 * 1024 * 1024
"""The largest catalog file read as JSON (a million products is about 200 MB)."""


def parse_products(text: str, filename: str) -> list[dict[str, Any]]:
    """Products from CSV (header row with gtin, name, …) or JSON (a list of objects)."""
    stripped = text.lstrip()
    if filename.lower().endswith(".json") or stripped.startswith(("[", "{")):
        try:
            # Its size is the caller's to limit (HTTP bodies, MQTT payloads); depth is checked.
            data = loads_limited(text, max_bytes=CATALOG_MAX_BYTES)
        except JsonLimitError as exc:
            raise CatalogError(f"{filename}: {exc}") from None
        if isinstance(data, dict):
            data = data.get("products", [data])
        if not isinstance(data, list):
            raise CatalogError(f"{filename}: expected a list of products")
        items = []
        for index, raw in enumerate(data):
            if not isinstance(raw, dict):
                raise CatalogError(f"{filename}: item {index} is not an object")
            items.append(_product(raw, f"{filename} item {index}"))
        return items
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "gtin" not in reader.fieldnames:
        raise CatalogError(f"{filename}: the CSV header must name a gtin column")
    return [
        _product(
            {k: v for k, v in row.items() if k is not None and v != ""}, f"{filename} line {n}"
        )
        for n, row in enumerate(reader, start=2)
    ]


def read_products(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_products(text, str(path))
