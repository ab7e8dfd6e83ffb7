"""What checking a weights file's checksum costs: seconds per 100 MB of tensors, in one process.

    python examples/benchmarks/checksum.py [--rounds 7] [--megabytes 100] [--spec SPEC]

Writes a file of float32 tensors shaped as a ResNet's convolutions (``--megabytes`` of
them) with ctxseg's writer, then times, each ``--rounds`` times: reading the file back
(safetensors, which maps it), the checksum of its tensors (what every read verifies) and
``read_weights`` (read, verify, metadata). Prints the medians, per 100 MB. With
``--spec``, also the weights file of that spec's model loaded as ``predict`` loads it
(``load_model``: the checksum computed while the model is built), loaded with the check
patched out, and its checksum alone.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import unittest.mock
from collections.abc import Callable
from pathlib import Path

import torch

from ctxseg.files import checksum
from ctxseg.files.checksum import tensors_digest
from ctxseg.files.weights import FORMAT, read_safetensors, read_weights, save_weights, write_tensors
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.spec import load_spec

METADATA = {"ctxseg.format": FORMAT, "ctxseg.spec": "{}", "ctxseg.classes": '["a"]',
            "ctxseg.palette": "[[0, 0, 0]]", "ctxseg.plugins": "{}"}


def tensors(megabytes: float) -> dict[str, torch.Tensor]:
    """``megabytes`` of float32 tensors, 3x3 convolutions of 64 to 512 channels and their biases."""
    out, size, index = {}, 0, 0
    while size < megabytes * 1e6:
        channels = 64 << index % 4
        out[f"layer{index}.weight"] = torch.randn(channels, channels, 3, 3)
        out[f"layer{index}.bias"] = torch.randn(channels)
        size += 4 * (channels * channels * 9 + channels)
        index += 1
    return out


def median_seconds(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--spec", type=Path, help="also time loading the weights file of this spec's model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = tensors(args.megabytes)
    megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        write_tensors(path, state, METADATA)
        loaded = read_safetensors(path)[0]
        figures = {
            "read the file (safetensors)": median_seconds(lambda: read_safetensors(path), args.rounds),
            "checksum of its tensors (sha256)": median_seconds(lambda: tensors_digest(loaded), args.rounds),
            "read_weights (read + verify + metadata)": median_seconds(lambda: read_weights(path), args.rounds),
        }
    print(f"{megabytes:.1f} MB of tensors in {len(state)} tensors, median of {args.rounds} rounds, per 100 MB:")
    for what, seconds in figures.items():
        print(f"  {what:<42} {100 * seconds / megabytes:.3f} s")
    if args.spec:
        spec = load_spec(args.spec)
        classes = [str(i) for i in range(21)]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.safetensors"
            save_weights(path, SegmentationModel(spec.model, len(classes), pretrained=False), spec.to_dict(),
                         classes, [(0, 0, 0)] * len(classes))
            size = path.stat().st_size / 1e6
            loaded = read_safetensors(path)[0]
            digest = median_seconds(lambda: tensors_digest(loaded), args.rounds)
            load = median_seconds(lambda: load_model(path), args.rounds)
            with unittest.mock.patch.object(checksum, "verifying", lambda *_, **__: contextlib.nullcontext()):
                unchecked = median_seconds(lambda: load_model(path), args.rounds)
        print(f"{args.spec} ({size:.0f} MB): load_model {load:.3f} s, {unchecked:.3f} s with the check patched out; "
              f"its checksum alone takes {digest:.3f} s, computed while the model is built")


if __name__ == "__main__":
    main()
