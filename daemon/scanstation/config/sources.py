"""[[sources]]: camera, hid, serial, stdin and replay scanners."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
)

from scanstation.config.base import KeyboardLayout, Section


class _SourceBase(Section):
    name: str = Field(
        ..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", description="Source name"
    )
    enabled: bool = True


class CameraSourceConfig(_SourceBase):
    type: Literal["camera"]
    backend: Literal["picamera2", "opencv", "file"] = Field(
        "opencv",
        description="picamera2 (Pi camera modules), opencv (USB/V4L2, RTSP, video files), "
        "file (image folder or video replayed at fps)",
    )
    device: str = Field("0", description="Camera index, V4L2 path, RTSP URL, video file or folder")
    resolution: tuple[int, int] = Field((1280, 720), description="Width and height in pixels")
    fps: float = Field(15.0, gt=0, le=120, description="Frames per second asked; replay pace")
    formats: list[str] = Field(
        default_factory=list, description="zxing-cpp format names; empty means all"
    )
    roi: tuple[float, float, float, float] | None = Field(
        None, description="Region of interest as fractions: x, y, width, height"
    )
    trigger: Literal["continuous", "gpio", "software"] = Field(
        "continuous",
        description="continuous: always reading; software (HTTP/MQTT) or gpio (photo-eye): "
        "read windows, with a no-read image when one ends without a code",
    )
    read_window_ms: int = Field(
        1000, gt=0, description="Read window after a trigger; ends early on the first good read"
    )
    dedup_window_s: float = Field(
        2.0, ge=0, description="A code must be out of view this long before it is read again"
    )
    autofocus: Literal["continuous", "auto", "manual"] = Field(
        "continuous",
        description="picamera2 autofocus modules: continuous, auto (one cycle at start), or "
        "manual at lens_position",
    )
    lens_position: float | None = Field(None, ge=0, description="Manual focus, dioptres")
    loop: bool = Field(False, description="file backend: replay the files forever")
    decode_threads: int = Field(0, ge=0, description="Decoder threads; 0 uses every core")
    try_invert: bool = Field(
        False,
        description="Also look for light-on-dark codes in the whole frame (about 2× decode time)",
    )
    retries: bool = Field(
        True,
        description="Frames the first pass read nothing in: deskew 1-D-looking regions; "
        "contrast/upscale small images",
    )
    skip_static: bool = Field(
        True, description="Do not decode a frame again while the scene has not changed"
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="Preview and no-read image quality")
    quality: bool = Field(
        True,
        description="Measure each read's quality indicators (contrast, modulation, edge width, "
        "quiet zone, module size, decode margin, 0-100 score; about 0.4–1 ms per read); "
        "indicative, not an ISO/IEC 15416/15415 grade",
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from scanstation.barcode.decode import DecodeError, parse_formats

        try:
            parse_formats(value)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("roi")
    @classmethod
    def _roi_inside_frame(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        x, y, w, h = value
        inside = 0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1
        if not inside or x + w > 1.0001 or y + h > 1.0001:
            raise ValueError(
                f"roi {value!r}: expected fractions x, y, width, height inside the frame "
                "(0 ≤ x, y < 1; 0 < width, height ≤ 1; x + width ≤ 1; y + height ≤ 1)"
            )
        return value


class HidSourceConfig(_SourceBase):
    type: Literal["hid"]
    device: str = Field(
        "auto",
        description="/dev/input/by-id/…-event-kbd path, or auto: every device whose name "
        "looks like a barcode scanner",
    )
    layout: KeyboardLayout = Field(
        "us",
        description="Keyboard country the scanner is programmed for (not the console's), as xkb "
        "spells it: us, de, fr, ch(fr), us(intl), latam …",
    )
    grab: bool = Field(True, description="Grab the device so keystrokes never reach the console")
    gs_substitutes: list[str] = Field(
        default_factory=list, description="Text the scanner sends in place of GS, e.g. '<GS>'"
    )
    function_keys: dict[str, str] = Field(
        default_factory=dict, description="Function key to text, e.g. {F8 = '\\u001d'}"
    )
    prefix: str = Field("", description="Text every scan starts with (stripped; else dropped)")
    suffix: str = Field("", description="Text every scan ends with (stripped; else dropped)")
    terminator: Literal["enter", "tab", "none"] = Field(
        "enter", description="Key that ends a scan; none: a pause (or the suffix) ends it"
    )
    inter_key_timeout_ms: int = Field(
        50, gt=0, description="A longer gap ends a scan (humans type slower than scanners)"
    )
    aim_identifier: bool = Field(
        True, description="Split a leading AIM symbology identifier (]d2) off the value"
    )
    min_length: int = Field(1, ge=1, description="Shorter scans are dropped as stray key presses")

    @field_validator("function_keys")
    @classmethod
    def _function_key_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not (name.startswith("F") and name[1:].isdigit() and 1 <= int(name[1:]) <= 24):
                raise ValueError(f"unknown function key {name!r}; expected F1 to F24")
        return value

    @field_validator("gs_substitutes")
    @classmethod
    def _non_empty_substitutes(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("a GS substitute is empty; expected visible text such as '<GS>'")
        return value


class SerialSourceConfig(_SourceBase):
    type: Literal["serial"]
    port: str = Field(..., description="e.g. /dev/ttyACM0 or /dev/serial/by-id/…")
    baud: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = Field(8, description="Data bits (RS-232 scanners: often 7 or 8)")
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    terminator: str = Field(
        "\r\n", description="Frame terminator; any of its characters ends a frame; '' = pause"
    )
    frame_timeout_ms: int = Field(
        100, gt=0, description="A pause this long ends a frame that has no terminator yet"
    )
    encoding: Literal["utf-8", "latin-1", "cp1252"] = Field(
        "utf-8", description="How the scanner's bytes are read as text"
    )
    gs_substitutes: list[str] = Field(default_factory=list)
    aim_identifier: bool = Field(
        True, description="Split a leading AIM symbology identifier (]d2) off the value"
    )

    @field_validator("gs_substitutes")
    @classmethod
    def _non_empty_substitutes(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("a GS substitute is empty; expected visible text such as '<GS>'")
        return value


class StdinSourceConfig(_SourceBase):
    type: Literal["stdin"]
    gs_substitutes: list[str] = Field(
        default_factory=lambda: ["\\x1d"], description="Typed stand-ins for GS"
    )


class ReplaySourceConfig(_SourceBase):
    type: Literal["replay"]
    file: Path | None = Field(
        None, description="Text file of raw values, one per line (default: bundled samples)"
    )
    interval_s: float = Field(1.0, ge=0, description="Pause between replayed scans")
    loop: bool = False


SourceConfig = Annotated[
    CameraSourceConfig
    | HidSourceConfig
    | SerialSourceConfig
    | StdinSourceConfig
    | ReplaySourceConfig,
    Field(discriminator="type"),
]
