"""The plugin registers its three components, is discovered when installed, and lists without torch."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import ctxseg_gcn.plugin
from ctxseg.registry import Kind, Registry
from ctxseg_gcn.fusion import GCNFusion
from ctxseg_gcn.global_convolution import GlobalConvolution
from ctxseg_gcn.resnet import ResNetGCN

COMPONENTS = {
    (Kind.CONTEXT_HEAD, "gcn.global_convolution"): GlobalConvolution,
    (Kind.FUSION, "gcn.fusion"): GCNFusion,
    (Kind.BACKBONE, "gcn.resnet"): ResNetGCN,
}


def test_plugin_registers_its_components() -> None:
    registry = Registry(autoload=False)
    registry.register(ctxseg_gcn.plugin, "ctxseg-gcn", "0.1.0")
    for (kind, name), cls in COMPONENTS.items():
        component = registry.get(kind, name)
        assert component.load() is cls
        assert component.example is not None and component.summary


def test_installed_plugin_is_discovered() -> None:
    try:
        version = importlib.metadata.version("ctxseg-gcn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ctxseg-gcn is not installed (pip install -e plugins/gcn)")
    registry = Registry(autoload=True)
    for kind, name in COMPONENTS:
        component = registry.get(kind, name)
        assert (component.distribution, component.version) == ("ctxseg-gcn", version)


def test_listing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ctxseg_gcn.plugin as p; p.ctxseg_components(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
