"""GS1 AI data checked the way GS1's Barcode Syntax Engine checks it: element strings,
bracketed HRI, Digital Link URIs, then the rules that tie AIs together."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Self

from scanstation.barcode.gs1.linters import CSET_LINTERS, LINTERS
from scanstation.barcode.gs1.syntax import RULES, AIRule, dl_key_sequences, rule_for_prefix

GS = "\x1d"


@dataclass(frozen=True)
class GS1Issue:
    """One reason a value is not valid GS1."""

    ai: str
    """The Application Identifier the problem is tied to, or "" when it is not tied to one."""

    message: str
    """What is wrong, naming the value and what was expected."""


@dataclass
class Extraction:
    """What a parser pulled out of a value, and what it found wrong."""

    ais: list[tuple[str, str]] = field(default_factory=list)
    """(AI, value) in the order they appear (repeats kept)."""

    errors: list[GS1Issue] = field(default_factory=list)
    """Problems found; empty when the data is valid."""

    def fail(self, message: str, ai: str = "") -> Self:
        self.errors.append(GS1Issue(ai, message))
        return self


def lint_value(rule: AIRule, data: str) -> tuple[int, GS1Issue | None]:
    """Check `data` against the AI's components; return how much was consumed, or the error."""
    ai = rule.ai
    if not data:
        return 0, GS1Issue(ai, f"AI ({ai}) data is empty")
    pos = 0
    for component in rule.components:
        size = min(len(data) - pos, component.max)
        if component.optional and size == 0:
            continue
        if size < component.min:
            return 0, GS1Issue(
                ai, f"AI ({ai}) data is too short: {data!r}, expected {rule.min_length}+ characters"
            )
        part = data[pos : pos + size]
        error = CSET_LINTERS[component.cset](part)
        for name in component.linters:
            if error:
                break
            error = LINTERS[name](part)
        if error:
            return 0, GS1Issue(ai, f"AI ({ai}): {error} Got {part!r}.")
        pos += size
    return pos, None


def _length_problem(rule: AIRule, value: str) -> str | None:
    """Whole-value checks done before the component checks (as the engine's parsers do)."""
    if len(value) < rule.min_length:
        return (
            f"AI ({rule.ai}) value is too short: {value!r} has {len(value)} characters, "
            f"expected at least {rule.min_length}"
        )
    if len(value) > rule.max_length:
        return (
            f"AI ({rule.ai}) value is too long: {value!r} has {len(value)} characters, "
            f"expected at most {rule.max_length}"
        )
    if "^" in value:
        return f"AI ({rule.ai}) contains illegal ^ character"
    return None


def check_value(rule: AIRule, value: str) -> GS1Issue | None:
    """A value given with its AI (bracketed or Digital Link form): length, then components."""
    problem = _length_problem(rule, value)
    if problem:
        return GS1Issue(rule.ai, problem)
    consumed, error = lint_value(rule, value)
    if error is None and consumed != len(value):
        error = GS1Issue(rule.ai, f"AI ({rule.ai}) data has incorrect length")
    return error


def parse_element_string(data: str) -> Extraction:
    """AI data as a scanner sends it after the symbology identifier, GS between fields."""
    out = Extraction()
    if not data:
        return out.fail("The AI data is empty")
    pos, end = 0, len(data)
    while pos < end:
        rule = rule_for_prefix(data[pos : pos + 4])
        if rule is None:
            return out.fail(f"No known AI is a prefix of: {data[pos : pos + 4]}...")
        ai = rule.ai
        pos += len(ai)
        stop = data.find(GS, pos)
        if stop < 0:
            stop = end
        consumed, error = lint_value(rule, data[pos:stop])
        if error:
            out.errors.append(error)
            return out
        out.ais.append((ai, data[pos : pos + consumed]))
        pos += consumed
        if not rule.fixed and pos < end and data[pos] != GS:
            return out.fail(f"AI ({ai}) data is too long", ai)
        if pos < end and data[pos] == GS:
            pos += 1
    return out


def lookup_ai(ai: str) -> AIRule | None:
    """The rule for an AI given on its own (bracketed or Digital Link), or None if unknown."""
    return RULES.get(ai) if 2 <= len(ai) <= 4 else None


