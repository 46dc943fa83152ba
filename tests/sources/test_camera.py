"""The camera source: presence-based duplicate suppression, triggers and no-reads, a camera that
disappears and comes back, the OpenCV and file backends, previews and counters.

Frames are real images decoded by the real decoder; the camera is a FakeCamera (a device you
push frames into and unplug), and time is a clock the test moves along with the frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from scanstation.barcode.decode import DecodedCode
from scanstation.commands.bench.scenes import Label, render_scene
from scanstation.config import CameraSourceConfig, parse_config
from scanstation.model import CaptureType, Scan
from scanstation.sources import camera as camera_module
from scanstation.sources.camera import CameraSource, Presence, ReaderLogic, bundled_samples_dir
from scanstation.sources.frames import FakeCamera, FileBackend, OpenCvBackend

SIZE = (640, 360)
EAN = "4006381333931"
OTHER_EAN = "5901234123457"
QR = "https://id.gs1.org/01/09506000134352/10/ABC123"


def frame_with(*texts: str, seed: int = 1) -> np.ndarray:
    labels = []
    for i, text in enumerate(texts):
        center = (0.3 + 0.4 * i, 0.5)
        if text.startswith("http"):
            labels.append(Label(text, "QRCode", module_px=3, center=center))
        else:
            labels.append(Label(text, "EAN13", module_px=2, center=center))
    return render_scene(labels, size=SIZE, seed=seed)


EMPTY = frame_with(seed=1)
WITH_EAN = frame_with(EAN, seed=1)
WITH_OTHER = frame_with(OTHER_EAN, seed=1)
WITH_QR = frame_with(QR, seed=1)


class FakeClock:
    """A monotonic clock the test moves (frames pushed with `at=` move it when grabbed)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t


