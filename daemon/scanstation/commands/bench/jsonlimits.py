"""`scanstation bench jsonlimits`: the JSON limits' cost beside bare `json.loads`.

Two documents the station parses for real: a POST /captures body and a catalog.upsert of
1000 products. Each is parsed N times by `json.loads` and by `loads_limited`, interleaved
(A, B, A, B, …) over several rounds; the table gives the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from scanstation.jsonlimits import loads_limited


def documents() -> list[tuple[str, str, int]]:
    """(name, text, parses per round)."""
    capture = json.dumps(
        {
            "session_public_id": "5XAX8Vf67GbAnEJGxht8wd",
            "capture_type": "BARCODE",
            "raw_value": "]d2010950600013435217270101\x1d10ABC123",
            "metadata": {"lane": 3, "operator": "ana"},
        }
    )
    catalog = json.dumps(
        {
            "products": [
                {"gtin": f"{i:014d}", "name": f"Product {i}", "brand": "Brand",
                 "ingredients": "water, sugar, salt " * 5}
                for i in range(1000)
            ]
        }
    )  # fmt: skip
    return [
        (f"capture body ({len(capture)} B)", capture, 20_000),
        (f"catalog.upsert, 1000 products ({len(catalog) // 1024} KB)", catalog, 20),
    ]


def _per_call_us(parse: Callable[[str], Any], text: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        parse(text)
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench jsonlimits", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    rows = []
    for name, text, n in documents():
        bare: list[float] = []
        limited: list[float] = []
        for _ in range(args.rounds):  # interleaved, so load on the machine hits both alike
            bare.append(_per_call_us(json.loads, text, n))
            limited.append(_per_call_us(loads_limited, text, n))
        b, lim = statistics.median(bare), statistics.median(limited)
        rows.append({"document": name, "json_loads_us": round(b, 1),
                     "loads_limited_us": round(lim, 1), "ratio": round(lim / b, 2)})  # fmt: skip
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print("| document | json.loads | loads_limited | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['document']} | {r['json_loads_us']} µs | {r['loads_limited_us']} µs | "
              f"{r['ratio']}× |")  # fmt: skip
    return 0