def parse_bracketed(text: str) -> Extraction:
    """The human-readable form "(01)09506000134352(10)ABC" ("\\(" is a literal bracket)."""
    out = Extraction()
    pos, end = 0, len(text)
    failed = "Failed to parse AI data"
    while pos < end:
        if text[pos] != "(":
            return out.fail(failed)
        close = text.find(")", pos + 1)
        if close < 0:
            return out.fail(failed)
        ai = text[pos + 1 : close]
        rule = lookup_ai(ai)
        if rule is None:
            return out.fail(f"Unrecognised AI: {ai}")
        start = close + 1
        if start >= end:
            return out.fail(failed)
        value = ""
        while True:
            nxt = text.find("(", start)
            if nxt < 0:
                nxt = end
            if nxt < end and text[nxt - 1] == "\\":
                value += text[start : nxt - 1] + "("
                start = nxt + 1
                continue
            value += text[start:nxt]
            break
        pos = nxt
        error = check_value(rule, value)
        if error:
            out.errors.append(error)
            return out
        out.ais.append((ai, value))
    if not out.ais:
        return out.fail("The AI data is empty")
    return out


def _ai_data_key(ai: str, value: str) -> str:
    return ai + value


def _present(pattern: str, self_key: str, keys: list[str]) -> bool:
    """Is an AI matching `pattern` (e.g. "31nn") present, other than the AI itself?"""
    prefix = pattern.rstrip("n")
    width = len(pattern)
    return any(k.startswith(prefix) and k[:width] != self_key[:width] for k in keys)


def _matching(pattern: str, self_key: str, ais: list[tuple[str, str]]) -> str:
    prefix = pattern.rstrip("n")
    for ai, value in ais:
        key = _ai_data_key(ai, value)
        if key.startswith(prefix) and key[: len(pattern)] != self_key[: len(pattern)]:
            return ai
    return pattern


def check_associations(ais: list[tuple[str, str]]) -> list[GS1Issue]:
    """Repeated AIs, forbidden pairs, required companions, Digital Signature rules."""
    errors: list[GS1Issue] = []
    keys = [_ai_data_key(ai, value) for ai, value in ais]
    seen: dict[str, str] = {}
    reported: set[str] = set()
    for ai, value in ais:
        if ai in seen and seen[ai] != value and ai not in reported:
            errors.append(GS1Issue(ai, f"Multiple instances of AI ({ai}) have different values"))
            reported.add(ai)
        seen.setdefault(ai, value)
    for ai, value in ais:
        if ai in reported:
            continue
        reported.add(ai)
        rule = RULES[ai]
        self_key = _ai_data_key(ai, value)
        for pattern in rule.excludes:
            if _present(pattern, self_key, keys):
                other = _matching(pattern, self_key, ais)
                errors.append(GS1Issue(ai, f"It is invalid to pair AI ({ai}) with AI ({other})"))
                break
        for alternatives in rule.requires:
            if not any(all(_present(p, self_key, keys) for p in group) for group in alternatives):
                listed = ",".join("+".join(group) for group in alternatives)
                errors.append(
                    GS1Issue(ai, f"Required AIs for AI ({ai}) are not satisfied: {listed}")
                )
    if "8030" in seen:
        # A digital signature signs one serialised item: the serial part must be present.
        for ai, key_length in (("253", 13), ("255", 13), ("8003", 14)):
            if ai in seen and len(seen[ai]) <= key_length:
                errors.append(
                    GS1Issue(
                        ai,
                        f"Serial component must be present for AI ({ai}) when used with AI (8030)",
                    )
                )
    return errors


# Characters allowed anywhere in a URI, and those of them not allowed in a domain name.
_URI_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)
_BAD_DOMAIN_CHARS = frozenset("_~?#@!$&'()*+,;=%")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
DL_SCHEMES = ("https://", "HTTPS://", "http://", "HTTP://")


@dataclass
class DigitalLink(Extraction):
    """A Digital Link parse; `keyed` is True once a primary key was found in the path."""

    keyed: bool = False
    """The path holds a GS1 primary key: the URI claims to be a Digital Link."""


