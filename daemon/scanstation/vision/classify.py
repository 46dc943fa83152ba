"""TFLite image classifier for product photos and no-read frames: top-k labels and an embedding.

Loads any image-classification ``.tflite`` with a labels file (by default the shipped
EfficientNet-Lite0, models/efficientnet_lite0.tflite), prepares each image from the model's own
input details (size, NHWC or NCHW, dtype, quantisation) and returns the top-k classes with
their scores, plus the pooled embedding when the model has a second output for it.

``Classifier.classify`` is plain and synchronous (tests call it without a loop);
``Classifier.classify_async`` runs it in a worker thread so the event loop never blocks. A
TFLite interpreter is not thread-safe: one lock guards its tensors and ``invoke``, while image
decoding and resizing run outside the lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from scanstation.vision import VisionError

if TYPE_CHECKING:  # Pillow is imported by the first image, not at start-up (~2 MB)
    from PIL import Image

    from scanstation.config import ClassifierConfig

log = logging.getLogger(__name__)

# Where the shipped model lives: <repo>/models in a checkout; the package may later carry a
# copy under scanstation/data/models (looked at first when it exists).
PACKAGE_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
REPO_MODEL_DIR = Path(__file__).resolve().parents[3] / "models"
# A wheel installs models/ as data files (pyproject: tool.setuptools.data-files).
INSTALLED_MODEL_DIR = Path(sys.prefix) / "share" / "scanstation" / "models"
DEFAULT_MODEL_NAME = "efficientnet_lite0.tflite"
DEFAULT_LABELS_NAME = "imagenet_labels.txt"

# Float-input models conventionally take (pixel - 127.5) / 127.5; ours takes uint8 and
# normalises inside its graph, so this only applies to other people's float models.
DEFAULT_FLOAT_MEAN = 127.5
DEFAULT_FLOAT_STD = 127.5

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
DEFAULT_MAX_PIXELS = 40_000_000

Pixels = npt.NDArray[np.uint8]
ImageInput = npt.NDArray[Any] | bytes | bytearray | memoryview


class ClassifierError(VisionError):
    """A model, labels file or image the classifier cannot use; the message says what and why."""


@dataclass(frozen=True, slots=True)
class ClassScore:
    """One class of the model's answer."""

    label: str
    """The class name from the labels file, e.g. ``espresso`` (the index as text if unnamed)."""
    index: int
    """The class index in the model's output (the line of the labels file, from 0)."""
    score: float
    """The model's probability for this class, 0-1."""


