"""Regenerate the bundled sample frames: ``python -m scanstation.data.samples.make_samples``
(or run this file). Writes the JPEGs and expected.json beside it, deterministically.

Every frame is rendered by zxing-cpp's writer onto a cluttered, unevenly lit background, then
tilted, put in perspective, blurred, noised and JPEG-compressed like a camera frame.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from scanstation.commands.bench.scenes import Label, render_scene

HERE = Path(__file__).resolve().parent
SIZE = (960, 540)
GS1_ELEMENT = "(01)09506000134352(17)270101(10)ABC123(21)S1"
GS1_PLAIN = "01095060001343521727010110ABC123\x1d21S1"
DIGITAL_LINK = "https://id.gs1.org/01/09506000134352/10/ABC123?17=270101"

SAMPLES: list[tuple[str, list[Label], int]] = [
    ("01-ean13.jpg", [Label("4006381333931", "EAN13", module_px=3.0, angle=3, tilt=0.1)], 1),
    (
        "02-gs1-datamatrix.jpg",
        [Label(GS1_ELEMENT, "DataMatrix", gs1=True, expected=GS1_PLAIN, module_px=6, angle=17)],
        2,
    ),
    (
        "03-digital-link-qr.jpg",
        [Label(DIGITAL_LINK, "QRCode", module_px=5, angle=-8, tilt=0.12)],
        3,
    ),
    (
        "04-gs1-128-tilted.jpg",
        [Label(GS1_ELEMENT, "Code128", gs1=True, expected=GS1_PLAIN, module_px=2.2, angle=24)],
        4,
    ),
    ("05-code128.jpg", [Label("SCANSTATION-0001", "Code128", module_px=3, angle=-2, tilt=0.05)], 5),
    (
        "06-two-codes.jpg",
        [
            Label("5901234123457", "EAN13", module_px=2.5, center=(0.3, 0.5)),
            Label("https://example.com/p/42", "QRCode", module_px=5, center=(0.75, 0.5), angle=30),
        ],
        6,
    ),
    ("07-empty.jpg", [], 7),
]


def main() -> int:
    expected: dict[str, list[str]] = {}
    for name, labels, seed in SAMPLES:
        frame = render_scene(labels, size=SIZE, seed=seed, blur=1.0, noise=3.0)
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            print(f"cannot encode {name}", file=sys.stderr)
            return 1
        (HERE / name).write_bytes(data.tobytes())
        expected[name] = [label.text for label in labels]
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=True) + "\n", encoding="utf-8"
    )
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.is_file())
    print(f"wrote {len(SAMPLES)} samples to {HERE} ({total / 1024:.0f} KB in the folder)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