def _unescape(text: str, *, query: bool) -> str | None:
    """Percent-decode (and '+' -> space in queries); None when a NUL would appear."""
    if query:
        text = text.replace("+", " ")
    decoded = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
    return None if "\x00" in decoded else decoded


def _find_key(segments: list[str]) -> int:
    """Index of the primary-key AI in the path segments, searching pairs from the right; -1."""
    value_index = len(segments) - 1
    while value_index >= 1:
        ai = segments[value_index - 1]
        if not ai.isascii() or not ai.isdigit() or lookup_ai(ai) is None:
            return -1
        if (ai,) in dl_key_sequences():
            return value_index - 1
        value_index -= 2
    return -1


def parse_digital_link(uri: str) -> DigitalLink:
    """An uncompressed GS1 Digital Link URI on any domain and path prefix."""
    out = DigitalLink()
    scheme = next((s for s in DL_SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        return out.fail("Not a GS1 Digital Link URI (scheme must be http:// or https://)")
    rest = uri[len(scheme) :]
    slash = rest.find("/")
    domain = rest[:slash] if slash > 0 else ""
    path_and_more = rest[slash:] if slash > 0 else ""
    path, _, _fragment = path_and_more.partition("#")
    path, has_query, query = path.partition("?")
    segments = path.split("/")[1:]
    key_index = _find_key(segments) if segments else -1
    out.keyed = key_index >= 0
    if not _URI_CHARS.issuperset(uri):
        return out.fail("URI contains illegal characters")
    if not domain:
        return out.fail("URI must contain a domain and path info")
    if _BAD_DOMAIN_CHARS.intersection(domain):
        return out.fail("Domain contains illegal characters")
    if key_index < 0:
        return out.fail("No GS1 DL keys found in path info")
    path_ais: list[str] = []
    pairs = segments[key_index:]
    for i in range(0, len(pairs), 2):
        ai, raw = pairs[i], pairs[i + 1]
        if not raw:
            return out.fail(f"AI ({ai}) value path element is empty", ai)
        value = _unescape(raw, query=False)
        if value is None:
            return out.fail(
                f"Decoded AI ({ai}) from DL path info contains illegal null character", ai
            )
        rule = RULES[ai]
        problem = _length_problem(rule, value)
        if problem:
            return out.fail(problem, ai)
        out.ais.append((ai, value))
        path_ais.append(ai)
    query_ais: list[tuple[str, str]] = []
    for param in query.split("&") if has_query else []:
        name, equals, raw = param.partition("=")
        if not equals or not (name.isascii() and name.isdigit()):
            continue  # singletons and non-AI parameters are allowed and ignored
        query_rule = lookup_ai(name)
        if query_rule is None:
            return out.fail(f"Unknown AI ({name}) in query parameters", name)
        if not raw:
            return out.fail(f"AI ({name}) value query element is empty", name)
        value = _unescape(raw, query=True)
        if value is None:
            return out.fail(
                f"Decoded AI ({name}) value from DL query params contains illegal null character",
                name,
            )
        problem = _length_problem(query_rule, value)
        if problem:
            return out.fail(problem, name)
        out.ais.append((name, value))
        query_ais.append((name, value))
    if tuple(path_ais) not in dl_key_sequences():
        return out.fail("The AIs in the path are not a valid key-qualifier sequence for the key")
    seen = set(path_ais)
    for ai, _value in query_ais:
        if ai in seen:
            return out.fail(f"AI ({ai}) is duplicated", ai)
        seen.add(ai)
        if not RULES[ai].dl_attribute:
            return out.fail(f"AI ({ai}) is not a valid DL URI data attribute", ai)
        for j in range(1, len(path_ais) + 1):
            trial = (*path_ais[:j], ai, *path_ais[j:])
            if trial in dl_key_sequences():
                return out.fail(f"AI ({ai}) from query params should be in the path info", ai)
    for ai, value in out.ais:
        error = check_value(RULES[ai], value)
        if error:
            out.errors.append(error)
            return out
    return out
