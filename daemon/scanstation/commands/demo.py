"""`scanstation demo`: a whole station on one machine that tells its story once, then waits.

Self-contained and loopback only:

- storage in a fresh temporary folder, removed on exit (Ctrl-C, SIGTERM, ``--seconds``) unless
  ``--keep``;
- its own Mosquitto on a free loopback port when ``mosquitto`` is installed (else MQTT is off,
  said once in the banner), and a device id of its own per run, so two demos never meet;
- its sample QR code points at a redirect chain the demo serves itself on 127.0.0.1, and QR
  analysis is let through to that one port only (``[qr_analysis] allow_endpoints``): every
  other loopback or private address stays refused, and nothing leaves the machine;
- a scripted scene (:data:`SCENE`) shows each feature once: good reads, a GS1 DataMatrix with
  its best-before date, a recalled batch, a code not in the catalog, a no-read with its image,
  a product photo with the classifier's proposals, and a QR code's redirect chain. Frames are
  drawn by zxing-cpp's writer and read back by the real decoder; then the demo waits for scans
  typed on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import io
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanstation.commands import CommandLineError
from scanstation.config import Config, parse_config
from scanstation.model import CaptureType, Emit, Scan
from scanstation.sources.base import SourceHealth

if TYPE_CHECKING:  # imported where used: `scanstation parse` must not pay for OpenCV
    import numpy as np
    from aiohttp import web

    from scanstation.barcode.decode import DecodedCode

log = logging.getLogger(__name__)

DEMO_GTIN = "09506000134352"
"""The GS1 demo product of the demo catalog (the DataMatrix, the recall and the QR chain)."""
RECALLED_BATCH = "RECALL7"
SCENE_SOURCE = "scene"
STEP_PAUSE_S = 2.0
"""Seconds between two scene steps: time to watch each capture arrive in the live feed."""


class DemoError(CommandLineError):
    """The demo cannot start (its port is taken, a helper failed); the message says what to do."""


# ---- the scene ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One moment of the scene: what it shows, and the frame or text that shows it."""

    title: str
    """What the newcomer sees, e.g. "a recalled batch: the lane is told not to sell it"."""
    kind: str
    """``frame`` (drawn, then decoded), ``text`` (as a barcode gun sends it), ``noread``
    (a frame the decoder finds nothing in, kept with its image) or ``photo`` (a product photo
    for the classifier)."""
    content: str = ""
    """The barcode content (GS1 in bracketed form) or the text scanned."""
    format: str = ""
    """zxing-cpp format of a drawn frame: EAN13, DataMatrix, QRCode …"""
    gs1: bool = False


def scene(qr_url: str, today: dt.date) -> list[Step]:
    """The scripted scene; dates are relative to `today`, so the story holds every day."""
    best_before = (today + dt.timedelta(days=60)).strftime("%y%m%d")
    return [
        Step("a good read: an EAN-13 from the catalog", "frame", "4006381333931", "EAN13"),
        Step("a good read: a barcode gun's UPC-A", "text", "]E00036000291452"),
        Step(
            "a GS1 DataMatrix: GTIN, best-before date and batch",
            "frame",
            f"(01){DEMO_GTIN}(17){best_before}(10)ABC123",
            "DataMatrix",
            gs1=True,
        ),
        Step(
            f"a recalled batch ({RECALLED_BATCH}): not for sale",
            "frame",
            f"(01){DEMO_GTIN}(17){best_before}(10){RECALLED_BATCH}",
            "DataMatrix",
            gs1=True,
        ),
        Step("an EAN-13 that is not in the catalog", "text", "5901234123457"),
        Step("a no-read: nothing decodable in the frame, kept with its image", "noread"),
        Step("a product photo: the classifier proposes what it shows", "photo"),
        Step("a QR code: its redirect chain followed hop by hop", "frame", qr_url, "QRCode"),
    ]


