"""GS1 Digital Link compression: the short URI form packaging uses to keep QR codes small.

A compressed Digital Link (``https://id.gs1.org/ARHKVAdpQg``) holds its AIs as one binary
string written in a URI-safe Base64 alphabet. Each AI is its key as 4-bit digits (or one
hex pair from GS1's table of optimised AI sequences, e.g. ``0B`` = 01 then 10), then its
value in the format GS1's table F gives for that AI: fixed-length digits as one binary
number, variable-length digits with a length first, alphanumerics with a 3-bit encoding
(digits, lower or upper hex, Base64-safe, 7-bit ASCII) and a length. Non-GS1 query
parameters may be compressed too, flagged by hex F. The primary key may also stay
uncompressed in front (``https://example.com/01/09506000134352/<base64>``).

This is GS1's published algorithm (GS1 Digital Link: Compression, and GS1's reference
toolkit GS1DigitalLinkToolkit.js); the tables F, P and Opt ship in
scanstation/data/gs1_dl_compression.json, generated from that toolkit by
scripts/gen_dl_compression_data.js. Two deliberate differences from the toolkit, which
stores numbers in JavaScript doubles: values longer than 15 digits (an SSCC, AI 8017)
encode exactly, and leading zeros of variable-length numbers survive decompression.

Pure: no I/O beyond reading the table once. :func:`decompress` gives the AIs (checked by
the same Digital Link rules as an uncompressed URI); :func:`compress` and
:func:`uncompress` convert between the forms.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from scanstation.barcode.gs1.engine import DL_SCHEMES, DigitalLink, parse_digital_link
from scanstation.barcode.gs1.syntax import dl_key_sequences

BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_HEX = "0123456789ABCDEF"
_SAFE64 = re.compile(r"^[A-Za-z0-9_-]+$")
_HEX_LOWER = re.compile(r"^[0-9a-f]+$")
_HEX_UPPER = re.compile(r"^[0-9A-F]+$")
_DIGITS = re.compile(r"^[0-9]+$")


class CompressionError(ValueError):
    """A URI that cannot be compressed or decompressed; the message says what and why."""


@dataclass(frozen=True)
class CompressedLink:
    """What a compressed Digital Link holds."""

    stem: str
    """Scheme, domain and any path prefix before the compressed part."""
    ais: list[tuple[str, str]]
    """(AI, value) in the order they were encoded."""
    other: list[tuple[str, str]] = field(default_factory=list)
    """Non-GS1 key=value pairs, compressed or left in the query string."""


@cache
def _tables() -> dict[str, Any]:
    raw = files("scanstation.data").joinpath("gs1_dl_compression.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(raw)
    data["optReverse"] = {tuple(seq): key for key, seq in data["tableOpt"].items()}
    return data


def _length_bits(max_length: int) -> int:
    return math.ceil(math.log2(max_length) + 0.01)


def _value_bits(digits: int) -> int:
    return math.ceil(digits * math.log2(10) + 0.01)


def _bits(value: int, width: int) -> str:
    return format(value, "b").zfill(width)


# --- compressing ---------------------------------------------------------------------------


def _encoding(text: str) -> int:
    if _DIGITS.match(text):
        return 0
    if _HEX_UPPER.match(text):
        return 2
    if _HEX_LOWER.match(text):
        return 1
    if _SAFE64.match(text):
        return 3
    return 4


def _encode_chars(text: str, length_bits: str) -> str:
    """3-bit encoding indicator, the length bits (may be empty), then the characters."""
    enc = _encoding(text)
    if enc == 0:
        body = _bits(int(text), _value_bits(len(text)))
    elif enc in (1, 2):
        body = "".join(_bits(_HEX.index(c), 4) for c in text.upper())
    elif enc == 3:
        body = "".join(_bits(BASE64.index(c), 6) for c in text)
    else:
        if not text.isascii():
            raise CompressionError(
                f"value {text!r} has characters beyond ASCII; GS1 compression encodes ASCII only"
            )
        body = "".join(_bits(ord(c), 7) for c in text)
    return _bits(enc, 3) + length_bits + body


def _encode_value(ai: str, value: str) -> str:
    formats = _tables()["tableF"].get(ai)
    if formats is None:
        raise CompressionError(f"AI ({ai}) has no compression format in GS1's table F")
    out, cursor = [], 0
    for part in formats:
        if "L" in part:
            length = int(part["L"])
            chunk = value[cursor : cursor + length]
            cursor += length
            if part["E"] == "N":
                if not _DIGITS.match(chunk) or len(chunk) != length:
                    raise CompressionError(f"AI ({ai}) value {value!r}: expected {length} digits")
                out.append(_bits(int(chunk), _value_bits(length)))
            else:
                out.append(_encode_chars(chunk, ""))
        else:
            chunk = value[cursor:]
            cursor = len(value)
            most = int(part["M"])
            if len(chunk) > most:
                raise CompressionError(
                    f"AI ({ai}) value {value!r} is too long: at most {most} characters here"
                )
            length_bits = _bits(len(chunk), _length_bits(most))
            if part["E"] == "N":
                if chunk and not _DIGITS.match(chunk):
                    raise CompressionError(f"AI ({ai}) value {value!r}: expected digits")
                digits = _bits(int(chunk or "0"), _value_bits(len(chunk)))
                out.append(length_bits + digits)
            else:
                out.append(_encode_chars(chunk, length_bits))
    return "".join(out)


def _key_bits(key: str) -> str:
    return "".join(_bits(int(c, 16), 4) for c in key)


def ais_to_binary(
    ais: list[tuple[str, str]],
    *,
    optimise: bool = True,
    other: list[tuple[str, str]] | None = None,
) -> str:
    """The binary string of GS1's algorithm for ``ais`` (and compressed non-GS1 pairs)."""
    values = dict(ais)
    keys = sorted(values)
    table_opt: dict[str, list[str]] = _tables()["tableOpt"]
    chosen: list[str] = []
    if optimise:
        while True:
            best, best_len = "", 0
            for code, seq in table_opt.items():
                if all(ai in keys for ai in seq) and len("".join(seq)) > best_len:
                    best, best_len = code, len("".join(seq))
            if not best:
                break
            chosen.append(best)
            keys = [k for k in keys if k not in table_opt[best]]
    out = []
    for code in chosen:
        out.append(_key_bits(code))
        out.extend(_encode_value(ai, values[ai]) for ai in table_opt[code])
    for ai in keys:
        out.append(_key_bits(ai) + _encode_value(ai, values[ai]))
    for name, value in other or []:
        if not _SAFE64.match(name) or len(name) > 127:
            raise CompressionError(
                f"query key {name!r} cannot be compressed; expected up to 127 of A-Z a-z 0-9 - _"
            )
        if len(value) > 127:
            raise CompressionError(f"query value for {name!r} is over 127 characters")
        out.append("1111" + _bits(len(name), 7) + "".join(_bits(BASE64.index(c), 6) for c in name))
        out.append(_encode_chars(value, _bits(len(value), 7)))
    return "".join(out)


