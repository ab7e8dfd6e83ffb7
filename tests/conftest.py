"""Shared fixtures: a tiny spec on a tiny generated context-scenes dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_SPEC = """
[model.backbone]
name = "base.resnet"
depth = 18
output_stride = 8

[[model.context]]
name = "base.fcn"
channels = 16

[[model.aux]]
name = "base.fcn"
input = "c4"
weight = 0.4
channels = 8

[data]
batch_size = 2

[data.dataset]
name = "base.context_scenes"
root = "{root}"
image_size = 48
train_size = 6
val_size = 3

[run]
steps = 4
eval_every = 2
device = "cpu"
"""


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """Keep generated datasets and measured speeds (precision "auto") out of the user's cache directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXSEG_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory):
    return tmp_path_factory.mktemp("scenes") / "context-scenes"


@pytest.fixture(scope="session")
def tiny_spec_text(scenes_root):
    return TINY_SPEC.format(root=scenes_root)


@pytest.fixture
def tiny_spec_file(tmp_path, tiny_spec_text):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_spec_text)
    return path


TINY_PLUGIN = Path(__file__).parent / "fixtures" / "tiny_plugin"
"""A plugin whose backbone is one convolution, for weights files of a few kilobytes; on a
subprocess's ``PYTHONPATH`` it is discovered like an installed one."""


@pytest.fixture
def tiny_plugin(monkeypatch):
    """The tiny plugin installed in this process (found by the registry it rebuilds), and the environment
    that installs it in a subprocess."""
    from ctxseg.registry import reset_default_registry

    monkeypatch.syspath_prepend(str(TINY_PLUGIN))
    reset_default_registry()
    paths = [str(TINY_PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    yield {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    reset_default_registry()


@pytest.fixture
def tiny_weights(tmp_path, tiny_plugin):
    """An untrained weights file of the tiny plugin's backbone and an FCN head, 3 classes: 5 KB."""
    from ctxseg.files.weights import save_weights
    from ctxseg.model import SegmentationModel
    from ctxseg.spec import spec_from_dict

    spec = spec_from_dict({"model": {"backbone": {"name": "tiny.backbone"},
                                     "context": [{"name": "base.fcn", "channels": 4}]}})
    path = tmp_path / "tiny.safetensors"
    save_weights(path, SegmentationModel(spec.model, 3).eval(), spec.to_dict(), ["a", "b", "c"],
                 [(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    return path


def pytest_configure(config):
    """One torch thread per test process: `pytest -n 2` already uses both cores. The portability
    run (.ci/portability) sets ``CTXSEG_TEST_THREADS`` to see the sums other thread counts make."""
    import torch

    torch.set_num_threads(int(os.environ.get("CTXSEG_TEST_THREADS", "1")))


def _scored(weights):
    """The fp32 inference set-up of a weights file, its val split, and the model's scores
    ``(N, K, H, W)`` of the split's images, in one batch."""
    import torch

    from ctxseg.engine.inference import Inference

    inference, _ = Inference.from_weights(weights, test={"precision": "fp32"})
    dataset = inference.spec.data.dataset
    val = dataset.load()(dataset.config, "val")
    with torch.inference_mode():
        images = torch.stack([inference.transform(val[i][0], None)[0] for i in range(len(val))])
        return inference, val, inference.module(images)["out"]


def _undetermined(one, two) -> int:
    """Pixels of the val split that the models of weights files ``one`` and ``two`` may label
    differently in evaluations run in another batch or memory format than here: where the first
    model's two best fp32 scores are within twice the largest distance between such evaluations,
    the two models' measured difference plus the fp32 summation bound of another order."""
    from ctxseg.testing.tolerance import determined, summation_bound

    inference, _, first = _scored(one)
    second = _scored(two)[2]
    bound = (first - second).abs().max().item() + summation_bound(inference.model, first.abs().max().item())
    return int((~determined(first, bound)).sum())


@pytest.fixture(scope="session")
def undetermined():
    """``undetermined(weights_a, weights_b)``: how many val pixels rounding alone may label differently
    (one weights file twice: evaluated in another batch or memory format). Two evaluations' confusion
    matrices may differ by twice that many counts (each such pixel moves from one cell to another)."""
    return _undetermined


def _counted_confusion(weights):
    """The confusion matrix of a weights file's model on its val split, counted without ctxseg's
    evaluation: each labelled pixel's label and the argmax of its scores, tallied by numpy."""
    import numpy as np
    import torch

    _, val, scores = _scored(weights)
    labels = torch.stack([val[i][1] for i in range(len(val))]).numpy().ravel()
    predicted = scores.argmax(1).numpy().ravel()
    kept = labels != val.ignore_index
    counts = np.zeros((len(val.classes), len(val.classes)), dtype=np.int64)
    np.add.at(counts, (labels[kept], predicted[kept]), 1)
    return torch.from_numpy(counts)


@pytest.fixture(scope="session")
def counted_confusion():
    """``counted_confusion(weights)``: an oracle for evaluate(), the val split's confusion matrix
    (rows: labels, columns: predictions) counted directly from the model's scores, in one batch in
    fp32; an evaluation's may differ from it as two evaluations' may (``undetermined``)."""
    return _counted_confusion


@pytest.fixture
def kill_after_first_checkpoint():
    """``kill_after_first_checkpoint(spec, out)``: train ``spec`` into ``out`` as a run that Ctrl-C
    stops right after its first checkpoint is written (whole), to be resumed with ``resume=True``."""
    from ctxseg.engine import train as train_module

    def run(spec, out) -> None:
        real_save = train_module.save_checkpoint

        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            raise KeyboardInterrupt

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train_module, "save_checkpoint", save_then_die)
            with pytest.raises(KeyboardInterrupt):
                train_module.train(spec, out, progress=False)
    return run


@pytest.fixture
def linear_checkpoint(tmp_path):
    """``(path, model, optimizer)``: a checkpoint of a 2 x 2 linear layer after one SGD step with
    momentum (so the optimizer has state), at step 3, saved with the spec ``{"a": 1}``."""
    import torch

    from ctxseg.files.checkpoint import TrainingState, save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model, optimizer, TrainingState(step=3, history=[]), {"a": 1},
                    {"rng/cpu": torch.get_rng_state()})
    return path, model, optimizer
