"""Shared fixtures: a tiny spec on a tiny generated context-scenes dataset."""

from __future__ import annotations

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


def pytest_configure(config):
    """One torch thread per test process: `pytest -n 2` already uses both cores."""
    import torch

    torch.set_num_threads(1)
