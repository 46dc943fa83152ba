"""`scanstation devices` (listing from sysfs, --record) and `scanstation hid-replay`."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from test_hid_recordings import DATA, GS1_DATAMATRIX_VALUE, write_jsonl

from scanstation.commands.devices import (
    CameraInfo,
    InputDeviceInfo,
    SerialPortInfo,
    _print_table,
    devices_main,
    hid_replay_main,
    list_cameras,
    list_input_devices,
    list_serial_ports,
    read_recording,
    record,
)
from scanstation.hw import keymaps
from scanstation.sources.hid import FakeInputBus

# A keyboard's key bitmap as sysfs shows it (letters, digits, Enter and more are set).
KEYBOARD_KEYS = "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe"


def fake_sysfs(root: Path) -> None:
    """A Pi with a Honeywell gun, a laptop keyboard, a power button, a camera and an ACM port."""

    def input_device(n: int, name: str, vendor: str, keys: str, link: str = "") -> None:
        device = root / f"sys/class/input/event{n}/device"
        (device / "id").mkdir(parents=True)
        (device / "capabilities").mkdir()
        (device / "name").write_text(name + "\n")
        (device / "id/vendor").write_text(vendor + "\n")
        (device / "id/product").write_text("0b01\n")
        (device / "capabilities/key").write_text(keys + "\n")
        if link:
            by_id = root / "dev/input/by-id"
            by_id.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../event{n}", by_id / link)

    input_device(0, "Power Button", "0000", "10000000000000 0")
    input_device(1, "AT Translated Set 2 keyboard", "0001", KEYBOARD_KEYS)
    input_device(
        3,
        "Honeywell Imaging & Mobility 1900",
        "0c2e",
        KEYBOARD_KEYS,
        "usb-Honeywell_Imaging___Mobility_1900-event-kbd",
    )
    video = root / "sys/class/video4linux/video0"
    video.mkdir(parents=True)
    (video / "name").write_text("Camera Module 3\n")
    tty = root / "sys/class/tty/ttyACM0/device"
    tty.mkdir(parents=True)
    (root / "drivers/cdc_acm").mkdir(parents=True)
    os.symlink(root / "drivers/cdc_acm", tty / "driver")
    (root / "dev/serial/by-id").mkdir(parents=True)
    os.symlink("../../ttyACM0", root / "dev/serial/by-id/usb-Datalogic_Scanner-if00")


def test_hid_cli_devices_lists_from_sysfs(tmp_path: Path) -> None:
    fake_sysfs(tmp_path)
    assert list_input_devices(tmp_path) == [
        InputDeviceInfo("/dev/input/event0", [], "Power Button", "0000", "0b01", False, False),
        InputDeviceInfo(
            "/dev/input/event1", [], "AT Translated Set 2 keyboard", "0001", "0b01", True, False
        ),
        InputDeviceInfo(
            "/dev/input/event3",
            ["/dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd"],
            "Honeywell Imaging & Mobility 1900",
            "0c2e",
            "0b01",
            True,
            True,
        ),
    ]
    assert list_cameras(tmp_path) == [CameraInfo("/dev/video0", "Camera Module 3", [])]
    assert list_serial_ports(tmp_path) == [
        SerialPortInfo("/dev/ttyACM0", ["/dev/serial/by-id/usb-Datalogic_Scanner-if00"], "cdc_acm")
    ]


def test_hid_cli_devices_on_a_machine_without_devices(capsys: pytest.CaptureFixture[str]) -> None:
    assert devices_main(["--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {"input", "cameras", "serial"}


def test_hid_cli_devices_bad_option_is_usage_error() -> None:
    assert devices_main(["--bogus"]) == 2


def test_hid_cli_record_missing_device_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "event99")
    assert devices_main(["--record", missing, "--duration", "0.1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot record {missing!r}" in err
    assert "'input' group" in err


async def test_hid_cli_record_writes_key_events_that_replay_to_the_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bus = FakeInputBus()
    path = "/dev/input/by-id/usb-Fake-event-kbd"
    bus.plug(path)
    out, log = io.StringIO(), io.StringIO()
    recording = asyncio.create_task(record(path, out, duration=0.3, open_device=bus.open, log=log))
    await bus.wait_grabbed(path)
    bus.type(path, keymaps.keystrokes("de", "]d2" + GS1_DATAMATRIX_VALUE), start=1_700_000_000.0)
    assert await recording > 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[0] == {"t": 0.0, "type": 1, "code": keymaps.KEY_RIGHTALT, "value": 1}
    assert {row["type"] for row in rows} == {1}  # key events only
    file = tmp_path / "scan.jsonl"
    file.write_text(out.getvalue())
    assert hid_replay_main([str(file), "--layout", "de"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["symbology_identifier"], p["raw_value"]) for p in printed] == [
        ("]d2", GS1_DATAMATRIX_VALUE)
    ]
    assert "Recording 'Fake Barcode Scanner'" in log.getvalue()
    assert path not in bus.grabbed_by  # released


def test_hid_cli_replay_prints_one_json_line_per_scan(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        hid_replay_main(
            [str(DATA / "fr-gs1-substitute.jsonl"), "--layout", "fr", "--gs-substitute", "<GS>"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "raw_value": GS1_DATAMATRIX_VALUE,
            "symbology_identifier": "]d2",
            "symbology": "DataMatrix",
            "t": 0.0,
            "duration_ms": 96.0,
            "keystrokes": 93,  # digits need Shift on AZERTY
        }
    ]
    assert err == "1 scan, 0 dropped, from 372 events (layout fr, terminator enter)\n"


def test_hid_cli_replay_wrong_layout_shows_the_damage(capsys: pytest.CaptureFixture[str]) -> None:
    """What a user sees with the wrong layout: German digits typed as French punctuation."""
    assert hid_replay_main([str(DATA / "de-gs1-ctrl.jsonl"), "--layout", "fr"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["raw_value"].startswith("^d")  # ']' lost: AltGr+9 is '^' on fr


def test_hid_cli_replay_explains_dropped_keystrokes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "typing.jsonl"
    write_jsonl(
        file,
        keymaps.keystrokes("us", "hi", key_interval=0.2)
        + keymaps.keystrokes("us", "4006381333931", start=2.0),
    )
    assert hid_replay_main([str(file), "--function-key", "F8=\\x1d"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["raw_value"] for line in out.splitlines()] == ["4006381333931"]
    assert "dropped 'h' at t=0.200: no Enter within 50 ms (pause of 200 ms)" in err
    assert "1 scan, 2 dropped" in err


def test_hid_cli_replay_with_interpretation(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip(
        "scanstation.barcode.interpret", reason="SKIPPED: scanstation.barcode.interpret missing"
    )
    assert (
        hid_replay_main([str(DATA / "it-gs1-alt-codes.jsonl"), "--layout", "it", "--interpret"])
        == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["interpretation"]["ais"] == {
        "01": "09506000134352",
        "17": "270101",
        "10": "ABC123",
        "21": "XY-9/Zz",
    }


def test_hid_cli_replay_settings_from_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "scanstation.toml"
    config.write_text(
        '[[sources]]\ntype = "hid"\nname = "gun1"\nlayout = "es"\ngs_substitutes = ["<GS>"]\n'
    )
    file = DATA / "es-gs1-substitute.jsonl"
    assert hid_replay_main([str(file), "--config", str(config), "--source", "gun1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["raw_value"] == GS1_DATAMATRIX_VALUE


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["missing.jsonl"], 1, "cannot read 'missing.jsonl': No such file or directory"),
        (["BAD"], 2, "BAD, line 2: 'not json' is not an event; expected"),
        (["GOOD", "--function-key", "F8"], 2, "--function-key 'F8': expected NAME=TEXT"),
        (["GOOD", "--function-key", "F30=x"], 2, "unknown function key 'F30'"),
        (["GOOD", "--layout", "ch(fra)"], 2, "unknown keyboard layout 'ch(fra)'"),
    ],
)
def test_hid_cli_replay_errors_name_the_problem(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD").write_text('{"t": 0, "type": 1, "code": 2, "value": 1}\nnot json\n')
    (tmp_path / "GOOD").write_text('{"t": 0, "type": 1, "code": 2, "value": 1}\n')
    assert hid_replay_main(argv) == code
    assert message in capsys.readouterr().err


def test_hid_cli_read_recording_skips_blank_lines() -> None:
    assert read_recording(['{"t": 1, "type": 1, "code": 30, "value": 0}', "", "  "]) == [
        (1.0, 1, 30, 0)
    ]


def test_hid_cli_devices_table_marks_the_scanner(tmp_path: Path) -> None:
    fake_sysfs(tmp_path)
    out = io.StringIO()
    _print_table(
        list_input_devices(tmp_path),
        list_cameras(tmp_path),
        list_serial_ports(tmp_path),
        out,
        False,
    )
    assert out.getvalue().splitlines() == [
        "Input devices (HID barcode guns are keyboards):",
        "  /dev/input/event1    keyboard  'AT Translated Set 2 keyboard' 0001:0b01",
        "  /dev/input/event3    scanner?  'Honeywell Imaging & Mobility 1900' 0c2e:0b01",
        "      /dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd",
        "Cameras:",
        "  /dev/video0          'Camera Module 3'",
        "Serial ports:",
        "  /dev/ttyACM0         cdc_acm",
        "      /dev/serial/by-id/usb-Datalogic_Scanner-if00",
        "",
        "Use a /dev/input/by-id/…-event-kbd link as the hid source's device; record a scan "
        "with: scanstation devices --record LINK > scan.jsonl",
    ]
