"""Barcodes in one frame: zxing-cpp plus targeted retries, as frozen results; pure and thread-safe.

A frame is a numpy array: 2-D uint8 grayscale (used as is, no copy; ROI crops are views) or
3-channel BGR (converted once with OpenCV). `decode_frame` runs zxing-cpp once over the frame
(or its ROI) with the tuned options, then retries only where a retry can pay: regions whose
gradients say "1-D barcode" that the first pass did not read (deskewed so the bars stand
upright: row-scanning 1-D decoders only tolerate a few degrees of tilt), and small images
with low contrast. Text is read in zxing-cpp's Plain mode, so GS1 data keeps its ASCII 29 (GS)
separators: FNC1 must reach the GS1 interpreter.

`decode_main` is ``scanstation decode FILE...``: one JSON line per code found in images and
videos.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp

from scanstation.barcode import BarcodeError

Frame = npt.NDArray[np.uint8]
"""A camera frame: H×W grayscale or H×W×3 BGR, uint8."""

Point = tuple[int, int]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".mjpeg", ".mjpg", ".m4v"})

# Format names a user may write that zxing-cpp does not know by that name.
_FORMAT_ALIASES = {"gs1-128": "Code128", "gs1128": "Code128", "ean-upc": "EANUPC"}

# Formats that row-scanning decoders read: the only ones a deskew retry can help.
_LINEAR = frozenset(zxingcpp.barcode_formats_list(zxingcpp.BarcodeFormats(zxingcpp.AllLinear)))


class DecodeError(BarcodeError, ValueError):
    """A frame, file or option the decoder cannot use; says which and what was expected."""


@dataclass(frozen=True, slots=True)
class DecodedCode:
    """One barcode found in a frame."""

    format: str
    """zxing-cpp's format name, e.g. ``EAN13``, ``Code128``, ``DataMatrix``, ``QRCode``."""
    text: str
    """The content as sent (zxing-cpp Plain text): GS1 data keeps its GS (ASCII 29) separators."""
    symbology_identifier: str
    """AIM symbology identifier, e.g. ``]E0``, ``]C1`` (GS1-128), ``]d2`` (GS1 DataMatrix)."""
    content_type: str
    """zxing-cpp's content type: ``Text``, ``GS1``, ``Binary``, ``Mixed``, ``ISO15434``, …"""
    position: tuple[Point, Point, Point, Point]
    """Corners top-left, top-right, bottom-right, bottom-left in full-frame pixel coordinates."""
    orientation: int = 0
    """Rotation of the symbol in degrees, as zxing-cpp reports it (after any deskew)."""
    method: str = "direct"
    """Which pass read it: ``direct``, ``deskew``, ``contrast`` or ``upscale``."""
    data: bytes = b""
    """The content's raw bytes (what binary payloads should be compared on)."""
    modules: int = 0
    """The symbol's width in modules when the decoder knows it (QR version, DataMatrix size),
    else 0."""
    unused_ec: float | None = None
    """Unused error correction (ISO/IEC 15415 UEC), 0–1, for 2-D symbols; None for 1-D."""

    @property
    def key(self) -> tuple[str, str]:
        """What makes two reads the same code: its format and its text."""
        return (self.format, self.text)

    @property
    def center(self) -> tuple[float, float]:
        """The centre of the symbol in frame pixels."""
        return (
            sum(p[0] for p in self.position) / 4.0,
            sum(p[1] for p in self.position) / 4.0,
        )

    def as_json(self) -> dict[str, Any]:
        """The fields ``scanstation decode`` prints."""
        return {
            "format": self.format,
            "text": self.text,
            "symbology_identifier": self.symbology_identifier,
            "content_type": self.content_type,
            "position": [list(p) for p in self.position],
        }


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How to decode: which formats, where, and which extra attempts to make.

    The defaults are the tuned ones measured in docs/camera.md: zxing-cpp's inverted-code
    pass off (it doubled the time on camera frames and read no extra code there), rotation
    and downscaling on, and the targeted retries on.
    """

    formats: tuple[str, ...] = ()
    """zxing-cpp format names; empty means every readable format."""
    roi: tuple[float, float, float, float] | None = None
    """Region of interest as fractions of the frame: x, y, width, height."""
    try_rotate: bool = True
    """zxing-cpp: also look for codes at 90°/270°."""
    try_downscale: bool = True
    """zxing-cpp: also scan downscaled copies (large frames, large codes)."""
    try_invert: bool = False
    """zxing-cpp: also look for light-on-dark codes over the whole frame (costly; off)."""
    retries: bool = True
    """Deskew 1-D candidate regions the first pass missed; contrast/upscale small images."""
    max_candidates: int = 3
    """At most this many candidate regions are retried per frame."""
    small_image_pixels: int = 640 * 480
    """Images up to this size get the contrast and upscale retries over the whole image."""
    zxing_formats: tuple[zxingcpp.BarcodeFormat, ...] = field(default=(), repr=False, compare=False)
    """The parsed `formats` (filled in by `__post_init__`)."""
    linear_formats: tuple[zxingcpp.BarcodeFormat, ...] = field(
        default=(), repr=False, compare=False
    )
    """The 1-D formats among them (every 1-D format when `formats` is empty): what a deskewed
    1-D candidate region is read for (filled in by `__post_init__`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "zxing_formats", tuple(parse_formats(self.formats)))
        linear = [f for f in self.zxing_formats or _LINEAR if f in _LINEAR]
        object.__setattr__(self, "linear_formats", tuple(linear))
        if self.roi is not None:
            check_roi(self.roi)

    @classmethod
    def zxing_defaults(cls, formats: Sequence[str] = ()) -> DecodeOptions:
        """zxing-cpp's own defaults, no retries: the baseline the benchmarks compare against."""
        return cls(formats=tuple(formats), try_invert=True, retries=False)

    @property
    def linear_wanted(self) -> bool:
        """True when some 1-D format is enabled (the deskew retry is pointless otherwise)."""
        return not self.zxing_formats or any(f in _LINEAR for f in self.zxing_formats)