def to_base64(binary: str) -> str:
    binary += "0" * (-len(binary) % 6)
    return "".join(BASE64[int(binary[i : i + 6], 2)] for i in range(0, len(binary), 6))


def _split_uncompressed(uri: str) -> tuple[str, DigitalLink, list[tuple[str, str]], str]:
    """Stem, the engine's parse, the non-GS1 query pairs and the fragment of a plain DL."""
    parsed = parse_digital_link(uri)
    if not parsed.keyed or parsed.errors:
        reason = parsed.errors[0].message if parsed.errors else "no GS1 key in its path"
        raise CompressionError(f"{uri!r} is not a valid uncompressed Digital Link: {reason}")
    scheme = next(s for s in DL_SCHEMES if uri.startswith(s))
    head, _, fragment = uri.partition("#")
    head, _, query = head.partition("?")
    rest = head[len(scheme) :]
    slash = rest.find("/")
    segments = rest[slash:].split("/")[1:]
    first_ai = parsed.ais[0][0]
    # The key is the first AI of the path: everything before it is the stem.
    index = next(
        i
        for i in range(len(segments) - 1)
        if segments[i] == first_ai and segments[i + 2 :: 2] == _path_ais(parsed)[1:]
    )
    stem = scheme + rest[:slash] + "".join("/" + s for s in segments[:index])
    other = []
    for param in query.split("&") if query else []:
        name, _, value = param.partition("=")
        if name and not (name.isascii() and name.isdigit()):
            other.append((name, value))
    return stem, parsed, other, fragment


