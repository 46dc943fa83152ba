"""One result per object: two cameras of a tunnel read into one object window, in the real
daemon (pipeline, store, read rate), on sample files pushed at scripted times."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from lane import SAMPLES, Clock, lane_config, triggered_camera, until
from scanstation import app
from scanstation.barcode.decode import load_image
from scanstation.config import ConfigError, ObjectWindowConfig, parse_config
from scanstation.sources.objects import ObjectWindow


async def test_two_cameras_reading_one_object_give_one_result(tmp_path: Path) -> None:
    config = lane_config(tmp_path)
    clocks = {"top": Clock(), "side": Clock()}
    top, top_cam = triggered_camera(clocks["top"], "top")
    side, side_cam = triggered_camera(clocks["side"], "side")
    tunnel = ObjectWindow(ObjectWindowConfig(enabled=True, name="tunnel"), [top, side])
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        app.run(config, stop, on_ready=ready.set_result, extra_sources=[tunnel])
    )
    try:
        daemon = await asyncio.wait_for(ready, 20)

        def windows() -> int:
            report = daemon.read_stats.reports().get("tunnel")
            return sum(report.totals.values()) if report else 0

        async def object_passes(top_sees: str, side_sees: str) -> None:
            before, t = windows(), 10.0 * (tunnel.windows + 1)
            for clock in clocks.values():
                clock.set(t)
            triggers = top.stats().triggers, side.stats().triggers
            tunnel.trigger()
            await until(lambda: (top.stats().triggers, side.stats().triggers) > triggers)
            for cam, name in ((top_cam, top_sees), (side_cam, side_sees)):
                cam.push(load_image(SAMPLES / name), at=t + 0.1)
                cam.push(load_image(SAMPLES / "07-empty.jpg"), at=t + 1.5)
            await until(lambda: windows() == before + 1)

        await object_passes("01-ean13.jpg", "01-ean13.jpg")  # the same label from both sides
        await object_passes("01-ean13.jpg", "07-empty.jpg")  # one camera sees the blank side
        await object_passes("06-two-codes.jpg", "01-ean13.jpg")  # three codes on the object
        await object_passes("07-empty.jpg", "07-empty.jpg")  # nothing: one no-read
        await daemon.pipeline.idle()
        rows = await daemon.store.fetchall(
            "SELECT source, raw_value, metadata FROM captures ORDER BY id"
        )
        report = daemon.read_stats.reports()["tunnel"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    results = [(src, raw, json.loads(meta)) for src, raw, meta in rows]
    assert {src for src, _, _ in results} == {"tunnel"}  # never a camera's own capture
    by_window: dict[str, set[tuple[str, str]]] = {}
    for _, raw, meta in results:
        by_window.setdefault(meta["window"], set()).add((raw, meta.get("cameras", "")))
    assert len(results) == 6  # 1 + 1 + 3 codes + 1 no-read: one result per object
    assert by_window == {
        "1": {("4006381333931", "top,side")},
        "2": {("4006381333931", "top")},
        "3": {
            ("5901234123457", "top"),
            ("https://example.com/p/42", "top"),
            ("4006381333931", "side"),
        },
        "4": {("", "top,side")},
    }
    assert results[-1][2]["noread"] == "true"
    assert report.totals == {"good": 2, "noread": 1, "multiple": 1, "rejected": 0}
    # Both cameras decoded (each in its own threads) and reported every window to the object.
    assert (top.stats().reads, top.stats().no_reads) == (4, 1)
    assert (side.stats().reads, side.stats().no_reads) == (2, 2)


async def test_the_photo_eye_clearing_closes_the_object_window_at_once(tmp_path: Path) -> None:
    clocks = {"top": Clock(), "side": Clock()}
    # Read windows of a minute: only the release can close them within the test.
    top, top_cam = triggered_camera(clocks["top"], "top", read_window_ms=60_000)
    side, side_cam = triggered_camera(clocks["side"], "side", read_window_ms=60_000)
    tunnel = ObjectWindow(
        ObjectWindowConfig(enabled=True, name="tunnel", window_ms=60_000), [top, side]
    )
    results: list[Any] = []

    async def emit(scan: Any) -> Any:
        results.append(scan)
        return scan

    task = asyncio.create_task(tunnel.run(emit))
    try:
        await until(lambda: tunnel._loop is not None)
        for clock in clocks.values():
            clock.set(1.0)
        tunnel.trigger()
        await until(lambda: top.stats().triggers == side.stats().triggers == 1)
        for cam in (top_cam, side_cam):
            cam.push(load_image(SAMPLES / "07-empty.jpg"), at=1.2)
        await until(lambda: top.stats().frames == side.stats().frames == 1)
        assert results == []  # the object is still in the beam
        tunnel.release()
        await until(lambda: len(results) == 1, within=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    [noread] = results
    assert (noread.source, noread.metadata["noread"], noread.metadata["cameras"]) == (
        "tunnel", "true", "top,side",
    )  # fmt: skip
    assert noread.image is not None  # the frame a camera saw


def test_object_window_cameras_must_be_software_triggered_cameras() -> None:
    cameras = [
        {"type": "camera", "name": "top", "trigger": "software"},
        {"type": "camera", "name": "belt", "trigger": "continuous"},
    ]
    config = parse_config({"sources": cameras, "object_window": {"enabled": True}}, environ={})
    assert config.object_window_cameras == ["top"]
    with pytest.raises(ConfigError, match="'belt' has trigger = 'continuous'"):
        parse_config(
            {"sources": cameras, "object_window": {"enabled": True, "cameras": ["belt"]}},
            environ={},
        )
    with pytest.raises(ConfigError, match=r"needs the photo-eye's pin: set \[gpio\] trigger_input"):
        parse_config(
            {"sources": cameras, "object_window": {"enabled": True, "trigger": "gpio"}},
            environ={},
        )
    with pytest.raises(ConfigError, match="entry 'nope': no enabled camera source"):
        parse_config(
            {"sources": cameras, "object_window": {"enabled": True, "cameras": ["nope"]}},
            environ={},
        )


def test_the_daemon_groups_the_window_cameras_into_one_source() -> None:
    sources = [
        {"type": "camera", "name": "belt", "backend": "file", "device": str(SAMPLES)},
        {"type": "camera", "name": "top", "trigger": "software", "backend": "file"},
        {"type": "camera", "name": "side", "trigger": "software", "backend": "file"},
        {"type": "stdin", "name": "keys"},
    ]
    config = parse_config(
        {"sources": sources, "object_window": {"enabled": True, "name": "tunnel"}}, environ={}
    )
    built = app.init_sources(config, None)
    assert [s.name for s in built] == ["belt", "tunnel", "keys"]
    [tunnel] = app.object_windows(built)
    assert [c.name for c in tunnel.cameras] == ["top", "side"]
    # HTTP, MQTT and Modbus coil 0 trigger the object window, never one of its cameras.
    assert list(app.software_triggers(built)) == ["tunnel"]
    assert [c.name for c in app.all_cameras(built)] == ["belt", "top", "side"]
