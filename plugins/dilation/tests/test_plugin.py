"""The plugin's registration contract: its components, discovery when installed, no torch on listing."""

from __future__ import annotations

from ctxseg.testing import check_plugin
from ctxseg_dilation.context_module import ContextModule
from ctxseg_dilation.frontend import FrontEnd


def test_plugin_contract() -> None:
    check_plugin("ctxseg_dilation.plugin", "ctxseg-dilation", {
        ("context_head", "dilation.context_module"): ContextModule,
        ("backbone", "dilation.frontend"): FrontEnd,
    })
