"""`scanstation fleet`: the table logic, and 1,000 simulated stations on a real Mosquitto."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mosquitto import Broker, broker_fixture  # noqa: F401 (the broker fixture)
from scanstation.commands.fleet import FleetTable, fleet_main, render_table


def _telemetry(scans: int, depth: int = 0, fps: float = 15.0, interval: float = 30) -> bytes:
    return json.dumps(
        {
            "captures_total": scans,
            "fps": fps,
            "outbox": {"depth": depth, "oldest_age_s": 12.0 if depth else None},
            "mqtt": {"reconnects": 2},
            "version": "0.1.0",
            "telemetry_interval_s": interval,
        }
    ).encode()


def _status(state: str, site: str = "store-7") -> bytes:
    return json.dumps({"state": state, "version": "0.1.0", "site": site}).encode()


def test_fleet_table_tracks_presence_telemetry_and_staleness() -> None:
    table = FleetTable("scanstation")
    assert table.update("scanstation/lane-01/status", _status("online"), now=100.0)
    assert table.update("scanstation/lane-01/telemetry", _telemetry(42, depth=3), now=101.0)
    assert table.update("scanstation/lane-02/status", _status("offline"), now=102.0, retained=True)
    assert table.update("scanstation/lane-03/telemetry", _telemetry(7, interval=10), now=50.0)
    assert not table.update("scanstation/lane-01/captures", b"{}", now=103.0)
    assert not table.update("other/lane-09/status", _status("online"), now=103.0)
    assert not table.update("scanstation/lane-04/status", b"not json", now=103.0)

    rows = table.rows(now=110.0)
    assert rows[0].last_seen is None  # a retained status is not a sighting
    assert [(r.device_id, r.state) for r in rows] == [
        ("lane-02", "offline"),
        ("lane-03", "stale"),  # silent for 60 s with a 10 s interval
        ("lane-01", "online"),
    ]
    lane1 = rows[2]
    assert (lane1.scans, lane1.fps, lane1.outbox_depth, lane1.outbox_oldest_age_s) == (
        42,
        15.0,
        3,
        12.0,
    )
    assert (lane1.version, lane1.site, lane1.reconnects, lane1.last_seen) == (
        "0.1.0",
        "store-7",
        2,
        101.0,
    )
    # A cleared retained status removes a decommissioned station.
    table.update("scanstation/lane-02/status", b"", now=111.0)
    assert [r.device_id for r in table.rows(now=111.0)] == ["lane-03", "lane-01"]


def test_render_table_summarises_and_limits_rows() -> None:
    table = FleetTable("scanstation")
    for i in range(5):
        table.update(f"scanstation/lane-{i:02d}/status", _status("online"), now=100.0)
        table.update(f"scanstation/lane-{i:02d}/telemetry", _telemetry(i, depth=i), now=100.0)
    text = render_table(table.rows(now=105.0), now=105.0, limit=3)
    lines = text.splitlines()
    assert lines[0] == "5 devices: 5 online; outbox backlog 10"
    assert lines[1].split() == [
        "DEVICE",
        "STATE",
        "SEEN",
        "SCANS",
        "FPS",
        "OUTBOX",
        "OLDEST",
        "VERSION",
        "SITE",
    ]
    assert lines[2].split() == [
        "lane-00",
        "online",
        "5s",
        "0",
        "15.0",
        "0",
        "-",
        "0.1.0",
        "store-7",
    ]
    assert lines[-1] == "… 2 more (use --json for all)"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--seconds", "0"], 2, "--seconds must be positive"),
        (["--bogus"], 2, "unrecognized arguments"),
        (["--port", "1", "--once"], 1, "cannot connect to the broker at 127.0.0.1:1"),
    ],
)
def test_fleet_main_reports_bad_usage_and_unreachable_brokers(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fleet_main(argv) == code
    assert message in capsys.readouterr().err


class Simulator:
    """1,000 stations' worth of presence and telemetry, published from one client."""

    def __init__(self, port: int, devices: int) -> None:
        self.devices = [f"sim-{i:04d}" for i in range(devices)]
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def presence(self) -> None:
        for i, device in enumerate(self.devices):
            state = "offline" if i % 10 == 0 else "online"
            self.client.publish(f"sim/{device}/status", _status(state), qos=1, retain=True)

    def telemetry_round(self, round_number: int) -> None:
        for i, device in enumerate(self.devices):
            if i % 10:
                body = _telemetry(round_number * 1000 + i, depth=round_number, interval=1)
                self.client.publish(f"sim/{device}/telemetry", body, qos=0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow
def test_fleet_keeps_up_with_1000_simulated_stations(broker: Broker) -> None:
    sim = Simulator(broker.port, 1000)
    out = io.StringIO()
    try:
        sim.presence()
        time.sleep(0.5)
        result: list[int] = []
        monitor = threading.Thread(
            target=lambda: result.append(
                fleet_main(
                    [
                        "--port",
                        str(broker.port),
                        "--prefix",
                        "sim",
                        "--json",
                        "--once",
                        "--seconds",
                        "6",
                    ],
                    out=out,
                )
            )
        )
        monitor.start()
        time.sleep(1.0)
        # Every station reports once a second: 900 telemetry messages/s for 4 s.
        for round_number in range(1, 5):
            started = time.monotonic()
            sim.telemetry_round(round_number)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        monitor.join(15)
    finally:
        sim.close()
    assert result == [0]
    body = json.loads(out.getvalue())
    devices = {d["device_id"]: d for d in body["devices"]}
    assert len(devices) == 1000
    assert body["counts"] == {"offline": 100, "online": 900}
    # The monitor kept up: every online station shows its latest telemetry.
    assert {d["scans"] - 4000 for d in devices.values() if d["state"] == "online"} == {
        i for i in range(1000) if i % 10
    }
    assert {d["outbox_depth"] for d in devices.values() if d["state"] == "online"} == {4}
    assert {d["version"] for d in devices.values()} == {"0.1.0"}


def test_fleet_reads_broker_and_prefix_from_a_station_config(
    broker: Broker, tmp_path: Path
) -> None:
    config = tmp_path / "scanstation.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntopic_prefix = "store7"\n'
    )
    publisher = paho.Client(CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    publisher.publish(
        "store7/lane-01/status", _status("online"), qos=1, retain=True
    ).wait_for_publish(5)
    publisher.publish(
        "other/lane-02/status", _status("online"), qos=1, retain=True
    ).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    out = io.StringIO()
    assert fleet_main(["--config", str(config), "--once", "--seconds", "1"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "store7: 1 devices: 1 online; outbox backlog 0"
    assert lines[2].split()[:3] == ["lane-01", "online", "-"]


async def test_fleet_shows_a_running_stations_figures_at_once(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A station sends telemetry every 30 s; the monitor asks it for telemetry.now when it
    first sees it, so SEEN, SCANS and OUTBOX are filled within a second, not 30 s later."""
    import asyncio

    from station import COMMAND_TOKEN, running_station, station_config, wait_until

    config = station_config(tmp_path / "s", broker.port, telemetry_interval=300)
    token = tmp_path / "token"
    token.write_text(COMMAND_TOKEN + "\n")
    async with running_station(config) as station:
        await wait_until(lambda: station.link.state.telemetry_sent == 1, what="first telemetry")
        await station.capture()
        await wait_until(lambda: station.link.state.published == 1, what="the capture event")
        out = io.StringIO()
        args = ["--port", str(broker.port), "--once", "--seconds", "1.5"]
        assert await asyncio.to_thread(fleet_main, [*args, "--token-file", str(token)], out) == 0
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("scanstation: 1 devices: 1 online; outbox backlog "), lines
        device, state, seen, scans, _fps, outbox = lines[2].split()[:6]
        assert (device, state, scans) == ("lane-01", "online", "1"), lines
        assert seen.endswith("s")
        assert outbox.isdigit()
        assert station.link.state.telemetry_sent == 2  # the monitor's request

        out = io.StringIO()  # without a token: the station refuses; the monitor says why
        assert await asyncio.to_thread(fleet_main, args, out) == 0
        assert out.getvalue().splitlines()[2].split()[1:4] == ["online", "-", "-"]
        err = capsys.readouterr().err
        assert "stations refuse telemetry.now without a token" in err
        assert "--token-file" in err


def test_fleet_with_tls_against_a_plain_broker_says_the_likely_cause(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    config = tmp_path / "scanstation.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[mqtt.tls]\nca = "{tmp_path / "ca.pem"}"\n'
    )
    assert fleet_main(["--config", str(config), "--once", "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert f"TLS handshake with 127.0.0.1:{broker.port} failed" in err
    assert "does not seem to speak TLS" in err
    assert f"mqtt.tls.ca = '{tmp_path / 'ca.pem'}'" in err
