"""Inference speed, memory and the accuracy cost of the fast path.

    python examples/benchmarks/inference.py speed [--size 512] [--repeats 5] [--device cuda]
    python examples/benchmarks/inference.py memory [--size 2048 1024]
    python examples/benchmarks/inference.py accuracy runs/fcn_resnet18/model.safetensors [--int8 FILE]

speed: per image, FCN-ResNet50 (output stride 8, 21 classes, random weights) as
torchvision's ``fcn_resnet50`` run the way a user would write it (eager, fp32, no
grad) against the same architecture in ctxseg (``base.resnet`` depth 50 + ``base.fcn``:
the same 32,957,013 parameters) on its default fast path (``torch.inference_mode``,
channels_last, precision "auto"), and forced to bf16; then what sliding windows and
multi-scale + flip testing cost on top. On the CPU also ONNX Runtime (the model saved as
a weights file and exported into a cache folder of the run's own, so that the export is
timed and "auto" measures now): fp32, the int8 model of ``ctxseg export --quantize int8``
(calibrated on 16 images of the default spec's training data), and what
``backend = "auto"`` chooses. All variants run in one process, interleaved, and each
figure is the median of ``--repeats`` rounds (this machine's absolute times drift; the
ratios hold). ``--device`` (default: the GPU if there is one) runs both models there; an
image's time ends when its labels are back on the CPU.

memory: ``ctxseg predict`` of one 2048 x 1024 image (Cityscapes' size) with the
PSPNet-ResNet50 Cityscapes spec (random weights), sliding 713 px windows against the
whole image at once; each in a fresh process, its peak resident memory.

accuracy: a trained model's validation mIoU in torch fp32 and bf16, on onnxruntime fp32 and,
with ``--int8``, its int8 model; and each one's seconds per ``--size`` x ``--size`` image,
interleaved in one process as above.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

EXAMPLES = Path(__file__).parents[1]


def speed(size: int, repeats: int, device: str | None) -> None:
    import torch
    import torchvision

    from ctxseg.engine.inference import Inference
    from ctxseg.model import SegmentationModel
    from ctxseg.spec import spec_from_dict

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    reference = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                             num_classes=21, aux_loss=False).eval().to(device)
    spec = spec_from_dict({"model": {"backbone": {"name": "base.resnet", "depth": 50, "output_stride": 8},
                                     "context": [{"name": "base.fcn"}]},
                           "run": {"device": device.type}})
    model = SegmentationModel(spec.model, 21, pretrained=False).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    normalized = ((image.float() / 255 - 0.45) / 0.225).to(device)

    def torchvision_eager() -> None:
        with torch.no_grad():
            reference(normalized[None])["out"].argmax(1).cpu()

    def inference(**test) -> Inference:
        """A set-up with its own copy of the model: each keeps the memory format it chose."""
        return Inference(copy.deepcopy(model), spec_from_dict({**spec.to_dict(), "test": test}))

    fast, bf16 = inference(), inference(precision="bf16")
    fast.prepare((size, size))
    slide = inference(mode="slide", crop=size // 2 + size // 8)
    multi = inference(scales=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75], flip=True)
    variants = {
        "torchvision fcn_resnet50, eager fp32": torchvision_eager,
        f"ctxseg, default fast path ({fast.choice.describe(device.type)})": lambda: fast.predict(image),
        "ctxseg, bf16 forced": lambda: bf16.predict(image),
        f"ctxseg, slide ({slide.test.crop} px windows, 2/3 overlap)": lambda: slide.predict(image),
        "ctxseg, 6 scales + flip": lambda: multi.predict(image),
    }
    with tempfile.TemporaryDirectory() as folder:
        if device.type == "cpu":  # ONNX Runtime's CPU provider
            variants.update(_onnxruntime(model, spec, image, Path(folder)))
        seconds = _interleaved(variants, repeats)
    base = seconds["torchvision fcn_resnet50, eager fp32"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"FCN-ResNet50, one {size} x {size} image, median of {repeats} interleaved rounds, on {where}")
    print("| variant | seconds per image | vs torchvision eager fp32 |")
    print("|---|---|---|")
    for name, median in seconds.items():
        print(f"| {name} | {median:.3f} | {base / median:.2f}x |")


def _onnxruntime(model, spec, image, folder: Path) -> dict[str, Callable[[], object]]:
    """Variants on ONNX Runtime: ``model`` saved as a weights file in ``folder``, exported (timed)
    into a cache folder of its own there, quantized to int8 (timed), and as ``backend = "auto"``
    chooses, measured now."""
    import ctxseg
    from ctxseg.engine import ort
    from ctxseg.engine.quantize import quantize_int8
    from ctxseg.files.weights import save_weights

    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    weights, int8 = folder / "fcn_resnet50.safetensors", folder / "fcn_resnet50.int8.onnx"
    save_weights(weights, model, spec.to_dict(), [f"class {i}" for i in range(21)], [(0, 0, 0)] * 21)
    started = time.perf_counter()
    ort.cached_export(weights)
    exported = time.perf_counter()
    quantize_int8(weights, int8, spec.data.dataset.load()(spec.data.dataset.config, "train"), 16, progress=False)
    print(f"onnxruntime: exported in {exported - started:.0f} s, quantized to int8 in "
          f"{time.perf_counter() - exported:.0f} s (16 calibration images)", file=sys.stderr)
    in_fp32, in_int8 = ctxseg.load(weights, backend="onnxruntime"), ctxseg.load(int8)
    auto = ctxseg.load(weights, backend="auto")
    auto.prepare(image.shape[-2:])
    return {
        "ctxseg, onnxruntime fp32": lambda: in_fp32.predict(image),
        "ctxseg, onnxruntime int8 (QDQ, 16 calibration images)": lambda: in_int8.predict(image),
        f"ctxseg, backend auto ({auto.choice.describe('cpu')})": lambda: auto.predict(image),
    }


def _interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The median seconds of each variant over ``repeats`` rounds that run every variant once,
    in turn (so drift in the machine's speed hits all alike), after one warm-up round
    (one-off allocations, kernel selection)."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def memory(width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    from ctxseg.files.weights import save_weights
    from ctxseg.model import SegmentationModel
    from ctxseg.spec import load_spec

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        spec_path = EXAMPLES / "pspnet" / "cityscapes_resnet50.toml"
        spec = load_spec(spec_path)
        classes = spec.data.dataset.load().class_names(spec.data.dataset.config)
        model = SegmentationModel(spec.model, len(classes), pretrained=False)
        save_weights(folder / "pspnet.safetensors", model, spec.to_dict(), classes, [(0, 0, 0)] * len(classes))
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / "city.png")
        print(f"ctxseg predict, PSPNet-ResNet50 ({spec_path.name}, random weights), one {width} x {height} image, "
              "fresh process each, precision auto")
        print("| mode | peak RSS (MiB) | seconds |")
        print("|---|---|---|")
        for label, options in [("slide, 713 px windows, batch 2, one scale", ["--scales", "1.0", "--no-flip"]),
                               ("whole image at once", ["--mode", "whole", "--scales", "1.0", "--no-flip"])]:
            code = ("import resource, sys, time; from ctxseg.cli import main; t = time.perf_counter(); "
                    "code = main(sys.argv[1:]); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
                    "time.perf_counter() - t, code)")
            args = ["predict", str(folder / "pspnet.safetensors"), str(folder / "city.png"), "--out",
                    str(folder / "out"), "--quiet", *options]
            result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
            peak_kib, seconds, code = result.stdout.split()[-3:]
            print(f"| {label} | {int(peak_kib) / 1024:.0f} | {float(seconds):.1f} |")


def accuracy(weights: Path, int8: Path | None, size: int, repeats: int) -> None:
    import torch

    import ctxseg

    runs = {"torch fp32": ctxseg.load(weights, test={"precision": "fp32"}),
            "torch bf16": ctxseg.load(weights, test={"precision": "bf16"}),
            "onnxruntime fp32": ctxseg.load(weights, backend="onnxruntime")}
    if int8 is not None:
        runs["onnxruntime int8"] = ctxseg.load(int8)
    dataset = runs["torch fp32"].spec.data.dataset
    val = dataset.load()(dataset.config, "val")
    metrics = {name: ctxseg.evaluate(model, val, progress=False)[0] for name, model in runs.items()}
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    seconds = _interleaved({name: lambda model=model: model.predict(image) for name, model in runs.items()}, repeats)
    print(f"{weights}: validation split ({len(val)} images); seconds per {size} x {size} image, median of {repeats} "
          f"interleaved rounds, CPU, {torch.get_num_threads()} threads")
    print(f"| run | mIoU | pixel accuracy | seconds per {size} x {size} image | vs torch fp32 |")
    print("|---|---|---|---|---|")
    for name, values in metrics.items():
        print(f"| {name} | {100 * values['mean_iou']:.2f} | {100 * values['pixel_accuracy']:.2f} | "
              f"{seconds[name]:.3f} | {seconds['torch fp32'] / seconds[name]:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--size", type=int, default=512)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--device", choices=["cpu", "cuda"], help="where both models run (default: cuda if available)")
    s = sub.add_parser("memory")
    s.add_argument("--size", type=int, nargs=2, default=[2048, 1024], metavar=("W", "H"))
    s = sub.add_parser("accuracy")
    s.add_argument("weights", type=Path)
    s.add_argument("--int8", type=Path, metavar="FILE", help="the weights' int8 model (ctxseg export --quantize int8)")
    s.add_argument("--size", type=int, default=512)
    s.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.size, args.repeats, args.device)
    elif args.what == "memory":
        memory(*args.size)
    else:
        accuracy(args.weights, args.int8, args.size, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