class Recorder:
    """An emit that keeps what it is given (the pipeline is not under test here)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.scans: list[Scan] = []
        self.fail_first = fail_first

    async def __call__(self, scan: Scan) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("database is locked")
        self.scans.append(scan)

    @property
    def values(self) -> list[str]:
        return [s.raw_value for s in self.scans]


def config(**overrides: object) -> CameraSourceConfig:
    return CameraSourceConfig(
        **{"type": "camera", "name": "cam0", "backend": "file", "device": "unused", **overrides}
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def replay(source: CameraSource, emit: Recorder, timeout: float = 20.0) -> None:
    await asyncio.wait_for(source.run(emit), timeout)


# ---- presence (pure) -------------------------------------------------------------------------

A, B = ("EAN13", EAN), ("EAN13", OTHER_EAN)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # A code in view is reported once, however long it stays.
        ([(t / 10, [A]) for t in range(50)], [(0.0, A)]),
        # Gone for less than the window and back: the same item, not reported again.
        ([(0.0, [A]), (0.5, []), (1.0, [A])], [(0.0, A)]),
        # Gone for the window (2 s) and back: a new read.
        ([(0.0, [A]), (1.0, []), (3.1, [A])], [(0.0, A), (3.1, A)]),
        # Another code came between: A is read again at once.
        ([(0.0, [A]), (0.4, [B]), (0.8, [A])], [(0.0, A), (0.4, B), (0.8, A)]),
        # Two codes on one item stay reported once each, even if one flickers.
        (
            [(0.0, [A, B]), (0.1, [B]), (0.2, [A, B]), (0.3, [A, B])],
            [(0.0, A), (0.0, B)],
        ),
        # A decoder missing A on one frame while B appears is not A leaving the view.
        ([(0.0, [A]), (0.1, [B]), (0.2, [A, B])], [(0.0, A), (0.1, B)]),
    ],
    ids=["stays", "short-gap", "long-gap", "code-between", "two-codes", "flicker"],
)
def test_presence_reports_a_code_once_while_in_view(
    frames: list[tuple[float, list[tuple[str, str]]]], expected: list[tuple[float, tuple[str, str]]]
) -> None:
    presence = Presence(window_s=2.0)
    reported = [(t, key) for t, keys in frames for key in presence.observe(t, keys)]
    assert reported == expected


def test_presence_forgets_codes_long_gone() -> None:
    presence = Presence(window_s=1.0)
    for i in range(10_000):
        presence.observe(float(i), [("Code128", f"item-{i}")])
    assert len(presence._last_seen) <= 2


# ---- reader logic (pure) ---------------------------------------------------------------------


def camera_frame(image: np.ndarray, t: float, index: int = 0) -> camera_module.CameraFrame:
    from scanstation.sources.frames import thumbnail

    return camera_module.CameraFrame(image, thumbnail(image), index, t)


def code(text: str) -> DecodedCode:
    return DecodedCode("EAN13", text, "]E0", "Text", ((0, 0), (1, 0), (1, 1), (0, 1)))


def test_reader_window_without_code_is_a_no_read_with_the_sharpest_frame() -> None:
    reader = ReaderLogic("software", read_window_s=1.0, dedup_window_s=2.0)
    assert not reader.wants(0.5)
    reader.trigger(1.0)
    sharp = camera_frame(WITH_EAN, 1.2, 1)
    blurred = camera_frame(cv2.GaussianBlur(WITH_EAN, (0, 0), 4), 1.4, 2)
    assert reader.wants(1.2)
    assert reader.observe(blurred, []) == []
    assert reader.observe(sharp, []) == []
    (event,) = reader.observe(camera_frame(EMPTY, 2.5, 3), [])
    assert event == camera_module.NoRead(sharp, 1.0, 2.0, "software")
    assert not reader.wants(2.5)


def test_reader_window_ends_on_the_first_good_read() -> None:
    reader = ReaderLogic("gpio", read_window_s=1.0, dedup_window_s=2.0)
    reader.trigger(0.0)
    frame = camera_frame(WITH_EAN, 0.3)
    assert reader.observe(frame, [code(EAN)]) == [camera_module.Read(code(EAN), 0.3, "gpio", 1, 1)]
    assert reader.window is None
    assert reader.expire(5.0) == []


# ---- the source with a fake camera -----------------------------------------------------------


@pytest.mark.parametrize("window_s", [0.0, 2.0])
def test_presence_hint_agrees_with_what_observe_reports(window_s: float) -> None:
    # The decoder threads ask `would_report` (reads only) to measure a read's quality
    # before the event loop decides; asked in frame order it says exactly what observe does.
    frames = [(0.0, [A]), (0.1, [A]), (0.4, [B]), (0.8, [A]), (0.9, [A, B]), (3.5, [A])]
    presence = Presence(window_s=window_s)
    for t, keys in frames:
        hinted = [key for key in keys if presence.would_report(t, key)]
        assert presence.observe(t, keys) == hinted


async def test_camera_measures_quality_once_per_read_whichever_thread_does_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured: list[str] = []
    measure = camera_module.measure_quality

    def counting(gray: np.ndarray, code: DecodedCode) -> object:
        measured.append(threading.current_thread().name)
        return measure(gray, code)

    monkeypatch.setattr(camera_module, "measure_quality", counting)
    expected = measure(WITH_EAN, camera_module.decode_frame(WITH_EAN)[0])
    assert expected is not None
    scans: list[Scan] = []
    for hint in (True, False):
        measured.clear()
        clock = FakeClock()
        cam = FakeCamera(on_frame=clock.set)
        for i, image in enumerate([WITH_EAN, WITH_EAN, WITH_EAN, EMPTY]):
            cam.push(image, at=i * 0.1)
        cam.end()
        emit = Recorder()
        source = CameraSource(config(decode_threads=1), backend=cam, clock=clock)
        if not hint:  # the hint said "not reported": the emitter measures it after all
            monkeypatch.setattr(source.reader, "may_report", lambda t, code: False)
        await replay(source, emit)
        assert emit.values == [EAN]
        # In the decoder thread right after the decode when the hint says the code will be
        # reported (once: the code still in view is not measured again), else by the emitter.
        assert len(measured) == 1
        assert measured[0].startswith("decode-cam0") == hint
        scans += emit.scans
    for scan in scans:
        assert {k: scan.metadata[k] for k in expected.as_metadata()} == expected.as_metadata()


async def test_camera_continuous_reports_each_item_once_while_in_view() -> None:
    clock = FakeClock()
    cam = FakeCamera(on_frame=clock.set)
    # An item carrying A passes (several frames), B comes, then A again: A B A.
    sequence = [EMPTY, WITH_EAN, WITH_EAN, WITH_EAN, EMPTY, WITH_OTHER, WITH_OTHER, EMPTY]
    sequence += [WITH_EAN, WITH_EAN, EMPTY]
    for i, image in enumerate(sequence):
        cam.push(image, at=i * 0.1)
    cam.end()
    emit = Recorder()
    source = CameraSource(config(), backend=cam, clock=clock)
    await replay(source, emit)
    assert emit.values == [EAN, OTHER_EAN, EAN]
    assert [
        (s.source, s.symbology, s.symbology_identifier, s.capture_type) for s in emit.scans
    ] == [("cam0", "EAN13", "]E0", CaptureType.BARCODE)] * 3
    assert source.health.state == "stopped"
    assert source.health.scans == 3
    stats = source.stats()
    assert (stats.frames, stats.reads, stats.no_reads) == (len(sequence), 3, 0)


async def test_camera_reads_several_codes_in_one_frame() -> None:
    cam = FakeCamera([frame_with(EAN, QR)])
    cam.end()
    emit = Recorder()
    await replay(CameraSource(config(), backend=cam), emit)
    assert sorted(emit.values) == sorted([EAN, QR])


async def test_camera_does_not_decode_a_static_scene_again() -> None:
    clock = FakeClock()
    cam = FakeCamera(on_frame=clock.set)
    rng = np.random.default_rng(0)
    for i in range(40):
        # Sensor noise changes pixels but not the scene.
        noisy = np.clip(EMPTY + rng.normal(0, 3, EMPTY.shape), 0, 255).astype(np.uint8)
        cam.push(noisy, at=i / 30)
    cam.push(WITH_EAN, at=2.0)
    for i in range(20):
        cam.push(WITH_EAN, at=2.0 + i / 30)
    cam.end()
    emit = Recorder()
    source = CameraSource(config(), backend=cam, clock=clock)
    await replay(source, emit)
    assert emit.values == [EAN]
    stats = source.stats()
    assert stats.frames == 61
    assert stats.decoded_frames <= 4
    assert stats.skipped_frames == stats.frames - stats.decoded_frames


async def test_camera_software_trigger_reads_in_a_window_and_reports_no_reads() -> None:
    clock = FakeClock(1.0)
    cam = FakeCamera(on_frame=clock.set)
    good: list[Scan] = []
    bad: list[Scan] = []
    emit = Recorder()
    source = CameraSource(
        config(trigger="software", read_window_ms=1000),
        backend=cam,
        clock=clock,
        on_good_read=good.append,
        on_no_read=bad.append,
    )
    task = asyncio.create_task(source.run(emit))
    try:
        # No window open: a code in view is neither decoded nor reported.
        cam.push(WITH_EAN, at=1.0)
        await until(lambda: source.stats().frames == 1)
        clock.set(2.0)
        source.trigger()
        blurred = cv2.GaussianBlur(EMPTY, (0, 0), 3)
        cam.push(blurred, at=2.2)
        cam.push(EMPTY, at=2.5)  # the sharpest frame of the window
        cam.push(EMPTY, at=3.5)  # after the window: it closes without a code
        await until(lambda: len(emit.scans) == 1)
        clock.set(4.0)
        source.trigger()
        cam.push(WITH_EAN, at=4.1)
        await until(lambda: len(emit.scans) == 2)
        clock.set(5.0)
        source.trigger()  # the next item with the same code: read again
        cam.push(WITH_EAN, at=5.1)
        await until(lambda: len(emit.scans) == 3)
    finally:
        task.cancel()
    no_read, first, second = emit.scans
    assert (no_read.capture_type, no_read.raw_value, no_read.metadata["noread"]) == (
        CaptureType.IMAGE,
        "",
        "true",
    )
    assert no_read.metadata["trigger"] == "software"
    assert no_read.image is not None
    assert no_read.image[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(no_read.image, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.abs(decoded.astype(int) - EMPTY.astype(int)).mean() < 4  # the sharp frame
    assert [first.raw_value, second.raw_value] == [EAN, EAN]
    assert first.metadata["trigger"] == "software"
    assert good == [first, second]
    assert bad == [no_read]
    stats = source.stats()
    assert (stats.triggers, stats.reads, stats.no_reads) == (3, 2, 1)


async def test_camera_gpio_trigger_from_another_thread_closes_on_time_without_frames() -> None:
    emit = Recorder()
    cam = FakeCamera(live=True)
    source = CameraSource(config(trigger="gpio", read_window_ms=100), backend=cam)
    task = asyncio.create_task(source.run(emit))
    try:
        await until(lambda: source.health.state == "running")
        cam.push(EMPTY)
        await until(lambda: source.stats().frames == 1)
        # gpiozero calls back from its own thread.
        threading.Thread(target=source.trigger).start()
        await until(lambda: len(emit.scans) == 1, timeout=3)
    finally:
        task.cancel()
    (scan,) = emit.scans
    assert scan.metadata["noread"] == "true"
    assert scan.metadata["trigger"] == "gpio"


async def test_camera_that_disappears_is_retried_and_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(camera_module, "BACKOFF_FIRST_S", 0.01)
    cam = FakeCamera(live=True)
    emit = Recorder()
    source = CameraSource(config(), backend=cam)
    task = asyncio.create_task(source.run(emit))
    try:
        await until(lambda: source.health.state == "running")
        cam.push(WITH_EAN)
        await until(lambda: emit.values == [EAN])
        cam.unplug(failed_opens=3)
        await until(lambda: source.health.state == "reconnecting")
        assert "unplugged" in source.health.detail
        await asyncio.sleep(0.1)
        cam.replug()
        await until(lambda: source.health.state == "running")
        cam.push(WITH_QR)
        await until(lambda: emit.values == [EAN, QR])
    finally:
        task.cancel()
    assert source.stats().reconnects >= 2
    assert cam.opens == 2
    assert source.health.errors >= 2


async def test_camera_retries_a_failing_pipeline_and_keeps_reading() -> None:
    cam = FakeCamera([WITH_EAN, EMPTY, WITH_QR])
    cam.end()
    emit = Recorder(fail_first=1)
    source = CameraSource(config(), backend=cam)
    await replay(source, emit)
    assert emit.values == [EAN, QR]
    assert source.health.errors == 1


async def test_camera_drops_a_read_the_pipeline_keeps_refusing_but_goes_on() -> None:
    cam = FakeCamera([WITH_EAN, EMPTY, WITH_QR])
    cam.end()
    emit = Recorder(fail_first=camera_module.EMIT_ATTEMPTS)
    source = CameraSource(config(), backend=cam)
    await replay(source, emit)
    assert emit.values == [QR]
    assert source.health.errors == camera_module.EMIT_ATTEMPTS
    assert (source.stats().reads, source.health.scans) == (1, 1)


async def test_camera_live_keeps_only_the_latest_frame() -> None:
    cam = FakeCamera(live=True)
    source = CameraSource(config(decode_threads=1), backend=cam)
    mailbox_frames = [WITH_EAN] + [EMPTY] * 30
    for image in mailbox_frames:
        cam.push(image)
    cam.end()
    emit = Recorder()
    await replay(source, emit)
    # Frames that arrived while the decoder was busy were replaced, not queued.
    stats = source.stats()
    assert stats.frames == len(mailbox_frames)
    assert stats.dropped_frames > 0
    assert stats.decoded_frames + stats.skipped_frames + stats.dropped_frames == stats.frames


async def test_camera_preview_jpeg_and_mjpeg_frames() -> None:
    cam = FakeCamera(live=True)
    source = CameraSource(config(), backend=cam)
    assert source.latest_jpeg() is None
    task = asyncio.create_task(source.run(Recorder()))
    try:
        cam.push(WITH_EAN)
        await until(lambda: source.stats().reads == 1)
        jpeg = await asyncio.to_thread(source.latest_jpeg)
        assert jpeg is not None
        assert jpeg[:2] == b"\xff\xd8"
        preview = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert preview.shape == (*WITH_EAN.shape, 3)
        # The code is outlined in green for aiming.
        assert ((preview[:, :, 1] > 150) & (preview[:, :, 0] < 80)).sum() > 100
        stream = source.mjpeg_frames(max_fps=50)
        first = await asyncio.wait_for(anext(stream), 5)
        assert first[:2] == b"\xff\xd8"
        await stream.aclose()
    finally:
        task.cancel()


def green_box(jpeg: bytes) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1) of the preview's green outline, None without one."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    ys, xs = np.nonzero((image[:, :, 1] > 150) & (image[:, :, 0] < 80) & (image[:, :, 2] < 80))
    if len(xs) < 50:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def box_of(position: tuple[tuple[int, int], ...]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in position], [p[1] for p in position]
    return min(xs), min(ys), max(xs), max(ys)


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union else 0.0


async def test_camera_preview_outlines_the_code_where_it_is_in_that_frame() -> None:
    """The box sat beside the DataMatrix: the codes of one frame were drawn on a newer one.
    Here the label moves while the decoder is slow; every preview's box sits on its code."""
    from scanstation.barcode.decode import decode_frame

    def matrix_at(x: float) -> np.ndarray:
        label = Label("(01)09506000134352(10)ABC123", "DataMatrix", gs1=True, module_px=5,
                      center=(x, 0.5))  # fmt: skip
        return render_scene([label], size=SIZE, seed=2)

    frames = [matrix_at(x) for x in (0.25, 0.75, 0.25, 0.75)]
    where = [box_of(decode_frame(frames[i])[0].position) for i in range(2)]
    assert overlap(where[0], where[1]) == 0  # the label really moves
    cam = FakeCamera(live=True)
    source = CameraSource(config(decode_threads=1), backend=cam)
    decode = source._decode

    def slow_decode(frame: camera_module.CameraFrame) -> list[DecodedCode]:
        time.sleep(0.15)  # a Pi Zero's decode time: newer frames arrive meanwhile
        return decode(frame)

    source._decode = slow_decode  # type: ignore[method-assign]
    task = asyncio.create_task(source.run(Recorder()))
    checked = 0
    try:
        for image in frames:
            cam.push(image)
            for _ in range(6):
                await asyncio.sleep(0.05)
                jpeg = await asyncio.to_thread(source.latest_jpeg)
                box = green_box(jpeg) if jpeg else None
                if box is None:
                    continue
                preview = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
                # Which frame is shown (left or right label), and where its code is.
                shown = min(range(2), key=lambda i: float(cv2.absdiff(preview, frames[i]).mean()))
                assert overlap(box, where[shown]) > 0.5, (box, where[shown])
                checked += 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert checked >= 4


