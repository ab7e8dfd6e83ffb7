"""The plugin's registration contract: its components, discovery when installed, no torch on listing."""

from __future__ import annotations

from ctxseg.testing import check_plugin
from ctxseg_parsenet.fusion import ParseNetFusion
from ctxseg_parsenet.global_context import GlobalContext
from ctxseg_parsenet.vgg import DeepLabVGG16


def test_plugin_contract() -> None:
    check_plugin("ctxseg_parsenet.plugin", "ctxseg-parsenet", {
        ("fusion", "parsenet.fusion"): ParseNetFusion,
        ("context_head", "parsenet.global_context"): GlobalContext,
        ("backbone", "parsenet.deeplab_vgg16"): DeepLabVGG16,
    })