def _path_ais(parsed: DigitalLink) -> list[str]:
    ais = [ai for ai, _ in parsed.ais]
    sequences = dl_key_sequences()
    for end in range(len(ais), 0, -1):
        if tuple(ais[:end]) in sequences:
            return ais[:end]
    return ais[:1]


def compress(uri: str, *, optimise: bool = True, compress_other: bool = False) -> str:
    """The compressed form of an uncompressed Digital Link URI, on the same stem.

    Non-GS1 query parameters stay in the query string unless ``compress_other``.

    >>> compress("https://id.gs1.org/01/09780345418913")
    'https://id.gs1.org/ARHKVAdpQg'
    """
    stem, parsed, other, fragment = _split_uncompressed(uri)
    packed = [(k, _unquote(v)) for k, v in other] if compress_other else []
    binary = ais_to_binary(parsed.ais, optimise=optimise, other=packed)
    out = f"{stem}/{to_base64(binary)}"
    if other and not compress_other:
        out += "?" + "&".join(f"{k}={v}" for k, v in other)
    return out + (f"#{fragment}" if fragment else "")


def _unquote(text: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


# --- decompressing -------------------------------------------------------------------------


class _Reader:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.cursor = 0

    def take(self, count: int) -> int:
        if self.cursor + count > len(self.binary):
            raise CompressionError("the compressed data ends in the middle of a value")
        chunk = self.binary[self.cursor : self.cursor + count]
        self.cursor += count
        return int(chunk, 2) if chunk else 0

    def chars(self, enc: int, count: int) -> str:
        if enc == 0:
            return str(self.take(_value_bits(count))).zfill(count) if count else ""
        if enc in (1, 2):
            text = "".join(_HEX[self.take(4)] for _ in range(count))
            return text.lower() if enc == 1 else text
        if enc == 3:
            return "".join(BASE64[self.take(6)] for _ in range(count))
        if enc == 4:
            return "".join(chr(self.take(7)) for _ in range(count))
        raise CompressionError(f"unknown character encoding {enc} in the compressed data")


def _decode_value(reader: _Reader, ai: str) -> str:
    formats = _tables()["tableF"].get(ai)
    if formats is None:
        raise CompressionError(f"AI ({ai}) has no compression format in GS1's table F")
    out = []
    for part in formats:
        if "L" in part:
            length = int(part["L"])
            if part["E"] == "N":
                number = reader.take(_value_bits(length))
                out.append(str(number).zfill(length))
            else:
                out.append(reader.chars(reader.take(3), length))
        else:
            most = int(part["M"])
            if part["E"] == "N":
                count = reader.take(_length_bits(most))
                number = reader.take(_value_bits(count))
                out.append(str(number).zfill(count) if count else "")
            else:
                enc = reader.take(3)
                out.append(reader.chars(enc, reader.take(_length_bits(most))))
    return "".join(out)


def binary_to_ais(binary: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The AIs and compressed non-GS1 pairs a binary string holds (GS1's algorithm)."""
    tables = _tables()
    table_p: dict[str, int] = tables["tableP"]
    table_opt: dict[str, list[str]] = tables["tableOpt"]
    reader = _Reader(binary)
    ais: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    while len(binary) - reader.cursor > 8:
        h1, h2 = _HEX[reader.take(4)], _HEX[reader.take(4)]
        pair = h1 + h2
        if pair.isdigit():
            length = table_p.get(pair)
            if length is None:
                raise CompressionError(f"AI keys starting {pair} are not in GS1's table P")
            ai = pair
            for _ in range(length - 2):
                digit = reader.take(4)
                if digit > 9:
                    raise CompressionError(f"AI key {ai}{_HEX[digit]}… is not all digits")
                ai += str(digit)
            ais.append((ai, _decode_value(reader, ai)))
        elif pair in table_opt:
            ais.extend((ai, _decode_value(reader, ai)) for ai in table_opt[pair])
        elif h1 == "F":
            reader.cursor -= 4
            key_length = reader.take(7)
            name = "".join(BASE64[reader.take(6)] for _ in range(key_length))
            enc = reader.take(3)
            other.append((name, reader.chars(enc, reader.take(7))))
        else:
            raise CompressionError(f"hex code {pair} is neither an AI nor a GS1 optimisation")
    if "1" in binary[reader.cursor :]:
        raise CompressionError("the compressed data has stray bits after its last value")
    return ais, other


def from_base64(text: str) -> str:
    if not _SAFE64.match(text):
        raise CompressionError(f"{text!r} is not URI-safe Base64 (A-Z a-z 0-9 - _)")
    return "".join(_bits(BASE64.index(c), 6) for c in text)


def decompress(uri: str) -> CompressedLink:
    """The AIs of a compressed Digital Link; raises CompressionError when it is not one.

    The whole or the tail of the path may be compressed (``/01/<gtin>/<base64>``).

    >>> decompress("https://id.gs1.org/ARHKVAdpQg").ais
    [('01', '09780345418913')]
    """
    scheme = next((s for s in DL_SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise CompressionError(f"{uri!r} is not an http:// or https:// URI")
    head, _, _fragment = uri.partition("#")
    head, _, query = head.partition("?")
    rest = head[len(scheme) :]
    slash = rest.find("/")
    if slash <= 0:
        raise CompressionError(f"{uri!r} has no path to decompress")
    segments = rest[slash:].split("/")[1:]
    if not segments or not segments[-1]:
        raise CompressionError(f"{uri!r} has no compressed path segment")
    binary = from_base64(segments[-1])
    ais, other = binary_to_ais(binary)
    prefix = segments[:-1]
    if len(prefix) >= 2 and prefix[-2].isdigit() and (prefix[-2],) in dl_key_sequences():
        ais.insert(0, (prefix[-2], _unquote(prefix[-1])))  # an uncompressed primary key
        prefix = prefix[:-2]
    if not ais:
        raise CompressionError(f"{uri!r} holds no AIs")
    for param in query.split("&") if query else []:
        name, equals, value = param.partition("=")
        if equals and name and not name.isdigit():
            other.append((name, _unquote(value)))
        elif equals and name.isdigit():
            ais.append((name, _unquote(value.replace("+", " "))))
    stem = scheme + rest[:slash] + "".join("/" + s for s in prefix)
    return CompressedLink(stem=stem, ais=ais, other=other)


def _quote(value: str) -> str:
    return quote(value, safe="-._~")


def uncompress(uri: str) -> str:
    """The uncompressed Digital Link of a compressed one, on the same stem.

    The primary key and its qualifiers go in the path, other AIs and non-GS1 pairs in the
    query string.

    >>> uncompress("https://id.gs1.org/CxFKk4XBoMwAP2u24ug-Kg")
    'https://id.gs1.org/01/09506000134352/10/AB-123?17=270101'
    """
    link = decompress(uri)
    return build_uncompressed(link)


def build_uncompressed(link: CompressedLink) -> str:
    """The uncompressed URI for a decompressed link; raises when its AIs have no key."""
    present = dict(link.ais)
    sequences = dl_key_sequences()
    best: tuple[str, ...] = ()
    for sequence in sequences:
        if len(sequence) > len(best) and all(ai in present for ai in sequence):
            best = sequence
    if not best:
        raise CompressionError(
            f"the AIs {', '.join(ai for ai, _ in link.ais)} include no Digital Link primary key"
        )
    path = "".join(f"/{ai}/{_quote(present[ai])}" for ai in best)
    query = [f"{ai}={_quote(value)}" for ai, value in link.ais if ai not in best]
    query += [f"{name}={_quote(value)}" for name, value in link.other]
    return link.stem + path + ("?" + "&".join(query) if query else "")


def parse_compressed(uri: str) -> DigitalLink | None:
    """The engine's Digital Link parse of a compressed URI, or None when it is not one.

    The AIs are checked exactly as those of the equivalent uncompressed URI. A path that
    decodes but breaks a GS1 rule is not taken for a compressed Digital Link: short-link
    paths (``https://bit.ly/3xYz12``) are Base64 too, and about 1 in 500 random ones
    decodes to some AIs, nearly always with a wrong check digit or character.
    """
    try:
        plain = uncompress(uri)
    except CompressionError:
        return None
    parsed = parse_digital_link(plain)
    return parsed if parsed.keyed and not parsed.errors else None