@dataclass(frozen=True, slots=True)
class Classification:
    """What the classifier says about one image."""

    top: tuple[ClassScore, ...]
    """The top-k classes, best first."""
    embedding: npt.NDArray[np.float32] | None = field(compare=False, repr=False)
    """The pooled image embedding (read-only float32 vector), or None when the model has none."""
    model: str
    """The model's file name, e.g. ``efficientnet_lite0.tflite``: the source of proposals."""
    inference_ms: float = field(compare=False)
    """Time spent in the interpreter for this image, in milliseconds."""

    @property
    def best(self) -> ClassScore:
        """The top-1 class."""
        return self.top[0]

    def as_json(self) -> dict[str, Any]:
        """The answer as JSON-ready data (no embedding), e.g. for a capture's metadata."""
        return {
            "model": self.model,
            "top": [{"label": c.label, "index": c.index, "score": c.score} for c in self.top],
            "inference_ms": round(self.inference_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How the model wants its image, read from its input details."""

    height: int
    """Input height in pixels."""
    width: int
    """Input width in pixels."""
    layout: str
    """``NHWC`` or ``NCHW``."""
    dtype: type[np.generic]
    """The input tensor's dtype: uint8, int8, float32 or float16."""
    scale: float
    """Quantisation scale of the input (0 when it is not quantised)."""
    zero_point: int
    """Quantisation zero point of the input."""


def default_model_path() -> Path:
    """The shipped model: <repo>/models in a checkout, else where a wheel installed it."""
    for folder in (REPO_MODEL_DIR, PACKAGE_MODEL_DIR, INSTALLED_MODEL_DIR):
        if (folder / DEFAULT_MODEL_NAME).is_file():
            return folder / DEFAULT_MODEL_NAME
    return REPO_MODEL_DIR / DEFAULT_MODEL_NAME


def default_labels_path(model_path: Path) -> Path | None:
    """The labels beside a model: <stem>.txt, labels.txt, or the ImageNet labels we ship."""
    for candidate in (
        model_path.with_suffix(".txt"),
        model_path.parent / "labels.txt",
        model_path.parent / DEFAULT_LABELS_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def interpreter_class() -> Any:
    """The TFLite Interpreter class: ai-edge-litert, else tflite-runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ClassifierError(
                "no TFLite runtime is installed: expected the ai-edge-litert package "
                "(pip install ai-edge-litert) or, where it has no wheel, tflite-runtime"
            ) from None
    return Interpreter


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names, one per line; ``0 tench`` / ``0: tench`` index prefixes are dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ClassifierError(f"labels file {path}: cannot read it: {exc.strerror}") from None
    labels = []
    for line in lines:
        text = line.strip()
        head, sep, rest = text.partition(":" if ":" in text else " ")
        if sep and head.isdigit() and rest.strip():
            text = rest.strip()
        labels.append(text)
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ClassifierError(f"labels file {path} is empty; expected one class name per line")
    return tuple(labels)


def decode_image(
    data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """An RGB image from JPEG, PNG or WebP bytes, upright per its EXIF orientation."""
    from PIL import Image, ImageOps

    try:
        image = Image.open(io.BytesIO(bytes(data)), formats=ACCEPTED_FORMATS)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ClassifierError(
            f"cannot read the image ({len(data)} bytes): expected JPEG, PNG or WebP ({exc})"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ClassifierError(
            f"image is {width}x{height} = {width * height} pixels; at most {max_pixels} are allowed"
        )
    try:
        # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far cheaper for camera frames.
        image.draft("RGB", (448, 448))
        upright = ImageOps.exif_transpose(image)
        return upright.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ClassifierError(f"cannot decode the {image.format} image: {exc}") from None


def image_from_array(array: npt.NDArray[Any]) -> Image.Image:
    """An RGB image from an HxWx3 RGB, HxWx4 RGBA or HxW grey uint8 array."""
    from PIL import Image

    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        dtype = getattr(array, "dtype", type(array).__name__)
        raise ClassifierError(f"image array has dtype {dtype}; expected uint8 RGB pixels")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.shape[0] and array.shape[1]:
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]), "RGB")
    raise ClassifierError(f"image array has shape {array.shape}; expected (height, width, 3)")


def fit_square(image: Image.Image, width: int, height: int, center_crop: bool = True) -> Pixels:
    """The model-sized RGB pixels: centre-cropped to the input's aspect ratio, then resized."""
    from PIL import Image

    if center_crop:
        src_w, src_h = image.size
        target = width / height
        if src_w / src_h > target:
            crop_w = round(src_h * target)
            left = (src_w - crop_w) // 2
            image = image.crop((left, 0, left + crop_w, src_h))
        else:
            crop_h = round(src_w / target)
            top = (src_h - crop_h) // 2
            image = image.crop((0, top, src_w, top + crop_h))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def to_tensor(
    pixels: Pixels,
    spec: InputSpec,
    float_mean: float = DEFAULT_FLOAT_MEAN,
    float_std: float = DEFAULT_FLOAT_STD,
) -> npt.NDArray[Any]:
    """Model-sized RGB pixels as the model's input tensor (batch of one, its layout and dtype).

    uint8 inputs take the pixels as they are (our model normalises inside its graph); int8
    inputs take them shifted by 128 (an int8 image model is a uint8 one with its zero point
    moved); float inputs take (pixel - mean) / std.
    """
    if spec.dtype is np.uint8:
        tensor: npt.NDArray[Any] = pixels
    elif spec.dtype is np.int8:
        tensor = (pixels.astype(np.int16) - 128).astype(np.int8)
    else:
        tensor = ((pixels.astype(np.float32) - float_mean) / float_std).astype(spec.dtype)
    if spec.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[None])


def _input_spec(detail: dict[str, Any], path: Path) -> InputSpec:
    shape = [int(n) for n in detail["shape"]]
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ClassifierError(
            f"model {path}: input shape {shape} is not an image; "
            "expected [1, H, W, 3] or [1, 3, H, W]"
        )
    layout = "NHWC" if shape[3] == 3 else "NCHW"
    height, width = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    dtype = np.dtype(detail["dtype"]).type
    if dtype not in (np.uint8, np.int8, np.float32, np.float16):
        raise ClassifierError(
            f"model {path}: input dtype {np.dtype(dtype).name}; "
            "expected uint8, int8, float32 or float16"
        )
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return InputSpec(height, width, layout, dtype, float(scale), int(zero_point))


def as_probabilities(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Class scores as probabilities: logits (outside 0-1) go through a softmax.

    Scores already within 0-1 are kept as they are, even when they do not sum to 1 exactly: a
    quantised softmax output (steps of 1/256) sums to a little less or more.
    """
    if scores.size and (float(scores.min()) < -1e-6 or float(scores.max()) > 1 + 1e-6):
        shifted = np.exp(scores - scores.max())
        probabilities: npt.NDArray[np.float32] = (shifted / shifted.sum()).astype(np.float32)
        return probabilities
    return scores


class Classifier:
    """A TFLite image classifier; safe to share between threads.

    >>> classifier = Classifier()  # the shipped EfficientNet-Lite0  # doctest: +SKIP
    >>> classifier.classify(jpeg_bytes).best.label  # doctest: +SKIP
    'espresso'
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        labels_path: str | Path | None = None,
        *,
        threads: int = 2,
        top_k: int = 5,
        float_mean: float = DEFAULT_FLOAT_MEAN,
        float_std: float = DEFAULT_FLOAT_STD,
        center_crop: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if threads < 1:
            raise ClassifierError(f"threads={threads}; expected 1 or more")
        if top_k < 1:
            raise ClassifierError(f"top_k={top_k}; expected 1 or more")
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise ClassifierError(
                f"model {self.model_path} does not exist; expected a .tflite file "
                "(set [classifier] model, or build it with models/build_model.py)"
            )
        labels_file = (
            Path(labels_path) if labels_path is not None else default_labels_path(self.model_path)
        )
        self.labels: tuple[str, ...] = read_labels(labels_file) if labels_file else ()
        self.threads = threads
        self.top_k = top_k
        self.float_mean = float_mean
        self.float_std = float_std
        self.center_crop = center_crop
        self.max_pixels = max_pixels
        self._lock = threading.Lock()

        started = time.perf_counter()
        interpreter_type = interpreter_class()
        try:
            self._interpreter = interpreter_type(
                model_path=str(self.model_path), num_threads=threads
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ClassifierError(
                f"model {self.model_path}: not a usable TFLite model ({exc})"
            ) from None
        self.load_ms = (time.perf_counter() - started) * 1000
        # The delegate has packed the weights into its own buffers: the model file's pages
        # (9 MB for the shipped one) are not read again, and most of the runtime library's
        # pages ran once, to set the interpreter up. Reclaimed now, only what `invoke` uses
        # comes back.
        model_file = str(self.model_path.resolve())
        page_out(lambda path: path == model_file or _is_runtime_library(path))

        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ClassifierError(
                f"model {self.model_path} has {len(inputs)} inputs; expected one image"
            )
        self._input_index = int(inputs[0]["index"])
        self.input = _input_spec(inputs[0], self.model_path)
        self._scores, self._embedding = self._pick_outputs(self._interpreter.get_output_details())
        self.num_classes = int(self._scores["shape"][-1])
        # Some models have a background class 0 that the labels file leaves out.
        self._label_offset = 1 if self.labels and self.num_classes == len(self.labels) + 1 else 0
        if self.labels and self.num_classes - self._label_offset != len(self.labels):
            raise ClassifierError(
                f"labels file {labels_file} has {len(self.labels)} names but model "
                f"{self.model_path.name} scores {self.num_classes} classes; expected as many"
            )

    @classmethod
    def from_config(cls, config: ClassifierConfig) -> Classifier:
        """The classifier `[classifier]` describes (model None: the shipped one)."""
        return cls(
            config.model,
            config.labels,
            threads=config.threads,
            top_k=config.top_k,
            center_crop=config.center_crop,
        )

    @property
    def model_name(self) -> str:
        """The model's file name (the ``source`` of the proposals it yields)."""
        return self.model_path.name

    @property
    def has_embedding(self) -> bool:
        """True when the model returns an embedding beside the class scores."""
        return self._embedding is not None

    def _pick_outputs(
        self, outputs: Sequence[dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Which output holds the class scores, and which (if any) the embedding."""
        vectors = [d for d in outputs if len(d["shape"]) == 2 and int(d["shape"][0]) == 1]
        if not vectors:
            raise ClassifierError(
                f"model {self.model_path}: no [1, N] output; expected class scores per image"
            )

        def named(word: str) -> dict[str, Any] | None:
            return next((d for d in vectors if word in str(d["name"]).lower()), None)

        wanted = {len(self.labels), len(self.labels) + 1} if self.labels else set()
        scores = (
            named("score")
            or next((d for d in vectors if int(d["shape"][-1]) in wanted), None)
            or vectors[0]
        )
        rest = [d for d in vectors if d is not scores]
        embedding = named("embedding") if named("embedding") is not scores else None
        return scores, embedding or (rest[0] if rest else None)

    def preprocess(self, image: ImageInput | Image.Image) -> npt.NDArray[Any]:
        """The input tensor for one image (bytes, RGB array or PIL image), batch of one."""
        from PIL import Image

        spec = self.input
        if (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.shape == (spec.height, spec.width, 3)
        ):
            # Already model-sized RGB (a camera ROI, a bench): nothing to crop or resize.
            return to_tensor(image, spec, self.float_mean, self.float_std)
        if isinstance(image, bytes | bytearray | memoryview):
            picture = decode_image(image, self.max_pixels)
        elif isinstance(image, Image.Image):
            picture = image.convert("RGB")
        else:
            picture = image_from_array(image)
        pixels = fit_square(picture, spec.width, spec.height, self.center_crop)
        return to_tensor(pixels, spec, self.float_mean, self.float_std)

    def _read(self, detail: dict[str, Any]) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = np.array(
            self._interpreter.get_tensor(detail["index"])[0], dtype=np.float32
        )
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if scale:
            values = ((values - zero_point) * scale).astype(np.float32)
        return values

    def invoke(
        self, tensor: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None, float]:
        """Run the interpreter on a prepared tensor: (scores, embedding or None, milliseconds)."""
        with self._lock:
            started = time.perf_counter()
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            elapsed = (time.perf_counter() - started) * 1000
            scores = self._read(self._scores)
            embedding = self._read(self._embedding) if self._embedding is not None else None
        return scores, embedding, elapsed

    def classify(self, image: ImageInput | Image.Image, top_k: int | None = None) -> Classification:
        """Top-k classes (and the embedding) for one image: encoded bytes or an RGB array."""
        scores, embedding, elapsed = self.invoke(self.preprocess(image))
        # Logits (a model without a softmax) become probabilities so scores are comparable.
        scores = as_probabilities(scores)
        k = min(top_k or self.top_k, scores.size - self._label_offset)
        classes = scores[self._label_offset :]
        best = np.argpartition(-classes, k - 1)[:k]  # O(n) pick, then sort only those k
        order = best[np.argsort(-classes[best], kind="stable")]
        top = tuple(
            ClassScore(self._label(int(i)), int(i), round(float(scores[i + self._label_offset]), 6))
            for i in order
        )
        if embedding is not None:
            embedding.setflags(write=False)
        return Classification(top, embedding, self.model_name, elapsed)

    async def classify_async(
        self, image: ImageInput | Image.Image, top_k: int | None = None
    ) -> Classification:
        """`classify` in a worker thread: the event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.classify, image, top_k)

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


class LazyClassifier:
    """A `Classifier` loaded on first use and released after ``idle_unload_s`` unused.

    The interpreter and its tensors are most of the daemon's memory (~65 MB for the shipped
    model) and a lane may never take a photo: nothing is loaded until the first image comes,
    and a classifier left idle is dropped again (0: kept once loaded). The model file is
    checked at once, so a missing model is still reported at start-up.
    """

    def __init__(self, config: ClassifierConfig, *, idle_unload_s: float | None = None) -> None:
        self.config = config
        self.model_path = config.model if config.model is not None else default_model_path()
        if not self.model_path.is_file():
            raise ClassifierError(
                f"model {self.model_path} does not exist; expected a .tflite file "
                "(set [classifier] model, or build it with models/build_model.py)"
            )
        self.idle_unload_s = config.idle_unload_s if idle_unload_s is None else idle_unload_s
        self._classifier: Classifier | None = None
        self._lock = threading.Lock()
        self._users = 0
        self._last_used = 0.0
        self._unload_timer: asyncio.TimerHandle | None = None
        self.loads = 0
        self.unloads = 0

    @property
    def model_name(self) -> str:
        return self.model_path.name

    @property
    def loaded(self) -> bool:
        return self._classifier is not None

    def get(self) -> Classifier:
        """The loaded classifier (loading it now if need be; call from a worker thread)."""
        with self._lock:
            if self._classifier is None:
                self._classifier = Classifier.from_config(self.config)
                self.loads += 1
                log.info(
                    "classifier %s loaded in %.0f ms", self.model_name, self._classifier.load_ms
                )
            return self._classifier

    def unload(self) -> bool:
        """Drop the interpreter (False when it is in use or not loaded)."""
        with self._lock:
            if self._classifier is None or self._users:
                return False
            self._classifier = None
            self.unloads += 1
        release_memory()
        log.info("classifier %s unloaded after %.0f s idle", self.model_name, self.idle_unload_s)
        return True

    def classify(self, image: ImageInput | Image.Image, top_k: int | None = None) -> Classification:
        with self._lock:
            self._users += 1
        try:
            return self.get().classify(image, top_k)
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()

    async def classify_async(
        self, image: ImageInput | Image.Image, top_k: int | None = None
    ) -> Classification:
        """`classify` in a worker thread; (re)arms the idle unload on the event loop."""
        try:
            return await asyncio.to_thread(self.classify, image, top_k)
        finally:
            self._arm_unload()

    def _arm_unload(self) -> None:
        if self.idle_unload_s <= 0:
            return
        if self._unload_timer is not None:
            self._unload_timer.cancel()
        loop = asyncio.get_running_loop()
        self._unload_timer = loop.call_later(self.idle_unload_s, self._idle_check)

    def _idle_check(self) -> None:
        self._unload_timer = None
        if time.monotonic() - self._last_used >= self.idle_unload_s * 0.99:
            # The interpreter's teardown frees tens of MB: off the event loop.
            asyncio.get_running_loop().run_in_executor(None, self.unload)
        else:
            self._arm_unload()

    def close(self) -> None:
        if self._unload_timer is not None:
            self._unload_timer.cancel()
            self._unload_timer = None


def release_memory() -> None:
    """Hand what an unloaded classifier leaves behind back to the system: freed heap
    (glibc's malloc_trim) and the TFLite runtime library's pages (it stays loaded, as Python
    never unloads a library, but its code is not run until the next load). Linux only; a
    no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return
    page_out(_is_runtime_library)


def _is_runtime_library(path: str) -> bool:
    return "/ai_edge_litert/" in path or "/tflite_runtime/" in path


MADV_PAGEOUT = 21
"""madvise(2) advice (Linux 5.4): reclaim these pages now; touched again, they are read back."""


def page_out(wanted: Callable[[str], bool]) -> int:
    """Reclaim the resident pages of this process's file mappings whose path `wanted` accepts.

    Only file mappings: their clean pages are dropped and read back from the file if they
    are used again, so nothing changes but the resident size. Returns the bytes advised
    (0 where /proc or madvise(MADV_PAGEOUT) is missing).
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/") or not wanted(fields[5]):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
            advised += end - start
    return advised
