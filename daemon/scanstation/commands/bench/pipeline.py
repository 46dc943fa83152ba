"""`scanstation bench pipeline`: the capture pipeline alone (create → terminal, durable), beside
a bare aiosqlite insert loop — `bench ingest` without its HTTP leg."""

from __future__ import annotations

from scanstation.commands.bench import ingest


def main(argv: list[str]) -> int:
    return ingest.main(["--no-http", *argv])
