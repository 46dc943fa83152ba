"""Per-read quality indicators (barcode/quality.py) on real symbols rendered by zxing-cpp's
writer: the score falls step by step as print contrast fades and focus drifts, and each
indicator says what a line engineer would expect of it."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from scanstation.barcode.decode import decode_frame
from scanstation.barcode.quality import Quality, measure
from scanstation.commands.bench.scenes import Label, render_symbol

MODULE_PX = 3
# Print contrast fading (paper minus ink, of 255) while the image gets blurrier (sigma, px).
SERIES = [(200, 0.3), (170, 0.6), (140, 0.9), (110, 1.2), (80, 1.5)]
LABELS = [
    Label("4006381333931", "EAN13"),
    Label("SCANSTATION-0001", "Code128"),
    Label("https://id.gs1.org/01/09506000134352", "QRCode"),
    Label("(01)09506000134352(10)ABC", "DataMatrix", gs1=True),
]


def printed(label: Label, contrast: float, blur: float, seed: int = 0) -> npt.NDArray[np.uint8]:
    """The symbol with its own quiet zones, printed at ``contrast`` on a mid-gray scene,
    seen through a lens blurring it by ``blur`` px, with sensor noise."""
    symbol = render_symbol(label)  # zxing-cpp's writer: 1 px per module, quiet zones included
    symbol = cv2.resize(symbol, None, fx=MODULE_PX, fy=MODULE_PX, interpolation=cv2.INTER_NEAREST)
    h, w = symbol.shape
    scene = np.full((h + 120, w + 160), 128.0, np.float32)
    ink, paper = 128 - contrast / 2, 128 + contrast / 2
    scene[60 : 60 + h, 80 : 80 + w] = symbol / 255.0 * (paper - ink) + ink
    scene = cv2.GaussianBlur(scene, (0, 0), blur)
    scene += np.random.default_rng(seed).normal(0, 2, scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def quality_of(frame: npt.NDArray[np.uint8]) -> Quality | None:
    codes = decode_frame(frame)
    if not codes:
        return None
    return measure(frame, codes[0])


@pytest.mark.parametrize("label", LABELS, ids=[label.format for label in LABELS])
def test_quality_score_falls_with_contrast_and_focus(label: Label) -> None:
    measured = [q for c, b in SERIES if (q := quality_of(printed(label, c, b))) is not None]
    assert len(measured) >= 4, "the decoder should read at least the first four"
    scores = [q.score for q in measured]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores), f"not strictly falling: {scores}"
    assert scores[0] >= 90  # crisp, high-contrast print
    contrasts = [q.symbol_contrast for q in measured]
    assert contrasts == sorted(contrasts, reverse=True)
    assert contrasts[0] == pytest.approx(200 / 255, abs=0.03)
    edges = [q.edge_px for q in measured]
    assert edges == sorted(edges)  # blur widens every transition
    assert all(q.module_px == pytest.approx(MODULE_PX, abs=0.1) for q in measured)
    assert all(q.quiet_zone_ok for q in measured)


def test_quality_flags_a_cramped_quiet_zone_and_retries() -> None:
    label = LABELS[0]
    frame = printed(label, 200, 0.3)
    clean = quality_of(frame)
    assert clean is not None
    code = decode_frame(frame)[0]
    # Something printed 2 modules left of the first bar (EAN-13 wants 7).
    x = code.position[0][0] - 2 * MODULE_PX
    cramped = frame.copy()
    cramped[:, x - 3 : x] = 40
    quality = measure(cramped, code)
    assert quality is not None
    assert not quality.quiet_zone_ok
    assert quality.quiet_zone_modules == pytest.approx(2, abs=0.5)
    assert quality.score < clean.score
    # A read that needed a retry pass scores lower than the same read on the first pass.
    assert (
        Quality(0.7, 0.8, 1.0, 3.0, 9, True, 2).score
        < Quality(0.7, 0.8, 1.0, 3.0, 9, True, 0).score
    )


def test_quality_of_a_symbol_partly_off_the_frame_is_not_measured() -> None:
    frame = printed(LABELS[0], 200, 0.3)
    code = decode_frame(frame)[0]
    cut = frame[:, : code.position[1][0] - 20]
    assert measure(cut, code) is None


def test_percentiles_and_medians_are_numpys_to_the_last_bit() -> None:
    """The indicators' statistics are taken without numpy's per-call set-up: the values a
    station reports must stay what np.percentile / np.median give (linear interpolation)."""
    from scanstation.barcode.quality import _median_sorted, _percentile, _percentiles

    rng = np.random.default_rng(7)
    for size in (1, 2, 3, 4, 9, 10, 57):
        values = rng.uniform(0, 1, size)
        for q in (0, 25, 50, 75, 90, 100):
            assert _percentile(values.tolist(), q) == float(np.percentile(values, q))
        ints = np.sort(rng.integers(1, 40, size))
        assert _median_sorted(ints) == float(np.median(ints.astype(np.float64)))
        floats = np.sort(values.astype(np.float32))
        assert _median_sorted(floats) == float(np.median(floats.astype(np.float64)))
    patch = rng.integers(0, 256, (37, 91), dtype=np.uint8)
    assert _percentiles(patch, 5, 50, 95) == [float(v) for v in np.percentile(patch, [5, 50, 95])]


def test_edge_width_reads_the_steepest_slope_from_3_pairs_before_to_1_after_the_edge() -> None:
    """Edge width is the edge's contrast over its steepest slope nearby: the slopes of the
    pixel pairs from 3 before the edge's first pixel to 1 after it, clamped to the line. Each
    edge here has its steepest slope in that window at one of its ends and a steeper one just
    outside it, so a window one pair too narrow or too wide reads another width."""
    from scanstation.barcode.quality import _scan_lines

    row = np.full(40, 200, np.float32)  # light 200, dark 40: each edge's contrast is 160
    row[0] = 40  # a bar on the first pixel: a step of 160 between pixels 0 and 1
    # Down into the bar at pixel 14 (the first dark one): slopes 63 (pair 10, outside),
    # 7, 20, 10, 5 and 40 (pair 15, the window's last): 160 / 40 = 4 px.
    row[10:18] = [200, 137, 130, 110, 100, 95, 55, 40]
    row[18:30] = 40
    # Up out of it at pixel 33 (the first light one): slopes 40 (pair 30, the window's
    # first), 22, 37, 1, 1 and 58 (pair 35, outside): 4 px.
    row[30:36] = [41, 81, 103, 140, 141, 142]
    row[39] = 40  # a bar on the last pixel: a step of 160 between pixels 38 and 39
    _, edge_widths, _ = _scan_lines(np.stack([row, row]))
    assert sorted(edge_widths.tolist()) == [1.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0]
