"""Upload hardening: type from content, pixel cap before decoding, upright and metadata-free."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat, PngImagePlugin

from scanstation.vision.images import UploadError, sanitize_upload, sniff_format

IMAGES = Path(__file__).parents[1] / "data" / "images"
MAX_PIXELS = 40_000_000
SECRET = b"GPS 52.3676N 4.9041E serial 0xC0FFEE"


def photo(name: str = "chelsea.jpg") -> Image.Image:
    with Image.open(IMAGES / name) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 3.0)}  # GPSInfo
    return exif


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header declares width × height 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\x00"))
        + png_chunk(b"IEND", b"")
    )


def zero_bomb(width: int, height: int) -> bytes:
    """A real, valid PNG of black pixels: tiny on disk, width × height bytes once decoded."""
    row = b"\x00" * (width + 1)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_declaring(width, height, idat)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


# ---- accepted uploads -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"])
def test_sanitize_upload_keeps_a_real_photo(name: str) -> None:
    data = (IMAGES / name).read_bytes()
    stored, ext = sanitize_upload(data, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(stored)) as original, Image.open(io.BytesIO(data)) as again:
        assert (ext, original.format, original.size) == ("jpg", "JPEG", again.size)
        assert mean_difference(original, again) < 3


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_sanitize_upload_applies_exif_orientation(
    orientation: int, transpose: Image.Transpose
) -> None:
    source = photo()
    data = encode(source, "JPEG", quality=95, exif=exif_with_orientation(orientation))
    stored, _ = sanitize_upload(data, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(stored)) as result:
        expected = source.transpose(transpose)
        assert result.size == expected.size
        assert mean_difference(result, expected) < 3
        assert dict(result.getexif()) == {}


def test_sanitize_upload_strips_jpeg_metadata() -> None:
    data = encode(photo(), "JPEG", exif=exif_with_orientation(1), comment=SECRET) + SECRET
    stored, ext = sanitize_upload(data, max_pixels=MAX_PIXELS)
    assert SECRET[:10] in data
    assert (ext, SECRET[:10] in stored, b"SecretCam" in stored, b"Exif" in stored) == (
        "jpg",
        False,
        False,
        False,
    )
    with Image.open(io.BytesIO(stored)) as result:
        assert ("comment" in result.info, dict(result.getexif())) == (False, {})


def test_sanitize_upload_strips_png_text_and_keeps_transparency() -> None:
    image = photo().convert("RGBA").resize((64, 48))
    image.putpixel((0, 0), (255, 0, 0, 0))
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", SECRET.decode())
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>" + SECRET.decode() + "</x:xmpmeta>")
    data = encode(image, "PNG", pnginfo=info, exif=exif_with_orientation(1))
    stored, ext = sanitize_upload(data, max_pixels=MAX_PIXELS)
    assert (ext, SECRET[:10] in stored, b"SecretCam" in stored) == ("png", False, False)
    with Image.open(io.BytesIO(stored)) as result:
        assert (result.mode, result.size, result.getpixel((0, 0))) == (
            "RGBA",
            (64, 48),
            (255, 0, 0, 0),
        )
        assert result.text == {}
        assert result.tobytes() == image.tobytes()


def test_sanitize_upload_turns_a_transparent_palette_into_rgba() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    data = encode(image, "PNG", transparency=0)
    stored, _ = sanitize_upload(data, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(stored)) as result:
        assert (result.mode, result.getpixel((0, 0))) == ("RGBA", (255, 255, 255, 255))


def test_sanitize_upload_webp_without_metadata() -> None:
    data = encode(photo().resize((120, 90)), "WEBP", exif=exif_with_orientation(6))
    stored, ext = sanitize_upload(data, max_pixels=MAX_PIXELS)
    assert (ext, sniff_format(stored), b"SecretCam" in stored, b"EXIF" in stored) == (
        "webp",
        "WEBP",
        False,
        False,
    )
    with Image.open(io.BytesIO(stored)) as result:
        assert result.size == (90, 120)  # turned upright


def test_sanitize_upload_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(photo().resize((40, 30)).convert("CMYK"), "JPEG")
    stored, _ = sanitize_upload(data, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(stored)) as result:
        assert (result.mode, result.size) == ("RGB", (40, 30))


def test_sanitize_upload_keeps_the_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    stored, _ = sanitize_upload(out.getvalue(), max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(stored)) as result:
        pixel = result.convert("RGB").getpixel((8, 8))
        assert getattr(result, "n_frames", 1) == 1
        assert pixel == pytest.approx((255, 0, 0), abs=8)  # the first frame: red


# ---- refused uploads --------------------------------------------------------------------


def jpeg_bytes() -> bytes:
    return (IMAGES / "chelsea.jpg").read_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "image must be a JPEG, PNG or WebP file; got an empty file"),
        (
            encode(Image.new("RGB", (4, 4)), "GIF"),
            "image must be a JPEG, PNG or WebP file; got a GIF image",
        ),
        (
            encode(Image.new("RGB", (4, 4)), "BMP"),
            "image must be a JPEG, PNG or WebP file; got a BMP image",
        ),
        (
            encode(Image.new("RGB", (4, 4)), "TIFF"),
            "image must be a JPEG, PNG or WebP file; got a TIFF image",
        ),
        (b"%PDF-1.7\n%\xe2\xe3", "image must be a JPEG, PNG or WebP file; got a PDF document"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image must be a JPEG, PNG or WebP file; got an SVG or XML file",
        ),
        (
            b"<!DOCTYPE html><html></html>",
            "image must be a JPEG, PNG or WebP file; got an HTML page",
        ),
        (
            b"hello world",
            "image must be a JPEG, PNG or WebP file; got a file starting with bytes "
            "68 65 6c 6c 6f 20 77 6f",
        ),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "image must be a JPEG, PNG or WebP file; got a file"),
    ],
)
def test_sanitize_upload_refuses_other_types_with_415(data: bytes, message: str) -> None:
    with pytest.raises(UploadError) as info:
        sanitize_upload(data, max_pixels=MAX_PIXELS)
    assert (info.value.status, info.value.field) == (415, "image")
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (jpeg_bytes()[:3000], "JPEG"),
        (b"\xff\xd8\xff" + b"\x00" * 64, "JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "PNG"),
        (png_declaring(4, 4, b"not zlib at all"), "PNG"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "WEBP"),
    ],
)
def test_sanitize_upload_refuses_damaged_files_with_415(data: bytes, fmt: str) -> None:
    with pytest.raises(UploadError) as info:
        sanitize_upload(data, max_pixels=MAX_PIXELS)
    assert info.value.status == 415
    assert info.value.message.startswith(f"image looks like {fmt} but cannot be read as one (")


def test_sanitize_upload_refuses_too_many_pixels_with_413() -> None:
    with pytest.raises(UploadError) as info:
        sanitize_upload(jpeg_bytes(), max_pixels=100_000)
    assert (info.value.status, info.value.message) == (
        413,
        "image is 450×300 = 135000 pixels; at most 100000 are allowed ([http] max_upload_pixels)",
    )


@pytest.mark.parametrize(
    ("width", "height"), [(100_000, 100_000), (8_000, 6_000), (1, 50_000_000), (65_535, 65_535)]
)
def test_sanitize_upload_refuses_a_declared_bomb_before_decoding(width: int, height: int) -> None:
    started = time.perf_counter()
    with pytest.raises(UploadError) as info:
        sanitize_upload(png_declaring(width, height), max_pixels=MAX_PIXELS)
    assert info.value.status == 413
    assert time.perf_counter() - started < 0.5


def test_sanitize_upload_refuses_a_real_zero_bomb_cheaply() -> None:
    """A valid 8000×6000 PNG of zeros: about 50 kB on disk, 48 MB decoded; never decoded."""
    bomb = zero_bomb(8_000, 6_000)
    assert len(bomb) < 100_000
    with Image.open(io.BytesIO(bomb)) as check:
        assert check.size == (8_000, 6_000)
    started = time.perf_counter()
    with pytest.raises(UploadError) as info:
        sanitize_upload(bomb, max_pixels=MAX_PIXELS)
    assert info.value.message == (
        "image is 8000×6000 = 48000000 pixels; at most 40000000 are allowed "
        "([http] max_upload_pixels)"
    )
    assert time.perf_counter() - started < 0.2


def test_sanitize_upload_past_pillows_own_limit_is_still_413() -> None:
    with pytest.raises(UploadError) as info:
        sanitize_upload(png_declaring(30_000, 30_000), max_pixels=10**12)
    assert info.value.status == 413


def test_sanitize_upload_result_is_stable() -> None:
    """Sanitizing a sanitized image changes nothing a user would see."""
    once, _ = sanitize_upload(jpeg_bytes(), max_pixels=MAX_PIXELS)
    twice, _ = sanitize_upload(once, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(once)) as a, Image.open(io.BytesIO(twice)) as b:
        assert a.size == b.size
        assert mean_difference(a, b) < 2