def render_frame(step: Step, seed: int) -> np.ndarray[Any, Any]:
    """A camera-like grey frame with the step's code on a cluttered background."""
    from scanstation.commands.bench.scenes import Label, render_scene

    labels = (
        []
        if step.kind == "noread"
        else [Label(step.content, step.format, gs1=step.gs1, module_px=5.0, angle=8, tilt=0.05)]
    )
    return render_scene(labels, size=(960, 540), seed=seed, blur=0.8, noise=3.0)


def demo_photo() -> bytes:
    """The shipped product photo (an espresso cup, CC0) the classifier makes proposals for."""
    return resources.files("scanstation.data").joinpath("demo").joinpath("coffee.jpg").read_bytes()


def _jpeg(frame: np.ndarray[Any, Any], codes: Sequence[DecodedCode] = ()) -> bytes:
    import cv2
    import numpy as np

    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    for code in codes:
        cv2.polylines(image, [np.array(code.position, dtype=np.int32)], True, (0, 200, 0), 3)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise DemoError("cannot encode a scene frame as JPEG")
    return bytes(data)


class SceneSource:
    """Plays :func:`scene` once through the real decoder and the pipeline, then idles.

    Also a preview source: the camera page shows the current scene frame, codes outlined.
    """

    def __init__(
        self, steps: list[Step], pause_s: float = STEP_PAUSE_S, *, stdin: bool = True
    ) -> None:
        self.name = SCENE_SOURCE
        self.steps = steps
        self.pause_s = pause_s
        self.stdin = stdin
        self.health = SourceHealth(self.name, "camera")
        self._preview: bytes | None = None

    def latest_jpeg(self) -> bytes | None:
        return self._preview

    async def run(self, emit: Emit) -> None:
        self.health.set_state("running", f"playing the demo scene ({len(self.steps)} steps)")
        for index, step in enumerate(self.steps, start=1):
            scan = await asyncio.to_thread(self._scan_of, step, index)
            await emit(scan)
            self.health.scans += 1
            self.health.last_scan_at = time.time()
            print(f"  scene {index}/{len(self.steps)}: {step.title}", file=sys.stderr, flush=True)
            await asyncio.sleep(self.pause_s)
        more = "type a barcode value and Enter to scan it; " if self.stdin else ""
        self.health.set_state("idle", f"scene finished; {more or 'the UI and API stay up'}")
        print(f"  scene finished: {more}Ctrl-C stops.", file=sys.stderr, flush=True)

    def _scan_of(self, step: Step, seed: int) -> Scan:
        """Thread: draw and decode a frame (or take the text or photo) for one step."""
        if step.kind == "text":
            return Scan(source=self.name, raw_value=step.content, metadata={"demo": "gun"})
        if step.kind == "photo":
            photo = demo_photo()
            self._preview = photo
            return Scan(
                source=self.name,
                raw_value="",
                capture_type=CaptureType.IMAGE,
                image=photo,
                metadata={"demo": "photo"},
            )
        from scanstation.barcode.decode import decode_frame

        frame = render_frame(step, seed)
        codes = [c for c in decode_frame(frame) if c.text]
        self._preview = _jpeg(frame, codes)
        if step.kind != "noread" and not codes:
            log.warning("demo scene %d: the decoder read nothing in its frame", seed)
        if step.kind == "noread" or not codes:
            return Scan(
                source=self.name,
                raw_value="",
                capture_type=CaptureType.IMAGE,
                image=_jpeg(frame),
                metadata={"noread": "true", "trigger": "demo"},
            )
        code = codes[0]
        return Scan(
            source=self.name,
            raw_value=code.text,
            symbology_identifier=code.symbology_identifier,
            symbology=code.format,
            metadata={"content_type": code.content_type, "decode": code.method},
        )


# ---- the QR code's redirect chain, served by the demo ------------------------------------


