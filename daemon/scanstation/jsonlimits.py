"""JSON parsing with size and depth limits, for every JSON that comes from outside.

``json.loads`` recurses once per nesting level: a body of 3,000 ``[`` raises RecursionError
(which no caller expects) and a large body costs memory in proportion. ``loads_limited``
measures both before parsing, without recursion, and raises ``JsonLimitError`` naming the
limit that was crossed. The HTTP API (web/errors.py ``read_json``), MQTT commands
(publish/commands.py) and catalog imports (services/catalog.py) parse through it.

>>> loads_limited('{"a": [1, 2]}')
{'a': [1, 2]}
>>> loads_limited("[" * 40 + "]" * 40, max_depth=32)
Traceback (most recent call last):
...
scanstation.jsonlimits.JsonLimitError: JSON nested 40 levels deep; at most 32 are accepted
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Literal

MAX_DEPTH = 32
"""Nesting levels accepted (objects and arrays); real bodies here use at most 4."""

MAX_BYTES = 1024 * 1024
"""Bytes accepted in one JSON document unless the caller says otherwise."""

# A complete JSON string (escapes included); possessive, so it runs in linear time.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")


class JsonLimitError(ValueError):
    """JSON that cannot be accepted: ``kind`` says why (too_large, too_deep or invalid)."""

    def __init__(self, kind: Literal["too_large", "too_deep", "invalid"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


def nesting_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in ``text``, brackets in strings ignored."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def loads_limited(
    data: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """``json.loads`` that raises JsonLimitError for a too-large, too-deep or invalid text."""
    if isinstance(data, bytes) or len(data) * 4 <= max_bytes:
        size = len(data)  # a str of n characters is at most 4n bytes: below the limit anyway
    else:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise JsonLimitError(
            "too_large", f"JSON of {size} bytes; at most {max_bytes} bytes are accepted"
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonLimitError("invalid", f"JSON is not UTF-8: {exc}") from None
    else:
        text = data
    # Fewer brackets than the limit cannot nest deeper than it: no need to measure.
    shallow = text.count("[") + text.count("{") <= max_depth
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if not shallow and nesting_depth(text) > max_depth:
            raise _too_deep(nesting_depth(text), max_depth) from None
        raise JsonLimitError("invalid", f"not valid JSON: {exc}") from None
    except RecursionError:
        # The C decoder checks its own recursion, so this is clean; the depth is measured
        # without recursion for the message.
        raise _too_deep(nesting_depth(text), max_depth) from None
    if not shallow and (depth := value_depth(value, max_depth)) > max_depth:
        raise _too_deep(max(depth, nesting_depth(text)), max_depth)
    return value


def _too_deep(depth: int, max_depth: int) -> JsonLimitError:
    return JsonLimitError(
        "too_deep", f"JSON nested {depth} levels deep; at most {max_depth} are accepted"
    )


def value_depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed value (0 for a scalar), counted up to ``limit`` + 1.

    Level by level, without recursion: ``extend`` does the copying in C.
    """
    depth = 0
    level: list[Any] = [value]
    while depth <= limit:
        below: list[Any] = []
        found = False
        for item in level:
            kind = type(item)
            if kind is dict:
                below.extend(item.values())
                found = True
            elif kind is list:
                below.extend(item)
                found = True
        if not found:
            break
        depth += 1
        level = below
    return depth
