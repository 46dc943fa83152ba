"""What an output sends for a read: a small template, GTIN-only mode or GS1 HRI, prefix/suffix.

Templates name fields in braces: ``{raw}``, ``{gtin}``, ``{ai[10]}``, ``{symbology_identifier}``
…; ``{{`` and ``}}`` are literal braces. They are parsed once, when the config is loaded, so a
misspelt field stops ``scanstation run --check-config`` instead of a POS receiving nothing.
Only the fields below exist (no attribute access, no format specs): a template is data from
a config file, never code.

>>> compile_template("{gtin}/{ai[10]}").render(
...     FormatFields(raw="", gtin="09506000134352", ais={"10": "ABC"}))
'09506000134352/ABC'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from scanstation.barcode import BarcodeError
from scanstation.model import Capture

FIELDS: dict[str, str] = {
    "raw": "the value as read, GS (ASCII 29) separators kept",
    "raw_value": "the same as raw",
    "gtin": "the GTIN-14, or '' when the read has none",
    "gtin13": "the GTIN-13 (the GTIN-14 without its leading 0), or the GTIN-14 when it has an "
    "indicator digit",
    "item": "the GTIN at its natural length: 8, 12, 13 or 14 digits",
    "ai": "a GS1 Application Identifier's value, as {ai[10]}; '' when the read lacks it",
    "hri": "GS1 human-readable interpretation, e.g. (01)09506000134352(10)ABC123",
    "symbology": "the symbology's name, e.g. EAN13 or DataMatrix",
    "symbology_identifier": "the AIM symbology identifier, e.g. ]E0 or ]d2",
    "source": "the source that read it, e.g. cam0",
    "status": "COMPLETED, NOT_FOUND or FAILED",
    "public_id": "the capture's public id",
    "product_name": "the catalog product's name, or ''",
}
"""Every field a template may name, and what it stands for."""

Mode = Literal["template", "gtin", "hri"]


class FormatError(BarcodeError, ValueError):
    """A template that cannot be used; the message names the template, the spot and the fix."""


@dataclass(frozen=True, slots=True)
class FormatFields:
    """What a template can refer to, taken from a capture or from its outbox event."""

    raw: str
    """The raw value, GS separators kept."""
    gtin: str = ""
    """GTIN-14, or ""."""
    ais: Mapping[str, str] = field(default_factory=dict)
    """GS1 Application Identifier -> value, in the order they were read."""
    symbology: str = ""
    """Human name of the symbology."""
    symbology_identifier: str = ""
    """AIM symbology identifier (]E0), or ""."""
    source: str = ""
    """Name of the source that read it."""
    status: str = ""
    """The capture's terminal status."""
    public_id: str = ""
    """The capture's public id."""
    product_name: str = ""
    """The matched product's name, or ""."""

    @classmethod
    def from_capture(cls, capture: Capture) -> FormatFields:
        return cls(
            raw=capture.raw_value,
            gtin=capture.gtin,
            ais=capture.gs1_dl_data,
            symbology=capture.symbology,
            symbology_identifier=capture.symbology_identifier,
            source=capture.source,
            status=capture.status.value,
            public_id=capture.public_id,
            product_name=capture.product_name,
        )

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> FormatFields:
        """From a capture event as the outbox holds it (the JSON a webhook posts)."""
        ais = event.get("gs1_dl_data")
        return cls(
            raw=str(event.get("raw_value") or ""),
            gtin=str(event.get("gtin") or ""),
            ais={str(k): str(v) for k, v in ais.items()} if isinstance(ais, dict) else {},
            symbology=str(event.get("symbology") or ""),
            symbology_identifier=str(event.get("symbology_identifier") or ""),
            source=str(event.get("source") or ""),
            status=str(event.get("status") or ""),
            public_id=str(event.get("public_id") or ""),
            product_name=str(event.get("product_name") or ""),
        )


def gtin_at(gtin14: str, digits: int | None = None) -> str:
    """The GTIN-14 with leading zeros dropped: down to ``digits``, or to its natural length.

    >>> gtin_at("04006381333931"), gtin_at("00012345678905"), gtin_at("00000096385074")
    ('4006381333931', '012345678905', '96385074')
    >>> gtin_at("00000096385074", 13), gtin_at("19506000134352", 13)
    ('0000096385074', '19506000134352')
    """
    if not gtin14:
        return ""
    if digits is None:
        for zeros, length in ((6, 8), (2, 12), (1, 13)):
            if gtin14.startswith("0" * zeros):
                return gtin14[-length:]
        return gtin14
    value = gtin14
    while len(value) > digits and value.startswith("0"):
        value = value[1:]
    return value


def hri(fields: FormatFields) -> str:
    """GS1 human-readable interpretation: every AI in parentheses with its value.

    >>> hri(FormatFields(raw="", gtin="09506000134352", ais={"01": "09506000134352", "10": "A1"}))
    '(01)09506000134352(10)A1'
    >>> hri(FormatFields(raw="hello"))
    ''
    """
    if fields.ais:
        return "".join(f"({ai}){value}" for ai, value in fields.ais.items())
    return f"(01){fields.gtin}" if fields.gtin else ""


