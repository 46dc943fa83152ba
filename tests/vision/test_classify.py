"""The TFLite classifier on real photos (scikit-image's, shipped in tests/data/images)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanstation.commands.bench.classify import main as bench_main
from scanstation.config import ClassifierConfig
from scanstation.vision.classify import (
    Classifier,
    ClassifierError,
    ClassScore,
    InputSpec,
    LazyClassifier,
    as_probabilities,
    default_model_path,
    fit_square,
    interpreter_class,
    read_labels,
    to_tensor,
)

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "data" / "images"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def photo_bytes(name: str) -> bytes:
    return (IMAGES / f"{name}.jpg").read_bytes()


def photo_array(name: str) -> np.ndarray:
    with Image.open(IMAGES / f"{name}.jpg") as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(threads=2, top_k=5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chelsea", CAT_CLASSES), ("coffee", {"espresso"})],
)
@pytest.mark.parametrize("form", ["jpeg bytes", "rgb array"])
def test_classify_names_real_photos(
    classifier: Classifier, name: str, expected: set[str], form: str
) -> None:
    image = photo_bytes(name) if form == "jpeg bytes" else photo_array(name)
    result = classifier.classify(image)
    assert result.best.label in expected
    assert result.model == "efficientnet_lite0.tflite"


def test_classify_cat_top3_are_all_cats(classifier: Classifier) -> None:
    result = classifier.classify(photo_bytes("chelsea"))
    assert {c.label for c in result.top[:3]} <= CAT_CLASSES
    assert sum(c.score for c in result.top[:3]) > 0.8


def test_classify_espresso_is_confident(classifier: Classifier) -> None:
    result = classifier.classify(photo_bytes("coffee"))
    assert result.best == ClassScore("espresso", 967, result.best.score)
    assert result.best.score > 0.8


def test_classify_returns_top_k_best_first(classifier: Classifier) -> None:
    result = classifier.classify(photo_bytes("rocket"), top_k=7)
    scores = [c.score for c in result.top]
    assert len(result.top) == 7
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [c.label for c in result.top] == [classifier.labels[c.index] for c in result.top]


def test_classify_embedding_is_readonly_vector(classifier: Classifier) -> None:
    result = classifier.classify(photo_bytes("coffee"))
    assert classifier.has_embedding
    assert result.embedding is not None
    assert result.embedding.shape == (1280,)
    assert np.isfinite(result.embedding).all()
    with pytest.raises(ValueError, match="read-only"):
        result.embedding[0] = 1.0


def test_classification_as_json(classifier: Classifier) -> None:
    data = classifier.classify(photo_bytes("coffee"), top_k=2).as_json()
    assert data["model"] == "efficientnet_lite0.tflite"
    assert len(data["top"]) == 2
    assert data["top"][0]["label"] == "espresso"
    assert set(data) == {"model", "top", "inference_ms"}


def test_classify_same_image_same_answer(classifier: Classifier) -> None:
    first = classifier.classify(photo_bytes("astronaut"))
    second = classifier.classify(photo_array("astronaut"))
    assert first == second


async def test_classify_async_keeps_the_loop_running(classifier: Classifier) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    results = [await classifier.classify_async(photo_bytes("coffee")) for _ in range(5)]
    done.set()
    await tick_task
    assert {r.best.label for r in results} == {"espresso"}
    assert ticks > 5


async def test_classify_async_concurrent_calls_agree(classifier: Classifier) -> None:
    names = ["chelsea", "coffee", "rocket", "astronaut"] * 3
    results = await asyncio.gather(*(classifier.classify_async(photo_bytes(n)) for n in names))
    serial = {n: classifier.classify(photo_bytes(n)) for n in set(names)}
    assert [r.top for r in results] == [serial[n].top for n in names]


def test_classify_from_many_threads_agrees_with_serial(classifier: Classifier) -> None:
    names = ["chelsea", "coffee", "rocket", "astronaut"] * 4
    serial = {n: classifier.classify(photo_bytes(n)).top for n in set(names)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        tops = list(pool.map(lambda n: classifier.classify(photo_bytes(n)).top, names))
    assert tops == [serial[n] for n in names]


@pytest.mark.parametrize("threads", [1, 2])
def test_classifier_threads_do_not_change_the_answer(threads: int) -> None:
    result = Classifier(threads=threads).classify(photo_bytes("coffee"))
    assert result.best.label == "espresso"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"not an image at all", "expected JPEG, PNG or WebP"),
        (b"", "expected JPEG, PNG or WebP"),
        (np.zeros((10, 10, 3), dtype=np.float32), "expected uint8 RGB pixels"),
        (np.zeros((10, 10, 2), dtype=np.uint8), "expected (height, width, 3)"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "expected (height, width, 3)"),
    ],
)
def test_classify_rejects_bad_images_clearly(
    classifier: Classifier, image: object, message: str
) -> None:
    with pytest.raises(ClassifierError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classifier.classify(image)  # type: ignore[arg-type]


def test_classify_rejects_images_over_the_pixel_limit() -> None:
    small = Classifier(max_pixels=100 * 100)
    with pytest.raises(ClassifierError, match="at most 10000 are allowed"):
        small.classify(photo_bytes("coffee"))


@pytest.mark.parametrize("shape", [(300, 451), (300, 451, 3), (300, 451, 4)])
def test_classify_accepts_grey_rgb_and_rgba_arrays(
    classifier: Classifier, shape: tuple[int, ...]
) -> None:
    rgb = photo_array("chelsea")
    image = rgb[:, :, 0] if len(shape) == 2 else rgb
    if len(shape) == 3 and shape[2] == 4:
        image = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    result = classifier.classify(image)
    assert len(result.top) == 5


def test_classify_png_and_webp_uploads(classifier: Classifier, tmp_path: Path) -> None:
    with Image.open(IMAGES / "coffee.jpg") as image:
        for fmt in ("PNG", "WEBP"):
            path = tmp_path / f"coffee.{fmt.lower()}"
            image.save(path, format=fmt)
            assert classifier.classify(path.read_bytes()).best.label == "espresso"


def test_classifier_missing_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ClassifierError, match=r"nope\.tflite does not exist"):
        Classifier(missing)


def test_classifier_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ClassifierError, match="not a usable TFLite model"):
        Classifier(bogus, default_model_path().parent / "imagenet_labels.txt")


def test_classifier_labels_must_match_the_model(tmp_path: Path) -> None:
    labels = tmp_path / "ten.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)), encoding="utf-8")
    with pytest.raises(ClassifierError, match="has 10 names but model"):
        Classifier(labels_path=labels)


def test_classifier_explicit_paths_work(tmp_path: Path) -> None:
    model = default_model_path()
    copy = tmp_path / "mine.tflite"
    copy.write_bytes(model.read_bytes())
    labels = tmp_path / "mine.txt"  # found beside the model as <stem>.txt
    labels.write_text(
        "\n".join(
            f"{i}: {name}"
            for i, name in enumerate(read_labels(model.parent / "imagenet_labels.txt"))
        ),
        encoding="utf-8",
    )
    result = Classifier(copy).classify(photo_bytes("coffee"))
    assert (result.best.label, result.model) == ("espresso", "mine.tflite")


def test_default_model_is_the_shipped_one() -> None:
    assert default_model_path() == REPO / "models" / "efficientnet_lite0.tflite"
    assert default_model_path().stat().st_size <= 20_000_000


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("tench\ngoldfish\n", ("tench", "goldfish")),
        ("0: tench\n1: goldfish\n\n", ("tench", "goldfish")),
        ("0 tench\n1 great white shark\n", ("tench", "great white shark")),
        ("background\n2 bears\n", ("background", "bears")),
    ],
)
def test_read_labels_formats(tmp_path: Path, text: str, labels: tuple[str, ...]) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(text, encoding="utf-8")
    assert read_labels(path) == labels


def test_read_labels_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ClassifierError, match="is empty"):
        read_labels(path)


def test_fit_square_crops_the_centre_then_resizes() -> None:
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 100:200] = 255  # the centre square is white, the sides black
    pixels = fit_square(Image.fromarray(wide), 50, 50)
    assert pixels.shape == (50, 50, 3)
    assert pixels.min() == 255


@pytest.mark.parametrize(
    ("spec", "shape", "dtype", "first"),
    [
        (InputSpec(2, 2, "NHWC", np.uint8, 0.0, 0), (1, 2, 2, 3), np.uint8, 200),
        (InputSpec(2, 2, "NHWC", np.int8, 0.5, -128), (1, 2, 2, 3), np.int8, 72),
        (
            InputSpec(2, 2, "NCHW", np.float32, 0.0, 0),
            (1, 3, 2, 2),
            np.float32,
            (200 - 127.5) / 127.5,
        ),
        (
            InputSpec(2, 2, "NHWC", np.float16, 0.0, 0),
            (1, 2, 2, 3),
            np.float16,
            np.float16((200 - 127.5) / 127.5),
        ),
    ],
)
def test_to_tensor_follows_the_model_input(
    spec: InputSpec, shape: tuple[int, ...], dtype: type, first: float
) -> None:
    pixels = np.full((2, 2, 3), 200, np.uint8)
    tensor = to_tensor(pixels, spec)
    assert (tensor.shape, tensor.dtype) == (shape, np.dtype(dtype))
    assert float(tensor.flat[0]) == pytest.approx(float(first), abs=1e-3)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.7, 0.2, 0.1], [0.7, 0.2, 0.1]),  # probabilities stay
        ([0.50390625, 0.2109375, 0.0], [0.50390625, 0.2109375, 0.0]),  # quantised, sum 0.71
        ([2.0, 0.0, -2.0], [0.867, 0.117, 0.016]),  # logits -> softmax
        ([3.0, 1.0, 1.0], [0.787, 0.107, 0.107]),
    ],
)
def test_as_probabilities_keeps_probabilities_and_softmaxes_logits(
    scores: list[float], expected: list[float]
) -> None:
    result = as_probabilities(np.array(scores, dtype=np.float32))
    assert result.tolist() == pytest.approx(expected, abs=1e-3)


def test_interpreter_missing_runtime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ClassifierError, match="pip install ai-edge-litert"):
        interpreter_class()


def test_classifier_load_is_fast() -> None:
    started = time.perf_counter()
    Classifier()
    assert time.perf_counter() - started < 1.0


def test_classifier_from_config_uses_its_settings() -> None:
    config = ClassifierConfig(threads=1, top_k=3)
    classifier = Classifier.from_config(config)
    result = classifier.classify(photo_bytes("coffee"))
    assert (classifier.threads, len(result.top), result.best.label) == (1, 3, "espresso")


def test_bench_classify_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--iterations", "2", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = [r for r in report["rows"] if r["model"] == "efficientnet_lite0.tflite"]
    assert row["threads"] == 1
    assert row["top1"] == "bobsled"  # astronaut.jpg, the first photo: ImageNet has no astronaut
    for key in ("load_ms", "bare_ms", "model_size_ms", "photo_ms", "jpeg_ms", "rss_mb"):
        assert row[key] > 0
    assert row["images_per_s"] == pytest.approx(1000 / row["photo_ms"], rel=0.01)


def test_bench_classify_table_and_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--iterations", "1", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "bare ms" in out
    assert "efficientnet_lite0.tflite" in out
    assert bench_main(["--model", "/nonexistent.tflite"]) == 2
    assert bench_main(["--iterations", "0"]) == 2
    assert bench_main(["--bogus"]) == 2


def test_bench_classify_without_test_photos_uses_synthetic_frames(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import scanstation.commands.bench.classify as bench

    monkeypatch.setattr(bench, "DEFAULT_IMAGES", tmp_path / "not-installed")
    assert bench_main(["--iterations", "1", "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4


def test_model_card_accuracy_check_command_passes() -> None:
    # The exact command MODEL_CARD.md gives, in the daemon's own environment.
    completed = subprocess.run(
        [sys.executable, "models/check_accuracy.py", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["passed"] is True
    assert report["images"] == 32
    assert report["top1_agreement"] >= 0.95
    assert report["top5_overlap"] >= 0.85


def test_model_card_quotes_the_accuracy_command() -> None:
    card = (REPO / "models" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "python models/check_accuracy.py" in card


async def test_lazy_classifier_loads_on_first_photo_and_unloads_when_idle() -> None:
    lazy = LazyClassifier(ClassifierConfig(threads=1), idle_unload_s=0.3)
    assert not lazy.loaded  # nothing resident until a photo comes
    first = await lazy.classify_async(photo_bytes("coffee"))
    assert first.best.label == "espresso"
    assert lazy.loaded
    assert lazy.loads == 1
    for _ in range(200):  # released after the idle time, off the event loop
        if not lazy.loaded:
            break
        await asyncio.sleep(0.02)
    assert not lazy.loaded
    assert lazy.unloads == 1
    again = await lazy.classify_async(photo_bytes("coffee"))  # loads again, same answer
    assert again.best == first.best
    assert lazy.loads == 2
    lazy.close()


def test_lazy_classifier_reports_a_missing_model_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ClassifierError, match=r"nope\.tflite does not exist"):
        LazyClassifier(ClassifierConfig(model=missing))


def test_a_loaded_classifier_keeps_no_model_file_pages_resident() -> None:
    """The delegate packs the weights at load: the 9 MB file mapping is reclaimed, and the
    answers stay the same (pages read again would come back on their own)."""
    code = """
import json, sys
from pathlib import Path
from scanstation.vision.classify import Classifier

def model_rss_kb(path):
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            inside = len(fields) > 5 and fields[5] == path
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total

classifier = Classifier(threads=1)
path = str(classifier.model_path.resolve())
after_load = model_rss_kb(path)
labels = [classifier.classify(Path(sys.argv[1]).read_bytes()).best.label for _ in range(5)]
print(json.dumps({"load": after_load, "used": model_rss_kb(path), "labels": labels,
                  "size_kb": classifier.model_path.stat().st_size // 1024}))
"""
    photo = Path(__file__).resolve().parents[1] / "data" / "images" / "coffee.jpg"
    out = subprocess.run(
        [sys.executable, "-c", code, str(photo)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "daemon")},
    )
    result = json.loads(out.stdout)
    assert result["labels"] == ["espresso"] * 5
    assert result["size_kb"] > 9000
    assert result["load"] < result["size_kb"] / 10  # was the whole file (~9.2 MB)
    assert result["used"] < result["size_kb"] / 10  # five photos later: still out
