"""decode.py: real images through the real decoder (rendered frames, bundled samples, the
conformance photos), GS separators kept, ROI, tilted 1-D codes, and ``scanstation decode``."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from scanstation.barcode.decode import (
    DecodeError,
    DecodeOptions,
    check_roi,
    decode_frame,
    decode_main,
    parse_formats,
    to_gray,
)
from scanstation.commands.bench.decode import bare_zxing, photo_hit
from scanstation.commands.bench.scenes import RETAIL_FORMATS, Label, render_scene, retail_frames
from scanstation.sources.camera import bundled_samples_dir

GS = "\x1d"
GS1_ELEMENT = "(01)09506000134352(17)270101(10)ABC123(21)S1"
GS1_PLAIN = f"01095060001343521727010110ABC123{GS}21S1"
DIGITAL_LINK = "https://id.gs1.org/01/09506000134352/10/ABC123?17=270101"


def read(
    frame: np.ndarray, options: DecodeOptions | None = None
) -> list[tuple[str, str, str, str]]:
    return [
        (c.format, c.text, c.symbology_identifier, c.content_type)
        for c in decode_frame(frame, options)
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (Label("4006381333931", "EAN13"), ("EAN13", "4006381333931", "]E0", "Text")),
        (Label("96385074", "EAN8"), ("EAN8", "96385074", "]E4", "Text")),
        # With every format on, zxing-cpp reports a UPC-A as the EAN-13 it also is (same GTIN).
        (Label("036000291452", "UPCA"), ("EAN13", "0036000291452", "]E0", "Text")),
        (
            Label(GS1_ELEMENT, "Code128", gs1=True, module_px=2.5),
            ("Code128", GS1_PLAIN, "]C1", "GS1"),
        ),
        (
            Label(GS1_ELEMENT, "DataMatrix", gs1=True, module_px=6, angle=33),
            ("DataMatrix", GS1_PLAIN, "]d2", "GS1"),
        ),
        (
            Label(DIGITAL_LINK, "QRCode", module_px=5, angle=-20, tilt=0.15),
            ("QRCode", DIGITAL_LINK, "]Q1", "Text"),
        ),
        (Label("SCANSTATION-0001", "Code128"), ("Code128", "SCANSTATION-0001", "]C0", "Text")),
    ],
    ids=["ean13", "ean8", "upca", "gs1-128", "gs1-datamatrix", "digital-link-qr", "code128"],
)
def test_decode_frame_reads_rendered_camera_frames(label: Label, expected: tuple) -> None:
    frame = render_scene([label], seed=11)
    assert read(frame) == [expected]


def test_decode_frame_keeps_gs_separator_fnc1_for_gs1() -> None:
    frame = render_scene([Label(GS1_ELEMENT, "Code128", gs1=True, module_px=2.5)], seed=3)
    (code,) = decode_frame(frame)
    # Plain text: the variable-length AI 10 is ended by GS before AI 21, as a GS1 parser needs.
    assert code.text.split(GS) == ["01095060001343521727010110ABC123", "21S1"]
    assert code.symbology_identifier == "]C1"
    assert code.content_type == "GS1"


def test_decode_frame_reads_several_codes_in_one_frame() -> None:
    frame = render_scene(
        [
            Label("4006381333931", "EAN13", center=(0.25, 0.3)),
            Label(DIGITAL_LINK, "QRCode", module_px=4, center=(0.75, 0.5)),
            Label(GS1_ELEMENT, "DataMatrix", gs1=True, module_px=5, center=(0.3, 0.75)),
        ],
        seed=5,
    )
    assert sorted(c.text for c in decode_frame(frame)) == sorted(
        ["4006381333931", DIGITAL_LINK, GS1_PLAIN]
    )


def test_decode_frame_reports_position_in_frame_coordinates_with_an_roi() -> None:
    frame = render_scene([Label("4006381333931", "EAN13", center=(0.75, 0.75))], seed=2)
    full = decode_frame(frame)
    in_roi = decode_frame(frame, DecodeOptions(roi=(0.5, 0.5, 0.5, 0.5)))
    assert [c.text for c in in_roi] == ["4006381333931"]
    assert [c.text for c in full] == ["4006381333931"]
    # Corners are in frame pixels whether or not an ROI was used (x is exact; a 1-D code's
    # height depends on how many rows confirmed it).
    assert [x for x, _ in in_roi[0].position] == pytest.approx(
        [x for x, _ in full[0].position], abs=2
    )
    cx, cy = in_roi[0].center
    assert abs(cx - 0.75 * 1280) < 40
    assert abs(cy - 0.75 * 720) < 40


def test_decode_frame_ignores_codes_outside_the_roi() -> None:
    frame = render_scene([Label("4006381333931", "EAN13", center=(0.25, 0.25))], seed=2)
    assert decode_frame(frame, DecodeOptions(roi=(0.5, 0.5, 0.5, 0.5))) == []


def test_decode_frame_only_reports_configured_formats() -> None:
    frame = render_scene(
        [
            Label("4006381333931", "EAN13", center=(0.3, 0.5)),
            Label(DIGITAL_LINK, "QRCode", module_px=4, center=(0.75, 0.5)),
        ],
        seed=8,
    )
    assert [c.format for c in decode_frame(frame, DecodeOptions(formats=("QRCode",)))] == ["QRCode"]


def test_decode_frame_takes_bgr_frames() -> None:
    gray = render_scene([Label("4006381333931", "EAN13")], seed=4)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert read(bgr) == read(gray) == [("EAN13", "4006381333931", "]E0", "Text")]


def test_to_gray_uses_grayscale_frames_and_roi_views_without_a_copy() -> None:
    gray = np.zeros((720, 1280), dtype=np.uint8)
    assert to_gray(gray) is gray
    crop = gray[100:400, 200:900]
    assert np.shares_memory(to_gray(crop), gray)


def test_decode_frame_reads_tilted_gs1_128_that_bare_zxing_misses() -> None:
    frames = retail_frames(16, seed=4, tilted_1d=True)
    ours = sum(any(c.text == text for c in decode_frame(f)) for f, text in frames)
    bare = sum(any(c.text == text for c in bare_zxing(f)) for f, text in frames)
    assert ours >= 0.6 * len(frames), f"read {ours}/{len(frames)} tilted GS1-128 labels"
    assert ours >= bare + 0.3 * len(frames), f"ours {ours} vs bare zxing-cpp {bare}"


def test_decode_frame_reads_synthetic_retail_frames_at_least_as_well_as_bare_zxing() -> None:
    frames = retail_frames(24, seed=7)
    options = DecodeOptions(formats=RETAIL_FORMATS)
    ours = sum(any(c.text == t for c in decode_frame(f, options)) for f, t in frames)
    bare = sum(any(c.text == t for c in bare_zxing(f, RETAIL_FORMATS)) for f, t in frames)
    assert ours >= bare
    assert ours >= 0.9 * len(frames)


@pytest.mark.parametrize(
    "name", sorted(json.loads((bundled_samples_dir() / "expected.json").read_text()))
)
def test_decode_frame_reads_the_bundled_samples(name: str) -> None:
    expected = json.loads((bundled_samples_dir() / "expected.json").read_text())[name]
    frame = cv2.imread(str(bundled_samples_dir() / name), cv2.IMREAD_GRAYSCALE)
    assert sorted(c.text for c in decode_frame(frame)) == sorted(expected)


def test_bundled_samples_stay_small() -> None:
    total = sum(p.stat().st_size for p in bundled_samples_dir().iterdir() if p.is_file())
    assert total <= 400 * 1024


def test_decode_frame_on_conformance_photos_beats_bare_zxing_defaults() -> None:
    photos = shared_path("conformance", "barcode-photos")
    from scanstation.barcode.decode import load_image

    manifest = json.loads((photos / "manifest.json").read_text())["images"]
    ours = bare = positives = 0
    false_reports = []
    missed_by_us_only = []
    times = []
    for image in manifest:
        gray = load_image(photos / image["path"])
        started = time.perf_counter()
        codes = decode_frame(gray)
        times.append(time.perf_counter() - started)
        if image["negative"]:
            if codes:
                false_reports.append(image["path"])
            continue
        positives += 1
        hit_ours, hit_bare = photo_hit(image, codes), photo_hit(image, bare_zxing(gray))
        ours += hit_ours
        bare += hit_bare
        if hit_bare and not hit_ours:
            missed_by_us_only.append(image["path"])
    assert false_reports == []
    assert ours >= bare, f"ours {ours}/{positives}, bare {bare}; lost: {missed_by_us_only[:10]}"
    assert ours / positives >= 0.875
    assert statistics.median(times) < 0.05


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["EAN13", "Bogus"], "unknown barcode format 'Bogus'"),
        (["QR"], "unknown barcode format 'QR'"),
    ],
)
def test_parse_formats_names_the_unknown_format(names: list[str], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_formats(names)


def test_parse_formats_accepts_zxing_names_and_gs1_128() -> None:
    assert [f.name for f in parse_formats(["EAN-13", "QRCode", "GS1-128", "DataMatrix"])] == [
        "EAN13",
        "QRCode",
        "Code128",
        "DataMatrix",
    ]


@pytest.mark.parametrize("roi", [(0.5, 0.5, 0.6, 0.2), (-0.1, 0, 0.5, 0.5), (0, 0, 0, 1)])
def test_check_roi_rejects_regions_outside_the_frame(roi: tuple) -> None:
    with pytest.raises(DecodeError, match="ROI"):
        check_roi(roi)


def test_decode_frame_rejects_a_frame_that_is_not_an_image() -> None:
    with pytest.raises(DecodeError, match="expected a uint8 numpy array"):
        decode_frame(np.zeros((10, 10), dtype=np.float32))


# ---- scanstation decode FILE... --------------------------------------------------------------


def test_decode_main_prints_one_json_line_per_code(capsys: pytest.CaptureFixture[str]) -> None:
    sample = bundled_samples_dir() / "06-two-codes.jpg"
    gs1 = bundled_samples_dir() / "02-gs1-datamatrix.jpg"
    assert decode_main([str(sample), str(gs1)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{k: v for k, v in line.items() if k != "position"} for line in lines] == [
        {
            "file": str(sample),
            "format": "EAN13",
            "text": "5901234123457",
            "symbology_identifier": "]E0",
            "content_type": "Text",
        },
        {
            "file": str(sample),
            "format": "QRCode",
            "text": "https://example.com/p/42",
            "symbology_identifier": "]Q1",
            "content_type": "Text",
        },
        {
            "file": str(gs1),
            "format": "DataMatrix",
            "text": GS1_PLAIN,
            "symbology_identifier": "]d2",
            "content_type": "GS1",
        },
    ]
    assert all(len(line["position"]) == 4 for line in lines)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
    writer.release()
    return path


def test_decode_main_reads_videos_with_frame_indexes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = render_scene([], size=(640, 360), seed=1)
    ean = render_scene([Label("4006381333931", "EAN13", module_px=2)], size=(640, 360), seed=1)
    qr = render_scene([Label(DIGITAL_LINK, "QRCode", module_px=3)], size=(640, 360), seed=2)
    video = write_video(tmp_path / "lane.avi", [empty, ean, ean, empty, qr, ean])
    assert decode_main([str(video)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["frame"], line["text"]) for line in lines] == [
        (1, "4006381333931"),
        (4, DIGITAL_LINK),
    ]


def test_decode_main_all_frames_reports_every_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ean = render_scene([Label("4006381333931", "EAN13", module_px=2)], size=(640, 360), seed=1)
    video = write_video(tmp_path / "lane.avi", [ean, ean, ean])
    assert decode_main(["--all-frames", str(video)]) == 0
    assert [json.loads(x)["frame"] for x in capsys.readouterr().out.splitlines()] == [0, 1, 2]


def test_decode_main_missing_or_unreadable_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    sample = bundled_samples_dir() / "01-ean13.jpg"
    assert decode_main([str(tmp_path / "nope.jpg"), str(junk), str(sample)]) == 1
    captured = capsys.readouterr()
    assert "nope.jpg: no such file" in captured.err
    assert "junk.png: cannot read it as an image" in captured.err
    assert json.loads(captured.out)["text"] == "4006381333931"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--formats", "EAN13,Nope", "x.jpg"], "unknown barcode format 'Nope'"),
        (["--roi", "0.5,0.5,0.9,0.1", "x.jpg"], "ROI"),
    ],
)
def test_decode_main_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert decode_main(argv) == 2
    assert message in capsys.readouterr().err


def test_decode_main_without_files_is_bad_usage() -> None:
    with pytest.raises(SystemExit) as exc:
        decode_main([])
    assert exc.value.code == 2


# ---- scanstation bench decode ------------------------------------------------------------------


def test_bench_decode_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    from scanstation.commands.bench.decode import main

    quick = ["--frames", "2", "--no-photos", "--no-latency", "--rounds", "1"]
    assert main([*quick, "--static-frames", "4"]) == 0
    table = capsys.readouterr().out
    assert "Synthetic 1280×720 retail frames" in table
    assert "frames/s vs bare zxing-cpp on 1 thread" in table
    assert "Tilted GS1-128" in table
    assert main([*quick, "--static-frames", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["decoder"] for r in report["tilted_rows"]] == [
        "zxing-cpp defaults (bare)",
        "this pipeline (decode_frame)",
    ]
    assert report["static_scene"]["decoded_frames_skip"] == 1
    assert report["speedup_vs_bare_same_options"] > 0
    camera = report["camera_path"]
    assert camera["cpu_ms_per_frame"] > 0  # CPU time per frame beside the wall time
    assert camera["bare_cpu_ms_per_frame"] > 0
    assert camera["wall_ms_per_frame"] == pytest.approx(1000 / camera["fps"], rel=0.01)


def test_bench_pipeline_reports_latency_and_cpu_per_frame(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scanstation.commands.bench.pipeline import main

    assert main(["--frames", "6", "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 6
    assert 1 <= report["reads"] <= 6  # a live camera drops frames a busy machine cannot take
    assert 0 < report["frame_to_commit_p50_ms"] <= report["frame_to_commit_p99_ms"]
    assert report["cpu_ms_per_frame"] > 0
    assert 0 < report["decode_cpu_ms_per_frame"] <= report["cpu_ms_per_frame"]


def test_bench_decode_rejects_bad_arguments() -> None:
    from scanstation.commands.bench.decode import main

    with pytest.raises(SystemExit) as exc:
        main(["--frames", "0"])
    assert exc.value.code == 2


def test_decode_frame_releases_the_gil_while_zxing_works() -> None:
    """The decoder pool only scales with cores if other threads run during a decode."""
    import threading

    big = cv2.resize(render_scene([], seed=1), (3840, 2160))

    def main_thread_progress(work: object) -> float:
        done = threading.Event()

        def run() -> None:
            work()  # type: ignore[operator]
            done.set()

        started = time.perf_counter()
        threading.Thread(target=run).start()
        count = 0
        while not done.is_set():
            count += 1
        return count / (time.perf_counter() - started)

    idle = main_thread_progress(lambda: time.sleep(0.3))
    decoding = main_thread_progress(lambda: decode_frame(big, DecodeOptions(retries=False)))
    # A call that kept the GIL would leave the main thread at ~0 (sorted() of a big list: 2%).
    assert decoding / idle > 0.2


@pytest.mark.parametrize("angle", [17, 35, 62, 118, 151])
def test_decode_frame_deskews_tilted_gs1_128_and_reports_where_it_is(angle: float) -> None:
    label = Label(GS1_ELEMENT, "Code128", gs1=True, module_px=2.5, angle=angle, center=(0.4, 0.55))
    frame = render_scene([label], seed=angle)
    (code,) = decode_frame(frame, DecodeOptions(formats=("Code128",)))
    assert (code.text, code.symbology_identifier, code.content_type) == (GS1_PLAIN, "]C1", "GS1")
    cx, cy = code.center
    assert abs(cx - 0.4 * 1280) < 60
    assert abs(cy - 0.55 * 720) < 60
