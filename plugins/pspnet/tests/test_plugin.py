"""The plugin's registration contract: its components, discovery when installed, no torch on listing."""

from __future__ import annotations

import pytest

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
