"""Training throughput of PSPNet-ResNet50-D8: eager fp32 against bf16, channels_last and torch.compile.

    python examples/benchmarks/train_throughput.py [--size 512] [--batch 8] [--peak-tflops 989]

One training step is what ``ctxseg train`` runs: forward with the auxiliary head,
cross-entropy on the main and auxiliary outputs (weight 0.4), backward, SGD update; the
model is examples/pspnet/ade20k_resnet50.toml's (dilated deep-stem ResNet-50, pyramid
pooling, 150 classes) with random weights, on random images and labels of ``--size``
pixels, ``--batch`` per device. Variants:

    fp32               eager, float32 (on CUDA, convolutions in TF32: PyTorch's default)
    bf16               eager, bf16 autocast
    bf16+cl            eager, bf16 autocast, channels_last
    bf16+compile       torch.compile (inductor), bf16 autocast
    bf16+cl+compile    all three

Each variant's model is compiled and warmed up first (compile time printed apart); then
``--rounds`` rounds run every variant ``--steps`` steps in turn (interleaved, so drift in
the machine's speed hits all alike) and each figure is the median over rounds. Peak
memory is CUDA's allocated peak during the variant's steps (on the CPU, where no
per-variant peak exists, the process's resident peak at the end). FLOPs per step come
from ``torch.utils.flop_counter`` on the fp32 step; model FLOPs utilisation (MFU) divides
the achieved FLOP/s by ``--peak-tflops``, the device's dense bf16 peak (H100/H200 SXM:
989), printed only when given.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec

SPEC = Path(__file__).parents[1] / "pspnet" / "ade20k_resnet50.toml"
VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+compile", "bf16+cl+compile")


class Trainer:
    """One variant: its own copy of the model and optimizer, and its settings."""

    def __init__(self, name: str, model: torch.nn.Module, aux_weights: dict[str, float], device: torch.device):
        self.name, self.device = name, device
        self.bf16, self.channels_last = "bf16" in name, "+cl" in name
        self.format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = copy.deepcopy(model).to(device, memory_format=self.format).train()
        self.aux_weights = aux_weights
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        self.forward = torch.compile(self.model) if "compile" in name else self.model

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.to(memory_format=self.format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.forward(images)
        losses = {name: torch.nn.functional.cross_entropy(scores.float(), labels) for name, scores in outputs.items()}
        loss = losses["out"] + sum(self.aux_weights[n] * v for n, v in losses.items() if n != "out")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed(self, images: torch.Tensor, labels: torch.Tensor, steps: int) -> tuple[float, float]:
        """Seconds per step, and the peak memory in MiB, over ``steps`` steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step(images, labels)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return (time.perf_counter() - start) / steps, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (512)")
    parser.add_argument("--batch", type=int, default=8, help="images per step (8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant per round (10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians (3)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="the device's dense bf16 peak in TFLOP/s, for MFU (H100/H200 SXM: 989)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = load_spec(SPEC)
    model = SegmentationModel(spec.model, 150, source=str(SPEC))
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 150, (args.batch, args.size, args.size), device=device)

    trainers = [Trainer(name, model, model.aux_weights, device) for name in args.variants]
    with FlopCounterMode(display=False) as counter:
        Trainer("fp32", model, model.aux_weights, device).step(images, labels)
    flops = counter.get_total_flops()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"PSPNet-ResNet50-D8, {args.size}x{args.size}, batch {args.batch}, on {where}; "
          f"{flops / 1e12:.2f} TFLOPs per step (fwd+bwd)")
    for trainer in trainers:  # compile and warm up
        seconds, _ = trainer.timed(images, labels, 2)
        print(f"  {trainer.name}: first two steps (compile, warm-up) {2 * seconds:.1f} s", flush=True)

    times: dict[str, list[float]] = {t.name: [] for t in trainers}
    peaks: dict[str, list[float]] = {t.name: [] for t in trainers}
    for _ in range(args.rounds):
        for trainer in trainers:
            seconds, peak = trainer.timed(images, labels, args.steps)
            times[trainer.name].append(seconds)
            peaks[trainer.name].append(peak)

    base = statistics.median(times[args.variants[0]])
    print()
    print(f"| variant | step (ms) | images/s | vs {args.variants[0]} | peak memory (MiB) |"
          + (" MFU |" if args.peak_tflops else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.peak_tflops else ""))
    for name in args.variants:
        step = statistics.median(times[name])
        mfu = f" {100 * flops / step / (args.peak_tflops * 1e12):.1f}% |" if args.peak_tflops else ""
        print(f"| {name} | {1000 * step:.0f} | {args.batch / step:.3g} | {base / step:.2f}x | "
              f"{max(peaks[name]):.0f} |{mfu}")


if __name__ == "__main__":
    main()