def parse_formats(names: Sequence[str]) -> list[zxingcpp.BarcodeFormat]:
    """zxing-cpp formats from names such as ``EAN13``, ``EAN-13``, ``QRCode``, ``GS1-128``.

    >>> [f.name for f in parse_formats(["EAN-13", "gs1-128"])]
    ['EAN13', 'Code128']
    """
    formats = []
    for name in names:
        wanted = _FORMAT_ALIASES.get(name.strip().lower(), name.strip())
        try:
            formats.append(zxingcpp.barcode_format_from_str(wanted))
        except ValueError:
            known = ", ".join(
                f.name
                for f in zxingcpp.barcode_formats_list(
                    zxingcpp.BarcodeFormats(zxingcpp.AllReadable)
                )
            )
            raise DecodeError(
                f"unknown barcode format {name!r}; expected one of {known} (or GS1-128)"
            ) from None
    return formats


def check_roi(roi: Sequence[float]) -> tuple[float, float, float, float]:
    """Validate an ROI given as fractions x, y, width, height (all within the frame)."""
    if len(roi) != 4:
        raise DecodeError(f"ROI {tuple(roi)!r} must have 4 numbers: x, y, width, height")
    x, y, w, h = (float(v) for v in roi)
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
        raise DecodeError(
            f"ROI {tuple(roi)!r}: expected fractions with 0 ≤ x, y < 1 and 0 < w, h ≤ 1"
        )
    if x + w > 1.0001 or y + h > 1.0001:
        raise DecodeError(
            f"ROI {tuple(roi)!r} reaches outside the frame (x + w and y + h must be ≤ 1)"
        )
    return (x, y, w, h)


