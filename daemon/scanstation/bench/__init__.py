"""Benchmarks: `scanstation bench NAME`; each module has main(argv) -> exit code."""
