"""Match code: accept or reject a read by symbology, data format, GTIN prefix, mask, regex, GS1
AIs or sequence.

Industrial readers compare every read with an expected code and fire a reject output when it
differs. Rules are compiled once (a bad regex stops ``--check-config``); checking a capture is
a few comparisons, and the capture is re-interpreted only when a rule asks for its data
format (``kinds``). The sequence check (``sequence = "increment"``) is the one rule with
state: the number in each read must be the previous read's plus ``sequence_step``.

>>> from scanstation.config import MatchRules
>>> rules = compile_rules(MatchRules(require_ais=["17"]))
>>> rules.reason(FormatFields(raw="0109506000134352", gtin="09506000134352",
...                         ais={"01": "09506000134352"}))
'lacks GS1 AI 17 (required by the match rules)'
"""

from __future__ import annotations

import importlib
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    @property
    def mask(self) -> str: ...
    @property
    def sequence(self) -> str: ...
    @property
    def sequence_step(self) -> int: ...
    @property
    def sequence_field(self) -> str: ...


class MatchError(BarcodeError, ValueError):
    """A rule that cannot be used; the message names it and what was expected."""


def _normal(name: str) -> str:
    """Symbology names compared loosely: 'EAN-13', 'ean13' and 'EAN 13' are one."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


MASK_WILDCARDS = {"?": ".", "#": "[0-9]", "@": "[A-Za-z]", "*": ".*"}
"""A mask as fixed readers write it: ``?`` any one character, ``#`` a digit, ``@`` a letter,
``*`` any run of characters; ``\\`` before one of these makes it literal; the rest is literal."""


def mask_regex(mask: str) -> str:
    r"""The regular expression of a reader-style mask (see ``MASK_WILDCARDS``).

    >>> mask_regex("400##########"), mask_regex("LOT-*"), mask_regex(r"A\?")
    ('400[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]', 'LOT\\-.*', 'A\\?')
    """
    parts: list[str] = []
    escaped = False
    for char in mask:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(MASK_WILDCARDS.get(char) or re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return "".join(parts)


_DIGITS = re.compile(r"[0-9]+")
SEQUENCE_MEMORY = 256
"""Verdicts kept per capture: the outputs ask about one capture more than once."""


@dataclass
class SequenceCheck:
    """``sequence = "increment"``: each read's number is the previous read's plus ``step``.

    The number is the last run of digits in the field compared (``raw``, ``gtin`` or a GS1 AI
    such as ``21``), so ``LOT-000123`` counts as 123. The first read starts the sequence. A
    read out of sequence is rejected and the sequence goes on from it: one missing label
    rejects one read, not every read after it. The verdict for a capture is kept, so asking
    again about the same capture (webhook destinations, then the live outputs) gives the same
    answer and does not advance the sequence twice. Called on the event loop only.

    >>> check = SequenceCheck(step=1, compared="raw")
    >>> [check.reason(i, FormatFields(raw=f"SN-{n:05d}")) for i, n in enumerate((7, 8, 10, 11))]
    ['', '', 'SN-00010 is out of sequence: expected 9 (the previous 8 + 1)', '']
    """

    step: int
    compared: str
    """raw, gtin or a GS1 AI."""
    previous: int | None = None
    _verdicts: OrderedDict[Hashable, str] = field(default_factory=OrderedDict)

    def number(self, read: FormatFields) -> tuple[str, int | None]:
        """The compared text of ``read`` and the number in it (None: no digits)."""
        if self.compared == "raw":
            text = read.raw
        elif self.compared == "gtin":
            text = read.gtin
        else:
            text = read.ais.get(self.compared, "")
        found = _DIGITS.findall(text)
        return text, int(found[-1]) if found else None

    def reason(self, key: Hashable | None, read: FormatFields) -> str:
        if key is not None and key in self._verdicts:
            return self._verdicts[key]
        verdict = self._judge(read)
        if key is not None:
            self._verdicts[key] = verdict
            while len(self._verdicts) > SEQUENCE_MEMORY:
                self._verdicts.popitem(last=False)
        return verdict

    def _judge(self, read: FormatFields) -> str:
        text, number = self.number(read)
        where = "the value" if self.compared == "raw" else f"the {_field_name(self.compared)}"
        if number is None:
            return f"{where} {text!r} has no number to check the sequence with"
        previous, self.previous = self.previous, number
        if previous is None or number == previous + self.step:
            return ""
        sign = "+" if self.step > 0 else "-"
        return (
            f"{text} is out of sequence: expected {previous + self.step} "
            f"(the previous {previous} {sign} {abs(self.step)})"
        )


def _field_name(name: str) -> str:
    return "GTIN" if name == "gtin" else f"GS1 AI {name}"


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
    mask: re.Pattern[str] | None = None
    """The mask as a regex (the whole raw value must match it)."""
    mask_text: str = ""
    """The mask as configured, for the operator's message."""
    sequence: SequenceCheck | None = field(default=None, compare=False)
    """The sequence check, with its state (None: no sequence check)."""

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
            or self.mask
            or self.sequence
        )

    def reason(self, read: FormatFields, key: Hashable | None = None) -> str:
        """Why ``read`` is rejected, in words for an operator; "" when it passes.

        ``key`` names the capture (its id) for the sequence check: the same key always gets
        the same verdict. The sequence advances only with reads every other rule passed.
        """
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
        if self.mask is not None and self.mask.fullmatch(read.raw) is None:
            return f"value {read.raw!r} does not match the mask {self.mask_text!r}"
        for ai in self.require_ais:
            if ai not in read.ais:
                return f"lacks GS1 AI {ai} (required by the match rules)"
        if self.sequence is not None:
            return self.sequence.reason(key, read)
        return ""


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")


