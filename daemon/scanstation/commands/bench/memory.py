"""`scanstation bench memory`: RSS and PSS of a running `scanstation run`, per component.

Each configuration is a real daemon subprocess (web server always; a camera on the file
backend looping over the bundled 960×540 sample frames, which a loop reads like a live
camera: newest frame wins, one gray frame per slot, each image read from its file in turn;
MQTT to a Mosquitto of our own; the classifier) with MALLOC_ARENA_MAX and
MALLOC_MMAP_THRESHOLD_ as the systemd unit sets them. Figures are read from /proc/PID/status
(VmRSS, VmHWM) and /proc/PID/smaps_rollup (Pss) after a settling time. A component's share
is the difference with that component off.
The classifier is loaded on the first photo and released after `[classifier] idle_unload_s`,
so the full daemon is measured before a photo (classifier not resident), after one
(resident) and once the idle unload has run. The Pi Zero 2 W profile of
docs/deploy-pi-zero.md (one decoder thread, 15 fps) is measured the same way.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from scanstation.commands.bench import free_port
from scanstation.sources.camera import bundled_samples_dir

API = "/scanner/api/v1"
PHOTO = Path(__file__).resolve().parents[4] / "tests" / "data" / "images" / "coffee.jpg"


def memory_of(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (the peak so far) and Pss of a process, in MB."""
    rss = peak = pss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return {"rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "peak_rss_mb": round(peak, 1)}


MMAP_THRESHOLD = "131072"
"""MALLOC_MMAP_THRESHOLD_ as systemd/scanstation.service sets it (--mmap-threshold)."""


@dataclass(frozen=True)
class Profile:
    """What the measured daemon runs with (beside which components are on)."""

    decode_threads: int = 0
    """[[sources]] decode_threads of the camera (0: every core)."""
    fps: float = 10.0
    idle_unload_s: float = 10.0
    """[classifier] idle_unload_s: short, so that the bench sees the unload."""


PI_ZERO = Profile(decode_threads=1, fps=15.0)
"""docs/examples/pi-zero.toml's camera and classifier settings (the idle time shortened)."""


def _toml(
    root: Path, port: int, profile: Profile, *, camera: bool, classifier: bool, mqtt: int
) -> str:
    lines = [
        '[device]\nid = "bench-memory"',
        f'[storage]\npath = "{root / "var"}"',
        f'[http]\nbind = "127.0.0.1:{port}"',
        f"[classifier]\nenabled = {'true' if classifier else 'false'}\nthreads = 1\n"
        f"idle_unload_s = {profile.idle_unload_s}",
        "[qr_analysis]\nenabled = false",
    ]
    if mqtt:
        lines.append(f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt}')
    if camera:
        lines.append(
            f'[[sources]]\ntype = "camera"\nname = "cam0"\nbackend = "file"\n'
            f'device = "{bundled_samples_dir()}"\nfps = {profile.fps}\nloop = true\n'
            f"decode_threads = {profile.decode_threads}"
        )
    return "\n".join(lines) + "\n"


def _start(
    root: Path,
    port: int,
    profile: Profile,
    *,
    camera: bool,
    classifier: bool,
    mqtt: int,
    arena_max: str,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Write the configuration, make an API key, start the daemon: (key, process)."""
    root.mkdir(parents=True)
    config = root / "scanstation.toml"
    config.write_text(_toml(root, port, profile, camera=camera, classifier=classifier, mqtt=mqtt))
    run = [sys.executable, "-m", "scanstation"]
    made = subprocess.run(  # noqa: S603
        [*run, "api-key", "create", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCANSTATION_", "MALLOC_"))  # only what the unit sets
    }
    if arena_max:
        env["MALLOC_ARENA_MAX"] = arena_max
    if MMAP_THRESHOLD:
        env["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
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
    root: Path,
    profile: Profile = Profile(),
    *,
    camera: bool,
    classifier: bool,
    mqtt: int,
    settle: float,
    arena_max: str,
) -> dict[str, Any]:
    """Start a daemon with these components, settle, measure (with the classifier: again
    after a photo, and once more after its idle unload)."""
    port = free_port()
    key, proc = await asyncio.to_thread(
        _start,
        root,
        port,
        profile,
        camera=camera,
        classifier=classifier,
        mqtt=mqtt,
        arena_max=arena_max,
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
                if profile.idle_unload_s > 0:
                    # The unload is seen as the resident size falling at least half-way back
                    # to where it was before the photo; then it settles and is measured.
                    loaded = out["after_photo"]["rss_mb"]
                    halfway = (loaded + out["idle"]["rss_mb"]) / 2
                    waited = time.monotonic()
                    deadline = waited + profile.idle_unload_s + 30
                    while memory_of(proc.pid)["rss_mb"] > halfway:
                        if time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.25)
                    else:
                        out["unload_seen_after_s"] = round(time.monotonic() - waited + settle, 1)
                    await asyncio.sleep(2.0)
                    out["after_unload"] = memory_of(proc.pid)
    finally:
        await asyncio.to_thread(_stop, proc)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scanstation.commands.bench.ingest_mqtt import mosquitto

    profile = Profile(decode_threads=args.decode_threads, idle_unload_s=args.idle_unload_s)
    pi_zero = replace(PI_ZERO, idle_unload_s=args.idle_unload_s)
    with tempfile.TemporaryDirectory(prefix="scanstation-bench-memory-") as tmp:
        root = Path(tmp)
        with mosquitto(root) as broker:
            common = {"settle": args.settle, "arena_max": args.arena_max}
            full = await one(
                root / "full", profile, camera=True, classifier=True, mqtt=broker, **common
            )
            no_camera = await one(
                root / "nocam", profile, camera=False, classifier=True, mqtt=broker, **common
            )
            no_mqtt = await one(
                root / "nomqtt", profile, camera=True, classifier=True, mqtt=0, **common
            )
            bare = await one(
                root / "web", profile, camera=False, classifier=False, mqtt=0, **common
            )
            zero = await one(
                root / "zero", pi_zero, camera=True, classifier=True, mqtt=broker, **common
            )
    resident = full["after_photo"]
    idle = full["idle"]

    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(a[k] - b[k], 1) for k in ("rss_mb", "pss_mb")}

    result: dict[str, Any] = {
        "rss_mb": resident["rss_mb"],
        "pss_mb": resident["pss_mb"],
        "rss_mb_classifier_not_resident": idle["rss_mb"],
        "pss_mb_classifier_not_resident": idle["pss_mb"],
        "peak_rss_mb": resident["peak_rss_mb"],
        "components_mb": {
            "classifier": diff(resident, idle),
            "camera": diff(idle, no_camera["idle"]),
            "mqtt": diff(idle, no_mqtt["idle"]),
            "web_and_core": {k: bare["idle"][k] for k in ("rss_mb", "pss_mb")},
        },
        "pi_zero": {
            "rss_mb_classifier_not_resident": zero["idle"]["rss_mb"],
            "rss_mb": zero["after_photo"]["rss_mb"],
            "peak_rss_mb": zero["after_photo"]["peak_rss_mb"],
            "decode_threads": PI_ZERO.decode_threads,
            "fps": PI_ZERO.fps,
        },
        "malloc_arena_max": args.arena_max or None,
        "malloc_mmap_threshold": args.mmap_threshold or None,
        "decode_threads": profile.decode_threads,
        "idle_unload_s": profile.idle_unload_s,
    }
    if "after_unload" in full:
        # unload seen: seconds from the photo's capture (plus the settling time) to the fall;
        # None when the resident size did not fall within idle_unload_s + 30 s.
        result["rss_mb_after_classifier_unload"] = full["after_unload"]["rss_mb"]
        result["classifier_unload_seen_after_s"] = full.get("unload_seen_after_s")
        result["pi_zero"]["rss_mb_after_classifier_unload"] = zero["after_unload"]["rss_mb"]
        result["pi_zero"]["classifier_unload_seen_after_s"] = zero.get("unload_seen_after_s")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanstation bench memory", description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--arena-max", default="2", help="MALLOC_ARENA_MAX for the daemon ('' for glibc's own)"
    )
    parser.add_argument(
        "--decode-threads", type=int, default=0, help="camera decoder threads (0: every core)"
    )
    parser.add_argument(
        "--mmap-threshold",
        default="131072",
        help="MALLOC_MMAP_THRESHOLD_ for the daemon ('' for glibc's own, which moves)",
    )
    parser.add_argument(
        "--idle-unload-s",
        type=float,
        default=10.0,
        help="[classifier] idle_unload_s of the measured daemons (0: never unload)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.decode_threads < 0 or args.idle_unload_s < 0 or args.settle < 0:
        parser.error("--decode-threads, --idle-unload-s and --settle must not be negative")
    global MMAP_THRESHOLD  # one setting for every daemon of the run
    MMAP_THRESHOLD = args.mmap_threshold
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
    if "rss_mb_after_classifier_unload" in result:
        unloaded = result["rss_mb_after_classifier_unload"]
        print(f"after the classifier's idle unload: RSS {unloaded:.0f} MB")
    zero = result["pi_zero"]
    print(
        f"Pi Zero 2 W profile: RSS {zero['rss_mb_classifier_not_resident']:.0f} MB "
        f"(classifier resident: {zero['rss_mb']:.0f} MB)"
    )
    for name, figures in result["components_mb"].items():
        print(f"  {name:<14} RSS {figures['rss_mb']:>6.1f} MB  PSS {figures['pss_mb']:>6.1f} MB")
    return 0
