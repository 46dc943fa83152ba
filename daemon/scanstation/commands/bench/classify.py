"""``scanstation bench classify``: the classifier's load time, ms per image, images/s and RSS.

Each model (the shipped one, plus any ``--model``, plus its float32 / int8 siblings in models/
when a build left them there) runs with 1 and 2 threads, side by side with a bare TFLite
interpreter invoke on the same model in the same run:

- ``bare ms``: ``interpreter.invoke()`` alone on a ready tensor (the floor);
- ``224px ms``: ``Classifier.classify`` on a model-sized RGB array (the wrapper's own cost:
  its overhead over the bare invoke is the ``overhead`` column);
- ``photo ms``: ``classify`` on the test photos as RGB arrays (crop and resize included);
- ``jpeg ms``: ``classify`` on the photos' JPEG bytes (decode included).

Medians throughout. Targets (issue 7): load <= 1 s, <= 25 ms per image, <= 10 % overhead.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scanstation.vision.classify import (
    Classifier,
    ClassifierError,
    default_labels_path,
    default_model_path,
    interpreter_class,
)

REPO = Path(__file__).resolve().parents[4]
DEFAULT_IMAGES = REPO / "tests" / "data" / "images"
SIBLINGS = ("efficientnet_lite0_float32.tflite", "efficientnet_lite0_int8.tflite")

TARGET_LOAD_MS = 1000.0
TARGET_MS_PER_IMAGE = 25.0
TARGET_OVERHEAD = 0.10


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One model at one thread count."""

    model: str
    """The model's file name."""
    size_mb: float
    """The model file's size in MB."""
    threads: int
    """Interpreter threads."""
    load_ms: float
    """Time to construct the Classifier (interpreter load and tensor allocation)."""
    bare_ms: float
    """Median of a bare ``interpreter.invoke()``."""
    model_size_ms: float
    """Median of ``classify`` on a model-sized RGB array."""
    photo_ms: float
    """Median of ``classify`` on the test photos as RGB arrays."""
    jpeg_ms: float
    """Median of ``classify`` on the test photos' JPEG bytes."""
    overhead: float
    """(model_size_ms - bare_ms) / bare_ms."""
    images_per_s: float
    """1000 / photo_ms."""
    rss_mb: float
    """Resident memory of the process after this row, in MB."""
    top1: str
    """Top-1 label on the first photo, to see that the model answers the same."""

    @property
    def meets_targets(self) -> bool:
        return (
            self.load_ms <= TARGET_LOAD_MS
            and self.photo_ms <= TARGET_MS_PER_IMAGE
            and self.overhead <= TARGET_OVERHEAD
        )


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_ms(action: Callable[[], Any], iterations: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        action()
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def paired_median_ms(
    first: Callable[[], Any], second: Callable[[], Any], iterations: int, warmup: int = 3
) -> tuple[float, float]:
    """Medians of two actions timed alternately, so both see the same machine load."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(iterations):
        for action, bucket in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            action()
            bucket.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def bare_interpreter(model: Path, threads: int) -> Any:
    """The floor: a bare interpreter with a ready input tensor; time its ``invoke``."""
    interpreter = interpreter_class()(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter


def bench_model(model: Path, threads: int, photos: Sequence[bytes], iterations: int) -> BenchRow:
    started = time.perf_counter()
    # Models without labels beside them (a build's other variants) use the shipped labels.
    labels = default_labels_path(model) or default_labels_path(default_model_path())
    classifier = Classifier(model, labels, threads=threads)
    load_ms = (time.perf_counter() - started) * 1000
    arrays = [np.asarray(Image.open(_bytes_io(p)).convert("RGB")) for p in photos]
    spec = classifier.input
    model_sized = np.asarray(
        Image.fromarray(arrays[0]).resize((spec.width, spec.height)), dtype=np.uint8
    )
    cycle = {"photo": 0, "jpeg": 0}

    def next_photo() -> None:
        cycle["photo"] += 1
        classifier.classify(arrays[cycle["photo"] % len(arrays)])

    def next_jpeg() -> None:
        cycle["jpeg"] += 1
        classifier.classify(photos[cycle["jpeg"] % len(photos)])

    bare, model_size = paired_median_ms(
        bare_interpreter(model, threads).invoke,
        lambda: classifier.classify(model_sized),
        iterations,
    )
    photo = median_ms(next_photo, iterations)
    jpeg = median_ms(next_jpeg, iterations)
    return BenchRow(
        model=model.name,
        size_mb=round(model.stat().st_size / 1e6, 1),
        threads=threads,
        load_ms=round(load_ms, 1),
        bare_ms=round(bare, 2),
        model_size_ms=round(model_size, 2),
        photo_ms=round(photo, 2),
        jpeg_ms=round(jpeg, 2),
        overhead=round((model_size - bare) / bare, 3),
        images_per_s=round(1000 / photo, 1),
        rss_mb=round(rss_mb(), 1),
        top1=classifier.classify(arrays[0]).best.label,
    )


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def synthetic_photos(count: int = 4) -> list[bytes]:
    """450x300 JPEG frames of smooth colour and noise: timing only, their classes mean nothing."""
    rng = np.random.default_rng(7)
    photos = []
    for _ in range(count):
        ramp = np.linspace(0, 255, 450, dtype=np.float32)[None, :, None]
        base = ramp * rng.uniform(0.2, 1.0, size=(1, 1, 3))
        noisy = base + rng.normal(0, 25, size=(300, 450, 3))
        buffer = _bytes_io(b"")
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG")
        photos.append(buffer.getvalue())
    return photos


def default_models(explicit: Sequence[Path]) -> list[Path]:
    shipped = default_model_path()
    models = [shipped, *(shipped.parent / name for name in SIBLINGS)]
    found = [m for m in models if m.is_file()]
    return list(dict.fromkeys([*found, *explicit]))


def format_table(rows: Sequence[BenchRow]) -> str:
    header = (
        f"{'model':<36} {'MB':>5} {'thr':>3} {'load ms':>8} {'bare ms':>8} {'224px ms':>9} "
        f"{'photo ms':>9} {'jpeg ms':>8} {'overhead':>9} {'img/s':>7} {'RSS MB':>7}  top-1"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.model:<36} {r.size_mb:>5.1f} {r.threads:>3} {r.load_ms:>8.1f} {r.bare_ms:>8.2f} "
            f"{r.model_size_ms:>9.2f} {r.photo_ms:>9.2f} {r.jpeg_ms:>8.2f} {r.overhead:>9.1%} "
            f"{r.images_per_s:>7.1f} {r.rss_mb:>7.1f}  {r.top1}"
        )
    lines.append(
        f"targets: load <= {TARGET_LOAD_MS:.0f} ms, photo <= {TARGET_MS_PER_IMAGE:.0f} ms, "
        f"overhead <= {TARGET_OVERHEAD:.0%}; medians"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench classify", description=__doc__)
    parser.add_argument(
        "--model", type=Path, action="append", default=[], help="another .tflite to compare"
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=30, help="timed runs per figure")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of photos")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.iterations < 1 or any(t < 1 for t in args.threads):
        print("--iterations and --threads must be 1 or more", file=sys.stderr)
        return 2
    if args.images == DEFAULT_IMAGES and not args.images.is_dir():
        # An installed package has no tests/ folder: time on synthetic frames instead.
        photos = synthetic_photos()
    elif not args.images.is_dir():
        print(f"--images {args.images} is not a folder of photos", file=sys.stderr)
        return 2
    else:
        photos = [
            p.read_bytes()
            for p in sorted(args.images.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        ]
    if not photos:
        print(f"--images {args.images} has no JPEG, PNG or WebP photos", file=sys.stderr)
        return 2
    missing = [m for m in args.model if not m.is_file()]
    if missing:
        print(f"model {missing[0]} does not exist; expected a .tflite file", file=sys.stderr)
        return 2

    rows = []
    try:
        for model in default_models(args.model):
            for threads in args.threads:
                rows.append(bench_model(model, threads, photos, args.iterations))
    except ClassifierError as exc:
        print(f"bench classify: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "classify",
                    "images": len(photos),
                    "iterations": args.iterations,
                    "targets": {
                        "load_ms": TARGET_LOAD_MS,
                        "ms_per_image": TARGET_MS_PER_IMAGE,
                        "overhead": TARGET_OVERHEAD,
                    },
                    "rows": [{**asdict(r), "meets_targets": r.meets_targets} for r in rows],
                }
            )
        )
    else:
        print(format_table(rows))
    return 0
