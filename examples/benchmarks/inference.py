"""Inference speed, memory and the accuracy cost of the fast path.

    python examples/benchmarks/inference.py speed [--size 512] [--repeats 5] [--device cuda]
    python examples/benchmarks/inference.py memory [--size 2048 1024]
    python examples/benchmarks/inference.py accuracy runs/fcn_resnet18/model.safetensors

speed: per image, FCN-ResNet50 (output stride 8, 21 classes, random weights) as
torchvision's ``fcn_resnet50`` run the way a user would write it (eager, fp32, no
grad) against the same architecture in ctxseg (``base.resnet`` depth 50 + ``base.fcn``:
the same 32,957,013 parameters) on its default fast path (``torch.inference_mode``,
channels_last, precision "auto"), and forced to bf16; then what sliding windows and
multi-scale + flip testing cost on top. All variants run in one process, interleaved,
and each figure is the median of ``--repeats`` rounds (this machine's absolute times
drift; the ratios hold). ``--device`` (default: the GPU if there is one) runs both
models there; an image's time ends when its labels are back on the CPU.

memory: ``ctxseg predict`` of one 2048 x 1024 image (Cityscapes' size) with the
PSPNet-ResNet50 Cityscapes spec (random weights), sliding 713 px windows against the
whole image at once; each in a fresh process, its peak resident memory.

accuracy: mIoU of a trained model evaluated in fp32 and in bf16.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
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
    for run in variants.values():  # warm-up: one-off allocations and kernel selection
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["torchvision fcn_resnet50, eager fp32"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"FCN-ResNet50, one {size} x {size} image, median of {repeats} interleaved rounds, on {where}")
    print("| variant | seconds per image | vs torchvision eager fp32 |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {base / median:.2f}x |")


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


def accuracy(weights: Path) -> None:
    import ctxseg

    print(f"{weights}: validation mIoU by precision")
    print("| precision | mIoU | pixel accuracy |")
    print("|---|---|---|")
    for precision in ("fp32", "bf16"):
        model = ctxseg.load(weights, test={"precision": precision})
        dataset = model.spec.data.dataset
        metrics, _ = ctxseg.evaluate(model, dataset.load()(dataset.config, "val"), progress=False)
        print(f"| {precision} | {100 * metrics['mean_iou']:.2f} | {100 * metrics['pixel_accuracy']:.2f} |")


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
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.size, args.repeats, args.device)
    elif args.what == "memory":
        memory(*args.size)
    else:
        accuracy(args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
