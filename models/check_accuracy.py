"""Accuracy check of the shipped classifier: does it agree with the float32 model?

Reproduce the model card's figures (needs only numpy, Pillow and ai-edge-litert, so it runs in
the daemon's own environment):

    python models/check_accuracy.py

compares models/efficientnet_lite0.tflite with the float32 model's answers recorded by the
build (models/accuracy_reference.json) on the photos in tests/data/images, each under the
same crops, flips and rotations. With both models at hand (the build environment):

    python models/check_accuracy.py --reference-model float32.tflite --skimage

runs both live on the larger scikit-image set. Exit status 0 when top-1 agreement and top-5
overlap meet the thresholds, 1 when they do not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_MODEL = HERE / "efficientnet_lite0.tflite"
DEFAULT_REFERENCE = HERE / "accuracy_reference.json"
SHIPPED_PHOTOS = REPO / "tests" / "data" / "images"
INPUT_SIZE = 224

MIN_TOP1_AGREEMENT = 0.95
MIN_TOP5_OVERLAP = 0.85

# scikit-image's bundled photographs of real scenes (greyscale ones are made RGB).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "clock_motion.png",
    "grass.png",
    "gravel.png",
    "brick.png",
)


@dataclass(frozen=True, slots=True)
class Agreement:
    """How well a candidate model's top-k matches a reference model's on the same images."""

    images: int
    """Number of images compared."""
    top1_agreement: float
    """Share of images where both models' top-1 class is the same (0-1)."""
    top5_overlap: float
    """Mean share of the reference's top-5 classes that the candidate's top-5 also holds (0-1)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "top1_agreement": round(self.top1_agreement, 4),
            "top5_overlap": round(self.top5_overlap, 4),
        }

    def __str__(self) -> str:
        return (
            f"top-1 agreement {self.top1_agreement:.1%}, top-5 overlap {self.top5_overlap:.1%} "
            f"on {self.images} images"
        )


def _square(
    image: Image.Image, fraction: float = 1.0, dx: float = 0.0, dy: float = 0.0
) -> Image.Image:
    """The centred square of side `fraction` x the short side, shifted by dx, dy of the slack."""
    width, height = image.size
    side = round(min(width, height) * fraction)
    left = (width - side) / 2 * (1 + dx)
    top = (height - side) / 2 * (1 + dy)
    return image.crop((round(left), round(top), round(left) + side, round(top) + side))


def _to_input(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), np.uint8)


# Deterministic variants: different framings of the same photo, as a lane camera sees them.
_VARIANTS: tuple[tuple[str, float, float, float, bool, float], ...] = (
    # name, crop fraction, dx, dy, mirror, rotation degrees
    ("full", 1.0, 0.0, 0.0, False, 0.0),
    ("crop90", 0.9, 0.0, 0.0, False, 0.0),
    ("crop75", 0.75, 0.0, 0.0, False, 0.0),
    ("crop75-left", 0.75, -1.0, 0.0, False, 0.0),
    ("crop75-right", 0.75, 1.0, 0.0, False, 0.0),
    ("mirror", 1.0, 0.0, 0.0, True, 0.0),
    ("rot+8", 0.85, 0.0, 0.0, False, 8.0),
    ("rot-8", 0.85, 0.0, 0.0, True, -8.0),
)


def variants(name: str, image: Image.Image) -> list[tuple[str, np.ndarray]]:
    """The evaluation framings of one photo as (id, uint8 224x224x3) pairs."""
    out = []
    for variant, fraction, dx, dy, mirror, degrees in _VARIANTS:
        framed = image.rotate(degrees, resample=Image.Resampling.BILINEAR) if degrees else image
        framed = _square(framed, fraction, dx, dy)
        if mirror:
            framed = framed.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append((f"{name}/{variant}", _to_input(framed)))
    return out


def evaluation_set(photos: Iterable[tuple[str, Image.Image]]) -> list[tuple[str, np.ndarray]]:
    """Every photo under every framing of _VARIANTS."""
    return [pair for name, image in photos for pair in variants(name, image)]


def calibration_set(
    photos: Iterable[tuple[str, Image.Image]], per_photo: int = 12
) -> list[np.ndarray]:
    """Random framings (fixed seed) for quantisation calibration, apart from the evaluation ones."""
    rng = np.random.default_rng(20261123)
    out = []
    for _, image in photos:
        for _ in range(per_photo):
            framed = _square(
                image,
                float(rng.uniform(0.5, 1.0)),
                float(rng.uniform(-1, 1)),
                float(rng.uniform(-1, 1)),
            )
            out.append(_to_input(framed))
    return out


def load_photo(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def shipped_photos(directory: Path = SHIPPED_PHOTOS) -> list[tuple[str, Image.Image]]:
    """The real photos the repository ships for tests (tests/data/images)."""
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [(p.stem, load_photo(p)) for p in files]


def skimage_photos() -> list[tuple[str, Image.Image]]:
    """scikit-image's bundled photographs, read from its data folder without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed here; pip install scikit-image")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [
        (name.split(".")[0], load_photo(data / name))
        for name in SKIMAGE_PHOTOS
        if (data / name).is_file()
    ]


