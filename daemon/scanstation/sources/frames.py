"""Where camera frames come from: picamera2, OpenCV VideoCapture, image folders/videos, and a fake.

Every backend has the same small blocking interface, called from the grabber thread only:
``open()``, ``read() -> frame | None`` (None: a replay has ended), ``close()``. A backend that
loses its device raises `CameraError`; the camera source retries it with backoff. ``live``
says whether frames may be dropped (a real camera: only the latest frame matters) or must all
be seen in order (a replay).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from scanstation.barcode.decode import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    DecodeError,
    Frame,
    load_image,
)
from scanstation.config import CameraSourceConfig
from scanstation.sources import SourceError


class CameraError(SourceError):
    """The camera cannot be opened or stopped delivering frames; the message says which and why."""


class FrameBackend(Protocol):
    """A frame producer; every method blocks and is called from one grabber thread."""

    kind: str
    """picamera2 | opencv | file | fake"""
    live: bool
    """True: frames may be dropped (the newest matters). False: a replay, every frame counts."""

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class Pacer:
    """Sleeps so that successive frames come `1/fps` apart (replays run at camera speed)."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self._due = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._due > now:
            time.sleep(self._due - now)
            now = self._due
        # Never build up a debt after a slow frame: pace from now, not from the schedule.
        self._due = max(now, self._due) + self.interval


