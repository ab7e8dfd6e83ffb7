"""The plugin's registration contract: its components, discovery when installed, no torch on listing."""

from __future__ import annotations

from ctxseg.testing import check_plugin
from ctxseg_gcn.fusion import GCNFusion
from ctxseg_gcn.global_convolution import GlobalConvolution
from ctxseg_gcn.resnet import ResNetGCN


def test_plugin_contract() -> None:
    check_plugin("ctxseg_gcn.plugin", "ctxseg-gcn", {
        ("fusion", "gcn.fusion"): GCNFusion,
        ("context_head", "gcn.global_convolution"): GlobalConvolution,
        ("backbone", "gcn.resnet"): ResNetGCN,
    })