def to_gray(frame: npt.NDArray[Any]) -> Frame:
    """A 2-D uint8 view of `frame`: grayscale as is (no copy), BGR/BGRA converted once."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise DecodeError(
            f"frame of type {type(frame).__name__}/{getattr(frame, 'dtype', None)}: "
            "expected a uint8 numpy array"
        )
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY), dtype=np.uint8)
    raise DecodeError(f"frame of shape {frame.shape}: expected H×W gray or H×W×3 BGR")


def roi_view(gray: Frame, roi: tuple[float, float, float, float] | None) -> tuple[Frame, Point]:
    """The ROI of `gray` as a view (no copy) and its top-left corner in the frame."""
    if roi is None:
        return gray, (0, 0)
    h, w = gray.shape
    x, y, rw, rh = roi
    x0, y0 = round(x * w), round(y * h)
    x1, y1 = min(w, max(x0 + 1, round((x + rw) * w))), min(h, max(y0 + 1, round((y + rh) * h)))
    return gray[y0:y1, x0:x1], (x0, y0)


def _zxing_read(
    image: Frame,
    options: DecodeOptions,
    *,
    try_rotate: bool,
    try_invert: bool,
    linear_only: bool = False,
) -> list[zxingcpp.Barcode]:
    formats = options.linear_formats if linear_only else options.zxing_formats
    return list(
        zxingcpp.read_barcodes(
            image,
            formats=zxingcpp.BarcodeFormats(list(formats)),
            try_rotate=try_rotate,
            try_downscale=options.try_downscale,
            try_invert=try_invert,
            text_mode=zxingcpp.TextMode.Plain,
        )
    )


def _corners(barcode: zxingcpp.Barcode) -> list[tuple[float, float]]:
    p = barcode.position
    return [
        (p.top_left.x, p.top_left.y),
        (p.top_right.x, p.top_right.y),
        (p.bottom_right.x, p.bottom_right.y),
        (p.bottom_left.x, p.bottom_left.y),
    ]


def _to_code(
    barcode: zxingcpp.Barcode,
    method: str,
    transform: npt.NDArray[np.float64] | None,
    offset: Point,
) -> DecodedCode:
    """Wrap a zxing-cpp result, mapping its corners back to frame coordinates."""
    ox, oy = offset
    if transform is None:  # the common case, in plain floats (the same sums as numpy's)
        p = [(round(float(x) + ox), round(float(y) + oy)) for x, y in _corners(barcode)]
    else:
        # `transform` maps retry-image pixels back to ROI pixels (2×3 affine).
        corners = np.array(_corners(barcode), dtype=np.float64)
        corners = corners @ transform[:, :2].T + transform[:, 2]
        corners += np.array(offset, dtype=np.float64)
        p = [(round(float(x)), round(float(y))) for x, y in corners]
    return DecodedCode(
        format=barcode.format.name,
        text=barcode.text,
        symbology_identifier=barcode.symbology_identifier,
        content_type=barcode.content_type.name,
        position=(p[0], p[1], p[2], p[3]),
        orientation=int(barcode.orientation),
        method=method,
        data=bytes(barcode.bytes),
        **_symbol_size(barcode),
    )


def _symbol_size(barcode: zxingcpp.Barcode) -> dict[str, Any]:
    """Module count and unused error correction from zxing-cpp's ``extra`` (2-D symbols)."""
    extra = getattr(barcode, "extra", None)
    if not isinstance(extra, dict):
        return {}
    found: dict[str, Any] = {}
    uec = extra.get("UEC")
    if isinstance(uec, int | float):
        found["unused_ec"] = float(uec)
    version = str(extra.get("Version", ""))
    name = barcode.format.name
    if name == "QRCode" and version.isdigit():
        found["modules"] = 17 + 4 * int(version)
    elif name == "MicroQRCode" and version.lstrip("M").isdigit():
        found["modules"] = 9 + 2 * int(version.lstrip("M"))
    elif name == "DataMatrix" and "x" in version:
        columns = version.split("x")[-1]
        if columns.isdigit():
            found["modules"] = int(columns)
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A region whose gradients all point one way: probably a 1-D barcode."""

    center: tuple[float, float]
    """Centre in ROI pixels."""
    size: tuple[float, float]
    """Extent along the bars' normal (symbol length) and along the bars (bar height), pixels."""
    angle: float
    """Direction of the symbol's length axis in degrees (0 = horizontal), image coordinates."""
    strength: float
    """Mean gradient energy of the region: orders candidates, strongest first."""


