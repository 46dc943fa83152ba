"""`scanstation devices --calibrate`: the printed barcode, reading one scan, the verdict."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import zxingcpp
from PIL import Image

from scanstation.commands.devices import (
    CALIBRATION_TEXT,
    calibrate_layouts,
    print_calibration,
    read_one_scan,
)
from scanstation.hw import keymaps
from scanstation.sources.hid import FakeInputBus

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_calibration_barcode_in_docs_holds_the_calibration_text() -> None:
    (found,) = zxingcpp.read_barcodes(Image.open(DOCS / "calibration-barcode.png"))
    assert found.format == zxingcpp.BarcodeFormat.Code128
    assert found.text == CALIBRATION_TEXT
    assert (DOCS / "calibration-barcode.pdf").read_bytes().startswith(b"%PDF")


async def test_calibrate_reads_one_scan_and_prints_the_layout_setting() -> None:
    bus = FakeInputBus()
    path = "/dev/input/by-id/usb-Fake-event-kbd"
    bus.plug(path)
    log = io.StringIO()
    reading = asyncio.create_task(read_one_scan(path, seconds=5, open_device=bus.open, log=log))
    await bus.wait_grabbed(path)
    bus.type(path, keymaps.keystrokes("fr", CALIBRATION_TEXT), start=1_700_000_000.0)
    events = await reading
    out = io.StringIO()
    assert print_calibration(calibrate_layouts(events), out) == 0
    assert out.getvalue().splitlines()[0] == 'layout = "fr"'
    assert "Scan the calibration barcode" in log.getvalue()
    assert path not in bus.grabbed_by


def test_calibrate_wrong_barcode_lists_the_closest_layouts() -> None:
    result = calibrate_layouts(keymaps.keystrokes("de", CALIBRATION_TEXT[:20]))
    assert result.exact == []
    out = io.StringIO()
    assert print_calibration(result, out) == 1
    assert "No layout decodes the calibration barcode exactly" in out.getvalue()
    assert "  de: " in out.getvalue()
