"""Benchmarks: `scanstation bench NAME`; each module has main(argv) -> exit code.

Each measures the product beside the best use of the bare library, interleaved, and prints a
table or one JSON object (``--json``); docs/benchmarks.md quotes them with their commands.
"""

from __future__ import annotations

import importlib
import socket

VALUES = (
    "4006381333931",
    "5901234123457",
    "]d2010950600013435217270101\x1d10ABC123",
    "]E00036000291452",
    "4006381333932",
)
"""A realistic mix: catalog hit, miss, GS1 DataMatrix, UPC-A, a bad check digit."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a daemon or broker we start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(name: str) -> str:
    """One line on what benchmark `name` measures (its module docstring's first line)."""
    module = importlib.import_module(f"scanstation.commands.bench.{name}")
    paragraph = " ".join((module.__doc__ or name).strip().split("\n\n")[0].split())
    text = paragraph.split(": ", 1)[1] if ": " in paragraph else paragraph
    sentence = text.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= 90 else sentence[:89].rstrip(" ,;") + "…"
