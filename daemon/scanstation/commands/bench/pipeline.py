"""`scanstation bench pipeline`: camera frame grabbed → capture committed (synchronous=FULL,
through the real camera source and pipeline), on a live 30 fps camera with a new code in every
frame; with the CPU time per frame beside the wall time. The first second of frames after the
camera starts (``--warmup``) is streamed but not counted in ``frame_to_commit_p99_ms``, as a
running station sees it; ``frame_to_commit_p99_ms_with_start`` counts it. (The pipeline alone,
without a camera: `scanstation bench ingest --no-http`.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from scanstation.commands.bench.decode import live_latency


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for repeat in range(args.repeats):
        result = live_latency(args.frames, fps=args.fps, warmup=args.warmup)
        runs.append(result)
        print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    p99 = [r["latency_ms_p99"] for r in runs]
    return {
        "frame_to_commit_p99_ms": round(statistics.median(p99), 2),
        "frame_to_commit_p99_ms_spread": [min(p99), max(p99)],
        "frame_to_commit_p50_ms": round(statistics.median(r["latency_ms_median"] for r in runs), 2),
        # The same p99 with the first `--warmup` frames after the camera started counted too.
        **(
            {
                "frame_to_commit_p99_ms_with_start": round(
                    statistics.median(r["latency_ms_p99_with_start"] for r in runs), 2
                ),
                "warmup_frames": args.warmup,
            }
            if args.warmup
            else {}
        ),
        "frame_interval_ms": round(1000 / args.fps, 2),
        # The process's CPU while frames streamed (grabber, decoders, reader, pipeline,
        # SQLite), per frame; the decode alone, wall and CPU of its decoder thread (wall well
        # above CPU: the decoder waited for a core).
        "cpu_ms_per_frame": round(statistics.median(r["cpu_ms_per_frame"] for r in runs), 2),
        "decode_ms_per_frame": round(statistics.median(r["decode_ms"] for r in runs), 2),
        "decode_cpu_ms_per_frame": round(statistics.median(r["decode_cpu_ms"] for r in runs), 2),
        "load_average": round(os.getloadavg()[0], 2),
        "frames": int(statistics.median(r["frames"] for r in runs)),
        "reads": int(statistics.median(r["reads"] for r in runs)),
        "repeats": args.repeats,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench pipeline", description=__doc__)
    parser.add_argument("--frames", type=int, default=150, help="frames per run (new code each)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=30,
        help="frames streamed first and not counted (default 30: the camera's first second)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeats < 1 or args.fps <= 0 or args.warmup < 0:
        parser.error("--frames, --repeats and --fps must be positive, --warmup 0 or more")
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"camera frame → capture committed at {args.fps:g} fps: "
        f"p50 {result['frame_to_commit_p50_ms']:.1f} ms, "
        f"p99 {result['frame_to_commit_p99_ms']:.1f} ms "
        f"(frame interval {result['frame_interval_ms']:.1f} ms); "
        f"CPU {result['cpu_ms_per_frame']:.1f} ms per frame (decode: wall "
        f"{result['decode_ms_per_frame']:.1f} ms, "
        f"CPU {result['decode_cpu_ms_per_frame']:.1f} ms); "
        f"{result['reads']} reads of {result['frames']} frames"
    )
    return 0