# ---- real backends ---------------------------------------------------------------------------


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


async def test_opencv_backend_replays_a_video_file(tmp_path: Path) -> None:
    frames = [EMPTY] * 3 + [WITH_EAN] * 5 + [EMPTY] * 3 + [WITH_QR] * 5 + [EMPTY, WITH_EAN]
    video = write_video(tmp_path / "lane.avi", frames)
    # Paced at 20 fps: the gap before the last EAN is long enough to be a new item.
    cfg = config(backend="opencv", device=str(video), fps=20)
    source = CameraSource(cfg)
    assert isinstance(source.backend, OpenCvBackend)
    emit = Recorder()
    await replay(source, emit)
    assert emit.values == [EAN, QR, EAN]
    assert source.stats().frames == len(frames)


async def test_a_colour_frame_is_kept_only_in_gray(tmp_path: Path) -> None:
    """OpenCV hands over BGR (3 bytes a pixel); the camera keeps one gray copy per frame."""
    video = write_video(tmp_path / "lane.avi", [EMPTY, WITH_EAN, WITH_EAN])
    source = CameraSource(config(backend="opencv", device=str(video), fps=30))
    grabbed: list[camera_module.CameraFrame] = []
    on_grab = source._on_grab

    def keep(frame: camera_module.CameraFrame) -> None:
        grabbed.append(frame)
        on_grab(frame)

    source._on_grab = keep  # type: ignore[method-assign]
    emit = Recorder()
    await replay(source, emit)
    assert emit.values == [EAN]
    assert len(grabbed) == 3
    for frame in grabbed:
        assert frame.gray.shape == EMPTY.shape  # 2-D: no BGR copy beside it
        assert not hasattr(frame, "image")
    jpeg = source.latest_jpeg(overlay=False)
    assert jpeg is not None
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2