def find_linear_candidates(
    gray: Frame, max_candidates: int = 3, work_px: int = 320
) -> list[Candidate]:
    """Regions that look like 1-D barcodes, at any angle, found from the structure tensor.

    Works on a copy scaled to `work_px` pixels on its long side (320 read the most tilted
    labels, see docs/camera.md), so it costs about 1–2 ms whatever the frame size.
    """
    h, w = gray.shape
    scale = min(1.0, work_px / max(h, w))
    small = (
        cv2.resize(
            gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        if scale < 1.0
        else gray
    )
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    k = (9, 9)
    jxx = cv2.boxFilter(gx * gx, -1, k)
    jyy = cv2.boxFilter(gy * gy, -1, k)
    jxy = cv2.boxFilter(gx * gy, -1, k)
    trace = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy**2) / (trace + 1e-3)
    # Bars are strong edges all pointing one way; text and textures point every way.
    energy_floor = max(float(np.percentile(trace, 60)), 400.0 * 16)
    mask = ((coherence > 0.75) & (trace > energy_floor)).astype(np.uint8)
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))
    )
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours:
        area = cv2.contourArea(contour)
        if area < 150:
            continue
        region = np.zeros_like(mask)
        cv2.drawContours(region, [contour], -1, 1, thickness=-1)
        sel = region.astype(bool)
        sxx, syy, sxy = float(jxx[sel].sum()), float(jyy[sel].sum()), float(jxy[sel].sum())
        # Dominant gradient direction = the symbol's length axis (across the bars).
        theta = 0.5 * math.atan2(2.0 * sxy, sxx - syy)
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        pts = contour.reshape(-1, 2).astype(np.float64)
        along = pts @ np.array([cos_t, sin_t])
        across = pts @ np.array([-sin_t, cos_t])
        length, height = float(np.ptp(along)), float(np.ptp(across))
        if length < 12 or height < 4:
            continue
        cx = (along.min() + along.max()) / 2 * cos_t - (across.min() + across.max()) / 2 * sin_t
        cy = (along.min() + along.max()) / 2 * sin_t + (across.min() + across.max()) / 2 * cos_t
        candidate = Candidate(
            center=(cx / scale, cy / scale),
            size=(length / scale, height / scale),
            angle=math.degrees(theta),
            strength=float(trace[sel].mean()) * area,
        )
        if crossings(gray, candidate) >= MIN_BAR_EDGES:
            found.append(candidate)
    found.sort(key=lambda c: c.strength, reverse=True)
    return found[:max_candidates]


# The shortest 1-D symbols (a one-character Code 128, UPC-E) still have over 20 bar edges;
# the box edges and shadows that also have one-way gradients have 1-5 (docs/camera.md).
MIN_BAR_EDGES = 16
MIN_BAR_CONTRAST = 24


def crossings(gray: Frame, candidate: Candidate) -> int:
    """Light/dark changes along the candidate's length axis, at full resolution (the most of
    five parallel lines, as a region may have merged with its surroundings): a barcode has
    dozens, an edge of a box one or two. Costs microseconds."""
    height, width = gray.shape
    a = math.radians(candidate.angle)
    cos_a, sin_a = math.cos(a), math.sin(a)
    length, across = candidate.size
    t = np.linspace(-0.5, 0.5, max(16, int(length))) * length
    counts = []
    for offset in (-0.4 * across, -0.2 * across, 0.0, 0.2 * across, 0.4 * across):
        xs = np.clip(candidate.center[0] + t * cos_a - offset * sin_a, 0, width - 1)
        ys = np.clip(candidate.center[1] + t * sin_a + offset * cos_a, 0, height - 1)
        profile = gray[ys.astype(np.intp), xs.astype(np.intp)].astype(np.int16)
        low, high = int(profile.min()), int(profile.max())
        if high - low < MIN_BAR_CONTRAST:
            counts.append(0)
            continue
        dark = profile < (low + high) / 2
        counts.append(int(np.count_nonzero(dark[1:] != dark[:-1])))
    return max(counts)


