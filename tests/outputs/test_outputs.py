"""Outputs end to end: a real Store and Pipeline, keyboard gadget and serial through ptys,
webhooks against a local aiohttp server that goes down and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tty
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from examples import make_referenced_files, with_files_under
from scanstation.barcode.scantext import ScanText
from scanstation.config import ConfigError, MatchRules, load_config, parse_config
from scanstation.model import CaptureType
from scanstation.outputs.gadget import reports_to_events, split_reports
from scanstation.sources.hid import DecoderSettings, KeystrokeDecoder
from scanstation.store import NewCapture
from station import Station, running_station

REPO = Path(__file__).resolve().parents[2]
GS = "\x1d"
DATAMATRIX = f"]d2010950600013435217270101{GS}10ABC123{GS}21S0001"
VALUES = [
    "4006381333931",
    f"010950600013435217270101{GS}10ABC123{GS}21S0001",
    "https://id.gs1.org/01/09506000134352/10/ABC1?17=270101",
    "Lot yz-ÄÖÜ #1 @home",
]


@contextlib.asynccontextmanager
async def station(
    tmp_path: Path,
    outputs: list[dict[str, Any]],
    match: dict[str, Any] | None = None,
    **extra: Any,
) -> AsyncIterator[Station]:
    config = parse_config(
        {
            "device": {"id": "lane-07", "site": "store-12"},
            "storage": {"path": str(tmp_path / "data"), "disk_floor_mb": 0},
            "outputs": outputs,
            **extra,
        },
        environ={},
    )
    async with running_station(
        config,
        mqtt=False,
        outputs=True,
        match=MatchRules(**match) if match is not None else None,
    ) as running:
        yield running


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave path): the station writes the slave, the test reads the master."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no line discipline: report bytes pass unchanged
    os.set_blocking(master, False)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def typed_text(data: bytes, layout: str) -> list[str]:
    """What a host set to ``layout`` reads from the reports: one text per Enter."""
    decoder = KeystrokeDecoder(DecoderSettings(layout=layout, aim_identifier=False))
    outcomes = decoder.feed_all(reports_to_events(split_reports(data)))
    assert all(isinstance(o, ScanText) for o in outcomes), outcomes
    return [o.raw_value for o in outcomes if isinstance(o, ScanText)]


# ---- keyboard gadget ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["us", "de"])
async def test_outputs_gadget_types_every_read_into_a_pty(
    tmp_path: Path, pty_pair: tuple[int, str], layout: str
) -> None:
    master, device = pty_pair
    gadget = {"type": "keyboard_gadget", "device": device, "layout": layout}
    async with station(tmp_path, [gadget]) as lane:
        await lane.scan(*VALUES)
        assert typed_text(read_all(master), layout) == VALUES
        assert lane.outputs.live[0].counters.sent == len(VALUES)


async def test_outputs_gadget_writes_reports_to_a_file(tmp_path: Path) -> None:
    device = tmp_path / "hidg0"
    device.write_bytes(b"")
    gadget = {
        "type": "keyboard_gadget",
        "device": str(device),
        "layout": "de",
        "mode": "gtin",
        "terminator": "tab",
    }
    async with station(tmp_path, [gadget]) as lane:
        await lane.scan("4006381333931", DATAMATRIX)
    decoder = KeystrokeDecoder(DecoderSettings(layout="de", terminator="tab"))
    outcomes = decoder.feed_all(reports_to_events(split_reports(device.read_bytes())))
    assert [o.raw_value for o in outcomes if isinstance(o, ScanText)] == [
        "4006381333931",
        "9506000134352",
    ]


async def test_outputs_gadget_follows_the_hosts_caps_lock(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    async with station(tmp_path, [{"type": "keyboard_gadget", "device": device}]) as lane:
        os.write(master, b"\x02")  # the host's LED output report: Caps Lock on
        await asyncio.sleep(0.05)
        await lane.scan("Lot abc-XYZ")
    decoder = KeystrokeDecoder(DecoderSettings(layout="us"))
    decoder.caps_lock = True
    outcomes = decoder.feed_all(reports_to_events(split_reports(read_all(master))))
    assert [o.raw_value for o in outcomes if isinstance(o, ScanText)] == ["Lot abc-XYZ"]


async def test_outputs_gadget_missing_device_is_reported_not_fatal(tmp_path: Path) -> None:
    gadget = {"type": "keyboard_gadget", "device": str(tmp_path / "no-hidg0")}
    async with station(tmp_path, [gadget]) as lane:
        await lane.scan("4006381333931")
        [status] = await lane.outputs.status()
    assert status["sent"] == 0
    assert status["dropped"] == 1
    assert "usb-gadget.sh" in status["last_error"]


# ---- filters and match rules -------------------------------------------------------------


async def test_outputs_filter_and_match_route_reads(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    gadget = {
        "type": "keyboard_gadget",
        "device": device,
        "filter": {"statuses": ["COMPLETED", "NOT_FOUND"]},
        "match": {"gtin_prefixes": ["400", "950"], "on_mismatch": "skip"},
    }
    async with station(tmp_path, [gadget]) as lane:
        # 4006381333932 has a bad check digit: FAILED, filtered out; 590… fails the match.
        await lane.scan("4006381333931", "4006381333932", "5901234123457", DATAMATRIX[3:])
        assert typed_text(read_all(master), "us") == ["4006381333931", DATAMATRIX[3:]]
        assert lane.rejected == []


async def test_outputs_mismatch_rejects_and_queues_an_alert_instead_of_typing(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    gadget = {"type": "keyboard_gadget", "device": device, "match": {"require_ais": ["17"]}}
    async with station(tmp_path, [gadget]) as lane:
        _good, bad = await lane.scan(DATAMATRIX[3:], "4006381333931")
        assert typed_text(read_all(master), "us") == [DATAMATRIX[3:]]
        rows = await lane.store.fetchall(
            "SELECT topic, payload FROM outbox WHERE topic != 'captures'"
        )
    assert [pid for pid, _ in lane.rejected] == [bad.public_id]
    assert "lacks GS1 AI 17" in lane.rejected[0][1]
    [(topic, payload)] = rows
    event = json.loads(payload)
    assert topic == "alerts"
    assert (event["capture_public_id"], event["reason"], event["raw_value"]) == (
        bad.public_id,
        "match",
        "4006381333931",
    )
    assert event["device_id"] == "lane-07"
    assert event["event_id"]


async def test_outputs_mismatch_event_can_go_to_noreads(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    outputs = [
        {
            "type": "keyboard_gadget",
            "device": device,
            "match": {"event_topic": "noreads", "symbologies": ["]E"]},
        }
    ]
    async with station(tmp_path, outputs) as lane:
        await lane.scan("4006381333931", symbology_identifier="]E0")
        await lane.scan(DATAMATRIX[3:], symbology_identifier="]d2")
        topics = [
            r[0]
            for r in await lane.store.fetchall("SELECT topic FROM outbox WHERE topic != 'captures'")
        ]
    assert typed_text(read_all(master), "us") == ["4006381333931"]
    assert topics == ["noreads"]


async def test_outputs_global_match_rejects_before_any_output(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    outputs = [
        {"type": "keyboard_gadget", "device": device},
        webhook(free_port(), retry_initial_s=30),  # nothing listens: rows stay in the outbox
    ]
    async with station(tmp_path, outputs, match={"kinds": ["gtin", "gs1"]}) as lane:
        url, gtin = await lane.scan("https://example.com/promo", "4006381333931")
        # A product photo has no code to match: never rejected by match rules.
        await lane.pipeline.create_capture(lane.session_id, NewCapture(CaptureType.IMAGE))
        await lane.pipeline.idle()
        rows = await lane.store.fetchall(
            "SELECT destination, topic, payload FROM outbox WHERE destination != 'mqtt' "
            "OR topic != 'captures' ORDER BY id"
        )
    assert typed_text(read_all(master), "us") == ["4006381333931"]
    assert [pid for pid, _ in lane.rejected] == [url.public_id]
    assert "data format url is not one of gs1, gtin" in lane.rejected[0][1]
    events = [(r[0], r[1], json.loads(r[2])) for r in rows]
    assert [
        (dest, topic, e.get("public_id") or e.get("capture_public_id")) for dest, topic, e in events
    ] == [("mqtt", "alerts", url.public_id), ("webhook:wms", "captures", gtin.public_id)]


async def test_outputs_out_of_sequence_serial_is_rejected_and_the_sequence_resumes(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, device = pty_pair
    gadget = {"type": "keyboard_gadget", "device": device}
    rules = {"sequence": "increment", "sequence_field": "21", "mask": "01##############*"}
    serials = [f"010950600013435221{n:04d}" for n in (41, 42, 44, 45)]
    async with station(tmp_path, [gadget], match=rules) as lane:
        captures = await lane.scan(*serials, "NOT-A-GS1-CODE")
    assert typed_text(read_all(master), "us") == [serials[0], serials[1], serials[3]]
    assert [pid for pid, _ in lane.rejected] == [captures[2].public_id, captures[4].public_id]
    assert lane.rejected[0][1] == "0044 is out of sequence: expected 43 (the previous 42 + 1)"
    assert "does not match the mask '01##############*'" in lane.rejected[1][1]
    report = lane.read_stats.reports()["gun1"]
    assert (report.totals["good"], report.totals["rejected"]) == (3, 2)
    assert report.last_result == "NOT-A-GS1-CODE"  # rejected, still the last result


def test_match_sequence_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="sequence_step 0: expected a step other than 0"):
        MatchRules(sequence="increment", sequence_step=0)
    with pytest.raises(ValueError, match="sequence_field 'serial': expected 'raw', 'gtin' or"):
        MatchRules(sequence="increment", sequence_field="serial")


# ---- serial ------------------------------------------------------------------------------


async def test_outputs_serial_writes_lines_with_aim_prefix_through_a_pty(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, port = pty_pair
    serial = {
        "type": "serial",
        "port": port,
        "baud": 115200,
        "aim_prefix": True,
        "terminator": "\r",
        "format": "{raw}",
    }
    async with station(tmp_path, [serial]) as lane:
        await _until(lambda: lane.outputs.live[0].state == "ok")
        await lane.scan("4006381333931", symbology_identifier="]E0")
        await lane.scan(DATAMATRIX[3:], symbology_identifier="]d2")
        await asyncio.sleep(0.05)
        data = read_all(master)
    assert data == (f"]E04006381333931\r]d2{DATAMATRIX[3:]}\r").encode()


async def test_outputs_serial_hri_mode_and_missing_port(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, port = pty_pair
    outputs = [
        {"type": "serial", "name": "plc", "port": port, "mode": "hri", "terminator": "\n"},
        {"type": "serial", "name": "gone", "port": str(tmp_path / "ttyUSB9")},
    ]
    async with station(tmp_path, outputs) as lane:
        await _until(lambda: lane.outputs.live[0].state == "ok")
        await lane.scan(DATAMATRIX[3:])
        await asyncio.sleep(0.05)
        statuses = {s["name"]: s for s in await lane.outputs.status()}
        data = read_all(master)
    assert data == b"(01)09506000134352(17)270101(10)ABC123(21)S0001\n"
    assert statuses["gone"]["state"] == "port closed"
    assert "ttyUSB9" in statuses["gone"]["last_error"]


async def _until(condition: Any, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():
            await asyncio.sleep(0.01)


# ---- webhook -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """A WMS stand-in on 127.0.0.1: records every POST; answers with ``status``."""

    port: int
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="ok" if self.status < 300 else "nope")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/scans", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


def webhook(port: int, **settings: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "name": "wms",
        "url": f"http://127.0.0.1:{port}/scans",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        **settings,
    }


async def test_outputs_webhook_target_down_then_back_every_capture_once(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    async with station(tmp_path, [webhook(receiver.port)]) as lane:
        first = await lane.scan(*VALUES)
        await asyncio.sleep(0.4)  # several failed attempts while nothing listens
        sink = lane.outputs.webhooks[0]
        assert sink.counters.failures >= 2
        assert receiver.received == []
        depth, _ = await sink.depth()
        assert depth == 4
        await receiver.start()
        second = await lane.scan("5901234123457", "4006381333932")
        await _until(lambda: len(receiver.received) >= 6)
        await asyncio.sleep(0.3)  # nothing arrives twice
        depth_after, _ = await sink.depth()
        attempts = await lane.store.fetchall(
            "SELECT COUNT(*) FROM outbox WHERE destination = 'mqtt'"
        )
    await receiver.stop()
    events = receiver.events
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == 6
    assert [e["public_id"] for e in events] == [c.public_id for c in (*first, *second)]
    assert [h["X-Scanstation-Event-Id"] for h, _ in receiver.received] == ids
    assert {e["schema"] for e in events} == {"scanstation.capture/1"}
    assert depth_after == 0
    assert attempts[0][0] == 6  # MQTT keeps its own copy of every event


async def test_outputs_webhook_signs_with_hmac_and_adds_text(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    await receiver.start()
    secret = tmp_path / "wms.secret"
    secret.write_text("s3cret-shared\n")
    hook = webhook(
        receiver.port,
        hmac_secret_file=str(secret),
        mode="gtin",
        headers={"Authorization": "Bearer t"},
    )
    try:
        async with station(tmp_path, [hook]) as lane:
            await lane.scan("4006381333931")
            await _until(lambda: len(receiver.received) == 1)
    finally:
        await receiver.stop()
    [(headers, body)] = receiver.received
    timestamp = headers["X-Scanstation-Timestamp"]
    expected = hmac.new(b"s3cret-shared", timestamp.encode() + b"." + body, hashlib.sha256)
    assert headers["X-Scanstation-Signature"] == f"sha256={expected.hexdigest()}"
    assert headers["Authorization"] == "Bearer t"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["text"] == "4006381333931"


async def test_outputs_webhook_dead_letters_repeated_4xx(tmp_path: Path) -> None:
    receiver = Receiver(free_port(), status=422)
    await receiver.start()
    try:
        async with station(tmp_path, [webhook(receiver.port, dead_letter_after=3)]) as lane:
            await lane.scan("4006381333931")
            await _until(lambda: lane.outputs.webhooks[0].counters.dead_lettered == 1)
            receiver.status = 200
            await lane.scan("5901234123457")
            await _until(lambda: len(receiver.received) == 4)
            dead = await lane.store.fetchall(
                "SELECT destination, attempts, last_error FROM outbox_dead"
            )
    finally:
        await receiver.stop()
    assert len(receiver.received) == 4  # three refusals, then the next capture
    [(destination, attempts, last_error)] = dead
    assert destination == "webhook:wms"
    assert attempts == 3
    assert "HTTP 422 nope" in last_error


async def test_outputs_webhook_filter_keeps_rows_out_of_the_outbox(tmp_path: Path) -> None:
    hook = webhook(free_port(), filter={"statuses": ["COMPLETED"]}, match={"kinds": ["gs1"]})
    async with station(tmp_path, [hook]) as lane:
        await lane.store.upsert_products([{"gtin": "09506000134352", "name": "Tea"}])
        await lane.scan(DATAMATRIX[3:], "4006381333931", "https://example.com/x")
        rows = await lane.store.fetchall(
            "SELECT destination FROM outbox WHERE destination != 'mqtt'"
        )
    assert [r[0] for r in rows] == ["webhook:wms"]


# ---- config ------------------------------------------------------------------------------


def test_outputs_spec_webhook_example_validates() -> None:
    config = parse_config(
        {"outputs": [{"type": "webhook", "url": "https://wms.example.com/scans"}]}, environ={}
    )
    [output] = config.outputs
    assert (output.type, output.url, output.name) == (
        "webhook",
        "https://wms.example.com/scans",
        "",
    )


def test_outputs_duplicate_names_are_refused() -> None:
    from scanstation.config import ConfigError

    with pytest.raises(ConfigError, match="two outputs are named 'webhook'"):
        parse_config(
            {
                "outputs": [
                    {"type": "webhook", "url": "http://a/x"},
                    {"type": "webhook", "url": "http://b/y"},
                ]
            },
            environ={},
        )


def test_outputs_checkout_lane_example_passes_check_config(tmp_path: Path) -> None:
    root = tmp_path / "etc"
    make_referenced_files(root)
    example = with_files_under("checkout-lane-outputs", root)
    result = subprocess.run(
        [sys.executable, "-m", "scanstation", "run", "--config", str(example), "--check-config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "config ok" in result.stdout
    config = load_config(example, environ={})
    assert next(o.type for o in config.outputs) == "keyboard_gadget"


def test_outputs_bad_example_fails_check_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[outputs]]\ntype = "keyboard_gadget"\nlayout = "dvorak"\n')
    result = subprocess.run(
        [sys.executable, "-m", "scanstation", "run", "--config", str(bad), "--check-config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "outputs.0.keyboard_gadget.layout" in result.stderr
    with pytest.raises(ConfigError):
        load_config(bad, environ={})


# ---- bench -------------------------------------------------------------------------------


def test_outputs_bench_reports_both_paths_and_the_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scanstation.commands.bench.outputs import main

    assert main(["--scans", "10", "--repeats", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["station"]) == set(figures["bare"]) == {"keyboard_gadget", "serial"}
    assert figures["station"]["serial"]["n"] == 10
    assert figures["target_p99_ms"] == 10.0
    assert main(["--scans", "0"]) == 2


async def test_outputs_webhook_holds_events_while_the_secret_is_unreadable(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    await receiver.start()
    hook = webhook(receiver.port, hmac_secret_file=str(tmp_path / "missing.secret"))
    try:
        async with station(tmp_path, [hook]) as lane:
            await lane.scan("4006381333931")
            await asyncio.sleep(0.2)
            [status] = await lane.outputs.status()
    finally:
        await receiver.stop()
    assert receiver.received == []
    assert status["state"] == "secret unreadable"
    assert status["queued"] == 1
    assert "missing.secret' cannot be read: No such file or directory" in status["last_error"]


async def test_outputs_serial_reopens_a_port_that_appears_later(
    tmp_path: Path, pty_pair: tuple[int, str]
) -> None:
    master, real_port = pty_pair
    port = tmp_path / "ttyUSB0"  # a USB adapter plugged in after the station started
    serial = {"type": "serial", "port": str(port), "reconnect_s": 0.05, "max_age_ms": 100}
    async with station(tmp_path, [serial]) as lane:
        sink = lane.outputs.live[0]
        await lane.scan("4006381333931")  # nowhere to go: dropped once too old, never late
        await asyncio.sleep(0.3)
        port.symlink_to(real_port)
        await _until(lambda: sink.state == "ok")
        await lane.scan("5901234123457")
        await asyncio.sleep(0.05)
        data = read_all(master)
    assert data == b"5901234123457\r\n"
    assert (sink.counters.sent, sink.counters.dropped) == (1, 1)