async def test_a_looped_replay_is_read_like_a_live_camera(tmp_path: Path) -> None:
    """loop = true stands in for a camera: the newest frame wins, nothing is kept decoded."""
    for i, frame in enumerate([EMPTY, WITH_EAN]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame)
    looped = FileBackend(config(device=str(tmp_path), loop=True, fps=100))
    once = FileBackend(config(device=str(tmp_path), fps=100))
    assert looped.live
    assert not once.live
    for backend in (looped, once):
        backend.open()
    assert all(looped.read() is not None for _ in range(4))  # round and round
    assert [once.read() is not None for _ in range(3)] == [True, True, False]  # then the end
    assert not looped._cache
    assert len(once._cache) == 2


async def test_opencv_backend_missing_camera_reports_reconnecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(camera_module, "BACKOFF_FIRST_S", 0.01)
    source = CameraSource(config(backend="opencv", device="/dev/video97"))
    task = asyncio.create_task(source.run(Recorder()))
    try:
        await until(lambda: source.stats().reconnects >= 2)
    finally:
        task.cancel()
    assert source.health.state == "reconnecting"
    assert "/dev/video97" in source.health.detail


async def test_file_backend_replays_the_bundled_samples() -> None:
    import json

    expected = json.loads((bundled_samples_dir() / "expected.json").read_text())
    cfg = config(device=str(bundled_samples_dir()), fps=120)
    source = CameraSource(cfg)
    assert isinstance(source.backend, FileBackend)
    emit = Recorder()
    await replay(source, emit)
    wanted = [text for name in sorted(expected) for text in expected[name]]
    assert sorted(emit.values) == sorted(wanted)
    assert source.health.detail == "replay finished"


