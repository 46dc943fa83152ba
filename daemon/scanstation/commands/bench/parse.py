"""`scanstation bench parse`: interpretations/s beside bare `biip.parse` on the same values.

The mix is what a checkout lane and a goods-in station see: EAN-13/UPC-A products scanned
again and again, GS1 DataMatrix and GS1-128 labels with batch, expiry and (unique) serial
numbers, Digital Link QR codes, and a little plain text, URLs and misreads. Every value is
interpreted with the expiry and recall checks on, as the pipeline does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import biip
from biip.checksums import gs1_standard_check_digit

from scanstation.barcode.interpret import RecallList, _interpret_cached, interpret, interpret_value

GS = "\x1d"


def _gtin(rng: random.Random, length: int) -> str:
    payload = "".join(rng.choice("0123456789") for _ in range(length - 1))
    payload = rng.choice("123456789") + payload[1:]
    return payload + str(gs1_standard_check_digit(payload))


def realistic_mix(count: int, *, seed: int = 1, products: int = 400) -> list[str]:
    """`count` raw values, reproducible; products repeat, serial numbers do not."""
    rng = random.Random(seed)
    catalog = [_gtin(rng, 13) for _ in range(products)]
    upcs = [_gtin(rng, 12) for _ in range(products // 4)]
    batches = [f"L{rng.randrange(10000):04d}" for _ in range(20)]
    values: list[str] = []
    for i in range(count):
        roll = rng.random()
        gtin14 = "0" + rng.choice(catalog)
        if roll < 0.45:  # EAN-13 from a HID gun (no AIM prefix) or the camera
            values.append(rng.choice((gtin14[1:], "]E0" + gtin14[1:])))
        elif roll < 0.55:  # UPC-A as zxing-cpp reports it: 13 digits under ]E0
            values.append("]E00" + rng.choice(upcs))
        elif roll < 0.75:  # GS1 DataMatrix: GTIN, expiry, batch, unique serial
            expiry = f"{rng.randrange(24, 29)}{rng.randrange(1, 13):02d}{rng.randrange(0, 29):02d}"
            values.append(f"]d201{gtin14}17{expiry}10{rng.choice(batches)}{GS}21{i:08d}")
        elif roll < 0.85:  # GS1-128 on a case: GTIN, net weight, best before, batch
            values.append(
                f"]C101{gtin14}3103{rng.randrange(999999):06d}1527123110{rng.choice(batches)}"
            )
        elif roll < 0.93:  # GS1 Digital Link QR code
            values.append(f"https://id.gs1.org/01/{gtin14}/10/{rng.choice(batches)}?17=271231")
        elif roll < 0.97:  # plain QR URL, plain text
            values.append(rng.choice(("https://example.com/promo", "]Q1LOT-42 shelf B")))
        else:  # misreads: a wrong check digit
            bad = gtin14[1:-1] + str((int(gtin14[-1]) + 1) % 10)
            values.append(bad)
    return values


def _rate(function: Callable[[str], Any], values: list[str]) -> float:
    started = time.perf_counter()
    for value in values:
        function(value)
    return len(values) / (time.perf_counter() - started)


def run(count: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median interpretations/s of each contender over `repeats` runs on one core."""
    values = realistic_mix(count)
    today = dt.date(2026, 11, 23)
    recalls = RecallList({"0" + values[0][-13:]: None})

    def ours(value: str) -> Any:
        return interpret(value, today=today, recalls=recalls)

    def ours_cold(value: str) -> Any:
        return interpret_value(value, "", ())

    contenders: dict[str, Callable[[str], Any]] = {
        "interpret (checks on, LRU cache)": ours,
        "interpret (no cache)": ours_cold,
        "biip.parse": biip.parse,
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        _interpret_cached.cache_clear()
        for name, function in contenders.items():
            runs[name].append(_rate(function, values))
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {
        name: {"per_second": statistics.median(rates), "min": min(rates), "max": max(rates)}
        for name, rates in runs.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench parse", description=__doc__)
    parser.add_argument("--count", type=int, default=20000, help="values per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print medians as JSON")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeats < 1:
        parser.error("--count and --repeats must be at least 1")
    print(
        f"bench parse: {args.count} values x {args.repeats} repeats, medians; one core of "
        f"{os.cpu_count()}",
        file=sys.stderr,
    )
    results = run(args.count, args.repeats)
    if args.json:
        print(json.dumps({"count": args.count, "repeats": args.repeats, "results": results}))
        return 0
    baseline = results["biip.parse"]["per_second"]
    print(f"{'contender':<36} {'per second':>11} {'vs biip':>8}")
    for name, figures in results.items():
        rate = figures["per_second"]
        print(f"{name:<36} {rate:>11,.0f} {rate / baseline:>7.1f}x")
    return 0