class Picamera2Backend:
    """Raspberry Pi camera modules through picamera2 (imported only when used).

    Frames are the Y plane of YUV420: grayscale for free, no conversion and no copy.
    Autofocus (Camera Module 3 and other AF modules): continuous, auto (one cycle at start and
    on `autofocus()`), or manual at `lens_position` dioptres.
    """

    kind = "picamera2"
    live = True

    def __init__(self, config: CameraSourceConfig) -> None:
        self.config = config
        self._camera: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(
                f"backend 'picamera2' needs the picamera2 package ({exc}); on Raspberry Pi OS: "
                "sudo apt install python3-picamera2 and make the venv with --system-site-packages"
            ) from None
        index = int(self.config.device) if self.config.device.isdigit() else 0
        try:
            camera = Picamera2(index)
            width, height = self.config.resolution
            video = camera.create_video_configuration(
                main={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": self.config.fps},
                buffer_count=2,
            )
            camera.configure(video)
            camera.start()
        except Exception as exc:  # picamera2/libcamera raise many types; all mean "no camera"
            raise CameraError(f"picamera2 camera {index} cannot be opened: {exc}") from None
        self._camera = camera
        self._set_focus()

    def _set_focus(self) -> None:
        camera = self._camera
        if camera is None or "AfMode" not in getattr(camera, "camera_controls", {}):
            return  # a fixed-focus module
        from libcamera import controls  # type: ignore[import-not-found]  # ships with picamera2

        mode = self.config.autofocus
        if mode == "manual":
            camera.set_controls(
                {
                    "AfMode": controls.AfModeEnum.Manual,
                    "LensPosition": self.config.lens_position or 0.0,
                }
            )
        elif mode == "auto":
            camera.set_controls({"AfMode": controls.AfModeEnum.Auto})
            camera.autofocus_cycle()
        else:
            camera.set_controls({"AfMode": controls.AfModeEnum.Continuous})

    def autofocus(self) -> None:
        """Run one autofocus cycle now (autofocus = "auto")."""
        if self._camera is not None and "AfMode" in getattr(self._camera, "camera_controls", {}):
            self._camera.autofocus_cycle()

    def read(self) -> Frame | None:
        if self._camera is None:
            raise CameraError("picamera2 camera is not open")
        try:
            yuv = self._camera.capture_array("main")
        except Exception as exc:
            raise CameraError(f"picamera2 stopped delivering frames: {exc}") from None
        height, width = self.config.resolution[1], self.config.resolution[0]
        return np.asarray(yuv[:height, :width], dtype=np.uint8)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
                camera.close()
            except Exception:  # noqa: S110 - closing a camera that is already gone
                pass


def _opencv_source(device: str) -> tuple[int | str, int]:
    """What to hand VideoCapture for `device`, and the capture API to use."""
    if device.isdigit():
        return int(device), cv2.CAP_V4L2 if Path("/dev/video0").exists() else cv2.CAP_ANY
    if device.startswith("/dev/video"):
        return device, cv2.CAP_V4L2
    if "://" in device:
        return device, cv2.CAP_FFMPEG
    return device, cv2.CAP_ANY


class OpenCvBackend:
    """USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV's VideoCapture."""

    kind = "opencv"

    def __init__(self, config: CameraSourceConfig) -> None:
        self.config = config
        self.source, self.api = _opencv_source(config.device)
        self.is_file = isinstance(self.source, str) and Path(self.source).is_file()
        # A looped video has no end and runs at its fps: it is read like a live camera.
        self.live = not self.is_file or config.loop
        self._capture: cv2.VideoCapture | None = None
        self._pacer = Pacer(config.fps if self.is_file else 0.0)

    def open(self) -> None:
        capture = cv2.VideoCapture(self.source, self.api)
        if not capture.isOpened():
            capture.release()
            raise CameraError(
                f"camera {self.config.device!r} cannot be opened by OpenCV; check the device "
                "index or path (scanstation devices lists cameras), the URL, or the file"
            )
        if not self.is_file:
            width, height = self.config.resolution
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            capture.set(cv2.CAP_PROP_FPS, self.config.fps)
            # Keep the driver queue short: we want the newest frame, not an old one.
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def read(self) -> Frame | None:
        if self._capture is None:
            raise CameraError(f"camera {self.config.device!r} is not open")
        ok, frame = self._capture.read()
        if not ok:
            if self.is_file:
                if not self.config.loop:
                    return None
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._capture.read()
                if not ok:
                    return None
            else:
                raise CameraError(f"camera {self.config.device!r} stopped delivering frames")
        self._pacer.wait()
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class FileBackend:
    """Replays an image folder, one image, or a video file at the configured fps (demo, tests).

    A replay that ends delivers every frame (``live`` False: the reader waits for it). A
    looped one (``loop = true``) has no end and stands in for a camera: it is live, so the
    newest frame wins and nothing queues, and each image is read from its file when its
    turn comes, as a camera hands over a new buffer per frame.
    """

    kind = "file"

    def __init__(self, config: CameraSourceConfig) -> None:
        self.config = config
        self.live = config.loop
        self.path = Path(config.device)
        self._images: list[Path] = []
        self._cache: dict[Path, Frame] = {}
        self._position = 0
        self._video: OpenCvBackend | None = None
        self._pacer = Pacer(config.fps)

    def open(self) -> None:
        path = self.path
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            self._video = OpenCvBackend(self.config)
            self._video.open()
            return
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            images = [path]
        else:
            raise CameraError(f"file camera {str(path)!r}: no such folder, image or video")
        if not images:
            raise CameraError(f"file camera {str(path)!r}: the folder holds no image files")
        self._images = images
        self._position = 0

    def read(self) -> Frame | None:
        if self._video is not None:
            return self._video.read()
        if self._position >= len(self._images):
            if not self.config.loop or not self._images:
                return None
            self._position = 0
        path = self._images[self._position]
        self._position += 1
        frame = self._cache.get(path)
        if frame is None:
            try:
                frame = load_image(path)
            except DecodeError as exc:
                raise CameraError(str(exc)) from None
            # A replay that ends keeps up to 64 frames decoded (bounded, so memory stays flat).
            if not self.live and len(self._cache) < 64:
                self._cache[path] = frame
        self._pacer.wait()
        return frame

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


class FakeCamera:
    """A camera for tests and demos that behaves like one: you push frames, unplug and replug it.

    `read()` blocks until a frame is pushed (like a real camera between frames), raises
    `CameraError` while unplugged (like a USB camera pulled out), and returns None once
    `end()` was called and every pushed frame was delivered (like the end of a replay).
    Each pushed frame may carry the time at which it is "grabbed"; `on_frame(t)` is then called
    first, so a test clock can follow the frames.
    """

    kind = "fake"

    def __init__(
        self,
        frames: Iterable[Frame] = (),
        *,
        live: bool = False,
        on_frame: Callable[[float], None] | None = None,
    ) -> None:
        self.live = live
        self.on_frame = on_frame
        self._queue: queue.Queue[tuple[Frame, float | None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._unplugged = False
        self._failed_opens = 0
        self.opens = 0
        self.closes = 0
        self.delivered = 0
        for frame in frames:
            self.push(frame)

    def push(self, frame: Frame, at: float | None = None) -> None:
        """Queue one frame; `at` is handed to `on_frame` when it is read."""
        self._queue.put((frame, at))

    def end(self) -> None:
        """After the queued frames, `read()` returns None (the replay is over)."""
        self._queue.put(None)

    def unplug(self, failed_opens: int = 0) -> None:
        """The camera disappears; after `replug()` the next `failed_opens` opens still fail."""
        with self._lock:
            self._unplugged = True
            self._failed_opens = failed_opens

    def replug(self) -> None:
        with self._lock:
            self._unplugged = False

    @property
    def unplugged(self) -> bool:
        with self._lock:
            return self._unplugged

    def open(self) -> None:
        with self._lock:
            if self._unplugged:
                raise CameraError("fake camera is unplugged")
            if self._failed_opens:
                self._failed_opens -= 1
                raise CameraError("fake camera is still waking up")
            self.opens += 1

    def read(self) -> Frame | None:
        while True:
            if self.unplugged:
                raise CameraError("fake camera stopped delivering frames (unplugged)")
            try:
                item = self._queue.get(timeout=0.01)
            except queue.Empty:
                continue
            if item is None:
                return None
            frame, at = item
            if at is not None and self.on_frame is not None:
                self.on_frame(at)
            self.delivered += 1
            return frame

    def close(self) -> None:
        self.closes += 1


def make_backend(config: CameraSourceConfig) -> FrameBackend:
    """The backend `config.backend` names."""
    if config.backend == "picamera2":
        return Picamera2Backend(config)
    if config.backend == "opencv":
        return OpenCvBackend(config)
    return FileBackend(config)


def encode_jpeg(frame: Frame, quality: int = 85) -> bytes:
    """`frame` as JPEG bytes (gray or BGR)."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CameraError(f"cannot encode a frame of shape {frame.shape} as JPEG")
    return bytes(data.tobytes())


def thumbnail(gray: Frame) -> Frame:
    """An 80×45-ish summary of a frame: each pixel averages a block, so sensor noise cancels."""
    height, width = gray.shape[:2]
    size = (
        (80, max(1, round(80 * height / width)))
        if width >= height
        else (max(1, round(80 * width / height)), 80)
    )
    # Every 4th pixel first (a view): 16 samples per block still average the noise away,
    # at a seventh of the cost (0.04 ms instead of 0.25 ms at 1280×720).
    step = 4 if min(height, width) >= 320 else 1
    sampled = gray[::step, ::step]
    return np.asarray(cv2.resize(sampled, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def sharpness(gray: Frame) -> float:
    """Variance of the Laplacian on a reduced copy: higher is sharper (picks the no-read frame)."""
    height, width = gray.shape[:2]
    scale = min(1.0, 320.0 / max(1, width))
    small = cv2.resize(
        gray,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    return float(cv2.Laplacian(small, cv2.CV_32F).var())
