"""Per-read quality indicators from the decoded symbol and its pixels; pure (numpy, OpenCV).

Fixed readers print a "matching level" or "read quality" with every read, so a line sees a
label fading, a dirty lens or focus drifting before the reads fail. This module measures,
on the grayscale frame a code was read in, what ISO/IEC 15416 (linear) and 15415 (2-D) grade
— under their parameter names where they apply — and folds them into one 0–100 score:

- **symbol contrast** (SC): the spread between the light and dark extremes of the symbol
  (95th − 5th percentile of its pixels), as a fraction of the 8-bit range;
- **modulation** (MOD): the smallest edge contrast between neighbouring elements over SC,
  the median over several scan lines (blur and low print contrast lower it first);
- **edge width**: how many pixels a bar/space transition takes (contrast / steepest slope);
  compared with the module size it says how sharp the image is;
- **module size** in pixels (the X dimension as the camera sees it);
- **quiet zone**: the light margin on both sides of the symbol in modules, checked against the
  symbology's minimum;
- **decode margin**: how many retries the decoder needed (0 = read on the first pass), and
  for 2-D symbols the **unused error correction** (UEC) the decoder reports.

This is **indicative, not a verification grade**: ISO/IEC 15416/15415 grading needs a
calibrated reflectance scale, a defined aperture and lighting, and scan lines across the
whole symbol. A camera's gray levels depend on exposure and lighting, so the score is for
trends on one station (the same camera, light and label), not for certifying labels.

>>> Quality(0.62, 0.71, 1.2, 3.0, 9.5, True, 0).score
90
>>> Quality(0.62, 0.71, 1.2, 3.0, 9.5, False, 1).score  # a cramped quiet zone, one retry
65
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from scanstation.barcode.decode import DecodedCode

MODULES = {"EAN13": 95, "UPCA": 95, "EAN8": 67, "UPCE": 51}
"""Symbols whose width in modules is fixed: their module size is width / modules."""

QUIET_ZONE_MODULES = {
    "EAN13": 7, "UPCA": 7, "EAN8": 7, "UPCE": 7,
    "Code128": 10, "Code39": 10, "Code93": 10, "Codabar": 10, "ITF": 10,
    "DataBar": 1, "DataBarExpanded": 1, "DataBarLimited": 1,
    "QRCode": 4, "MicroQRCode": 2, "RMQRCode": 2, "DataMatrix": 1, "PDF417": 2,
    "MicroPDF417": 1, "Aztec": 0, "MaxiCode": 1, "DXFilmEdge": 0,
}  # fmt: skip
"""Minimum quiet zone per symbology, in modules (the smaller side for EAN/UPC)."""

RETRIES = {"direct": 0, "deskew": 1, "contrast": 2, "upscale": 3}
"""Decode margin: how many passes beyond the first the decoder needed, by decode method."""

SCAN_LINES = 10


@dataclass(frozen=True, slots=True)
class Quality:
    """The quality indicators of one read (see the module docstring; indicative only)."""

    symbol_contrast: float
    """SC: light minus dark extreme of the symbol, 0–1 of the 8-bit range."""
    modulation: float
    """MOD: the smallest edge contrast over SC, 0–1 (median over the scan lines)."""
    edge_px: float
    """Pixels one bar/space transition takes (2.5 × the blur's sigma for a Gaussian blur)."""
    module_px: float
    """The module (X dimension) in frame pixels."""
    quiet_zone_modules: float
    """The smaller of the two light margins beside the symbol, in modules."""
    quiet_zone_ok: bool
    """The margins are at least the symbology's minimum (``QUIET_ZONE_MODULES``)."""
    decode_margin: int
    """Retries the decoder needed: 0 read on the first pass, up to 3."""
    unused_ec: float | None = None
    """UEC: the share of the error correction left unused, 0–1 (2-D symbols only)."""

    @property
    def score(self) -> int:
        """One 0–100 figure like a reader's matching level (higher is better).

        Contrast, modulation, sharpness and (2-D) unused error correction are each mapped to
        0–1 (SC 10 %→0, 70 %→1; MOD 0.2→0, 0.7→1; edge width 2.5→0, 0.5 modules→1; UEC
        0→0, 0.62→1); the score leans on the worst of them, as ISO's overall grade is the
        lowest parameter grade, and loses 20 % for a quiet zone that is too small and 10 %
        per retry.
        """
        parts = [
            _ramp(self.symbol_contrast, 0.10, 0.70),
            _ramp(self.modulation, 0.20, 0.70),
            _ramp(-self.edge_px / max(self.module_px, 0.5), -2.5, -0.5),
        ]
        if self.unused_ec is not None:
            parts.append(_ramp(self.unused_ec, 0.0, 0.62))
        base = 0.6 * min(parts) + 0.4 * sum(parts) / len(parts)
        factor = (1.0 if self.quiet_zone_ok else 0.8) * (1.0 - 0.1 * self.decode_margin)
        return round(100 * base * factor)

    def as_metadata(self) -> dict[str, str]:
        """The capture metadata a read carries (strings, as Scan metadata is)."""
        return {
            "quality_score": str(self.score),
            "symbol_contrast": f"{self.symbol_contrast:.3f}",
            "modulation": f"{self.modulation:.3f}",
            "edge_px": f"{self.edge_px:.2f}",
            "module_px": f"{self.module_px:.2f}",
            "quiet_zone_modules": f"{self.quiet_zone_modules:.1f}",
            "quiet_zone_ok": "true" if self.quiet_zone_ok else "false",
            "decode_margin": str(self.decode_margin),
            **({} if self.unused_ec is None else {"unused_ec": f"{self.unused_ec:.2f}"}),
        }


def _ramp(value: float, low: float, high: float) -> float:
    return min(1.0, max(0.0, (value - low) / (high - low)))


def measure(gray: npt.NDArray[Any], code: DecodedCode) -> Quality | None:
    """The indicators of ``code`` in the grayscale frame it was read in (None: the symbol's
    outline is degenerate or off the frame). About half a millisecond per code (whole-array
    work: one warp, a histogram, the scan lines all at once)."""
    # The outline's geometry in plain floats (a few dozen operations on 2-vectors cost more
    # as numpy calls than the warp itself).
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = code.position
    frame_h, frame_w = gray.shape[:2]
    across_x, across_y = ((x1 - x0) + (x2 - x3)) / 2, ((y1 - y0) + (y2 - y3)) / 2
    down_x, down_y = ((x3 - x0) + (x2 - x1)) / 2, ((y3 - y0) + (y2 - y1)) / 2
    length = math.hypot(across_x, across_y)  # along the scan direction
    if length < 8:
        return None
    ux, uy = across_x / length, across_y / length
    vx, vy = -uy, ux
    height = abs(down_x * vx + down_y * vy)
    band = max(height, min(0.3 * length, 40.0), 8.0)  # 1-D outlines can be a single row
    centre_x, centre_y = (x0 + x1 + x2 + x3) / 4, (y0 + y1 + y2 + y3) / 4
    margin = 0.3 * length + 8
    width_px = round(length + 2 * margin)
    rows = round(band)
    back, side = length / 2 + margin, band / 2
    origin_x = centre_x - ux * back - vx * side
    origin_y = centre_y - uy * back - vy * side
    # Patch coordinates (x along the scan direction, y across it) to frame coordinates.
    src = np.array([[0, 0], [width_px, 0], [0, rows]], dtype=np.float32)
    dst = np.array(
        [
            [origin_x, origin_y],
            [origin_x + ux * width_px, origin_y + uy * width_px],
            [origin_x + vx * rows, origin_y + vy * rows],
        ],
        dtype=np.float32,
    )
    matrix = cv2.getAffineTransform(src, dst)
    if not all(0 <= x < frame_w and 0 <= y < frame_h for x, y in code.position):
        return None  # part of the symbol lies outside the frame
    # Off the frame reads as dark: the quiet zone is measured as far as the frame shows it.
    patch = np.asarray(
        cv2.warpAffine(
            gray,
            matrix,
            (width_px, rows),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderValue=0,
        ),
        dtype=np.uint8,
    )
    start, stop = round(margin), round(margin + length)
    symbol = patch[:, start:stop]
    if symbol.size == 0:
        return None
    dark, light = _percentiles(symbol, 5.0, 95.0)
    sc = (light - dark) / 255.0
    step = (0.8 * rows - 0.2 * rows) / (SCAN_LINES - 1)
    lines = [int(0.2 * rows + i * step) for i in range(SCAN_LINES - 1)] + [int(0.8 * rows)]
    mods, edges, runs = _scan_lines(symbol[lines].astype(np.float32))
    if not mods.size or not runs.size:
        return None
    fixed = code.modules or MODULES.get(code.format)
    if fixed:
        module = length / fixed
    else:
        smallest = np.sort(runs)
        module = _median_sorted(smallest[: max(1, smallest.size // 4)])
    threshold = (light + dark) / 2
    centre_line = patch[rows // 2].astype(np.float32)
    # The outline may end inside the outer bar: skip up to 2 modules of it first.
    skip = round(2 * module)
    quiet = min(
        _light_run(centre_line[:start][::-1], threshold, skip),
        _light_run(centre_line[stop:], threshold, skip),
    )
    quiet_modules = quiet / max(module, 0.5)
    required = QUIET_ZONE_MODULES.get(code.format, 1)
    return Quality(
        symbol_contrast=round(sc, 4),
        # A 2-D symbol's scan lines graze module boundaries now and then: its better lines.
        modulation=round(
            _percentile(mods.tolist(), 50 if fixed is None or code.unused_ec is None else 75), 4
        ),
        edge_px=round(_median_sorted(np.sort(edges)) if edges.size else math.inf, 3),
        module_px=round(module, 3),
        quiet_zone_modules=round(quiet_modules, 2),
        quiet_zone_ok=quiet_modules >= required,
        decode_margin=RETRIES.get(code.method, 0),
        unused_ec=code.unused_ec,
    )


def _percentiles(pixels: npt.NDArray[np.uint8], *qs: float) -> list[float]:
    """``np.percentile(pixels, qs)`` (linear interpolation) from a histogram of the 8-bit
    values: counting is a pass over the pixels, where sorting them cost ten times as much
    (OpenCV's histogram, exact in its float32 counts below 2**24 pixels, reads the patch in
    place; ``np.bincount`` first copies it into machine-word integers)."""
    counts = cv2.calcHist([pixels], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(counts.astype(np.int64))
    n = int(cumulative[-1])
    found = []
    for q in qs:
        rank = (n - 1) * q / 100.0
        below = math.floor(rank)
        # The value of the k-th smallest pixel is the first level whose running count
        # passes k.
        low, high = np.searchsorted(cumulative, [below + 1, min(below + 2, n)], side="left")
        found.append(float(low) + (float(high) - float(low)) * (rank - below))
    return found


def _percentile(values: list[float], q: float) -> float:
    """``np.percentile(values, q)`` (its default, linear) for a short list, to the last bit:
    numpy's interpolation, ``a + (b - a) * t`` below the midpoint and ``b - (b - a) * (1 - t)``
    from it, in the same float64 arithmetic, without ~25 µs of array set-up a call."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * (q / 100)
    below = math.floor(rank)
    low = ordered[below]
    high = ordered[min(below + 1, len(ordered) - 1)]
    t = rank - below
    return low + (high - low) * t if t < 0.5 else high - (high - low) * (1 - t)


def _median_sorted(ordered: npt.NDArray[Any]) -> float:
    """``np.median`` of an already sorted, non-empty 1-D array, as float64 (the middle value, or
    the mean of the middle two as numpy takes it: their sum over 2)."""
    half = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[half])
    return (float(ordered[half - 1]) + float(ordered[half])) / 2


_NONE = (np.zeros(0), np.zeros(0, np.float32), np.zeros(0, np.intp))


def _scan_lines(
    profiles: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """The scan reflectance profiles (one per row): each line's modulation, and the edge
    widths and element widths of all of them.

    Elements are found with a hysteresis of 10 % of the line's contrast around the line's
    threshold, so sensor noise does not split an element in two. A line with less than 8
    gray levels of contrast or fewer than two edges counts for nothing. All lines are worked
    at once on the flattened rows (an element never runs from one row into the next).
    """
    high = profiles.max(axis=1).astype(np.float64)
    low = profiles.min(axis=1).astype(np.float64)
    contrast = high - low
    keep = contrast >= 8
    if not keep.any():
        return _NONE
    profiles, high, low, contrast = profiles[keep], high[keep], low[keep], contrast[keep]
    count, width = profiles.shape
    threshold = (high + low) / 2
    hysteresis = 0.1 * contrast
    dark = profiles < (threshold - hysteresis).astype(np.float32)[:, None]
    # Pixels in the hysteresis band are neither dark nor light: they keep the state before.
    known = np.flatnonzero(dark | (profiles > (threshold + hysteresis).astype(np.float32)[:, None]))
    if known.size == 0:
        return _NONE
    known_dark = dark.ravel()[known]
    known_row = known // width
    # An edge is where the state changes within a row (sorted: row by row, left to right).
    change_at = (
        np.flatnonzero((known_dark[1:] != known_dark[:-1]) & (known_row[1:] == known_row[:-1])) + 1
    )
    edges = known[change_at]
    edge_row = known_row[change_at]
    edges_per_row = np.bincount(edge_row, minlength=count)
    # Elements, in order: each row's first one starts at its first pixel (its state that of
    # the row's first known pixel), the others at the row's edges.
    row_start = np.arange(count) * width
    row_slot = np.arange(count) + (np.cumsum(edges_per_row) - edges_per_row)
    edge_slot = np.arange(edges.size) + edge_row + 1
    starts = np.empty(count + edges.size, dtype=np.intp)
    starts[row_slot], starts[edge_slot] = row_start, edges
    is_dark = np.empty(count + edges.size, dtype=bool)
    is_dark[row_slot] = known_dark[np.searchsorted(known, row_start)]
    is_dark[edge_slot] = known_dark[change_at]
    flat = profiles.ravel()
    # Each element's extreme: its darkest pixel if it is a bar, its lightest if a space.
    extremes = np.where(
        is_dark, np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
    )
    pair_contrast = np.abs(extremes[edge_slot] - extremes[edge_slot - 1])
    usable_row = edges_per_row >= 2
    # The steepest slope next to each edge: between pixels x - 3 … x + 2 of its row (the
    # slopes of pixel pairs x - 3 … x + 1, clamped to the row), as a running maximum over
    # every pixel of the rows, then read at the edges.
    slopes = np.abs(np.diff(profiles, axis=1))
    padded = cv2.copyMakeBorder(slopes, 0, 0, 3, 2, cv2.BORDER_REPLICATE)
    running = padded[:, :width].copy()
    for shift in range(1, 5):
        np.maximum(running, padded[:, shift : shift + width], out=running)
    steepest = running[edge_row, edges - edge_row * width]
    on_usable = usable_row[edge_row]
    usable = on_usable & (steepest > 0)
    edge_widths = pair_contrast[usable] / steepest[usable]
    # Modulation: a line's smallest edge contrast over its contrast.
    has_edges = edges_per_row > 0
    first_edge = (np.cumsum(edges_per_row) - edges_per_row)[has_edges]
    smallest = np.full(count, np.inf, dtype=np.float32)
    if first_edge.size:
        smallest[has_edges] = np.minimum.reduceat(pair_contrast, first_edge)
    mods = smallest[usable_row].astype(np.float64) / contrast[usable_row]
    # Element widths: between consecutive edges of the same row.
    same_row = edge_row[1:] == edge_row[:-1]
    interior = np.diff(edges)[same_row & on_usable[1:]]
    return mods, edge_widths, interior


def _light_run(values: npt.NDArray[np.float32], threshold: float, skip: int) -> float:
    """Light pixels after the first dark run (at most ``skip`` long) of ``values``, up to the
    next dark pixel or the frame's edge."""
    light = values[: skip + 1] >= threshold
    first_light = int(np.argmax(light)) if light.any() else light.size
    stops = np.flatnonzero(values[first_light:] < threshold)
    return float(stops[0] if stops.size else values.size - first_light)
