"""The registry: discovery, failures that name the culprit, duplicates, in-process plugins."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ctxseg.errors import PluginError
from ctxseg.registry import Component, PluginFailure, Registry, hookimpl


def plugin(*components: Component) -> types.SimpleNamespace:
    @hookimpl
    def ctxseg_components():
        return list(components)

    return types.SimpleNamespace(ctxseg_components=ctxseg_components)


def test_builtins_are_registered_with_their_distribution():
    registry = Registry(autoload=False)
    resnet = registry.get("backbone", "base.resnet")
    assert resnet.distribution == "ctxseg"
    assert {c.kind.value for c in registry.components()} >= {
        "backbone", "context_head", "loss", "schedule", "optimizer", "dataset"}


def test_unknown_name_suggests_the_nearest():
    registry = Registry(autoload=False)
    with pytest.raises(LookupError, match=r"unknown backbone 'base.resnt'; did you mean 'base.resnet'\?"):
        registry.get("backbone", "base.resnt")


def test_in_process_registration():
    registry = Registry(autoload=False)
    registry.register(plugin(Component("context_head", "mine.head", "mod:Head")), "my-notebook")
    assert registry.get("context_head", "mine.head").distribution == "my-notebook"


def test_duplicate_name_is_an_error_naming_both_distributions():
    registry = Registry(autoload=False)
    with pytest.raises(PluginError, match=r"'base.fcn' is registered by two plugin distributions: 'ctxseg' and 'evil'"):
        registry.register(plugin(Component("context_head", "base.fcn", "x:Y")), "evil")


def test_broken_plugin_is_reported_and_others_keep_working():
    broken = types.SimpleNamespace(ctxseg_components=hookimpl(lambda: 1 / 0))
    registry = Registry(autoload=False)
    with pytest.warns(PluginFailure, match="'broken-dist' failed to load: ZeroDivisionError"):
        registry.register(broken, "broken-dist")
    assert registry.get("backbone", "base.resnet")
    with pytest.raises(PluginError, match="'broken-dist' failed to load"):
        Registry(autoload=False, strict=True).register(broken, "broken-dist")


def test_misspelt_hook_is_caught():
    typo = types.SimpleNamespace(ctxseg_component=hookimpl(lambda: []))
    with pytest.warns(PluginFailure, match="ctxseg_component"):
        Registry(autoload=False).register(typo, "typo-dist")


def test_autoload_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CTXSEG_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert {c.distribution for c in Registry().components()} == {"ctxseg"}


def test_listing_and_help_do_not_import_torch():
    code = ("import sys; from ctxseg.cli import parser; from ctxseg.registry import Registry; "
            "Registry().components(); parser(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_prints_the_usage():
    result = subprocess.run([sys.executable, "-m", "ctxseg.cli", "--help"], check=True, capture_output=True, text=True)
    assert result.stdout.startswith("usage: ctxseg")


def test_readme_lists_the_built_in_components():
    readme = Path(__file__).parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("not a source checkout")
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| `ctxseg` (built in) |"))
    assert set(re.findall(r"`(base\.\w+)`", row)) == {c.name for c in Registry(autoload=False).components()}