def backtracking_risk(pattern: str) -> str:
    r"""Why ``pattern`` can backtrack catastrophically, or "" when it cannot in this way.

    Python's ``re`` backtracks and cannot be interrupted, so a pattern such as ``(a+)+$``
    takes seconds on 30 characters, with the pipeline waiting. Flagged: a repeat (with more
    than one iteration) around a repeat that is unbounded, and a repeat around alternatives
    that can match the same text. Possessive repeats and atomic groups are safe.

    >>> backtracking_risk(r"(a+)+$"), backtracking_risk(r"(\d{2})+"), backtracking_risk(r"(a|a)*b")
    ('a repeat inside a repeat', '', 'a repeat of alternatives that overlap')
    >>> backtracking_risk(r"^01\d{14}(10[A-Z0-9]{1,20})?$"), backtracking_risk(r"(?>a+)+")
    ('', '')
    """
    try:
        tree = _sre_parse(pattern)
    except re.error:
        return ""
    return _risk(list(tree), inside_repeat=False)


def _sre_parse(pattern: str) -> Any:
    # The parser behind re.compile (Python 3.11+; private, but stable within a version).
    return importlib.import_module("re._parser").parse(pattern)


def _risk(items: list[Any], inside_repeat: bool) -> str:
    maxrepeat = importlib.import_module("re._constants").MAXREPEAT
    for op, arg in items:
        name = str(op)
        if name in _REPEATS:
            _low, high, body = arg
            unbounded = high == maxrepeat or high > 16
            if inside_repeat and unbounded:
                return "a repeat inside a repeat"
            repeats = high == maxrepeat or high > 1
            if repeats and _overlapping_branches(list(body)):
                return "a repeat of alternatives that overlap"
            if found := _risk(list(body), inside_repeat or repeats):
                return found
        elif name == "SUBPATTERN":
            if found := _risk(list(arg[-1]), inside_repeat):
                return found
        elif name == "BRANCH":
            for branch in arg[1]:
                if found := _risk(list(branch), inside_repeat):
                    return found
        # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into: not walked.
    return ""


def _overlapping_branches(body: list[Any]) -> bool:
    r"""A group whose alternatives start alike (``a|a``, ``\d|1``): a repeat of it is risky."""
    for op, arg in body:
        if str(op) == "SUBPATTERN":
            return _overlapping_branches(list(arg[-1]))
        if str(op) == "BRANCH":
            firsts = [str(list(b)[:1]) for b in arg[1]]
            return len(firsts) != len(set(firsts))
        if str(op) == "IN":
            return False
    return False


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
        if risk := backtracking_risk(rules.pattern):
            raise MatchError(
                f"match pattern {rules.pattern!r} can take exponential time on a long value "
                f"({risk}); make the inner repeat possessive (a++) or atomic ((?>…)), or drop "
                "the outer one"
            )
    sequence = None
    if rules.sequence:
        if rules.sequence != "increment":
            raise MatchError(f"match sequence {rules.sequence!r}: expected 'increment' or ''")
        if rules.sequence_step == 0:
            raise MatchError("match sequence_step 0: expected a step other than 0, e.g. 1")
        name = rules.sequence_field
        if not (name in ("raw", "gtin") or (name.isdigit() and 2 <= len(name) <= 4)):
            raise MatchError(
                f"match sequence_field {name!r}: expected 'raw', 'gtin' or a GS1 Application "
                "Identifier such as '21' (serial number)"
            )
        sequence = SequenceCheck(step=rules.sequence_step, compared=name)
    return CompiledRules(
        symbology_names=frozenset(names),
        aim_identifiers=tuple(aims),
        kinds=frozenset(rules.kinds),
        gtin_prefixes=tuple(rules.gtin_prefixes),
        pattern=pattern,
        require_ais=tuple(rules.require_ais),
        mask=re.compile(mask_regex(rules.mask)) if rules.mask else None,
        mask_text=rules.mask,
        sequence=sequence,
    )
