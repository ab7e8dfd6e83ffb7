"""The plugin registers its three components, is discovered when installed, and lists without torch."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import ctxseg_parsenet.plugin
from ctxseg.registry import Kind, Registry
from ctxseg_parsenet.fusion import ParseNetFusion
from ctxseg_parsenet.global_context import GlobalContext
from ctxseg_parsenet.vgg import DeepLabVGG16

COMPONENTS = {
    (Kind.BACKBONE, "parsenet.deeplab_vgg16"): DeepLabVGG16,
    (Kind.CONTEXT_HEAD, "parsenet.global_context"): GlobalContext,
    (Kind.FUSION, "parsenet.fusion"): ParseNetFusion,
}


def test_plugin_registers_its_components() -> None:
    registry = Registry(autoload=False)
    registry.register(ctxseg_parsenet.plugin, "ctxseg-parsenet", "0.1.0")
    for (kind, name), cls in COMPONENTS.items():
        component = registry.get(kind, name)
        assert component.load() is cls
        assert component.example is not None and component.summary


def test_installed_plugin_is_discovered() -> None:
    try:
        version = importlib.metadata.version("ctxseg-parsenet")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ctxseg-parsenet is not installed (pip install -e plugins/parsenet)")
    registry = Registry(autoload=True)
    for kind, name in COMPONENTS:
        component = registry.get(kind, name)
        assert (component.distribution, component.version) == ("ctxseg-parsenet", version)


def test_listing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ctxseg_parsenet.plugin as p; p.ctxseg_components(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