def deskew(gray: Frame, candidate: Candidate) -> tuple[Frame, npt.NDArray[np.float64]]:
    """Cut `candidate` out of `gray` rotated so its bars stand upright, with a quiet zone.

    Returns the crop and the 2×3 affine map from crop pixels back to `gray` pixels.
    """
    length, height = candidate.size
    # Margins: the detector's region stops at the outer bars; decoders need quiet zones,
    # and the bar height may be underestimated on a blurred frame.
    out_w = round(length * 1.3 + 24)
    out_h = round(max(height * 1.4, length * 0.25) + 16)
    cx, cy = candidate.center
    a = math.radians(candidate.angle)
    cos_a, sin_a = math.cos(a), math.sin(a)
    # crop (u, v) -> gray (x, y): rotate by the candidate angle about the crop centre.
    back = np.array(
        [
            [cos_a, -sin_a, cx - cos_a * out_w / 2 + sin_a * out_h / 2],
            [sin_a, cos_a, cy - sin_a * out_w / 2 - cos_a * out_h / 2],
        ],
        dtype=np.float64,
    )
    crop = cv2.warpAffine(
        gray,
        back,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(crop, dtype=np.uint8), back


def residual_angle(crop: Frame) -> float:
    """How far (degrees) the bars in a deskewed crop still lean, from its central part."""
    height, width = crop.shape
    centre = crop[height // 4 : 3 * height // 4, width // 5 : 4 * width // 5]
    gx = cv2.Sobel(centre, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(centre, cv2.CV_32F, 0, 1, ksize=3)
    sxx, syy, sxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    return math.degrees(0.5 * math.atan2(2.0 * sxy, sxx - syy))


_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))


def _clahe(gray: Frame) -> Frame:
    """Local contrast equalisation (rescues faded and unevenly lit codes)."""
    return np.asarray(_CLAHE.apply(gray), dtype=np.uint8)


def decode_frame(
    frame: npt.NDArray[Any], options: DecodeOptions | None = None
) -> list[DecodedCode]:
    """Every barcode in `frame`, in frame coordinates; pure and safe to call from many threads.

    zxing-cpp releases the GIL while it works, so a pool of threads decodes frames in parallel.
    """
    options = options or DecodeOptions()
    gray = to_gray(frame)
    view, offset = roi_view(gray, options.roi)
    codes = [
        _to_code(b, "direct", None, offset)
        for b in _zxing_read(
            view, options, try_rotate=options.try_rotate, try_invert=options.try_invert
        )
    ]
    if not options.retries:
        return codes
    seen = {c.key for c in codes}

    def add(
        found: list[zxingcpp.Barcode], method: str, back: npt.NDArray[np.float64] | None
    ) -> bool:
        new = False
        for b in found:
            code = _to_code(b, method, back, offset)
            if code.key not in seen:
                seen.add(code.key)
                codes.append(code)
                new = True
        return new

    if options.linear_wanted and not codes:
        # Only frames where the first pass read nothing: there the retries pay for themselves
        # (the codes zxing-cpp misses in camera frames are mostly tilted 1-D ones); a frame
        # that already gave a code does not pay 4-10 ms more to look for a second one.
        # A candidate is a 1-D symbol's region (gradients one way, bars crossed): its crops
        # are read for the 1-D formats only, at half the cost of every format (the 2-D
        # detectors, rotation-invariant, already looked at the whole frame).
        for candidate in find_linear_candidates(view, options.max_candidates):
            crop, back = deskew(view, candidate)
            # The crop is small: the inverted pass is cheap here, unlike over the whole frame.
            if add(
                _zxing_read(crop, options, try_rotate=False, try_invert=True, linear_only=True),
                "deskew",
                back,
            ):
                continue
            if add(
                _zxing_read(
                    _clahe(crop), options, try_rotate=False, try_invert=False, linear_only=True
                ),
                "contrast",
                back,
            ):
                continue
            # The angle came from a 320-pixel copy; long symbols need it to within a degree
            # or so. Measure what is left on the full-resolution crop and try once more.
            residual = residual_angle(crop)
            if abs(residual) > 0.4:
                refined = Candidate(
                    candidate.center, candidate.size, candidate.angle - residual, candidate.strength
                )
                crop, back = deskew(view, refined)
                add(
                    _zxing_read(crop, options, try_rotate=False, try_invert=True, linear_only=True),
                    "deskew",
                    back,
                )
    small = view.shape[0] * view.shape[1] <= options.small_image_pixels
    # A small image with nothing read: local contrast (inverted codes are looked for here,
    # where it is cheap), then more pixels per module.
    if (
        not codes
        and small
        and not add(
            _zxing_read(_clahe(view), options, try_rotate=True, try_invert=True), "contrast", None
        )
    ):
        up = np.asarray(
            cv2.resize(view, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), dtype=np.uint8
        )
        half = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=np.float64)
        add(_zxing_read(up, options, try_rotate=True, try_invert=False), "upscale", half)
    return codes


