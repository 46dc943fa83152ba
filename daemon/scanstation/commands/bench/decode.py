"""``scanstation bench decode``: decode rate and frames/s of this pipeline against bare zxing-cpp.

On the real photos of ../shared/conformance/barcode-photos (when present) and on synthetic
1280×720 frames (scenes.py: labels on a cluttered background, tilted, in perspective, blurred
and noisy; the tests and the bundled samples use the same renderer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import zxingcpp

from scanstation.barcode.decode import (
    DecodedCode,
    DecodeOptions,
    Frame,
    decode_frame,
    load_image,
    parse_formats,
)
from scanstation.commands.bench.scenes import RETAIL_FORMATS, Label, render_scene, retail_frames
from scanstation.config import CameraSourceConfig, parse_config
from scanstation.heap import settled
from scanstation.model import Emit, Scan
from scanstation.pipeline import Pipeline
from scanstation.sources.camera import CameraFrame, CameraSource
from scanstation.sources.frames import FakeCamera
from scanstation.store import Store


def bare_zxing(frame: Frame, formats: Sequence[str] = ()) -> list[DecodedCode]:
    """Bare zxing-cpp ``read_barcodes`` with its defaults (Plain text): the baseline."""
    return decode_frame(frame, DecodeOptions.zxing_defaults(formats))


def photo_hit(image: dict[str, object], codes: Sequence[DecodedCode]) -> bool:
    """Whether `codes` contain the expected content of a conformance-manifest entry."""
    text, hex_bytes = image.get("expected_text"), image.get("expected_bytes_hex")
    return any(c.text == text or (hex_bytes and c.data.hex() == hex_bytes) for c in codes)


# ---------------------------------------------------------------------------------------------
# The benchmark.

SHARED_PHOTOS = (
    Path(__file__).resolve().parents[4].parent / "shared" / "conformance" / "barcode-photos"
)


@dataclass(frozen=True, slots=True)
class DecoderRow:
    """One decoder measured on one set of images."""

    decoder: str
    images: int
    read: int
    """Images whose expected text came back."""
    false_reports: int
    """Codes reported on images without a barcode (or, on synthetic frames, wrong texts)."""
    median_ms: float
    """Median wall time per image."""
    cpu_ms: float
    """Median CPU time per image (the decoding thread's): steady when other processes load
    the machine, unlike wall time."""
    fps: float
    """Images per second over the whole set (several threads where the row says so)."""
    empty_cpu_ms: float = 0.0
    """Median CPU time on frames without a barcode (options table only)."""

    @property
    def rate(self) -> float:
        return self.read / self.images if self.images else 0.0


Reader = Callable[[Frame], list[str]]


async def _discard(scan: Scan) -> None:
    """A pipeline that keeps nothing: the camera path alone is measured."""


DISCARD = cast("Emit", _discard)


def _zxing_reader(formats: Sequence[str], tuned: bool) -> Reader:
    wanted = zxingcpp.BarcodeFormats(parse_formats(formats))
    invert = not tuned

    def read(frame: Frame) -> list[str]:
        found = zxingcpp.read_barcodes(
            frame, formats=wanted, try_invert=invert, text_mode=zxingcpp.TextMode.Plain
        )
        return [b.text for b in found]

    return read


def _options_reader(formats: Sequence[str], **options: bool) -> Reader:
    wanted = zxingcpp.BarcodeFormats(parse_formats(formats))

    def read(frame: Frame) -> list[str]:
        found = zxingcpp.read_barcodes(
            frame,
            formats=wanted,
            try_rotate=options.get("try_rotate", True),
            try_downscale=options.get("try_downscale", True),
            try_invert=options.get("try_invert", True),
            text_mode=zxingcpp.TextMode.Plain,
        )
        return [b.text for b in found]

    return read


OPTION_VARIANTS: tuple[tuple[str, tuple[str, ...], dict[str, bool]], ...] = (
    ("defaults, every format", (), {}),
    ("defaults, retail formats", RETAIL_FORMATS, {}),
    ("+ try_invert=False (used)", RETAIL_FORMATS, {"try_invert": False}),
    ("+ try_rotate=False", RETAIL_FORMATS, {"try_invert": False, "try_rotate": False}),
    (
        "+ try_downscale=False instead",
        RETAIL_FORMATS,
        {"try_invert": False, "try_downscale": False},
    ),
    (
        "all three off",
        RETAIL_FORMATS,
        {"try_invert": False, "try_rotate": False, "try_downscale": False},
    ),
)


def options_rows(images: Sequence[tuple[Frame, str | None, str | None]]) -> list[DecoderRow]:
    """zxing-cpp's extra attempts switched off one by one: what each costs and reads."""
    empty = [(render_scene([], seed=s), None, None) for s in range(8)]
    rows = []
    for name, formats, options in OPTION_VARIANTS:
        reader = _options_reader(formats, **options)
        row = measure(name, reader, images)
        idle = measure(name, reader, empty)
        rows.append(replace(row, false_reports=row.false_reports, empty_cpu_ms=idle.cpu_ms))
    return rows


def _pipeline_reader(formats: Sequence[str]) -> Reader:
    options = DecodeOptions(formats=tuple(formats))
    return lambda frame: [c.text for c in decode_frame(frame, options)]


def _pyzbar_reader() -> Reader | None:
    try:
        from pyzbar import pyzbar  # type: ignore[import-not-found, unused-ignore]
    except Exception:  # ImportError, or the zbar shared library missing
        return None

    def read(frame: Frame) -> list[str]:
        return [d.data.decode("utf-8", "replace") for d in pyzbar.decode(frame)]

    return read


def _opencv_reader() -> Reader:
    barcode = cv2.barcode.BarcodeDetector()
    qr = cv2.QRCodeDetector()

    def read(frame: Frame) -> list[str]:
        texts: list[str] = []
        try:
            ok, decoded, *_ = barcode.detectAndDecodeMulti(frame)
            if ok:
                texts += [t for t in decoded if t]
        except (cv2.error, UnicodeDecodeError):  # binary QR payloads break its UTF-8 decode
            pass
        try:
            ok, decoded, *_ = qr.detectAndDecodeMulti(frame)
            if ok:
                texts += [t for t in decoded if t]
        except (cv2.error, UnicodeDecodeError):  # binary QR payloads break its UTF-8 decode
            pass
        return texts

    return read


def measure(
    name: str,
    reader: Reader,
    images: Sequence[tuple[Frame, str | None, str | None]],
    threads: int = 1,
) -> DecoderRow:
    """Run `reader` over (frame, expected text or None for negatives, expected bytes hex)."""

    def one(item: tuple[Frame, str | None, str | None]) -> tuple[float, float, list[str]]:
        started, cpu = time.perf_counter(), time.thread_time()
        texts = reader(item[0])
        return time.perf_counter() - started, time.thread_time() - cpu, texts

    started = time.perf_counter()
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, images))
    else:
        results = [one(item) for item in images]
    elapsed = time.perf_counter() - started
    read = false = 0
    for (_, _, texts), (_, expected, hex_bytes) in zip(results, images, strict=True):
        if expected is None and hex_bytes is None:
            false += bool(texts)
            continue
        if expected in texts or (
            hex_bytes and any(t.encode("latin-1", "replace").hex() == hex_bytes for t in texts)
        ):
            read += 1
    positives = sum(1 for _, e, h in images if e is not None or h is not None)
    return DecoderRow(
        decoder=name,
        images=positives,
        read=read,
        false_reports=false,
        median_ms=round(statistics.median(t for t, _, _ in results) * 1000, 2),
        cpu_ms=round(statistics.median(c for _, c, _ in results) * 1000, 2),
        fps=round(len(images) / elapsed, 1) if elapsed else 0.0,
    )