def _field_value(fields: FormatFields, name: str, key: str) -> str:
    match name:
        case "raw" | "raw_value":
            return fields.raw
        case "gtin":
            return fields.gtin
        case "gtin13":
            return gtin_at(fields.gtin, 13)
        case "item":
            return gtin_at(fields.gtin)
        case "ai":
            return fields.ais.get(key, "")
        case "hri":
            return hri(fields)
        case _:
            return str(getattr(fields, name))


Part = str | tuple[str, str]
"""A literal text, or a (field, key) to fill in (key is the AI for ``ai``, else "")."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template; :meth:`render` fills it in."""

    text: str
    """The template as written."""
    parts: tuple[Part, ...]
    """Literals and fields, in order."""

    def render(self, fields: FormatFields) -> str:
        return "".join(
            part if isinstance(part, str) else _field_value(fields, *part) for part in self.parts
        )


def compile_template(text: str) -> Template:
    """Parse ``text``; raises FormatError naming what is wrong and where.

    >>> compile_template("{gtn}")
    Traceback (most recent call last):
    ...
    scanstation.barcode.format.FormatError: template '{gtn}': unknown field 'gtn' at position 0; expected one of raw, raw_value, gtin, gtin13, item, ai, hri, symbology, symbology_identifier, source, status, public_id, product_name
    """  # noqa: E501
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{}" and text[i + 1 : i + 2] == ch:
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise FormatError(
                f"template {text!r}: single '}}' at position {i}; write '}}}}' for a literal brace"
            )
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            raise FormatError(
                f"template {text!r}: '{{' at position {i} is never closed; "
                "write '{{{{' for a literal brace"
            )
        parts.extend(_flush(literal))
        parts.append(_parse_field(text, text[i + 1 : end], i))
        i = end + 1
    parts.extend(_flush(literal))
    return Template(text, tuple(parts))


def _flush(literal: list[str]) -> list[Part]:
    if not literal:
        return []
    text = "".join(literal)
    literal.clear()
    return [text]


def _parse_field(template: str, inner: str, at: int) -> tuple[str, str]:
    name, bracket, rest = inner.partition("[")
    name = name.strip()
    if name not in FIELDS:
        raise FormatError(
            f"template {template!r}: unknown field {name!r} at position {at}; "
            f"expected one of {', '.join(FIELDS)}"
        )
    if name == "ai":
        key = rest[:-1] if bracket and rest.endswith("]") else ""
        if not (key.isdigit() and 2 <= len(key) <= 4):
            raise FormatError(
                f"template {template!r}: {{{inner}}} at position {at} needs an Application "
                "Identifier of 2 to 4 digits, e.g. {ai[10]} for the batch"
            )
        return name, key
    if bracket:
        raise FormatError(
            f"template {template!r}: {{{inner}}} at position {at}: only ai takes a key "
            f"([…]); write {{{name}}}"
        )
    return name, ""


@dataclass(frozen=True, slots=True)
class Formatter:
    """One output's formatting settings; :meth:`text` is what it sends for a read."""

    template: Template
    """The parsed ``format``."""
    mode: Mode = "template"
    """template, gtin (item number only) or hri (GS1 human-readable)."""
    gtin_digits: int | None = None
    """gtin mode: length to cut the GTIN-14 down to (None: its natural length)."""
    no_gtin: Literal["raw", "skip"] = "raw"
    """gtin and hri modes, for a read without a GTIN: send it as read, or skip it."""
    prefix: str = ""
    """Sent before every read."""
    suffix: str = ""
    """Sent after every read."""
    aim_prefix: bool = False
    """Send the AIM symbology identifier after the prefix."""

    @classmethod
    def build(
        cls,
        *,
        format: str,
        mode: Mode = "template",
        gtin_digits: int | None = None,
        no_gtin: Literal["raw", "skip"] = "raw",
        prefix: str = "",
        suffix: str = "",
        aim_prefix: bool = False,
    ) -> Formatter:
        return cls(compile_template(format), mode, gtin_digits, no_gtin, prefix, suffix, aim_prefix)

    def body(self, fields: FormatFields) -> str | None:
        """The read itself, without prefix and suffix; None when it is to be skipped."""
        if self.mode == "template":
            return self.template.render(fields)
        value = gtin_at(fields.gtin, self.gtin_digits) if self.mode == "gtin" else hri(fields)
        if value:
            return value
        return fields.raw if self.no_gtin == "raw" else None

    def text(self, fields: FormatFields) -> str | None:
        """Everything sent for a read (terminators are the sink's); None: skip it.

        >>> fields = FormatFields("4006381333931", "04006381333931", symbology_identifier="]E0")
        >>> Formatter.build(format="", mode="gtin", prefix="*", aim_prefix=True).text(fields)
        '*]E04006381333931'
        """
        body = self.body(fields)
        if body is None:
            return None
        aim = fields.symbology_identifier if self.aim_prefix else ""
        return f"{self.prefix}{aim}{body}{self.suffix}"
