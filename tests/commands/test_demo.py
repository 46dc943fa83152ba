"""`scanstation demo` as a newcomer runs it: self-contained, scripted, gone when stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import SCANSTATION, free_port

STEPS = 8
TERMINAL = {"COMPLETED", "NOT_FOUND", "FAILED"}


@dataclass
class Demo:
    """One `scanstation demo` process, its stderr collected line by line."""

    process: subprocess.Popen[str]
    tmpdir: Path
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        assert self.process.stderr is not None
        for line in self.lines:
            if text in line:
                return line
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never appeared; stderr:\n{''.join(self.lines)}")

    def banner(self, label: str) -> str:
        line = self.wait_for(f"  {label}:")
        return line.split(":", 1)[1].strip()

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        try:
            _, rest = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.lines.extend(rest.splitlines(keepends=True))
        return self.process.returncode


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Any]:
    started: list[Demo] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Demo:
        tmpdir = tmp_path / f"tmp{len(started)}"
        tmpdir.mkdir()
        process = subprocess.Popen(
            [*SCANSTATION, "demo", "--no-stdin", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(tmpdir), **(env or {})},
        )
        demo = Demo(process, tmpdir)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        if demo.process.poll() is None:
            demo.process.kill()
            demo.process.wait(10)


def api(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"X-API-Key": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def broker_port(mqtt_line: str) -> int:
    match = re.search(r"127\.0\.0\.1:(\d+)", mqtt_line)
    assert match, mqtt_line
    return int(match.group(1))


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.3):
            return True
    except OSError:
        return False


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


needs_mosquitto = pytest.mark.skipif(
    not (shutil.which("mosquitto") or os.access("/usr/sbin/mosquitto", os.X_OK)),
    reason="SKIPPED: mosquitto is not installed (apt install mosquitto)",
)


@needs_mosquitto
def test_demo_plays_each_feature_once_then_ctrl_c_leaves_nothing(start_demo: Any) -> None:
    port = free_port()
    demo = start_demo("--port", str(port), "--step-seconds", "0.2")
    url = demo.banner("UI and API").split()[0]
    key = demo.banner("API key")
    mqtt = demo.banner("MQTT")
    storage = Path(re.search(r"storage: (\S+?),", demo.wait_for("storage: ")).group(1))  # type: ignore[union-attr]
    assert url == f"http://127.0.0.1:{port}"
    assert storage.parent == demo.tmpdir
    assert "its own broker" in mqtt
    assert broker_port(mqtt) != 1883
    demo.wait_for("scene finished")
    deadline = time.monotonic() + 30
    while True:  # the last capture's walk (the QR chain) may still be under way
        captures = api(f"{url}/scanner/api/v1/captures?limit=50", key)["results"]
        if all(c["status"] in TERMINAL for c in captures) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(captures) == STEPS, [c["raw_value"] for c in captures]  # once each, no loop
    by_step = list(reversed(captures))  # oldest first: the scene's order
    ean, upc, matrix, recalled, unknown, noread, photo, qr = by_step
    assert (ean["product_name"], ean["status"]) == (
        "STABILO BOSS ORIGINAL highlighter",
        "COMPLETED",
    )
    assert (upc["product_name"], upc["status"]) == ("Kleenex facial tissues", "COMPLETED")
    assert matrix["symbology"] == "DataMatrix"
    assert matrix["checks"]["expired"] is False
    assert matrix["checks"]["expiry"] > time.strftime("%Y-%m-%d")
    assert matrix["gs1_dl_data"]["10"] == "ABC123"
    assert recalled["checks"]["recalled"] is True
    assert recalled["checks"]["not_for_sale"] is True
    assert unknown["status"] == "NOT_FOUND"
    assert noread["capture_type"] == "IMAGE"
    assert noread["uploaded_image_key"]
    assert noread["metadata"]["noread"] == "true"
    assert photo["capture_type"] == "IMAGE"
    assert photo["uploaded_image_key"]
    proposals = api(f"{url}/scanner/api/v1/captures/{photo['public_id']}/proposals", key)
    assert any("espresso" in p["reasoning"] for p in proposals["results"]), proposals
    analysis = qr["qr_analysis"]
    assert analysis["error_message"] == ""
    assert [h["status_code"] for h in analysis["hops"]] == [302, 301, 200]
    assert all(h["url"].startswith("http://127.0.0.1:") for h in analysis["hops"])
    assert analysis["extracted_gtin"] == "09506000134352"
    assert qr["product_name"] == "GS1 demo product"
    # The camera page shows the scene's current frame (the QR code's, outlined).
    request = urllib.request.Request(
        f"{url}/scanner/api/v1/sources/scene/snapshot.jpg", headers={"X-API-Key": key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.read(2) == b"\xff\xd8"

    assert demo.stop(signal.SIGINT) == 0
    assert not storage.exists()
    assert list(demo.tmpdir.iterdir()) == []
    assert not port_open(broker_port(mqtt))
    assert processes_mentioning(str(storage)) == []  # its mosquitto is gone too


def test_demo_sigterm_removes_its_storage_and_keep_keeps_it(start_demo: Any) -> None:
    demo = start_demo("--port", str(free_port()), "--step-seconds", "0.2")
    storage = Path(re.search(r"storage: (\S+?),", demo.wait_for("storage: ")).group(1))  # type: ignore[union-attr]
    assert storage.is_dir()
    assert demo.stop(signal.SIGTERM) == 0
    assert not storage.exists()

    kept = start_demo("--port", str(free_port()), "--keep", "--seconds", "2")
    storage = Path(re.search(r"storage: (\S+?),", kept.wait_for("storage: ")).group(1))  # type: ignore[union-attr]
    _, rest = kept.process.communicate(timeout=30)
    assert kept.process.returncode == 0
    assert (storage / "scanstation.db").is_file()
    assert f"kept the demo's storage: {storage}" in "".join(kept.lines) + rest


@needs_mosquitto
def test_demo_killed_takes_its_broker_with_it(start_demo: Any) -> None:
    demo = start_demo("--port", str(free_port()), "--step-seconds", "0.2")
    mqtt = demo.banner("MQTT")
    storage = Path(re.search(r"storage: (\S+?),", "".join(demo.lines)).group(1))  # type: ignore[union-attr]
    assert processes_mentioning(str(storage))  # its mosquitto runs
    demo.process.kill()  # no chance to clean up
    demo.process.wait(10)
    deadline = time.monotonic() + 5
    while processes_mentioning(str(storage)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(str(storage)) == []
    assert not port_open(broker_port(mqtt))


def test_demo_on_a_busy_port_suggests_port(start_demo: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = start_demo("--port", str(port))
        _, err = demo.process.communicate(timeout=30)
    assert demo.process.returncode == 2, err
    assert f"127.0.0.1:{port} is already in use" in err
    assert "scanstation demo --port " in err
    assert list(demo.tmpdir.iterdir()) == []  # nothing made before the check


@needs_mosquitto
def test_two_demos_at_once_each_have_their_own_broker_and_device(start_demo: Any) -> None:
    first = start_demo("--port", str(free_port()), "--step-seconds", "0.2")
    second = start_demo("--port", str(free_port()), "--step-seconds", "0.2")
    lines = [demo.banner("MQTT") for demo in (first, second)]
    assert broker_port(lines[0]) != broker_port(lines[1])
    devices = {re.search(r"device (demo-\w+)", line).group(1) for line in lines}  # type: ignore[union-attr]
    assert len(devices) == 2
    for demo in (first, second):
        demo.wait_for("scene finished")
    for demo in (first, second):
        assert demo.stop() == 0
        assert not any("connection lost" in line for line in demo.lines), "".join(demo.lines)


def test_demo_without_mosquitto_says_mqtt_is_off_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from scanstation import cli
    from scanstation.commands import demo

    monkeypatch.setattr(demo, "find_mosquitto", lambda: None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(demo.tempfile, "tempdir", None)  # re-read TMPDIR
    code = cli.main(["demo", "--port", str(free_port()), "--seconds", "1.5", "--no-stdin"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("mosquitto is not installed") == 1
    assert "MQTT:       off: mosquitto is not installed" in err
    assert list(tmp_path.iterdir()) == []
