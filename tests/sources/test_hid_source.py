"""The evdev source with fake devices: grab, hot-plug, several scanners, health, emit order."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from test_hid_recordings import GS1_DATAMATRIX, GS1_DATAMATRIX_VALUE

from scanstation.config import HidSourceConfig
from scanstation.hw import keymaps
from scanstation.model import Scan
from scanstation.sources.hid import FakeInputBus, HidSource, discover_scanners

GUN1 = "/dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd"
GUN2 = "/dev/input/by-id/usb-Zebra_Technologies_Symbol_Bar_Code_Scanner-event-kbd"


def hid_config(**overrides: Any) -> HidSourceConfig:
    return HidSourceConfig(**{"type": "hid", "name": "gun1", "device": GUN1, **overrides})


class Recorder:
    """An emit that records scans (and can be told to fail), like a pipeline that commits."""

    def __init__(self, fail_first: int = 0) -> None:
        self.scans: list[Scan] = []
        self.fail_first = fail_first
        self.calls = 0

    async def __call__(self, scan: Scan) -> None:
        self.calls += 1
        await asyncio.sleep(0)  # the commit
        if self.calls <= self.fail_first:
            raise RuntimeError("database is locked")
        self.scans.append(scan)

    def values(self) -> list[tuple[str, str, str]]:
        return [(s.source, s.symbology_identifier, s.raw_value) for s in self.scans]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(*sources: HidSource, emit: Recorder) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(source.run(emit)) for source in sources]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task


def scan_events(text: str, layout: str = "us") -> list[keymaps.KeyEvent]:
    return keymaps.keystrokes(layout, text)


async def test_hid_source_grabs_and_emits_scans_in_order() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    console = bus.open(GUN1)  # another reader, like the console's keyboard handler
    source = HidSource(hid_config(layout="de"), device_factory=bus.open)
    emit = Recorder()
    async with running(source, emit=emit):
        await bus.wait_grabbed(GUN1)
        for text in ["4006381333931", GS1_DATAMATRIX, "]Q1https://example.com/ä?x=1"]:
            bus.type(GUN1, scan_events(text, "de"))
        await until(lambda: len(emit.scans) == 3)
        assert source.health.state == "running"
        assert console._queue.empty()  # grabbed: no keystroke reached the console
    assert emit.values() == [
        ("gun1", "", "4006381333931"),
        ("gun1", "]d2", GS1_DATAMATRIX_VALUE),
        ("gun1", "]Q1", "https://example.com/ä?x=1"),
    ]
    assert emit.scans[1].symbology == "DataMatrix"
    assert emit.scans[1].metadata == {"device": GUN1}
    assert (source.health.scans, source.health.state) == (3, "stopped")


async def test_hid_source_replug_is_grabbed_again_and_no_scan_lost_or_doubled() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    source = HidSource(
        hid_config(inter_key_timeout_ms=1000), device_factory=bus.open, backoff_initial=0.01
    )
    emit = Recorder()
    async with running(source, emit=emit):
        await bus.wait_grabbed(GUN1)
        bus.type(GUN1, scan_events("111"))
        await until(lambda: len(emit.scans) == 1)
        bus.type(GUN1, scan_events("222")[:6])  # half a scan, then the cable is pulled
        await asyncio.sleep(0.02)
        bus.unplug(GUN1)
        await until(lambda: source.health.state == "reconnecting")
        assert source.health.detail == f"{GUN1}: unplugged (waiting for it)"
        await asyncio.sleep(0.05)  # a few failed reopens while it is away
        bus.plug(GUN1)
        await bus.wait_grabbed(GUN1, times=2)
        await until(lambda: source.health.state == "running")
        bus.type(GUN1, scan_events("333"))
        bus.type(GUN1, scan_events("444"))
        await until(lambda: len(emit.scans) == 3)
        await asyncio.sleep(0.05)  # nothing more arrives
    assert [s.raw_value for s in emit.scans] == ["111", "333", "444"]
    assert [(d.text, d.reason) for d in source.dropped] == [("22", "the device went away mid-scan")]


async def test_hid_source_waits_for_a_device_plugged_in_later() -> None:
    bus = FakeInputBus()
    source = HidSource(hid_config(), device_factory=bus.open, backoff_initial=0.01)
    emit = Recorder()
    async with running(source, emit=emit):
        await until(lambda: source.health.state == "reconnecting")
        assert source.health.detail == f"{GUN1}: not plugged in (waiting for it)"
        bus.plug(GUN1)
        await bus.wait_grabbed(GUN1)
        bus.type(GUN1, scan_events("4006381333931"))
        await until(lambda: len(emit.scans) == 1)
    assert emit.values() == [("gun1", "", "4006381333931")]


async def test_hid_source_device_grabbed_by_another_program_is_retried() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    other = bus.open(GUN1)
    other.grab()
    source = HidSource(hid_config(), device_factory=bus.open, backoff_initial=0.01)
    emit = Recorder()
    async with running(source, emit=emit):
        await until(lambda: "grabbed by another program" in source.health.detail)
        assert source.health.state == "reconnecting"
        other.close()
        await bus.wait_grabbed(GUN1, times=2)
        bus.type(GUN1, scan_events("123"))
        await until(lambda: len(emit.scans) == 1)
    assert emit.values() == [("gun1", "", "123")]


async def test_hid_source_several_scanners_each_their_own_source_name() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    bus.plug(GUN2)
    gun1 = HidSource(hid_config(name="lane1", layout="fr"), device_factory=bus.open)
    gun2 = HidSource(hid_config(name="lane2", device=GUN2, layout="us"), device_factory=bus.open)
    emit = Recorder()
    async with running(gun1, gun2, emit=emit):
        await bus.wait_grabbed(GUN1)
        await bus.wait_grabbed(GUN2)
        bus.type(GUN1, scan_events("]C1ABC-1", "fr"))
        bus.type(GUN2, scan_events("]C1XYZ-2", "us"))
        await until(lambda: len(emit.scans) == 2)
    assert sorted(emit.values()) == [("lane1", "]C1", "ABC-1"), ("lane2", "]C1", "XYZ-2")]


async def test_hid_source_auto_finds_scanners_and_new_ones() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    source = HidSource(
        hid_config(device="auto"),
        device_factory=bus.open,
        discover=bus.paths,
        rescan_interval=0.01,
    )
    emit = Recorder()
    async with running(source, emit=emit):
        await bus.wait_grabbed(GUN1)
        bus.plug(GUN2)
        await bus.wait_grabbed(GUN2)
        bus.type(GUN1, scan_events("111"))
        bus.type(GUN2, scan_events("222"))
        await until(lambda: len(emit.scans) == 2)
        bus.unplug(GUN2)
        await until(lambda: GUN2 not in source.health.detail)
        assert source.health.state == "running"
    assert sorted((s.raw_value, s.metadata["device"]) for s in emit.scans) == [
        ("111", GUN1),
        ("222", GUN2),
    ]


async def test_hid_source_auto_without_scanner_says_what_to_do() -> None:
    source = HidSource(
        hid_config(device="auto"),
        device_factory=FakeInputBus().open,
        discover=list,
        rescan_interval=0.01,
    )
    emit = Recorder()
    async with running(source, emit=emit):
        await until(lambda: source.health.state == "reconnecting")
    assert "no barcode scanner found" in source.health.detail


async def test_hid_source_without_scanner_says_why_in_the_log_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kiosk on a PC (mock GPIO, no gun): the log says why the gun waits, not every rescan."""
    bus = FakeInputBus()
    found: list[str] = []
    source = HidSource(
        hid_config(device="auto"),
        device_factory=bus.open,
        discover=lambda: list(found),
        rescan_interval=0.01,
    )
    emit = Recorder()
    with caplog.at_level("INFO", logger="scanstation.sources"):
        async with running(source, emit=emit):
            await until(lambda: source.health.state == "reconnecting")
            await asyncio.sleep(0.1)  # ten rescans
            waiting = [r.getMessage() for r in caplog.records if "is waiting" in r.getMessage()]
            assert waiting == [
                "source gun1 (hid) is waiting: no barcode scanner found in /dev/input/by-id; "
                "plug one in or set device to its /dev/input/by-id path"
            ]
            bus.plug(GUN1)
            found.append(GUN1)
            await until(lambda: source.health.state == "running")
    assert any("source gun1 (hid) is running again" in r.getMessage() for r in caplog.records)


