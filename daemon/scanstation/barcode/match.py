"""Match code: accept or reject a read by symbology, data format, GTIN prefix, regex or GS1 AIs.

Industrial readers compare every read with an expected code and fire a reject output when it
differs. Rules are compiled once (a bad regex stops ``--check-config``); checking a capture is
a few comparisons, and the capture is re-interpreted only when a rule asks for its data
format (``kinds``).

>>> from scanstation.config import MatchRules
>>> rules = compile_rules(MatchRules(require_ais=["17"]))
>>> rules.reason(FormatFields(raw="0109506000134352", gtin="09506000134352",
...                         ais={"01": "09506000134352"}))
'lacks GS1 AI 17 (required by the match rules)'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from scanstation.barcode import BarcodeError
from scanstation.barcode.format import FormatFields
from scanstation.barcode.interpret import interpret


class RuleSettings(Protocol):
    """The match rules as configured (``[[outputs]] match``, config.MatchRules)."""

    @property
    def symbologies(self) -> Sequence[str]: ...
    @property
    def kinds(self) -> Sequence[str]: ...
    @property
    def gtin_prefixes(self) -> Sequence[str]: ...
    @property
    def pattern(self) -> str: ...
    @property
    def require_ais(self) -> Sequence[str]: ...


class MatchError(BarcodeError, ValueError):
    """A rule that cannot be used; the message names it and what was expected."""


def _normal(name: str) -> str:
    """Symbology names compared loosely: 'EAN-13', 'ean13' and 'EAN 13' are one."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """Match rules ready to check reads; :meth:`reason` says why one is rejected."""

    symbology_names: frozenset[str] = frozenset()
    """Accepted symbology names, normalised."""
    aim_identifiers: tuple[str, ...] = ()
    """Accepted AIM identifiers or their 2-character prefixes (]E matches ]E0 … ]E4)."""
    kinds: frozenset[str] = frozenset()
    """Accepted data formats (gtin, gs1, digital_link, url, text)."""
    gtin_prefixes: tuple[str, ...] = ()
    """Accepted GTIN prefixes."""
    pattern: re.Pattern[str] | None = None
    """Regex the whole raw value must match."""
    require_ais: tuple[str, ...] = ()
    """AIs the read must carry."""

    @property
    def empty(self) -> bool:
        """True when there are no rules: every read passes."""
        return not (
            self.symbology_names
            or self.aim_identifiers
            or self.kinds
            or self.gtin_prefixes
            or self.pattern
            or self.require_ais
        )

    def reason(self, read: FormatFields) -> str:
        """Why ``read`` is rejected, in words for an operator; "" when it passes."""
        if self.symbology_names or self.aim_identifiers:
            by_name = _normal(read.symbology) in self.symbology_names
            by_aim = any(read.symbology_identifier.startswith(a) for a in self.aim_identifiers)
            if not (by_name or by_aim):
                what = read.symbology or read.symbology_identifier or "unknown"
                allowed = sorted(self.symbology_names) + list(self.aim_identifiers)
                return f"symbology {what} is not one of {', '.join(allowed)}"
        if self.kinds:
            kind = interpret(read.raw, symbology_identifier=read.symbology_identifier).kind
            if kind not in self.kinds:
                return f"data format {kind} is not one of {', '.join(sorted(self.kinds))}"
        if self.gtin_prefixes:
            forms = {read.gtin, read.gtin[1:], read.gtin[2:]} if read.gtin else set()
            forms.discard("")
            if not any(f.startswith(p) for f in forms for p in self.gtin_prefixes):
                shown = read.gtin or "none"
                return f"GTIN {shown} does not start with {' or '.join(self.gtin_prefixes)}"
        if self.pattern is not None and self.pattern.fullmatch(read.raw) is None:
            return f"value {read.raw!r} does not match the pattern {self.pattern.pattern!r}"
        for ai in self.require_ais:
            if ai not in read.ais:
                return f"lacks GS1 AI {ai} (required by the match rules)"
        return ""


def compile_rules(rules: RuleSettings) -> CompiledRules:
    """Check and compile ``rules``; raises MatchError naming the rule that cannot be used."""
    names: set[str] = set()
    aims: list[str] = []
    for entry in rules.symbologies:
        if entry.startswith("]"):
            if not (len(entry) in (2, 3) and entry[1].isalpha()):
                raise MatchError(
                    f"match symbology {entry!r}: an AIM identifier is ']' and a letter with an "
                    "optional modifier, e.g. ']E0' or ']d'"
                )
            aims.append(entry)
        elif _normal(entry):
            names.add(_normal(entry))
        else:
            raise MatchError(f"match symbology {entry!r}: expected a name such as 'EAN13'")
    for prefix in rules.gtin_prefixes:
        if not (prefix.isdigit() and 1 <= len(prefix) <= 14):
            raise MatchError(
                f"match gtin_prefixes entry {prefix!r}: expected 1 to 14 digits, e.g. '400'"
            )
    for ai in rules.require_ais:
        if not (ai.isdigit() and 2 <= len(ai) <= 4):
            raise MatchError(
                f"match require_ais entry {ai!r}: expected an Application Identifier of 2 to "
                "4 digits, e.g. '17' for the expiry date"
            )
    pattern = None
    if rules.pattern:
        try:
            pattern = re.compile(rules.pattern)
        except re.error as exc:
            raise MatchError(
                f"match pattern {rules.pattern!r} is not a regular expression: {exc}"
            ) from None
    return CompiledRules(
        symbology_names=frozenset(names),
        aim_identifiers=tuple(aims),
        kinds=frozenset(rules.kinds),
        gtin_prefixes=tuple(rules.gtin_prefixes),
        pattern=pattern,
        require_ais=tuple(rules.require_ais),
    )