async def test_file_backend_missing_folder_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(camera_module, "BACKOFF_FIRST_S", 0.01)
    source = CameraSource(config(device="/nonexistent/frames"))
    task = asyncio.create_task(source.run(Recorder()))
    try:
        await until(lambda: source.health.state == "reconnecting")
    finally:
        task.cancel()
    assert "/nonexistent/frames" in source.health.detail


async def test_picamera2_backend_without_picamera2_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(camera_module, "BACKOFF_FIRST_S", 0.01)
    source = CameraSource(config(backend="picamera2", device="0"))
    task = asyncio.create_task(source.run(Recorder()))
    try:
        await until(lambda: source.health.state == "reconnecting")
    finally:
        task.cancel()
    assert "python3-picamera2" in source.health.detail


# ---- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"formats": ["EAN13", "EAN-14"]}, "unknown barcode format 'EAN-14'"),
        ({"roi": [0.5, 0.5, 0.7, 0.2]}, "roi"),
        ({"trigger": "sometimes"}, "trigger"),
        ({"exposure": 3}, "unknown key 'sources.0.camera.exposure'"),
    ],
)
def test_camera_config_errors_name_the_key(source: dict[str, object], message: str) -> None:
    from scanstation.config import ConfigError

    data = {"sources": [{"type": "camera", "name": "cam0", **source}]}
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "test.toml", environ={})


