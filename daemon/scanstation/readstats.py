"""Read-rate statistics per source, as fixed industrial readers report them.

Every trigger window ends as exactly one result:

- ``noread``: no code was read;
- ``rejected``: a code was read and the match rules rejected it (a rejected code is not a
  good read, whatever else the window held);
- ``multiple``: more than one distinct code was read (a conveyor that expects one label per
  object cannot tell which one is the object's);
- ``good``: one code, accepted.

A read without a window (a gun, a serial scanner, a camera reading continuously) is a window
of its own. The read rate is good windows over all windows, over the last 100 windows and per
hour. The *last result* is the last decoded code whatever its verdict (what a PLC shows).

Captures arrive one by one after their terminal commit (``Outputs`` calls
:meth:`ReadStats.on_capture` with the match verdict); a window that read several codes is
decided once all of them have arrived, as the camera tagged each with ``window`` and
``window_codes`` in its metadata. Pure apart from the clock, which is passed in; called on
the event loop only. Listeners (the Modbus and OPC UA servers) are told of every window.

>>> stats = ReadStats(clock=lambda: 3600.0)
>>> stats.record("cam0", "good", ["4006381333931"])
>>> stats.record("cam0", "noread", [])
>>> report = stats.reports()["cam0"]
>>> report.totals["good"], report.totals["noread"], report.rate, report.last_result
(1, 1, 0.5, '4006381333931')
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from scanstation.model import Capture

Result = Literal["good", "noread", "multiple", "rejected"]
RESULTS: tuple[Result, ...] = ("good", "noread", "multiple", "rejected")
WINDOW = 100
"""The read rate is computed over this many last windows."""
HOURS_KEPT = 24
QUALITY_READS = 50
"""The quality trend is the mean score of this many last good reads."""
PENDING_MAX = 256
"""Windows still waiting for some of their codes; beyond this the oldest is decided as is."""


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One closed window, as the listeners are told of it."""

    source: str
    result: Result
    codes: tuple[str, ...]
    """The distinct codes read in the window, in the order they arrived."""
    t: float
    """When it was decided (the clock's seconds since the epoch)."""
    symbologies: tuple[str, ...] = ()
    """The symbology of each code (same order; empty when not known)."""
    scores: tuple[float | None, ...] = ()
    """The quality score of each code (same order; None when not measured)."""


@dataclass(frozen=True, slots=True)
class QualityTrend:
    """The quality trend of one source: mean score of the last good reads, and its alarm."""

    score: float | None
    """Mean 0–100 quality score of the last ``QUALITY_READS`` reads (None before any)."""
    reads: int
    """Reads it is computed over."""
    threshold: float
    """Alarm below this score (0: no alarm)."""
    alarm: bool
    """True when the trend is below the threshold: labels fading, lens dirt, focus drift."""
    last: float | None
    """Score of the last read."""


