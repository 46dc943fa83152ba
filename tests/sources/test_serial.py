"""Serial scanners: framing by terminator or pause, and the source through a real pty pair."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from scanstation.barcode.scantext import ScanText
from scanstation.config import SerialSourceConfig
from scanstation.model import Scan
from scanstation.sources.serial import SerialFramer, SerialSource

GS = "\x1d"
GS1 = "]C1" + "0109506000134352" + "10ABC123" + GS + "17270101"


def frames(framer: SerialFramer, *chunks: bytes) -> list[tuple[str, str]]:
    out: list[ScanText] = []
    for i, chunk in enumerate(chunks):
        out += framer.feed(chunk, float(i))
    return [(f.symbology_identifier, f.raw_value) for f in out]


@pytest.mark.parametrize(
    ("terminator", "stream"),
    [
        ("\r\n", b"]C10109506000134352" + b"10ABC123\x1d17270101\r\n"),
        ("\r\n", b"]C10109506000134352" + b"10ABC123\x1d17270101\r"),  # CR only still ends
        ("\r", b"]C10109506000134352" + b"10ABC123\x1d17270101\r"),
        ("\n", b"]C10109506000134352" + b"10ABC123\x1d17270101\n"),
    ],
)
def test_serial_framer_terminators(terminator: str, stream: bytes) -> None:
    assert frames(SerialFramer(terminator), stream) == [("]C1", GS1[3:])]


def test_serial_framer_frames_split_and_joined_across_reads() -> None:
    framer = SerialFramer("\r\n")
    assert frames(framer, b"4006381", b"333931\r\n9506000", b"134352\r\n\r\n1\r") == [
        ("", "4006381333931"),
        ("", "9506000134352"),
        ("", "1"),
    ]


def test_serial_framer_gs_substitute_and_aim_switch() -> None:
    framer = SerialFramer("\r", gs_substitutes=("<GS>",), aim_identifier=False)
    assert frames(framer, b"]C110ABC<GS>21X\r") == [("", "]C110ABC" + GS + "21X")]


def test_serial_framer_pause_ends_frame_without_terminator() -> None:
    framer = SerialFramer("", frame_timeout=0.1)
    assert framer.feed(b"40063813", 10.0) == []
    assert framer.feed(b"33931", 10.02) == []
    assert framer.deadline == pytest.approx(10.12)
    assert framer.poll(10.05) == []
    assert framer.poll(10.2) == [ScanText("4006381333931", "", 10.2)]
    assert framer.feed(b"A", 11.0) == []
    assert framer.feed(b"B", 12.0) == [ScanText("A", "", 12.0)]  # a late byte starts anew


@pytest.mark.parametrize(
    ("encoding", "data", "expected"),
    [
        ("utf-8", "https://example.com/ä\r".encode(), "https://example.com/ä"),
        ("latin-1", "Müller\r".encode("latin-1"), "Müller"),
        ("utf-8", b"bad\xff\r", "bad\ufffd"),  # never a crash on bad bytes
    ],
)
def test_serial_framer_encodings(encoding: str, data: bytes, expected: str) -> None:
    assert frames(SerialFramer("\r", encoding=encoding), data) == [("", expected)]


def test_serial_framer_reset_returns_partial() -> None:
    framer = SerialFramer("\r\n")
    framer.feed(b"40063", 0.0)
    assert framer.reset() == b"40063"
    assert frames(framer, b"123\r\n") == [("", "123")]


# --- The source on a pty pair --------------------------------------------------------------


class Pty:
    """A pty pair standing in for a scanner: the slave is the port, we write the master."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        os.close(slave)  # the source opens it by name, as it would /dev/ttyACM0

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)


class Recorder:
    def __init__(self) -> None:
        self.scans: list[Scan] = []

    async def __call__(self, scan: Scan) -> None:
        self.scans.append(scan)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(source: SerialSource, emit: Recorder) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(emit))
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def serial_config(port: str, **overrides: Any) -> SerialSourceConfig:
    return SerialSourceConfig(
        **{"type": "serial", "name": "ser1", "port": port, "baud": 115200, **overrides}
    )


async def test_serial_source_reads_scans_through_a_pty() -> None:
    pty = Pty()
    source = SerialSource(serial_config(pty.port))
    emit = Recorder()
    try:
        async with running(source, emit):
            await until(lambda: source.health.state == "running")
            pty.send(GS1.encode() + b"\r\n")
            pty.send(b"]E04006381333931\r\n]Q1https://id.gs1.org/01/09506000134352\r\n")
            await until(lambda: len(emit.scans) == 3)
    finally:
        pty.unplug()
    assert [(s.source, s.symbology_identifier, s.raw_value) for s in emit.scans] == [
        ("ser1", "]C1", GS1[3:]),
        ("ser1", "]E0", "4006381333931"),
        ("ser1", "]Q1", "https://id.gs1.org/01/09506000134352"),
    ]
    assert emit.scans[0].symbology == "Code128"
    assert emit.scans[0].metadata == {"port": pty.port}
    assert source.health.scans == 3


async def test_serial_source_reconnects_after_unplug(tmp_path: Path) -> None:
    link = tmp_path / "usb-Datalogic_Scanner-if00"  # like /dev/serial/by-id
    first = Pty()
    link.symlink_to(first.port)
    source = SerialSource(serial_config(str(link)), backoff_initial=0.01, backoff_max=0.05)
    emit = Recorder()
    second: Pty | None = None
    try:
        async with running(source, emit):
            await until(lambda: source.health.state == "running")
            first.send(b"111\r\n222")  # the second scan is cut off by the unplug
            await until(lambda: len(emit.scans) == 1)
            await asyncio.sleep(0.02)
            first.unplug()
            link.unlink()
            await until(lambda: source.health.state == "reconnecting")
            assert "waiting for it" in source.health.detail
            second = Pty()
            link.symlink_to(second.port)
            await until(lambda: source.health.state == "running")
            second.send(b"333\r\n")
            await until(lambda: len(emit.scans) == 2)
            await asyncio.sleep(0.05)
    finally:
        if second is not None:
            second.unplug()
    assert [s.raw_value for s in emit.scans] == ["111", "333"]


async def test_serial_source_missing_port_waits(tmp_path: Path) -> None:
    source = SerialSource(serial_config(str(tmp_path / "ttyACM9")), backoff_initial=0.01)
    async with running(source, Recorder()):
        await until(lambda: source.health.state == "reconnecting")
    assert source.health.detail == f"{tmp_path / 'ttyACM9'}: not plugged in (waiting for it)"


def test_serial_config_rejects_empty_gs_substitute() -> None:
    with pytest.raises(ValueError, match="a GS substitute is empty"):
        serial_config("/dev/ttyACM0", gs_substitutes=[""])