async def test_demo_source_replays_the_samples_in_a_loop() -> None:
    from scanstation.sources.camera import demo_source_config

    cfg = demo_source_config(fps=5)
    assert (cfg.backend, cfg.loop, Path(cfg.device)) == ("file", True, bundled_samples_dir())
    emit = Recorder()
    source = CameraSource(cfg)
    task = asyncio.create_task(source.run(emit))
    try:
        # Two rounds of the seven samples (1.4 s each): the EAN-13 comes back after the others.
        await until(lambda: emit.values.count("4006381333931") >= 2, timeout=10)
    finally:
        task.cancel()
    assert source.health.state == "running"


async def test_camera_preview_on_the_event_loop_never_encodes_there_twice() -> None:
    cam = FakeCamera(live=True)
    source = CameraSource(config(), backend=cam)
    task = asyncio.create_task(source.run(Recorder()))
    try:
        cam.push(WITH_EAN)
        await until(lambda: source.stats().frames == 1)
        first = source.latest_jpeg()  # the very first preview is encoded at once
        assert first is not None
        cam.push(EMPTY)
        await until(lambda: source.stats().frames == 2)
        assert source.latest_jpeg() is first  # the newer frame is encoded in a thread meanwhile
        await until(lambda: source.latest_jpeg() is not first)
    finally:
        task.cancel()