def load_photos(limit: int = 0) -> list[tuple[Frame, str | None, str | None]]:
    """The conformance photos as (gray, expected text, expected bytes hex); [] when absent."""
    manifest_path = SHARED_PHOTOS / "manifest.json"
    if not manifest_path.is_file():
        return []
    entries = json.loads(manifest_path.read_text(encoding="utf-8"))["images"]
    if limit:
        entries = entries[:: max(1, len(entries) // limit)][:limit]
    photos: list[tuple[Frame, str | None, str | None]] = []
    for entry in entries:
        gray = load_image(SHARED_PHOTOS / entry["path"])
        if entry["negative"]:
            photos.append((gray, None, None))
        else:
            photos.append((gray, entry["expected_text"], entry["expected_bytes_hex"]))
    return photos


STEADY_STATE_FRAMES = 240
"""The camera path replays the set until this many frames, so that starting the source (event
loop, threads, pool) does not count as decoding time; the bare loop has no such cost."""


def pipeline_fps(frames: Sequence[Frame], threads: int, formats: Sequence[str]) -> dict[str, float]:
    """Frames/s of the whole camera path (grabber, decoder pool, reader) on a replay."""
    passes = max(1, math.ceil(STEADY_STATE_FRAMES / max(len(frames), 1)))
    frames = list(frames) * passes
    cam = FakeCamera(frames)
    cam.end()
    config = CameraSourceConfig(
        type="camera",
        name="bench",
        backend="file",
        formats=list(formats),
        decode_threads=threads,
        dedup_window_s=0,
    )
    source = CameraSource(config, backend=cam)

    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(source.run(DISCARD))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "fps": round(len(frames) / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_frame": round(1000 * cpu / len(frames), 2),
        "wall_ms_per_frame": round(1000 * elapsed / len(frames), 2),
        "decoded_frames": source.stats().decoded_frames,
    }


def static_scene_cpu(frames: int = 90) -> dict[str, float]:
    """CPU spent on an unchanging, empty lane: skipping unchanged frames vs decoding all."""
    rng = np.random.default_rng(3)
    base = render_scene([], seed=99).astype(np.float32)
    noisy = [
        np.clip(base + rng.normal(0, 2.5, base.shape), 0, 255).astype(np.uint8)
        for _ in range(frames)
    ]
    result: dict[str, float] = {}
    for skip in (False, True):
        cam = FakeCamera(noisy)
        cam.end()
        config = CameraSourceConfig(
            type="camera",
            name="bench",
            backend="file",
            skip_static=skip,
            formats=list(RETAIL_FORMATS),
        )
        source = CameraSource(config, backend=cam)

        cpu = time.process_time()
        asyncio.run(source.run(DISCARD))
        result["cpu_s_skip" if skip else "cpu_s_every_frame"] = round(time.process_time() - cpu, 3)
        if skip:
            result["decoded_frames_skip"] = source.stats().decoded_frames
    result["ratio"] = round(result["cpu_s_skip"] / result["cpu_s_every_frame"], 3)
    result["frames"] = frames
    return result


def live_latency(
    count: int, fps: float = 30.0, seconds: float = 0.0, warmup: int = 0
) -> dict[str, float]:
    """Frame grabbed -> capture committed (synchronous=FULL, through the real pipeline), on a
    live camera at `fps` with a new code per frame.

    With `seconds`, the frames loop for that long instead and memory is sampled (soak test).
    With `warmup`, that many frames (codes of their own) stream first and their latencies
    are not counted: a station that has been running, not one whose first frames pay the
    start-up (the database's first pages, the decoder's first allocations); the figures with
    the start counted are returned too, as ``*_with_start``.
    """
    frames = [
        render_scene(
            [Label(f"ITEM-{i:04d}", "Code128", module_px=3.0, center=(0.5, 0.5))], seed=1000 + i
        )
        for i in range(count)
    ]
    warm = [
        render_scene(
            [Label(f"WARM-{i:04d}", "Code128", module_px=3.0, center=(0.5, 0.5))], seed=5000 + i
        )
        for i in range(warmup)
    ]
    with_start: list[float] = []
    cam = FakeCamera(live=True)
    config = CameraSourceConfig(
        type="camera", name="bench", backend="file", fps=fps, formats=list(RETAIL_FORMATS)
    )
    source = CameraSource(config, backend=cam)
    rss: list[float] = []
    decode_cpu_ms: list[float] = []
    decode = source._decode

    def timed_decode(frame: CameraFrame) -> list[DecodedCode]:
        cpu = time.thread_time()  # this decoder thread's CPU alone
        try:
            return decode(frame)
        finally:
            decode_cpu_ms.append((time.thread_time() - cpu) * 1000)

    source._decode = timed_decode  # type: ignore[method-assign]

    async def drive() -> None:
        with tempfile.TemporaryDirectory(prefix="scanstation-bench-") as tmp:
            settings = parse_config({"storage": {"path": tmp}}, environ={})
            async with Store(settings.db_path) as store:
                pipeline = Pipeline(store, settings)
                walker = asyncio.create_task(pipeline.run())
                try:
                    with settled():  # as the daemon runs once it is ready (scanstation.heap)
                        await feed(pipeline.ingest)
                finally:
                    walker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await walker

    async def feed(emit: Emit) -> None:
        task = asyncio.create_task(source.run(emit))
        interval = 1.0 / fps
        next_at = time.monotonic()
        for frame in warm:
            cam.push(frame)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if warm:
            await asyncio.sleep(0.3)  # the last warm-up frames committed
            with_start.extend(source._counters.latency_ms)
            source._counters.latency_ms.clear()
            next_at = time.monotonic()
        deadline = time.monotonic() + seconds
        i = 0
        while True:
            cam.push(frames[i % len(frames)])
            i += 1
            if i % int(fps * 5) == 0:
                rss.append(_rss_mb())
            if (seconds and time.monotonic() > deadline) or (not seconds and i >= count):
                break
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(drive())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stats = source.stats()
    measured = list(source._counters.latency_ms)
    start = sorted(with_start + measured)
    result = {
        "frames": stats.frames - warmup,
        "reads": stats.reads - len(with_start),
        "latency_ms_median": stats.latency_ms_median,
        "latency_ms_p99": stats.latency_ms_p99,
        "frame_interval_ms": round(1000 / fps, 2),
        "decode_ms": stats.decode_ms,
        "decode_cpu_ms": round(statistics.median(decode_cpu_ms), 2) if decode_cpu_ms else 0.0,
        # The whole process (grabber, decoders, reader, pipeline, SQLite writer) while the
        # frames streamed, per frame; the frames were drawn before the clock started.
        "cpu_ms_per_frame": round(1000 * cpu / max(stats.frames, 1), 2),
        "wall_s": round(wall, 2),
    }
    if warm and start:
        result["latency_ms_p99_with_start"] = round(
            start[min(len(start) - 1, math.ceil(0.99 * len(start)) - 1)], 2
        )
    if rss:
        result["rss_mb_first"] = rss[0]
        result["rss_mb_last"] = rss[-1]
        result["rss_mb_max"] = max(rss)
    return result


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _synthetic(frames: Sequence[tuple[Frame, str]]) -> list[tuple[Frame, str | None, str | None]]:
    return [(f, text, None) for f, text in frames]


def run_bench(args: argparse.Namespace) -> dict[str, object]:
    threads = args.threads or os.cpu_count() or 1
    report: dict[str, object] = {"threads": threads, "zxing_cpp": version("zxing-cpp")}
    pyzbar = _pyzbar_reader()
    opencv = _opencv_reader()
    report["pyzbar"] = "available" if pyzbar else "not installed (pip install pyzbar + libzbar0)"

    photos = [] if args.no_photos else load_photos(args.photos_limit)
    if photos:
        rows = [
            measure("zxing-cpp defaults, 1 thread (bare)", _zxing_reader((), tuned=False), photos),
            measure("this pipeline (decode_frame), 1 thread", _pipeline_reader(()), photos),
        ]
        if pyzbar:
            rows.append(measure("ZBar (pyzbar)", pyzbar, photos))
        rows.append(measure("OpenCV barcode + QR detectors", opencv, photos))
        report["photos"] = {"negatives": sum(1 for _, e, h in photos if e is None and h is None)}
        report["photos_rows"] = [asdict(r) | {"rate": round(r.rate, 4)} for r in rows]

    retail = retail_frames(args.frames, seed=1)
    images = _synthetic(retail)
    gray_frames = [f for f, _ in retail]
    rows = [
        measure(
            "zxing-cpp defaults, 1 thread (bare)", _zxing_reader(RETAIL_FORMATS, False), images
        ),
        measure("zxing-cpp tuned, 1 thread", _zxing_reader(RETAIL_FORMATS, True), images),
        measure(
            f"zxing-cpp tuned, {threads} threads",
            _zxing_reader(RETAIL_FORMATS, True),
            images,
            threads=threads,
        ),
        measure("this pipeline (decode_frame), 1 thread", _pipeline_reader(RETAIL_FORMATS), images),
    ]
    if pyzbar:
        rows.append(measure("ZBar (pyzbar)", pyzbar, images))
    rows.append(measure("OpenCV barcode + QR detectors", opencv, images))
    report["synthetic_rows"] = [asdict(r) | {"rate": round(r.rate, 4)} for r in rows]
    report["options_rows"] = [asdict(r) | {"rate": round(r.rate, 4)} for r in options_rows(images)]
    # Frames/s, bare vs the camera path, alternated over rounds so that load from other
    # processes hits both alike; the ratio is the median of the per-round ratios.
    bare_tuned = _zxing_reader(RETAIL_FORMATS, True)
    rounds = []
    pools: list[float] = []
    cpu_ms: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        bare = measure("bare", bare_tuned, images)
        camera = pipeline_fps(gray_frames, threads, RETAIL_FORMATS)
        pool = measure("pool", bare_tuned, images, threads=threads)
        bare_again = measure("bare", bare_tuned, images)
        rounds.append((camera["fps"], (bare.fps + bare_again.fps) / 2))
        pools.append(pool.fps)
        cpu_ms.append((camera["cpu_ms_per_frame"], (bare.cpu_ms + bare_again.cpu_ms) / 2))
    camera_fps = statistics.median(c for c, _ in rounds)
    report["camera_path"] = {
        "fps": round(camera_fps, 1),
        "bare_tuned_1_thread_fps": round(statistics.median(b for _, b in rounds), 1),
        "rounds": [[round(c, 1), round(b, 1)] for c, b in rounds],
        # CPU per frame: the camera path's whole process (grabber, decoders, reader) per
        # frame; bare zxing-cpp's median thread CPU per frame. Wall time per frame: 1/fps.
        "cpu_ms_per_frame": round(statistics.median(c for c, _ in cpu_ms), 2),
        "bare_cpu_ms_per_frame": round(statistics.median(b for _, b in cpu_ms), 2),
        "wall_ms_per_frame": round(1000 / camera_fps, 2) if camera_fps else 0.0,
        "bare_wall_ms_per_frame": round(1000 / statistics.median(b for _, b in rounds), 2)
        if rounds
        else 0.0,
        # What the machine allowed: a plain pool of as many threads calling zxing-cpp, in
        # the same rounds (on 2 cores another job's load takes the second core from both).
        "plain_pool_fps": round(statistics.median(pools), 1),
    }
    report["speedup_vs_bare_same_options"] = round(
        statistics.median(c / b for c, b in rounds if b), 2
    )
    report["plain_pool_speedup_vs_bare"] = round(
        statistics.median(p / b for p, (_, b) in zip(pools, rounds, strict=True) if b), 2
    )
    report["camera_path_vs_plain_pool"] = round(
        statistics.median(c / p for p, (c, _) in zip(pools, rounds, strict=True) if p), 2
    )
    report["load_average"] = round(os.getloadavg()[0], 2)
    report["speedup_vs_bare_defaults"] = round(camera_fps / rows[0].fps, 2)

    tilted = _synthetic(retail_frames(args.frames, seed=2, tilted_1d=True))
    tilted_rows = [
        measure("zxing-cpp defaults (bare)", _zxing_reader(RETAIL_FORMATS, False), tilted),
        measure("this pipeline (decode_frame)", _pipeline_reader(RETAIL_FORMATS), tilted),
    ]
    report["tilted_rows"] = [asdict(r) | {"rate": round(r.rate, 4)} for r in tilted_rows]
    report["static_scene"] = static_scene_cpu(args.static_frames)
    if not args.no_latency:
        report["latency"] = live_latency(60)
    if args.soak:
        report["soak"] = live_latency(60, seconds=args.soak)
    return report


def _table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        title,
        f"  {'decoder':<42} {'read':>9} {'rate':>7} {'false':>6} {'median ms':>10} "
        f"{'cpu ms':>7} {'fps':>7}",
    ]
    for r in rows:
        lines.append(
            f"  {r['decoder']:<42} {r['read']:>4}/{r['images']:<4} {100 * r['rate']:>6.1f}% "
            f"{r['false_reports']:>6} {r['median_ms']:>10.2f} {r['cpu_ms']:>7.2f} {r['fps']:>7.1f}"
        )
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    out = [
        f"scanstation bench decode  (zxing-cpp {report['zxing_cpp']}, {report['threads']} threads)"
    ]
    out.append(f"ZBar: {report['pyzbar']}")
    if "photos_rows" in report:
        out.append("")
        out.append(
            _table(
                f"Real photos, conformance/barcode-photos "
                f"({report['photos']['negatives']} negatives):",
                report["photos_rows"],
            )
        )
    else:
        out.append("\nReal photos: ../shared/conformance/barcode-photos not found; skipped.")
    out.append("")
    out.append(
        _table("Synthetic 1280×720 retail frames (one label each):", report["synthetic_rows"])
    )
    cam = report["camera_path"]
    out.append(
        f"  {'this pipeline, camera path (' + str(report['threads']) + ' decoder threads)':<42} "
        f"{'':>9} {'':>7} {'':>6} {'':>10} {'':>7} {cam['fps']:>7.1f}"
    )
    out.append(
        f"  frames/s vs bare zxing-cpp on 1 thread: {report['speedup_vs_bare_same_options']}× "
        f"(same formats and options; median of {len(cam['rounds'])} alternated rounds, "
        f"bare {cam['bare_tuned_1_thread_fps']} fps), "
        f"{report['speedup_vs_bare_defaults']}× (zxing defaults)"
    )
    out.append(
        f"  a plain pool of {report['threads']} threads did "
        f"{report['plain_pool_speedup_vs_bare']}× "
        f"in the same rounds (the camera path: {report['camera_path_vs_plain_pool']}× of it); "
        f"CPU per frame {cam['cpu_ms_per_frame']} ms (bare {cam['bare_cpu_ms_per_frame']} ms), "
        f"wall {cam['wall_ms_per_frame']} ms (bare {cam['bare_wall_ms_per_frame']} ms); "
        f"load average {report['load_average']}"
    )
    out.append("")
    out.append(
        "zxing-cpp options on the same frames (1 thread; CPU ms per frame with a code / empty):"
    )
    for r in report["options_rows"]:
        out.append(
            f"  {r['decoder']:<42} {r['read']:>4}/{r['images']:<4} "
            f"{r['cpu_ms']:>7.2f} ms {r['empty_cpu_ms']:>7.2f} ms"
        )
    out.append("")
    out.append(_table("Tilted GS1-128 (any angle), 1280×720:", report["tilted_rows"]))
    static = report["static_scene"]
    out.append("")
    out.append(
        f"Static empty scene, {static['frames']} frames: "
        f"CPU {static['cpu_s_skip']} s with skipping vs "
        f"{static['cpu_s_every_frame']} s decoding every frame = {100 * static['ratio']:.1f}% "
        f"({static['decoded_frames_skip']} frames decoded)"
    )
    for key, label in (("latency", "Live 30 fps"), ("soak", "Soak")):
        if key in report:
            lat = report[key]
            line = (
                f"{label}: frame grabbed -> capture committed: "
                f"median {lat['latency_ms_median']} ms, "
                f"p99 {lat['latency_ms_p99']} ms (frame interval {lat['frame_interval_ms']} ms); "
                f"{lat['reads']} reads of {lat['frames']} frames; decode {lat['decode_ms']} ms"
            )
            if "rss_mb_first" in lat:
                line += f"; RSS {lat['rss_mb_first']} -> {lat['rss_mb_last']} MB"
                line += f" (max {lat['rss_mb_max']})"
            out.append(line)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """``scanstation bench decode``: prints the table (or JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="scanstation bench decode",
        description="Decode rate and frames/s: this pipeline vs bare zxing-cpp, ZBar and OpenCV.",
    )
    parser.add_argument("--frames", type=int, default=48, help="synthetic frames per set")
    parser.add_argument("--photos-limit", type=int, default=0, help="use at most N photos (0: all)")
    parser.add_argument("--no-photos", action="store_true", help="skip the conformance photos")
    parser.add_argument("--threads", type=int, default=0, help="decoder threads (0: every core)")
    parser.add_argument("--rounds", type=int, default=3, help="bare/camera-path alternations")
    parser.add_argument("--static-frames", type=int, default=90, help="frames of the idle lane")
    parser.add_argument("--no-latency", action="store_true", help="skip the live 30 fps run")
    parser.add_argument("--soak", type=float, default=0, help="also loop live for N seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if min(args.frames, args.rounds, args.static_frames) < 1:
        parser.error("--frames, --rounds and --static-frames: expected at least 1")
    report = run_bench(args)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