class _Model:
    """A bare TFLite interpreter that returns the class-probability output as float32."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # the Pi may only have tflite-runtime
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        # The class output has one entry per ImageNet class; the other is the embedding.
        self.output = next(
            d for d in self.interpreter.get_output_details() if int(d["shape"][-1]) == 1000
        )

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        x = image[None]
        if self.input["dtype"] != np.uint8:
            scale, zero = self.input["quantization"]
            if self.input["dtype"] in (np.int8, np.int16) and scale:
                x = np.round(x.astype(np.float32) / scale + zero).astype(self.input["dtype"])
            else:
                x = x.astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero = self.output["quantization"]
        if scale:
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)


def top5_all(model_path: Path, images: Sequence[np.ndarray]) -> list[list[int]]:
    """Top-5 class indices, best first, for each image."""
    model = _Model(model_path)
    return [
        [int(i) for i in np.argsort(-model.probabilities(image), kind="stable")[:5]]
        for image in images
    ]


def compare(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> Agreement:
    """Top-1 agreement and mean top-5 overlap of `candidate` against `reference`."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"cannot compare {len(reference)} reference answers with {len(candidate)}")
    top1 = sum(r[0] == c[0] for r, c in zip(reference, candidate, strict=True))
    overlap = sum(
        len(set(r[:5]) & set(c[:5])) / 5 for r, c in zip(reference, candidate, strict=True)
    )
    return Agreement(len(reference), top1 / len(reference), overlap / len(reference))


def record_reference(model_path: Path, photos: Iterable[tuple[str, Image.Image]]) -> dict[str, Any]:
    """The reference model's top-5 on every framing of `photos`, keyed by image id."""
    images = evaluation_set(photos)
    tops = top5_all(model_path, [image for _, image in images])
    return {
        "model": model_path.name,
        "variants": [v[0] for v in _VARIANTS],
        "top5": {image_id: top for (image_id, _), top in zip(images, tops, strict=True)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_accuracy.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the model to check")
    parser.add_argument(
        "--reference-model", type=Path, help="a float32 model to run live instead of the recording"
    )
    parser.add_argument(
        "--reference", type=Path, default=DEFAULT_REFERENCE, help="recorded float32 answers"
    )
    parser.add_argument("--images", type=Path, default=SHIPPED_PHOTOS, help="folder of photos")
    parser.add_argument(
        "--skimage", action="store_true", help="use scikit-image's photos (needs --reference-model)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    for path in (args.model, args.reference_model):
        if path is not None and not path.is_file():
            print(f"model {path} does not exist; expected a .tflite file", file=sys.stderr)
            return 2
    if args.skimage and args.reference_model is None:
        print(
            "--skimage needs --reference-model (no recording covers those photos)", file=sys.stderr
        )
        return 2

    photos = skimage_photos() if args.skimage else shipped_photos(args.images)
    images = evaluation_set(photos)
    candidate = top5_all(args.model, [image for _, image in images])
    if args.reference_model is not None:
        reference = top5_all(args.reference_model, [image for _, image in images])
        reference_name = args.reference_model.name
    else:
        recorded = json.loads(args.reference.read_text(encoding="utf-8"))
        missing = [image_id for image_id, _ in images if image_id not in recorded["top5"]]
        if missing:
            print(
                f"{args.reference} has no answer for {missing[:3]}; re-run build_model.py",
                file=sys.stderr,
            )
            return 2
        reference = [recorded["top5"][image_id] for image_id, _ in images]
        reference_name = f"{recorded['model']} (recorded in {args.reference.name})"

    agreement = compare(reference, candidate)
    passed = (
        agreement.top1_agreement >= MIN_TOP1_AGREEMENT
        and agreement.top5_overlap >= MIN_TOP5_OVERLAP
    )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model.name,
                    "reference": reference_name,
                    **agreement.as_dict(),
                    "passed": passed,
                }
            )
        )
    else:
        print(f"model      {args.model}")
        print(f"reference  {reference_name}")
        print(f"photos     {len(photos)} x {len(_VARIANTS)} framings = {agreement.images} images")
        print(f"top-1      {agreement.top1_agreement:.1%} agree (need >= {MIN_TOP1_AGREEMENT:.0%})")
        print(f"top-5      {agreement.top5_overlap:.1%} overlap (need >= {MIN_TOP5_OVERLAP:.0%})")
        print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
