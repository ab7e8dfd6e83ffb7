"""The plugin's registration contract: its components, discovery when installed, no torch on listing."""

from __future__ import annotations

from ctxseg.testing import check_plugin
from ctxseg_fcrn.bootstrapping import OnlineBootstrapping
from ctxseg_fcrn.classifier import DilatedClassifier


def test_plugin_contract() -> None:
    check_plugin("ctxseg_fcrn.plugin", "ctxseg-fcrn", {
        ("context_head", "fcrn.classifier"): DilatedClassifier,
        ("loss", "fcrn.bootstrapping"): OnlineBootstrapping,
    })
