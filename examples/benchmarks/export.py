"""ONNX export of the example architectures: dynamic or fixed sizes, onnxruntime against PyTorch.

    python examples/benchmarks/export.py [SPEC ...]

For each spec (default: one of each architecture in examples/), a weights file with
random weights (``torch.manual_seed(0)``, 3 classes), then ``ctxseg export --verify`` on
it, timed; one Markdown row per spec: the input shape exported, the two checks' largest
score difference and argmax agreement, the wall time of export and verification.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).parents[1]
SPECS = ["fcn_resnet18.toml", "parsenet/context_scenes_resnet18.toml", "pspnet/context_scenes_resnet18.toml",
         "dilation/context_scenes_basic.toml", "gcn/context_scenes_k15_br.toml", "fcrn/context_scenes_ce.toml",
         "fcrn/context_scenes_ce_simulated.toml", "pspnet/table1_b1236_max.toml", "dilation/frontend_basic.toml",
         "parsenet/parsenet.toml"]


def main(specs: list[str]) -> None:
    import torch

    from ctxseg.engine.export import export_onnx, verify_onnx
    from ctxseg.files.weights import save_weights
    from ctxseg.model import SegmentationModel
    from ctxseg.spec import load_spec

    print("| spec | input | max abs difference | argmax agreement | seconds |\n|---|---|---|---|---|")
    for name in specs:
        path = Path(name) if Path(name).exists() else EXAMPLES / name
        spec = load_spec(path)
        torch.manual_seed(0)
        model = SegmentationModel(spec.model, 3, pretrained=False)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "model.safetensors"
            save_weights(weights, model, spec.to_dict(), ["a", "b", "c"], [(0, 0, 0), (1, 1, 1), (2, 2, 2)])
            started = time.perf_counter()
            exported, inference = export_onnx(weights, Path(tmp) / "model.onnx")
            checks = list(verify_onnx(exported, inference))
            seconds = time.perf_counter() - started
        shape = " x ".join(map(str, exported.shape)) + ("" if exported.dynamic else " (fixed)")
        print(f"| `{name}` | {shape} | {' / '.join(f'{c.max_abs_diff:.1e}' for c in checks)} | "
              f"{' / '.join(f'{100 * c.argmax_agreement:.1f} %' for c in checks)} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or SPECS)