@dataclass(frozen=True, slots=True)
class ReadRateReport:
    """What the dashboard, telemetry, /metrics and the PLC links show of one source."""

    totals: dict[Result, int]
    """Windows by result since the daemon started."""
    last: dict[Result, int]
    """Windows by result among the last ``WINDOW`` windows."""
    rate: float
    """Good windows over all of the last ``WINDOW`` (1.0 when there were none)."""
    per_hour: list[dict[str, Any]]
    """Last 24 hours with windows: ``{"hour": epoch seconds, "good": …, …, "rate": …}``."""
    last_result: str
    """The last decoded code, whatever its verdict ("" before any)."""
    last_result_at: float | None
    quality: QualityTrend

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (telemetry, /stats)."""
        return {
            "totals": dict(self.totals),
            "last_100": dict(self.last),
            "rate_100": round(self.rate, 4),
            "per_hour": self.per_hour,
            "last_result": self.last_result,
            "last_result_at": self.last_result_at,
            "quality": {
                "score": None if self.quality.score is None else round(self.quality.score, 1),
                "last": self.quality.last,
                "reads": self.quality.reads,
                "threshold": self.quality.threshold,
                "alarm": self.quality.alarm,
            },
        }


def decide(codes: Sequence[str], rejected: bool) -> Result:
    """The one result of a window: its distinct codes and whether any was rejected.

    >>> decide([], False), decide(["A"], False), decide(["A", "B"], False), decide(["A"], True)
    ('noread', 'good', 'multiple', 'rejected')
    """
    if not codes:
        return "noread"
    if rejected:
        return "rejected"
    return "multiple" if len(set(codes)) > 1 else "good"


@dataclass
class _Source:
    totals: Counter[str] = field(default_factory=Counter)
    last: deque[str] = field(default_factory=lambda: deque(maxlen=WINDOW))
    hours: OrderedDict[int, Counter[str]] = field(default_factory=OrderedDict)
    last_result: str = ""
    last_result_at: float | None = None
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=QUALITY_READS))


@dataclass
class _Pending:
    source: str
    expected: int
    codes: list[str] = field(default_factory=list)
    symbologies: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    rejected: bool = False


class ReadStats:
    """Per-source read-rate statistics and quality trends (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        quality_alarm: float = 0.0,
    ) -> None:
        self.clock = clock
        self.quality_alarm = quality_alarm
        self._sources: dict[str, _Source] = {}
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self.listeners: list[Callable[[WindowResult], None]] = []

    def _source(self, name: str) -> _Source:
        found = self._sources.get(name)
        if found is None:
            found = self._sources[name] = _Source()
        return found

    # ---- input ----------------------------------------------------------------------------

    def on_capture(self, capture: Capture, rejected: bool) -> None:
        """A capture finished, with the match verdict: count its window once it is complete."""
        meta = capture.metadata
        code = capture.raw_value
        score = _score(meta.get("quality_score"))
        if code:
            self.code_read(capture.source, code, score)
        window = str(meta.get("window") or "")
        expected = _int(meta.get("window_codes"), 1)
        if meta.get("noread") == "true" or not code:
            if meta.get("noread") == "true":
                self.record(capture.source, "noread", [])
            return
        if not window or expected <= 1:
            result: Result = "rejected" if rejected else "good"
            self.record(capture.source, result, [code], [capture.symbology], [score])
            return
        key = (capture.source, window)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(capture.source, expected)
            while len(self._pending) > PENDING_MAX:
                _, oldest = self._pending.popitem(last=False)
                self._decide(oldest)
        pending.codes.append(code)
        pending.symbologies.append(capture.symbology)
        pending.scores.append(score)
        pending.rejected |= rejected
        if len(pending.codes) >= pending.expected:
            del self._pending[key]
            self._decide(pending)

    def _decide(self, pending: _Pending) -> None:
        result = decide(pending.codes, pending.rejected)
        self.record(pending.source, result, pending.codes, pending.symbologies, pending.scores)

    def code_read(self, source: str, code: str, score: float | None = None) -> None:
        """A code was decoded: it is the last result; its quality score feeds the trend."""
        state = self._source(source)
        state.last_result = code
        state.last_result_at = self.clock()
        if score is not None:
            state.scores.append(score)

    def record(
        self,
        source: str,
        result: Result,
        codes: Sequence[str],
        symbologies: Sequence[str] = (),
        scores: Sequence[float | None] = (),
    ) -> None:
        """Count one closed window of ``source`` (its codes' symbologies and scores, if known,
        go to the listeners)."""
        now = self.clock()
        state = self._source(source)
        if codes:
            state.last_result, state.last_result_at = codes[-1], now
        state.totals[result] += 1
        state.last.append(result)
        hour = int(now // 3600 * 3600)
        bucket = state.hours.get(hour)
        if bucket is None:
            bucket = state.hours[hour] = Counter()
            while len(state.hours) > HOURS_KEPT:
                state.hours.popitem(last=False)
        bucket[result] += 1
        unique = list(dict.fromkeys(codes))
        first = {c: i for i, c in reversed(list(enumerate(codes)))}
        event = WindowResult(
            source,
            result,
            tuple(unique),
            now,
            tuple(symbologies[first[c]] for c in unique) if len(symbologies) == len(codes) else (),
            tuple(scores[first[c]] for c in unique) if len(scores) == len(codes) else (),
        )
        for listener in list(self.listeners):
            listener(event)

    # ---- output ---------------------------------------------------------------------------

    def totals(self) -> dict[Result, int]:
        """Windows by result summed over every source (what the Modbus counters show)."""
        summed: Counter[str] = Counter()
        for state in self._sources.values():
            summed.update(state.totals)
        return {r: summed[r] for r in RESULTS}

    def last_result(self) -> str:
        """The last decoded code of any source."""
        latest = max(
            (s for s in self._sources.values() if s.last_result_at is not None),
            key=lambda s: s.last_result_at or 0.0,
            default=None,
        )
        return latest.last_result if latest is not None else ""

    def reports(self) -> dict[str, ReadRateReport]:
        """One report per source that has read or closed a window, by name."""
        return {name: self._report(state) for name, state in sorted(self._sources.items())}

    def _report(self, state: _Source) -> ReadRateReport:
        last = Counter(state.last)
        rate = last["good"] / len(state.last) if state.last else 1.0
        per_hour: list[dict[str, Any]] = []
        for hour, bucket in state.hours.items():
            total = sum(bucket.values())
            row: dict[str, Any] = {"hour": hour}
            row.update({r: bucket[r] for r in RESULTS})
            row["rate"] = round(bucket["good"] / total, 4) if total else 1.0
            per_hour.append(row)
        scores = list(state.scores)
        mean = statistics.fmean(scores) if scores else None
        trend = QualityTrend(
            score=mean,
            reads=len(scores),
            threshold=self.quality_alarm,
            alarm=mean is not None and self.quality_alarm > 0 and mean < self.quality_alarm,
            last=scores[-1] if scores else None,
        )
        return ReadRateReport(
            totals={r: state.totals[r] for r in RESULTS},
            last={r: last[r] for r in RESULTS},
            rate=rate,
            per_hour=per_hour,
            last_result=state.last_result,
            last_result_at=state.last_result_at,
            quality=trend,
        )

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Every source's report as JSON (telemetry's ``read_rate``, /stats)."""
        return {name: report.as_dict() for name, report in self.reports().items()}


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _score(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


__all__ = [
    "RESULTS",
    "WINDOW",
    "QualityTrend",
    "ReadRateReport",
    "ReadStats",
    "Result",
    "WindowResult",
    "decide",
]