def redirect_app(base: str) -> web.Application:
    """A shortener → a brand's redirect → a GS1 Digital Link product page, like a real QR."""
    from aiohttp import web

    app = web.Application()

    def redirect(location: str, status: int) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": location})

        return handler

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>GS1 demo product</title><h1>GS1 demo product</h1>",
            content_type="text/html",
        )

    app.router.add_get("/s/demo", redirect(f"{base}/brand/spring-offer", 302))
    app.router.add_get("/brand/spring-offer", redirect(f"/01/{DEMO_GTIN}?linkType=gs1:pip", 301))
    app.router.add_get(f"/01/{DEMO_GTIN}", page)
    return app


class RedirectServer:
    """The redirect chain on a socket bound before the config is made (its port goes in it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.qr_url = f"{self.base}/s/demo"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(redirect_app(self.base), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.sock.close()


class ChainSource:
    """Not a reader: keeps the redirect server up for as long as the daemon runs."""

    def __init__(self, server: RedirectServer) -> None:
        self.name = "qr-resolver"
        self.server = server
        self.health = SourceHealth(self.name, "demo", detail=f"redirect chain on {server.base}")

    async def run(self, emit: Emit) -> None:
        await self.server.start()
        self.health.set_state("running", f"the demo QR's redirect chain on {self.server.base}")
        try:
            await asyncio.Event().wait()
        finally:
            await self.server.close()


# ---- the broker --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_mosquitto() -> str | None:
    """mosquitto on PATH, or in /usr/sbin where Debian puts it (off a user's PATH)."""
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


class DemoBroker:
    """A Mosquitto of the demo's own on a free loopback port, in the demo's folder."""

    def __init__(self, workdir: Path, executable: str) -> None:
        self.workdir = workdir
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_if_installed(cls, workdir: Path) -> tuple[DemoBroker | None, str]:
        """The running broker, or None and why MQTT is off (said once, in the banner)."""
        executable = find_mosquitto()
        if executable is None:
            return None, "mosquitto is not installed (apt install mosquitto)"
        broker = cls(workdir, executable)
        try:
            broker.start()
        except DemoError as exc:
            broker.stop()
            return None, f"{exc} (log: {workdir / 'mosquitto.log'})"
        return broker, ""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{user}"
        )
        self.process = subprocess.Popen(  # noqa: S603 (our own config, no shell)
            [self.executable, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the broker itself
            preexec_fn=_die_with_parent,  # no threads yet: before the daemon starts
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"mosquitto exited at start (code {self.process.returncode})")
            if _port_open(self.port):
                return
            time.sleep(0.05)
        raise DemoError(f"mosquitto did not listen on 127.0.0.1:{self.port} within 5 s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(3)


# ---- the command -------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "A whole station on this machine, loopback only: the UI and API, its own Mosquitto "
        "(when installed), storage in a temporary folder removed on exit. A scripted scene "
        "shows each feature once; then type barcode values to scan them."
    )
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--no-stdin", action="store_true", help="do not read scans from stdin")
    p.add_argument("--keep", action="store_true", help="keep the temporary storage folder on exit")
    p.add_argument(
        "--step-seconds",
        type=float,
        default=STEP_PAUSE_S,
        help=f"seconds between two steps of the scene (default {STEP_PAUSE_S:.0f})",
    )


def check_port(port: int) -> None:
    """Fail early, suggesting --port, when the UI port is taken."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"127.0.0.1:{port} is already in use (another demo or service?); "
                    f"choose another port, e.g. `scanstation demo --port {free_port()}`"
                ) from None
            raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def demo_config(
    storage: Path,
    port: int,
    *,
    with_stdin: bool,
    device_id: str,
    mqtt_port: int | None,
    qr_endpoint: str,
) -> Config:
    recall = storage / "recalls.csv"
    recall.write_text(f"gtin,batch\n{DEMO_GTIN},{RECALLED_BATCH}\n", encoding="utf-8")
    data: dict[str, Any] = {
        "device": {"id": device_id, "site": "demo"},
        "storage": {"path": str(storage)},
        "http": {"bind": f"127.0.0.1:{port}"},
        "checks": {"recall_list": str(recall)},
        "qr_analysis": {"allow_endpoints": [qr_endpoint]},
        "sources": [{"type": "stdin", "name": "stdin"}] if with_stdin else [],
    }
    if mqtt_port is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    return parse_config(data, "<demo defaults>", environ={})


@contextlib.contextmanager
def demo_storage(keep: bool) -> Iterator[Path]:
    """A private temporary folder, removed on the way out (also after SIGTERM) unless `keep`."""
    storage = Path(tempfile.mkdtemp(prefix="scanstation-demo-"))
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(0)  # before the loop runs: unwind, so the folder still goes

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield storage
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep:
            print(f"kept the demo's storage: {storage}", file=sys.stderr)
        else:
            shutil.rmtree(storage, ignore_errors=True)


def demo_main(
    args: argparse.Namespace,
    run: Callable[..., object],
    ensure_api_key: Callable[[Config, Any], str | None],
) -> int:
    """`scanstation demo`; `run` runs the daemon until a signal (cli's _run_until_signalled)."""
    from scanstation.services.catalog import parse_products
    from scanstation.store import Store
    from scanstation.web.passwords import ensure_ui_password

    check_port(args.port)
    with demo_storage(args.keep) as storage:
        os.umask(0o077)
        broker, why_not = DemoBroker.start_if_installed(storage / "mosquitto")
        try:
            chain = RedirectServer()
            device_id = f"demo-{secrets.token_hex(3)}"
            config = demo_config(
                storage,
                args.port,
                with_stdin=not args.no_stdin,
                device_id=device_id,
                mqtt_port=broker.port if broker else None,
                qr_endpoint=f"127.0.0.1:{chain.port}",
            )
            catalog = resources.files("scanstation.data").joinpath("demo_catalog.csv").read_text()

            async def load_catalog() -> None:
                async with Store(config.db_path) as store:
                    await store.upsert_products(parse_products(catalog, "demo_catalog.csv"))

            asyncio.run(load_catalog())
            key = ensure_api_key(config, io.StringIO())  # both shown in the banner
            note = ensure_ui_password(config, io.StringIO())
            password = note.read_text().strip() if note else "(already set)"
            mqtt = (
                f"its own broker on 127.0.0.1:{broker.port}, device {device_id} "
                f"(try: mosquitto_sub -p {broker.port} -t 'scanstation/#' -v)"
                if broker
                else f"off: {why_not}; the outbox keeps every event"
            )
            scene_source = SceneSource(
                scene(chain.qr_url, dt.date.today()),
                pause_s=max(0.0, args.step_seconds),
                stdin=not args.no_stdin,
            )

            def banner(daemon: Any) -> None:
                print(
                    f"\nscanstation demo is running.\n"
                    f"  UI and API: {daemon.url}  (storage: {storage}"
                    f"{', kept on exit' if args.keep else ', removed on exit'})\n"
                    f"  UI login:   password {password}\n"
                    f"  API key:    {key}\n"
                    f"  MQTT:       {mqtt}\n"
                    f"  QR chain:   {chain.qr_url} (served by the demo, loopback only)\n"
                    f"  Try:        curl -H 'X-API-Key: {key}' "
                    f"{daemon.url}/scanner/api/v1/captures\n"
                    f"  The scene ({len(scene_source.steps)} steps, one every "
                    f"{scene_source.pause_s:g} s):",
                    file=sys.stderr,
                    flush=True,
                )

            run(
                config,
                seconds=args.seconds,
                on_ready=banner,
                extra_sources=[scene_source, ChainSource(chain)],
            )
        finally:
            if broker is not None:
                broker.stop()
    return 0
