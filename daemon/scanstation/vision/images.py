"""Upload hardening: an uploaded image is judged by its content, capped in pixels, and re-encoded.

:func:`sanitize_upload` is pure (bytes in, bytes out) and blocking: call it in a thread.

- The type comes from the file's first bytes, never from its name or Content-Type: JPEG,
  PNG and WebP only (else 415). Pillow is then told to open only that format.
- The pixel count is read from the header and checked *before* any pixel is decoded, so a
  decompression bomb (a small file declaring a huge image) costs nothing (413).
- The image is decoded once, turned upright by its EXIF orientation and encoded afresh in
  the same format: EXIF (GPS, camera serial), XMP, comments and any bytes hidden after the
  image (polyglots) are gone. Only the colour profile is kept.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Literal

from scanstation.vision import VisionError

if TYPE_CHECKING:  # Pillow is imported by the first upload, not at start-up (~2 MB)
    from PIL import Image

UploadFormat = Literal["JPEG", "PNG", "WEBP"]

EXTENSIONS: dict[UploadFormat, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
JPEG_QUALITY = 90

# What other files look like, to say what was sent instead (first bytes -> name).
_OTHER_SIGNATURES = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x00\x00\x01\x00", "an icon file"),
    (b"8BPS", "a Photoshop file"),
)


class UploadError(VisionError):
    """An upload the API refuses; ``status`` is the HTTP status to answer with (413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = "image"


def sniff_format(data: bytes) -> UploadFormat | None:
    """The upload format the content is, from its signature; None for anything else.

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n....")
    'PNG'
    >>> sniff_format(b"GIF89a") is None
    True
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_other(data: bytes) -> str:
    if not data:
        return "an empty file"
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return "an SVG or XML file"
    if head.startswith((b"<!doctype", b"<html")):
        return "an HTML page"
    return f"a file starting with bytes {data[:8].hex(' ')}"


def _unsupported(data: bytes) -> UploadError:
    return UploadError(
        415,
        f"image must be a JPEG, PNG or WebP file; got {_describe_other(data)}",
    )


def _damaged(fmt: UploadFormat, exc: BaseException) -> UploadError:
    detail = str(exc) or type(exc).__name__
    return UploadError(415, f"image looks like {fmt} but cannot be read as one ({detail})")


def _too_many_pixels(width: int, height: int, max_pixels: int) -> UploadError:
    return UploadError(
        413,
        f"image is {width}×{height} = {width * height} pixels; at most {max_pixels} are "
        "allowed ([http] max_upload_pixels)",
    )


def _storable(image: Image.Image, fmt: UploadFormat) -> Image.Image:
    """The image in a mode the format stores faithfully."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if fmt == "JPEG":
        return image if image.mode in ("L", "RGB") else image.convert("RGB")
    if has_alpha:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    if fmt == "PNG" and image.mode in ("1", "L", "RGB", "I;16"):
        return image
    return image if image.mode == "RGB" else image.convert("RGB")


def _colour_space(mode: str) -> str:
    if mode in ("1", "L", "LA", "La", "I", "I;16", "F"):
        return "grey"
    if mode in ("CMYK",):
        return "cmyk"
    return "rgb"  # RGB, RGBA, P (an RGB palette), YCbCr


def sanitize_upload(data: bytes, *, max_pixels: int) -> tuple[bytes, str]:
    """The image re-encoded upright and without metadata, and its file extension.

    Raises :class:`UploadError`: 415 when the content is not a readable JPEG, PNG or WebP,
    413 when it has more than ``max_pixels`` pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    fmt = sniff_format(data)
    if fmt is None:
        raise _unsupported(data)
    try:
        with warnings.catch_warnings():
            # We judge the size ourselves below, against our own cap.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise UploadError(413, f"image declares too many pixels (over {max_pixels})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _damaged(fmt, exc) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise UploadError(415, f"image is {width}×{height} pixels; it has no picture")
        if width * height > max_pixels:
            raise _too_many_pixels(width, height, max_pixels)
        icc_profile = image.info.get("icc_profile")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()  # first frame only: an animation is stored as its first picture
                upright = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise _too_many_pixels(width, height, max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise _damaged(fmt, exc) from None
    clean = _storable(upright, fmt)
    # Drop every piece of metadata Pillow would otherwise carry over (e.g. a JPEG comment).
    clean.info = {}
    out = io.BytesIO()
    options: dict[str, object] = {}
    # The colour profile describes the original colour space: keep it only while that holds.
    same_space = _colour_space(upright.mode) == _colour_space(clean.mode)
    if isinstance(icc_profile, bytes) and len(icc_profile) <= 1 << 20 and same_space:
        options["icc_profile"] = icc_profile
    try:
        if fmt == "JPEG":
            clean.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, **options)
        elif fmt == "PNG":
            clean.save(out, "PNG", **options)
        else:
            clean.save(out, "WEBP", quality=JPEG_QUALITY, method=4, **options)
    except (OSError, ValueError) as exc:
        raise _damaged(fmt, exc) from None
    return out.getvalue(), EXTENSIONS[fmt]
