#!/usr/bin/env python3
"""Draw the keyboard-layout calibration barcode: docs/calibration-barcode.png and .pdf.

A Code 128 of scanstation.commands.devices.CALIBRATION_TEXT, drawn by zxing-cpp and laid
out with Pillow on an A4 landscape page; `scanstation devices --calibrate DEVICE` reads a
scan of it. Run: .venv/bin/python scripts/make_calibration_barcode.py
"""

from __future__ import annotations

from pathlib import Path

import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from scanstation.commands.devices import CALIBRATION_TEXT

DOCS = Path(__file__).resolve().parent.parent / "docs"
DPI = 200
PAGE = (round(297 / 25.4 * DPI), round(210 / 25.4 * DPI))  # A4 landscape


def main() -> int:
    barcode = zxingcpp.create_barcode(CALIBRATION_TEXT, zxingcpp.BarcodeFormat.Code128)
    # 0.3 mm modules at 200 dpi is about 2.4 px: draw at 1 px a module, scale by 3 (0.38 mm).
    symbol = Image.fromarray(
        zxingcpp.write_barcode_to_image(barcode, scale=1, add_quiet_zones=True)
    )
    symbol = symbol.convert("L")
    symbol = symbol.resize((symbol.width * 3, 320), Image.Resampling.NEAREST)
    page = Image.new("L", PAGE, 255)
    draw = ImageDraw.Draw(page)
    title = ImageFont.load_default(size=56)
    body = ImageFont.load_default(size=30)
    draw.text((120, 100), "scanstation keyboard-layout calibration", font=title, fill=0)
    draw.text(
        (120, 190),
        "Run `scanstation devices --calibrate /dev/input/by-id/…-event-kbd`, then scan this code.",
        font=body,
        fill=0,
    )
    page.paste(symbol, ((PAGE[0] - symbol.width) // 2, 420))
    draw.text((120, 800), f"Code 128: {CALIBRATION_TEXT}", font=body, fill=0)
    draw.text((120, 860), "Print at 100 % (no fit-to-page scaling).", font=body, fill=0)
    page.save(DOCS / "calibration-barcode.png", optimize=True)
    page.convert("RGB").save(DOCS / "calibration-barcode.pdf", resolution=DPI)
    print(DOCS / "calibration-barcode.png", DOCS / "calibration-barcode.pdf")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
