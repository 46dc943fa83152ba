"""The no-read image ring (services/noreads.py): count, byte and free-space limits on real
files, oldest first; names that are not ring frames are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scanstation.config import NoReadImagesConfig
from scanstation.model import Capture, CaptureStatus, CaptureType
from scanstation.services.noreads import NoReadNotFound, NoReadRing

BLANK = Capture(
    id=1, public_id="A" * 22, session_public_id="s" * 22, status=CaptureStatus.NOT_FOUND,
    capture_type=CaptureType.IMAGE, raw_value="", gtin="", symbology="", symbology_identifier="",
    source="cam0", error_message="", created=1_800_000_000.0, processed_at=None, gs1_dl_data={},
    product_public_id="", product_name="", uploaded_image_key="", qr_analysis=None,
    metadata={"noread": "true"}, checks={}, revision=1,
)  # fmt: skip


def frame(images: Path, n: int, size: int = 1000, **metadata: str) -> Capture:
    key = f"2027/01/01/{n:04d}.jpg"
    (images / key).parent.mkdir(parents=True, exist_ok=True)
    (images / key).write_bytes(b"\xff\xd8" + bytes([n]) * (size - 2))
    return dataclasses.replace(
        BLANK,
        public_id=f"{n:022d}",
        created=BLANK.created + n,
        uploaded_image_key=key,
        metadata=metadata or {"noread": "true"},
    )


def ring(tmp_path: Path, free: list[int] | None = None, **settings: float) -> NoReadRing:
    config = NoReadImagesConfig(**{"reserve_free_mb": 0, **settings})
    free_bytes = (lambda _path: free[0]) if free is not None else None
    return NoReadRing(config, tmp_path / "noreads", tmp_path / "images", free_bytes=free_bytes)


async def test_ring_keeps_the_newest_frames_within_count_and_bytes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    by_count = ring(tmp_path, max_count=3)
    for n in range(5):
        await by_count.on_capture(frame(images, n))
    kept = await by_count.entries()
    assert [e.capture_public_id for e in kept] == [f"{n:022d}" for n in (4, 3, 2)]
    assert kept[0].bytes == 1000
    assert by_count.path_of(kept[0].name).read_bytes()[:3] == b"\xff\xd8\x04"

    by_bytes = ring(tmp_path / "b", max_mb=2500 / 1024 / 1024)
    for n in range(4):
        await by_bytes.on_capture(frame(tmp_path / "b" / "images", n))
    assert len(await by_bytes.entries()) == 2  # 2 × 1000 bytes fit in 2500


async def test_ring_gives_way_to_the_free_space_reserve(tmp_path: Path) -> None:
    free = [10 * 1024 * 1024]
    low = ring(tmp_path, free=free, reserve_free_mb=5)
    await low.on_capture(frame(tmp_path / "images", 1))
    assert len(await low.entries()) == 1
    free[0] = 4 * 1024 * 1024  # the disk filled up: frames go, none is kept
    await low.on_capture(frame(tmp_path / "images", 2))
    assert await low.entries() == []
    assert low.skipped_low_disk == 1


async def test_ring_keeps_low_quality_reads_only_when_asked(tmp_path: Path) -> None:
    images = tmp_path / "images"
    off = ring(tmp_path)
    on = ring(tmp_path / "on", low_quality_below=50)
    weak = frame(images, 1, quality_score="31")
    strong = frame(images, 2, quality_score="88")
    assert (off.wants(weak), on.wants(weak), on.wants(strong)) == (False, True, False)


def test_ring_refuses_names_that_are_not_its_frames(tmp_path: Path) -> None:
    plain = ring(tmp_path)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for name in ("../secret.jpg", "secret.jpg", "1800000001000-cam0-" + "A" * 22 + ".jpg"):
        with pytest.raises(NoReadNotFound):
            plain.path_of(name)
