"""Peak memory and time: FCRN's simulated 1/4 network against running the 1/4 network directly.

    python examples/benchmarks/fcrn_simulation.py [--depth 50] [--size 256] [--device cpu]

The 1/8 FCRN (ResNet, k = 5, d = 12 classifier, fixed batch-norm statistics) simulates
the 1/4 network by four passes shifted before ``backbone.layer2`` (ctxseg_fcrn.simulate);
the direct 1/4 network is the same weights with that stride removed and later
dilations doubled (``ctxseg_fcrn.simulate.finer``). Each mode runs in a fresh process and
reports:

- activations: bytes autograd saves for the backward pass, weights not counted
  (training; the largest pass, since each pass runs backward before the next starts);
- peak: the most memory the step holds above what the process held before it, after
  one warm-up step (resident set sampled every 0.2 ms on the CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU);
- seconds for the measured step (training: forward + backward; test: forward).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

MODES = ("train direct 1/4", "train simulated 1/4", "train 1/8", "test direct 1/4", "test simulated 1/4")
LAYER = "backbone.layer2"


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident(run: Callable[[], None]) -> int:
    """Peak resident memory while ``run()`` runs, above the resident memory before it."""
    before, peak, done = _resident(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _resident())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _resident()) - before


def measure(mode: str, depth: int, size: int, device: str) -> dict:
    import torch

    from ctxseg.model import SegmentationModel
    from ctxseg.spec import spec_from_dict
    from ctxseg_fcrn.simulate import SHIFTS, Simulated, finer, shifted

    torch.manual_seed(0)
    spec = spec_from_dict({"model": {
        "backbone": {"name": "base.resnet", "depth": depth, "output_stride": 8},
        "context": [{"name": "fcrn.classifier", "kernel": 5, "dilation": 12}],
        "batch_norm": "frozen_statistics"}})
    model = SegmentationModel(spec.model, 21, pretrained=False).to(device).train()
    images = torch.randn(1, 3, size, size, device=device)
    labels = torch.randint(0, 21, (1, size // 4, size // 4), device=device)
    if "direct" in mode:
        model = finer(model, LAYER, images[..., :64, :64]).train()
    criterion = torch.nn.CrossEntropyLoss()

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    peak_activations = 0

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def step():
        nonlocal peak_activations
        if mode.startswith("test"):
            with torch.no_grad():
                (Simulated(model, LAYER) if "simulated" in mode else model).scores(images)
            return
        for dy, dx in SHIFTS if "simulated" in mode else [(0, 0)]:
            saved.clear()
            context = shifted(model, LAYER, dy, dx) if "simulated" in mode else torch.enable_grad()
            with context, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                scores = model.scores(images)["out"]
            peak_activations = max(peak_activations, sum(saved.values()))
            target = labels[..., dy::2, dx::2] if scores.shape[-1] < labels.shape[-1] else labels
            criterion(scores, target[..., :scores.shape[-2], :scores.shape[-1]]).backward()

    step()  # warm-up: one-time allocations and kernel choices
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _peak_resident(step)
    seconds = time.perf_counter() - started
    return {"mode": mode, "activations": peak_activations, "peak": peak, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50, 101, 152))
    parser.add_argument("--size", type=int, default=256, help="square input side, a multiple of 8")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.depth, args.size, args.device)))
        return 0
    print(f"ResNet-{args.depth} FCRN (k = 5, d = 12), {args.size} x {args.size} input, batch 1, {args.device}\n")
    print("| mode | autograd activations (MiB) | peak memory (MiB) | seconds |")
    print("|---|---|---|---|")
    for mode in MODES:
        command = [sys.executable, __file__, "--one", mode, "--depth", str(args.depth), "--size", str(args.size),
                   "--device", args.device]
        # glibc's fixed mmap threshold returns freed tensors to the system, so the resident set follows them
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)
        activations = f"{row['activations'] / 2**20:.0f}" if row["activations"] else "-"
        print(f"| {mode} | {activations} | {row['peak'] / 2**20:.0f} | {row['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
