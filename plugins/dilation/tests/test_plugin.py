"""The plugin registers its two components, is discovered when installed, and lists without torch."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import ctxseg_dilation.plugin
from ctxseg.registry import Kind, Registry
from ctxseg_dilation.context_module import ContextModule
from ctxseg_dilation.frontend import FrontEnd

COMPONENTS = {
    (Kind.CONTEXT_HEAD, "dilation.context_module"): ContextModule,
    (Kind.BACKBONE, "dilation.frontend"): FrontEnd,
}


def test_plugin_registers_its_components() -> None:
    registry = Registry(autoload=False)
    registry.register(ctxseg_dilation.plugin, "ctxseg-dilation", "0.1.0")
    for (kind, name), cls in COMPONENTS.items():
        component = registry.get(kind, name)
        assert component.load() is cls
        assert component.example is not None and component.summary


def test_installed_plugin_is_discovered() -> None:
    try:
        version = importlib.metadata.version("ctxseg-dilation")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ctxseg-dilation is not installed (pip install -e plugins/dilation)")
    registry = Registry(autoload=True)
    for kind, name in COMPONENTS:
        component = registry.get(kind, name)
        assert (component.distribution, component.version) == ("ctxseg-dilation", version)


def test_listing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ctxseg_dilation.plugin as p; p.ctxseg_components(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