async def test_hid_source_failed_emit_is_counted_and_reading_goes_on() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    source = HidSource(hid_config(), device_factory=bus.open)
    emit = Recorder(fail_first=1)
    async with running(source, emit=emit):
        await bus.wait_grabbed(GUN1)
        bus.type(GUN1, scan_events("111"))
        bus.type(GUN1, scan_events("222"))
        await until(lambda: len(emit.scans) == 1)
    assert [s.raw_value for s in emit.scans] == ["222"]
    assert (source.health.scans, source.health.errors) == (1, 1)


async def test_hid_source_terminator_none_ends_scan_after_pause() -> None:
    bus = FakeInputBus()
    bus.plug(GUN1)
    source = HidSource(
        hid_config(terminator="none", inter_key_timeout_ms=20), device_factory=bus.open
    )
    emit = Recorder()
    async with running(source, emit=emit):
        await bus.wait_grabbed(GUN1)
        bus.type(GUN1, keymaps.keystrokes("us", "4006381333931", terminator="none"))
        await until(lambda: len(emit.scans) == 1)
    assert emit.values() == [("gun1", "", "4006381333931")]


async def test_hid_source_permission_denied_names_the_group() -> None:
    def no_permission(path: str) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    source = HidSource(hid_config(), device_factory=no_permission, backoff_initial=0.01)
    async with running(source, emit=Recorder()):
        await until(lambda: source.health.state == "reconnecting")
    assert source.health.detail == (
        f"{GUN1}: permission denied: run as a member of the 'input' group"
    )


def test_hid_source_module_imports_without_evdev() -> None:
    """evdev is imported only when a real device is opened; everything else works without it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['evdev'] = None\n"
        "import scanstation.sources.hid as hid, scanstation.commands.devices\n"
        "try:\n"
        "    hid.open_evdev('/dev/input/event0')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "python-evdev is not installed (pip install evdev)"


def test_hid_source_auto_discovery_takes_only_scanner_keyboards(tmp_path: Path) -> None:
    for name in [
        "usb-Honeywell_Imaging___Mobility_1900-event-kbd",
        "usb-Honeywell_Imaging___Mobility_1900-if01-event-mouse",
        "usb-Logitech_USB_Keyboard-event-kbd",
        "usb-Datalogic_ADC__Inc._Handheld_Barcode_Scanner-event-kbd",
    ]:
        (tmp_path / name).symlink_to("../event0")
    assert discover_scanners(tmp_path) == [
        str(tmp_path / "usb-Datalogic_ADC__Inc._Handheld_Barcode_Scanner-event-kbd"),
        str(tmp_path / "usb-Honeywell_Imaging___Mobility_1900-event-kbd"),
    ]
    assert discover_scanners(tmp_path / "missing") == []
