"""Read-rate statistics (readstats.py): one result per window, the last 100, per hour, the
last result whatever its verdict, and the quality trend's alarm; time is the test's clock."""

from __future__ import annotations

import dataclasses

import pytest

from scanstation.model import Capture, CaptureStatus, CaptureType
from scanstation.readstats import WINDOW, ReadStats, WindowResult, decide

BLANK = Capture(
    id=1, public_id="c" * 22, session_public_id="s" * 22, status=CaptureStatus.COMPLETED,
    capture_type=CaptureType.BARCODE, raw_value="", gtin="", symbology="", symbology_identifier="",
    source="cam0", error_message="", created=0.0, processed_at=None, gs1_dl_data={},
    product_public_id="", product_name="", uploaded_image_key="", qr_analysis=None, metadata={},
    checks={}, revision=1,
)  # fmt: skip


def capture(raw: str, **metadata: str) -> Capture:
    return dataclasses.replace(BLANK, raw_value=raw, metadata=metadata)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("codes", "rejected", "result"),
    [
        ([], False, "noread"),
        (["4006381333931"], False, "good"),
        (["4006381333931", "4006381333931"], False, "good"),  # one code seen twice
        (["4006381333931", "5901234123457"], False, "multiple"),
        (["4006381333931"], True, "rejected"),
        (["4006381333931", "5901234123457"], True, "rejected"),  # a reject is never good
    ],
)
def test_decide_gives_one_result_per_window(codes: list[str], rejected: bool, result: str) -> None:
    assert decide(codes, rejected) == result


def test_a_window_with_two_codes_is_decided_when_both_arrived() -> None:
    stats = ReadStats(clock=Clock(7200.0))
    seen: list[WindowResult] = []
    stats.listeners.append(seen.append)
    stats.on_capture(capture("4006381333931", window="3", window_codes="2"), rejected=False)
    assert seen == []  # half a window: not decided yet
    stats.on_capture(capture("5901234123457", window="3", window_codes="2"), rejected=False)
    codes = ("4006381333931", "5901234123457")
    assert seen == [WindowResult("cam0", "multiple", codes, 7200.0, ("", ""), (None, None))]
    stats.on_capture(capture("", noread="true", window="4"), rejected=False)
    stats.on_capture(capture("SCANSTATION-0001"), rejected=True)  # no window: its own
    report = stats.reports()["cam0"]
    assert report.totals == {"good": 0, "noread": 1, "multiple": 1, "rejected": 1}
    assert report.last_result == "SCANSTATION-0001"  # the last code, though rejected


def test_rate_over_the_last_100_windows_and_per_hour() -> None:
    clock = Clock(3600.0 * 10)
    stats = ReadStats(clock=clock)
    for _ in range(150):
        stats.record("cam0", "noread", [])
    clock.t += 3600  # the next hour
    for _ in range(75):
        stats.record("cam0", "good", ["A"])
    report = stats.reports()["cam0"]
    assert report.last == {"good": 75, "noread": WINDOW - 75, "multiple": 0, "rejected": 0}
    assert report.rate == 0.75
    assert report.totals["noread"] == 150
    assert [(h["hour"], h["good"], h["noread"], h["rate"]) for h in report.per_hour] == [
        (36000, 0, 150, 0.0),
        (39600, 75, 0, 1.0),
    ]
    assert stats.totals()["good"] == 75


def test_quality_trend_raises_its_alarm_below_the_threshold() -> None:
    stats = ReadStats(clock=Clock(0.0), quality_alarm=60)
    for score in (90, 85, 80):
        stats.on_capture(capture("A", quality_score=str(score)), rejected=False)
    trend = stats.reports()["cam0"].quality
    assert (trend.score, trend.alarm, trend.last) == (85.0, False, 80.0)
    for _ in range(60):
        stats.on_capture(capture("A", quality_score="40"), rejected=False)
    trend = stats.reports()["cam0"].quality
    assert trend.alarm
    assert trend.score == 40.0  # the last 50 reads only
