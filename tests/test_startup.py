"""The commands that label or describe images never import torchvision, whose import pulls in
``torch._dynamo`` (about 1 s on the reference machine, a third of a one-image predict);
training, which augments with torchvision's ``v2`` transforms, does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec

ROOT = Path(__file__).parents[1]
HEAVY = ("torchvision", "torch._dynamo")


def imported_by(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    """The exit code of ``ctxseg ARGS`` in a fresh interpreter, and which of HEAVY it imported."""
    code = (f"import json, sys; from ctxseg.cli import main; code = main({args!r}); "
            f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    exit_code, modules = json.loads(run.stdout.splitlines()[-1])
    return exit_code, modules


def test_inspect_imports_no_torchvision():
    assert imported_by(["inspect", "examples/fcn_resnet18.toml"], ROOT) == (0, [])


def test_predict_imports_no_torchvision(tmp_path, tiny_spec_file):
    spec = load_spec(tiny_spec_file)
    save_weights(tmp_path / "model.safetensors", SegmentationModel(spec.model, 2, pretrained=False), spec.to_dict(),
                 ["a", "b"], [(0, 0, 0), (255, 0, 0)])
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "a.png")
    args = ["predict", "model.safetensors", "a.png", "--out", "masks", "--quiet"]
    assert imported_by(args, tmp_path) == (0, [])
    assert (tmp_path / "masks" / "a.png").is_file()
