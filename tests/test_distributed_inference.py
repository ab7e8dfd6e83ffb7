"""``torchrun --nproc-per-node 2 -m ctxseg predict|eval`` gives what one process gives (issue 23, point 6).

Both commands run as users type them, two CPU processes over gloo, against the same
command in this process. The outputs are compared for equality, not within a tolerance:
predict labels each image alone, and eval cuts the split between batches, so every image
goes through the same forward pass in both runs (a batch of 4 images and 4 passes of one
differ by 2e-7 in a tiny model's probabilities on a CPU). Precision is pinned to fp32:
"auto" times the modes on each machine and could choose differently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ctxseg.cli import main
from ctxseg.data.scene_art import CLASSES, PALETTE
from ctxseg.engine import distributed
from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_spec_text):
    """An untrained tiny model for the context scenes' classes: its labels vary from pixel to pixel."""
    folder = tmp_path_factory.mktemp("distributed-inference")
    (folder / "tiny.toml").write_text(tiny_spec_text)
    spec = load_spec(folder / "tiny.toml")
    torch.manual_seed(0)
    path = folder / "model.safetensors"
    save_weights(path, SegmentationModel(spec.model, len(CLASSES), pretrained=False), spec.to_dict(), list(CLASSES),
                 list(PALETTE))
    return path


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "ctxseg", *args], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _ours(stderr: str) -> list[str]:
    """ctxseg's lines of stderr, without torchrun's report of a failed process."""
    return [line for line in stderr.splitlines() if line.startswith("ctxseg:")]


def test_two_processes_predict_what_one_does(tmp_path, weights, capsys):
    """Byte-identical files; the unreadable image, in the second process's share, is reported
    once, by the first process, with the count and exit status one process gives."""
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (40, 56)), ("b", (48, 48)), ("d", (33, 20)), ("e", (48, 48))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / f"{name}.png")
    (images / "c.png").write_bytes(b"not a PNG")  # the third of five: the second process's share is c, d, e
    options = [str(images), "--precision", "fp32", "--quiet"]

    assert main(["predict", str(weights), *options, "--out", str(tmp_path / "one")]) == 1
    one = capsys.readouterr()
    two = _torchrun("predict", str(weights), *options, "--out", str(tmp_path / "two"))

    assert two.returncode == 1, two.stderr
    assert two.stdout == one.out.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    assert _ours(two.stderr) == one.err.splitlines() == [
        f"ctxseg: error: {images / 'c.png'}: not a readable image (cannot identify image file "
        f"'{images / 'c.png'}')",
        "ctxseg: 1 of 5 images failed (reported above); the others were written"]
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert len(files) == 8
    for name in files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_two_processes_evaluate_what_one_does(tmp_path, weights, scenes_root, capsys):
    """The same metrics file, confusion matrix included, and one table: 3 validation images in
    batches of 2 are 2 batches, one for each process."""
    options = ["--data-root", str(scenes_root), "--precision", "fp32", "--batch", "2", "--quiet"]

    assert main(["eval", str(weights), *options, "--out", str(tmp_path / "one.json")]) == 0
    one = capsys.readouterr()
    two = _torchrun("eval", str(weights), *options, "--out", str(tmp_path / "two.json"))

    assert two.returncode == 0, two.stderr
    assert two.stdout == one.out and one.out.count("mean iou") == 1
    assert _ours(two.stderr) == one.err.splitlines()
    metrics = json.loads((tmp_path / "one.json").read_text())
    assert sum(map(sum, metrics["confusion"])) == 3 * 48 * 48
    assert (tmp_path / "two.json").read_text() == (tmp_path / "one.json").read_text()


@pytest.mark.parametrize(("size", "unit", "ranks"), [(3, 2, 2), (10, 4, 3), (2, 4, 3), (7, 1, 4), (0, 4, 2)])
def test_shards_are_cut_between_batches(monkeypatch, size, unit, ranks):
    """Every item in one shard, in order; each shard starts a batch; the shards' batch counts differ by at most one."""
    monkeypatch.setattr(distributed, "world_size", lambda: ranks)
    shards = []
    for me in range(ranks):
        monkeypatch.setattr(distributed, "rank", lambda me=me: me)
        shards.append(distributed.shard(size, unit))
    assert [i for shard in shards for i in shard] == list(range(size))
    assert all(shard.start % unit == 0 for shard in shards if shard)
    batches = [-(-len(shard) // unit) for shard in shards]
    assert max(batches) - min(batches) <= 1
