"""The plugin's registration contract: its components and converter, discovery when installed, no torch on listing."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch

from ctxseg.errors import WeightsError
from ctxseg.registry import Registry
from ctxseg.testing import check_plugin
from ctxseg_pspnet.pyramid_pooling import PyramidPooling
from ctxseg_pspnet.resnet import DeepStemResNet


def test_plugin_contract() -> None:
    check_plugin("ctxseg_pspnet.plugin", "ctxseg-pspnet", {
        ("context_head", "pspnet.pyramid_pooling"): PyramidPooling,
        ("backbone", "pspnet.resnet"): DeepStemResNet,
    })


def test_check_plugin_catches_a_wrong_class() -> None:
    with pytest.raises(AssertionError, match="'pspnet.resnet' loads"):
        check_plugin("ctxseg_pspnet.plugin", "ctxseg-pspnet", {("backbone", "pspnet.resnet"): PyramidPooling})


def _psp_head(levels: int) -> dict[str, torch.Tensor]:
    """The tensor names of MMSegmentation's PSPHead under ``decode_head.`` (sizes: 4 in, 2 out, 3 classes)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    names = [f"psp_modules.{i}.1.{n}" for i in range(levels) for n in ("conv.weight", *(f"bn.{b}" for b in bn))]
    return {**dict.fromkeys(names + ["bottleneck.conv.weight", *(f"bottleneck.bn.{b}" for b in bn)], torch.zeros(1)),
            "conv_seg.weight": torch.zeros(3, 2, 1, 1), "conv_seg.bias": torch.zeros(3)}


def test_mmsegmentation_psp_head_is_discovered_and_names_the_heads_own_tensors() -> None:
    registry = Registry()
    converter = next(c for c in registry.converters("mmsegmentation.decode_head")
                     if c.name == "pspnet.mmsegmentation_psp_head")
    assert (converter.distribution, converter.version) == ("ctxseg-pspnet", version("ctxseg-pspnet"))
    state = _psp_head(4)
    conversion = registry.recognise("mmsegmentation.decode_head", state)
    assert conversion.kind == "pspnet" and conversion.table == {
        "name": "pspnet.pyramid_pooling", "bins": [1, 2, 3, 6], "channels": 2, "align_corners": False}
    config = PyramidPooling.Config(**{k: v for k, v in conversion.table.items() if k != "name"})
    head = PyramidPooling(config, in_channels=4, num_classes=3)
    renamed = {conversion.rename(k) for k in state if not k.startswith("conv_seg.")}  # conv_seg: the classifier
    assert renamed == set(head.state_dict())
    assert conversion.rename("conv_seg.weight") is None


def test_mmsegmentation_psp_head_without_the_default_levels_asks_for_a_spec() -> None:
    with pytest.raises(WeightsError, match=r"a PSPNet with 3 pyramid levels.*pass --spec"):
        Registry().recognise("mmsegmentation.decode_head", _psp_head(3))
