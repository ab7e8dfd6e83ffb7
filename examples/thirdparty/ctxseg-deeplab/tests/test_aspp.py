"""ctxseg-deeplab's tests: the ASPP head passes ctxseg's contract checks."""

from __future__ import annotations

import importlib.metadata

import torch

import ctxseg_deeplab.plugin
from ctxseg.registry import Registry
from ctxseg.testing import check_component, check_context_head
from ctxseg_deeplab.aspp import ASPP


def test_aspp_contract() -> None:
    check_context_head(ASPP, {"channels": 8, "rates": [1, 2, 3]})


def test_aspp_contract_with_paper_defaults() -> None:
    check_context_head(ASPP, ASPP.Config(), max_examples=3)  # rates up to 24 on 1x1 to 12x12 maps


def test_plugin_registers_aspp() -> None:
    registry = Registry(autoload=False)
    registry.register(ctxseg_deeplab.plugin, "ctxseg-deeplab", "0.1.0")
    component = registry.get("context_head", "deeplab.aspp")
    assert component.load() is ASPP
    check_component(component)  # built with the component's example table


def test_installed_plugin_is_discovered() -> None:
    component = Registry(autoload=True).get("context_head", "deeplab.aspp")
    assert component.distribution == "ctxseg-deeplab"
    assert component.version == importlib.metadata.version("ctxseg-deeplab")


def test_branches_are_summed() -> None:
    """With one rate the head is one conv + ReLU; a second branch adds its output."""
    head = ASPP(ASPP.Config(channels=2, rates=(1, 3)), in_channels=3, num_classes=5)
    x = torch.randn(1, 3, 7, 7)
    expected = torch.relu(head.branches[0](x) + head.branches[1](x))
    torch.testing.assert_close(head(x), expected)
    assert head.branches[1].dilation == (3, 3) and head.branches[1].padding == (3, 3)


def test_paper_defaults() -> None:
    config = ASPP.Config()
    assert config.rates == (6, 12, 18, 24)  # ASPP-L, Sec. 3.3
    assert ASPP(config, in_channels=16, num_classes=21).out_channels == config.channels == 256
