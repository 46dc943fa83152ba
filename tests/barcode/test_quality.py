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
