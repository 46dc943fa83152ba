"""`scanstation bench ingest --mqtt` runs end to end: its own Mosquitto, a real SQLite file."""

from __future__ import annotations

import json
import shutil

import pytest

from scanstation.commands.bench import ingest_mqtt

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")


def test_mqtt_bench_prints_one_json_object_with_rates_latency_and_stages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--count", "128", "--repeats", "2", "--rate", "100", "--seconds", "0.5", "--json"]
    assert ingest_mqtt.main(argv) == 0
    figures = json.loads(capsys.readouterr().out)  # one object, nothing else on stdout
    for key in ("puback_per_s", "bare_puback_per_s", "ratio", "p99_ms_at_100_per_s"):
        assert figures[key] > 0, key
    assert figures["bare_p99_ms_at_100_per_s"] > 0
    assert len(figures["ratio_spread"]) == 2
    # Two throughput runs of each, two latency runs of each: A, B, A, B.
    assert len(figures["scanstation"]["runs"]) == len(figures["bare_paho"]["runs"]) == 2
    assert len(figures["scanstation"]["p99_ms_runs"]) == 2
    stages = figures["stages_at_rate_ms"]
    assert list(stages) == ["commit", "wake_read", "publish", "puback", "settle"]
    assert all(0 <= v["p50"] <= v["p99"] for v in stages.values())
    assert stages["commit"]["p50"] > 0  # an fsync'd commit is in every capture's time
    settings = figures["settings"]
    assert (settings["qos"], settings["tcp_nodelay"], settings["inflight"]) == (1, True, 20)
    assert settings["payload_bytes"] > 500  # a real capture event, sent by both


def test_mqtt_bench_refuses_a_remote_broker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ingest_mqtt.main(["--broker", "example.com:1883"])
    assert "expected 127.0.0.1:PORT" in capsys.readouterr().err
