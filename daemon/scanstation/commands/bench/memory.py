"""`scanstation bench memory`: RSS and PSS of a running `scanstation run`, per component.

Each configuration is a real daemon subprocess (web server always; a camera on the file
backend over the bundled sample frames; MQTT to a Mosquitto of our own; the classifier) with
MALLOC_ARENA_MAX as the systemd unit sets it. Figures are read from /proc/PID/status (VmRSS)
and /proc/PID/smaps_rollup (Pss) after a settling time. A component's share is the
difference with that component off; the classifier is loaded on the first photo, so the
full daemon is measured before one (classifier not resident) and after one (resident).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from scanstation.commands.bench import free_port
from scanstation.sources.camera import bundled_samples_dir

API = "/scanner/api/v1"
PHOTO = Path(__file__).resolve().parents[4] / "tests" / "data" / "images" / "coffee.jpg"


def memory_of(pid: int) -> dict[str, float]:
    """VmRSS and Pss of a process, in MB."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return {"rss_mb": round(rss, 1), "pss_mb": round(pss, 1)}


DECODE_THREADS = 0
"""[[sources]] decode_threads of the camera (0: every core; --decode-threads)."""


def _toml(root: Path, port: int, *, camera: bool, classifier: bool, mqtt: int) -> str:
    lines = [
        '[device]\nid = "bench-memory"',
        f'[storage]\npath = "{root / "var"}"',
        f'[http]\nbind = "127.0.0.1:{port}"',
        f"[classifier]\nenabled = {'true' if classifier else 'false'}\nthreads = 1",
        "[qr_analysis]\nenabled = false",
    ]
    if mqtt:
        lines.append(f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt}')
    if camera:
        lines.append(
            f'[[sources]]\ntype = "camera"\nname = "cam0"\nbackend = "file"\n'
            f'device = "{bundled_samples_dir()}"\nfps = 10\nloop = true\n'
            f"decode_threads = {DECODE_THREADS}"
        )
    return "\n".join(lines) + "\n"


def _start(
    root: Path, port: int, *, camera: bool, classifier: bool, mqtt: int, arena_max: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """Write the configuration, make an API key, start the daemon: (key, process)."""
    root.mkdir(parents=True)
    config = root / "scanstation.toml"
    config.write_text(_toml(root, port, camera=camera, classifier=classifier, mqtt=mqtt))
    run = [sys.executable, "-m", "scanstation"]
    made = subprocess.run(  # noqa: S603
        [*run, "api-key", "create", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    if arena_max:
        env["MALLOC_ARENA_MAX"] = arena_max
    proc = subprocess.Popen(  # noqa: S603
        [*run, "--log-level", "WARNING", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return key, proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def one(
    root: Path, *, camera: bool, classifier: bool, mqtt: int, settle: float, arena_max: str
) -> dict[str, Any]:
    """Start a daemon with these components, settle, measure (and again after a photo)."""
    port = free_port()
    key, proc = await asyncio.to_thread(
        _start, root, port, camera=camera, classifier=classifier, mqtt=mqtt, arena_max=arena_max
    )
    out: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{port}{API}"
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(f"{base}/sessions", json={}) as resp:
                        session = (await resp.json())["public_id"]
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(settle)
            out["idle"] = memory_of(proc.pid)
            if classifier:
                form = aiohttp.FormData()
                form.add_field("session_public_id", session)
                photo = await asyncio.to_thread(PHOTO.read_bytes)
                form.add_field("image", photo, filename="coffee.jpg")
                async with http.post(f"{base}/captures/upload-image", data=form) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"photo upload: HTTP {resp.status}")
                    capture = (await resp.json())["public_id"]
                for _ in range(600):
                    async with http.get(f"{base}/captures/{capture}") as resp:
                        if (await resp.json())["status"] not in ("PENDING",):
                            break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(settle)
                out["after_photo"] = memory_of(proc.pid)
    finally:
        await asyncio.to_thread(_stop, proc)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scanstation.commands.bench.ingest_mqtt import mosquitto

    with tempfile.TemporaryDirectory(prefix="scanstation-bench-memory-") as tmp:
        root = Path(tmp)
        with mosquitto(root) as broker:
            common = {"settle": args.settle, "arena_max": args.arena_max}
            full = await one(root / "full", camera=True, classifier=True, mqtt=broker, **common)
            no_camera = await one(
                root / "nocam", camera=False, classifier=True, mqtt=broker, **common
            )
            no_mqtt = await one(root / "nomqtt", camera=True, classifier=True, mqtt=0, **common)
            bare = await one(root / "web", camera=False, classifier=False, mqtt=0, **common)
    resident = full["after_photo"]
    idle = full["idle"]

    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(a[k] - b[k], 1) for k in a}

    return {
        "rss_mb": resident["rss_mb"],
        "pss_mb": resident["pss_mb"],
        "rss_mb_classifier_not_resident": idle["rss_mb"],
        "pss_mb_classifier_not_resident": idle["pss_mb"],
        "components_mb": {
            "classifier": diff(resident, idle),
            "camera": diff(full["idle"], no_camera["idle"]),
            "mqtt": diff(full["idle"], no_mqtt["idle"]),
            "web_and_core": bare["idle"],
        },
        "malloc_arena_max": args.arena_max or None,
        "decode_threads": DECODE_THREADS,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench memory", description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--arena-max", default="2", help="MALLOC_ARENA_MAX for the daemon ('' for glibc's own)"
    )
    parser.add_argument(
        "--decode-threads", type=int, default=0, help="camera decoder threads (0: every core)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    global DECODE_THREADS  # one setting for every daemon of the run
    DECODE_THREADS = max(args.decode_threads, 0)
    try:
        result = asyncio.run(measure(args))
    except RuntimeError as exc:
        print(f"bench memory: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"full daemon: RSS {result['rss_mb']:.0f} MB, PSS {result['pss_mb']:.0f} MB; "
        f"classifier not resident: RSS {result['rss_mb_classifier_not_resident']:.0f} MB"
    )
    for name, figures in result["components_mb"].items():
        print(f"  {name:<14} RSS {figures['rss_mb']:>6.1f} MB  PSS {figures['pss_mb']:>6.1f} MB")
    return 0
