"""Synthetic camera frames with barcodes: labels rendered by zxing-cpp and placed on a
cluttered 1280×720 background, tilted, in perspective, blurred and noisy.

What `bench decode`, `bench pipeline` and `bench quality` decode, what the demo shows and what
the bundled samples were made from (data/samples/make_samples.py); the tests use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp

from scanstation.barcode.decode import Frame, parse_formats

Rng = np.random.Generator


@dataclass(frozen=True, slots=True)
class Label:
    """One barcode to put in a scene."""

    content: str
    """What to encode; GS1 content in bracketed form, e.g. ``(01)09506000134352(10)ABC``."""
    format: str
    """zxing-cpp format name: EAN13, Code128, DataMatrix, QRCode, …"""
    gs1: bool = False
    """Encode as GS1 (FNC1 first): GS1-128, GS1 DataMatrix, GS1 QR."""
    expected: str = ""
    """The text the decoder should return in Plain mode (empty: `content`)."""
    module_px: float = 3.0
    """Pixels per module (narrow bar) in the frame."""
    angle: float = 0.0
    """Rotation in degrees, counter-clockwise."""
    center: tuple[float, float] = (0.5, 0.5)
    """Where the label sits, as fractions of the frame."""
    tilt: float = 0.0
    """Perspective strength 0..0.3: how much one side of the label recedes."""

    @property
    def text(self) -> str:
        return self.expected or self.content


def render_symbol(label: Label) -> Frame:
    """The bare symbol, 1 pixel per module plus quiet zones, black on white."""
    fmt = parse_formats([label.format])[0]
    options: dict[str, bool] = {"gs1": True} if label.gs1 else {}
    if fmt == zxingcpp.DataMatrix:
        options["forceSquare"] = True  # what label printers use; rectangles are rare
    barcode = zxingcpp.create_barcode(label.content, fmt, **options)
    image = np.asarray(zxingcpp.write_barcode_to_image(barcode, scale=1), dtype=np.uint8)
    if fmt in (zxingcpp.EAN13, zxingcpp.EAN8, zxingcpp.UPCA, zxingcpp.UPCE, zxingcpp.Code128):
        # 1-D symbols come out one row high: give them a realistic bar height.
        height = max(20, image.shape[1] // (4 if fmt == zxingcpp.Code128 else 2))
        image = np.repeat(image[:1], height, axis=0)
    return image


def sym_margin(symbol: Frame) -> int:
    """Sticker margin in modules: 2-D symbols get a few, 1-D ones already have quiet zones."""
    return 2 if symbol.shape[0] < symbol.shape[1] // 3 else 4


def background(size: tuple[int, int], rng: Rng) -> Frame:
    """A cluttered, unevenly lit scene: gradient, boxes, text-like strokes, sensor noise."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 110 + 60 * (xx / width) * rng.uniform(0.5, 1.0) + 30 * np.sin(yy / height * math.pi)
    frame = np.clip(light, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(60, width // 2)), y0 + int(rng.integers(40, height // 2))
        cv2.rectangle(frame, (x0, y0), (x1, y1), int(rng.integers(40, 220)), -1)
    for _ in range(int(rng.integers(5, 15))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.putText(
            frame,
            "".join(chr(int(c)) for c in rng.integers(65, 90, 8)),
            (x0, y0),
            cv2.FONT_HERSHEY_SIMPLEX,
            float(rng.uniform(0.5, 1.5)),
            int(rng.integers(0, 80)),
            int(rng.integers(1, 3)),
        )
    return np.asarray(frame, dtype=np.uint8)


def place(frame: Frame, label: Label, rng: Rng) -> None:
    """Print `label` on a white sticker and put it into `frame` (in place)."""
    symbol = render_symbol(label)
    # A white sticker around the symbol's own quiet zone.
    margin = max(2, sym_margin(symbol))
    symbol = np.asarray(
        cv2.copyMakeBorder(symbol, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255),
        dtype=np.uint8,
    )
    sym_h, sym_w = symbol.shape
    height, width = frame.shape
    # Keep the whole label in the frame at its angle.
    a = math.radians(label.angle)
    box_w = sym_w * abs(math.cos(a)) + sym_h * abs(math.sin(a))
    box_h = sym_w * abs(math.sin(a)) + sym_h * abs(math.cos(a))
    scale = min(label.module_px, 0.95 * width / box_w, 0.95 * height / box_h)
    w, h = sym_w * scale, sym_h * scale
    # Corners of the symbol in the frame: scaled, perspective-squeezed, rotated, placed.
    half = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    squeeze = 1.0 - label.tilt
    half[1:3, 1] *= squeeze  # right edge recedes
    a = math.radians(-label.angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    # A random sub-pixel offset, as in a camera: exact half-pixel edges are an artefact that
    # leaves every edge pixel at the binarizer's threshold.
    # The whole label stays in the frame (a cut-off symbol is unreadable by any decoder).
    half_w, half_h = box_w * scale / 2 + 2, box_h * scale / 2 + 2
    cx = min(max(label.center[0] * width, half_w), width - half_w)
    cy = min(max(label.center[1] * height, half_h), height - half_h)
    center = np.array([cx, cy]) + rng.uniform(0.1, 0.4, 2)
    dst = (half @ rot.T + center).astype(np.float32)
    src = np.array([[0, 0], [sym_w, 0], [sym_w, sym_h], [0, sym_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    # Print contrast of a real label: never pure black on pure white.
    ink, paper = float(rng.uniform(20, 60)), float(rng.uniform(190, 240))
    printed = (symbol.astype(np.float32) / 255.0) * (paper - ink) + ink
    warped = cv2.warpPerspective(
        printed, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=-1.0
    )
    mask = warped >= 0
    frame[mask] = np.clip(warped[mask], 0, 255).astype(np.uint8)


def render_scene(
    labels: Sequence[Label],
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    blur: float = 0.8,
    noise: float = 4.0,
) -> Frame:
    """A grayscale camera frame showing `labels` (an empty sequence gives an empty scene)."""
    rng = np.random.default_rng(seed)
    frame = background(size, rng)
    for label in labels:
        place(frame, label, rng)
    image = frame.astype(np.float32)
    if blur > 0:
        image = np.asarray(cv2.GaussianBlur(image, (0, 0), blur), dtype=np.float32)
    if noise > 0:
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    out: npt.NDArray[np.uint8] = np.clip(image, 0, 255).astype(np.uint8)
    return out


# The retail and GS1 mix a checkout lane sees (GS1 Sunrise 2027: 2-D codes at the POS).
RETAIL_FORMATS = ("EAN13", "EAN8", "UPCA", "UPCE", "Code128", "DataBar", "QRCode", "DataMatrix")

RETAIL_LABELS = (
    Label("4006381333931", "EAN13"),
    Label("96385074", "EAN8"),
    Label("036000291452", "UPCA", expected="0036000291452"),
    Label("01234565", "UPCE", expected="0012345000065"),
    Label(
        "(01)09506000134352(17)270101(10)ABC123(21)S1",
        "Code128",
        gs1=True,
        expected="01095060001343521727010110ABC123\x1d21S1",
        module_px=2.0,
    ),
    Label(
        "(01)09506000134352(17)270101(10)ABC123(21)S1",
        "DataMatrix",
        gs1=True,
        expected="01095060001343521727010110ABC123\x1d21S1",
        module_px=5.0,
    ),
    Label("https://id.gs1.org/01/09506000134352/10/ABC123?17=270101", "QRCode", module_px=4.0),
    Label("SCANSTATION-TEST-0001", "Code128", module_px=2.5),
)


def retail_frames(count: int, seed: int = 0, tilted_1d: bool = False) -> list[tuple[Frame, str]]:
    """`count` 1280×720 frames, each with one retail/GS1 label; (frame, expected text).

    With `tilted_1d`, every frame carries a GS1-128 label at a random angle instead.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        if tilted_1d:
            base = RETAIL_LABELS[4]
            angle = float(rng.uniform(0, 180))
        else:
            base = RETAIL_LABELS[i % len(RETAIL_LABELS)]
            angle = float(rng.choice([0.0, 0.0, 90.0, 180.0, float(rng.uniform(-4, 4))]))
            if base.format in ("QRCode", "DataMatrix"):
                angle = float(rng.uniform(0, 360))
        label = Label(
            base.content,
            base.format,
            gs1=base.gs1,
            expected=base.expected,
            module_px=base.module_px * float(rng.uniform(0.9, 1.2)),
            angle=angle,
            center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
            tilt=float(rng.uniform(0.0, 0.15)),
        )
        frame = render_scene([label], seed=seed * 100_003 + i, blur=float(rng.uniform(0.5, 1.1)))
        frames.append((frame, label.text))
    return frames
