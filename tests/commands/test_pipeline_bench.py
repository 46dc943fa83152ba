"""`scanstation bench pipeline` runs end to end: a live file camera, the real decoder and
pipeline, a real SQLite file; the warm-up frames are streamed but not counted."""

from __future__ import annotations

import json

import pytest

from scanstation.commands.bench import pipeline


def test_pipeline_bench_prints_one_json_object_and_counts_only_the_measured_frames(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--frames", "12", "--warmup", "6", "--repeats", "1", "--json"]
    assert pipeline.main(argv) == 0
    figures = json.loads(capsys.readouterr().out)  # one object, nothing else on stdout
    assert figures["frames"] == 12  # the 6 warm-up frames are not in the figures
    assert figures["reads"] == 12  # a new code in every frame, each read once
    assert 0 < figures["frame_to_commit_p50_ms"] <= figures["frame_to_commit_p99_ms"]
    assert figures["frame_to_commit_p99_ms_with_start"] >= figures["frame_to_commit_p50_ms"]
    assert figures["warmup_frames"] == 6
    assert figures["cpu_ms_per_frame"] > 0


def test_pipeline_bench_refuses_a_negative_warmup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pipeline.main(["--warmup", "-1"])
    assert "--warmup 0 or more" in capsys.readouterr().err