# ---- picamera2, with a fake of the library (no Pi camera here) -------------------------------


class FakePicamera2:
    """Behaves like picamera2.Picamera2 for what the backend uses: a YUV420 video stream
    (Y plane on top of the U/V planes, rows padded to a stride) and autofocus controls."""

    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.camera_controls = {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
        self.controls: dict[str, object] = {}
        self.af_cycles = 0
        self.started = self.closed = False
        self.config: dict[str, object] = {}
        self.frames = [WITH_EAN, WITH_EAN, EMPTY, WITH_QR]
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict, controls: dict, buffer_count: int) -> dict:
        return {"main": main, "controls": controls, "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def set_controls(self, controls: dict[str, object]) -> None:
        self.controls.update(controls)

    def autofocus_cycle(self) -> bool:
        self.af_cycles += 1
        return True

    def capture_array(self, stream: str) -> np.ndarray:
        assert stream == "main"
        time.sleep(1 / 30)  # blocks until the next frame, as the real one does
        width, height = self.config["main"]["size"]  # type: ignore[index]
        stride = width + 64  # libcamera pads rows
        luma = self.frames.pop(0) if self.frames else EMPTY
        yuv = np.full((height * 3 // 2, stride), 128, dtype=np.uint8)
        yuv[:height, :width] = cv2.resize(luma, (width, height))
        return yuv

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    import enum
    import sys
    import types

    class AfModeEnum(enum.Enum):
        Manual = 0
        Auto = 1
        Continuous = 2

    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(AfModeEnum=AfModeEnum)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    FakePicamera2.instances = []
    return FakePicamera2


@pytest.mark.parametrize(
    ("focus", "expected_controls", "cycles"),
    [
        ({"autofocus": "continuous"}, {"AfMode": "Continuous"}, 0),
        ({"autofocus": "auto"}, {"AfMode": "Auto"}, 1),
        (
            {"autofocus": "manual", "lens_position": 2.5},
            {"AfMode": "Manual", "LensPosition": 2.5},
            0,
        ),
    ],
)
async def test_picamera2_backend_reads_the_y_plane_and_sets_focus(
    fake_picamera2: type[FakePicamera2],
    focus: dict[str, object],
    expected_controls: dict[str, object],
    cycles: int,
) -> None:
    cfg = config(backend="picamera2", device="0", resolution=(640, 360), fps=30, **focus)
    source = CameraSource(cfg)
    emit = Recorder()
    task = asyncio.create_task(source.run(emit))
    try:
        await until(lambda: emit.values == [EAN, QR])
        (camera,) = fake_picamera2.instances
        assert camera.config == {
            "main": {"size": (640, 360), "format": "YUV420"},
            "controls": {"FrameRate": 30.0},
            "buffer_count": 2,
        }
        controls = {k: getattr(v, "name", v) for k, v in camera.controls.items()}
        assert controls == expected_controls
        assert camera.af_cycles == cycles
        await source.autofocus()
        assert camera.af_cycles == cycles + 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert camera.closed


class FirehoseCamera:
    """A live camera that never waits between frames (a misbehaving driver, a fast stream)."""

    kind = "firehose"
    live = True

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        return WITH_EAN

    def close(self) -> None:
        pass


async def test_camera_faster_than_the_loop_neither_floods_it_nor_ignores_cancellation() -> None:
    emit = Recorder()
    source = CameraSource(config(), backend=FirehoseCamera())
    task = asyncio.create_task(source.run(emit))
    ticks = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 1.0:
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks > 20  # the event loop kept turning (100 if nothing else ran)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert emit.values == [EAN]
    assert source.stats().dropped_frames > 0
