"""`scanstation bench quality`: what the per-read quality indicators cost, beside decoding.

200 synthetic 1280×720 camera frames, each with one retail or GS1 label (the decode
bench's mix: EAN-13/8, UPC-A/E, GS1-128, Code 128, GS1 DataMatrix, QR), decoded by the
camera's decoder; for every frame with a code, the quality indicators of that code are
measured on the same frame right after its decode (interleaved, one thread). A camera
measures them once per reported read, not per frame, in a worker thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

from scanstation.barcode.decode import DecodeOptions, decode_frame
from scanstation.barcode.quality import measure
from scanstation.commands.bench.scenes import retail_frames


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run(frames: int, seed: int) -> dict[str, dict[str, float]]:
    decode_ms: list[float] = []
    quality_ms: list[float] = []
    by_format: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, list[int]] = defaultdict(list)
    options = DecodeOptions()
    for frame, _expected in retail_frames(frames, seed=seed):
        t0 = time.perf_counter()
        codes = decode_frame(frame, options)
        decode_ms.append((time.perf_counter() - t0) * 1000)
        for code in codes[:1]:
            t0 = time.perf_counter()
            quality = measure(frame, code)
            elapsed = (time.perf_counter() - t0) * 1000
            quality_ms.append(elapsed)
            by_format[code.format].append(elapsed)
            if quality is not None:
                scores[code.format].append(quality.score)
    result = {
        "decode": {
            "p50_ms": statistics.median(decode_ms),
            "p99_ms": _percentile(decode_ms, 0.99),
            "n": float(len(decode_ms)),
        },
        "quality": {
            "p50_ms": statistics.median(quality_ms),
            "p99_ms": _percentile(quality_ms, 0.99),
            "n": float(len(quality_ms)),
        },
    }
    for name, values in sorted(by_format.items()):
        result[f"quality {name}"] = {
            "p50_ms": statistics.median(values),
            "p99_ms": _percentile(values, 0.99),
            "n": float(len(values)),
            "score_p50": float(statistics.median(scores[name])) if scores[name] else -1.0,
        }
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench quality", description=__doc__)
    parser.add_argument("--frames", type=int, default=200, help="frames (200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.frames, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'per frame':<28} {'p50 ms':>8} {'p99 ms':>8} {'n':>5} {'score p50':>10}")
    for name, row in result.items():
        score = row.get("score_p50")
        shown = f"{score:>10.0f}" if score is not None and score >= 0 else f"{'':>10}"
        print(f"{name:<28} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['n']:>5.0f} {shown}")
    return 0