# ---------------------------------------------------------------------------------------------
# Files: images and videos (``scanstation decode``).


def load_image(path: Path) -> Frame:
    """A file as a grayscale frame (OpenCV first, Pillow for what OpenCV cannot read)."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is not None:
        return np.asarray(gray, dtype=np.uint8)
    try:
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as exc:
        raise DecodeError(f"{path}: cannot read it as an image ({exc})") from None


def video_frames(path: Path) -> Iterator[tuple[int, Frame]]:
    """(index, grayscale frame) for every frame of a video file."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DecodeError(f"{path}: cannot open it as a video")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, to_gray(np.asarray(frame, dtype=np.uint8))
            index += 1
        if index == 0:
            raise DecodeError(f"{path}: no frame could be read from the video")
    finally:
        capture.release()


def is_video(path: Path) -> bool:
    """Videos are told apart from images by their suffix."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def decode_main(argv: list[str]) -> int:
    """``scanstation decode FILE...``: a JSON line per code; exit 1 if a file could not be read."""
    parser = argparse.ArgumentParser(
        prog="scanstation decode",
        description="Decode the barcodes in images and videos; print one JSON line per code.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="images or video files")
    parser.add_argument(
        "--formats", default="", help="comma-separated zxing-cpp formats (default: every format)"
    )
    parser.add_argument("--roi", default="", help="x,y,w,h as fractions of the frame")
    parser.add_argument(
        "--all-frames",
        action="store_true",
        help="videos: print a code on every frame it is read (default: once, at its first frame)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="no retries (the camera's first pass only)"
    )
    args = parser.parse_args(argv)
    try:
        roi = check_roi([float(v) for v in args.roi.split(",")]) if args.roi else None
        options = DecodeOptions(
            formats=tuple(f for f in (s.strip() for s in args.formats.split(",")) if f),
            roi=roi,
            # Files are decoded once and offline: spend the time zxing-cpp's defaults spend.
            try_invert=True,
            retries=not args.fast,
        )
    except (DecodeError, ValueError) as exc:
        print(f"scanstation decode: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            found = _decode_file(path, options, all_frames=args.all_frames)
        except DecodeError as exc:
            print(f"scanstation decode: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not found:
            print(f"scanstation decode: {path}: no barcode found", file=sys.stderr)
    return 1 if failed else 0


def _decode_file(path: Path, options: DecodeOptions, *, all_frames: bool) -> int:
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    count = 0
    if is_video(path):
        seen: set[tuple[str, str]] = set()
        for index, frame in video_frames(path):
            for code in decode_frame(frame, options):
                if not all_frames and code.key in seen:
                    continue
                seen.add(code.key)
                _print_code(path, code, frame=index)
                count += 1
        return count
    for code in decode_frame(load_image(path), options):
        _print_code(path, code, frame=None)
        count += 1
    return count


def _print_code(path: Path, code: DecodedCode, frame: int | None) -> None:
    line: dict[str, Any] = {"file": str(path)}
    if frame is not None:
        line["frame"] = frame
    line.update(code.as_json())
    print(json.dumps(line, ensure_ascii=False), flush=True)
