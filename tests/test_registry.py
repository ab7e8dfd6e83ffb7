"""The registry: discovery, failures that name the culprit, duplicates, in-process plugins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest

from ctxseg.errors import PluginError
from ctxseg.registry import Component, PluginFailure, PluginWarning, Registry, hookimpl


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
    registry.register(plugin(Component("context_head", "mine.head", "mod:Head")), "my-notebook", entry_point="mine")
    assert registry.get("context_head", "mine.head").distribution == "my-notebook"


def test_duplicate_name_disables_only_the_later_registration():
    registry = Registry(autoload=False)
    with pytest.warns(PluginFailure) as caught:
        registry.register(plugin(Component("context_head", "base.fcn", "x:Y"),
                                 Component("context_head", "evil.head", "x:Z")), "evil")
    assert [str(w.message) for w in caught if w.category is PluginFailure] == [
        ("context_head 'base.fcn' is registered by two plugin distributions: 'ctxseg' and 'evil'; uninstall one of "
         "them, or rename it in 'evil'; until then the later registration (from 'evil') is disabled")]
    assert registry.get("context_head", "base.fcn").distribution == "ctxseg"
    assert registry.get("context_head", "evil.head").distribution == "evil"
    assert [f.distribution for f in registry.failures] == ["evil"]


def test_duplicate_name_is_fatal_with_strict_plugins():
    with pytest.raises(PluginError, match=r"'base.fcn' is registered by two plugin distributions: 'ctxseg' and 'evil'"):
        Registry(autoload=False, strict=True).register(plugin(Component("context_head", "base.fcn", "x:Y")), "evil")


def test_name_without_the_plugins_prefix_warns():
    with pytest.warns(PluginWarning, match=r"plugin distribution 'ctxseg-mine', entry point 'mine': context_head "
                                           r"'other.head' lacks the plugin's prefix \(mine\.\)"):
        Registry(autoload=False).register(plugin(Component("context_head", "other.head", "x:Y")), "ctxseg-mine",
                                          entry_point="mine")


@pytest.mark.parametrize(("target", "said"), [
    (types.SimpleNamespace(__name__="ctxseg_empty.plugin"), "module 'ctxseg_empty.plugin' implements no ctxseg hook"),
    (plugin(), "ctxseg_components() registers no components"),
])
def test_entry_point_without_components_warns(target, said):
    where = "plugin distribution 'ctxseg-empty', entry point 'empty': "
    with pytest.warns(PluginWarning, match=re.escape(where + said)):
        Registry(autoload=False).register(target, "ctxseg-empty", entry_point="empty")


CLASHING = """
from ctxseg.registry import Component, hookimpl

@hookimpl
def ctxseg_components():
    return [Component("context_head", "base.fcn", "builtins:object"),
            Component("context_head", "clash.head", "builtins:object")]
"""


def _install_fake_distribution(root: Path, name: str, entry_point: str, module: str, code: str) -> None:
    """A distribution importlib.metadata finds on ``root`` (a dist-info folder), as pip would leave it."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ctxseg]\n{entry_point} = {module}\n")


def test_installed_clash_keeps_listing_and_the_examples_working(tmp_path):
    _install_fake_distribution(tmp_path, "ctxseg-clash", "clash", "ctxseg_clash_plugin", CLASHING)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--json"], env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert [f["distribution"] for f in report["failures"]] == ["ctxseg-clash"]
    assert "'base.fcn' is registered by two plugin distributions" in report["failures"][0]["error"]
    names = {(c["name"], c["distribution"]) for c in report["components"]}
    assert ("base.fcn", "ctxseg") in names and ("clash.head", "ctxseg-clash") in names
    assert listed.stderr.count("registered by two plugin distributions") == 1

    example = Path(__file__).parents[1] / "examples" / "fcn_resnet18.toml"
    resolved = subprocess.run([sys.executable, "-m", "ctxseg.cli", "inspect", "--resolved", str(example)], env=env,
                              capture_output=True, text=True)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stderr.count("registered by two plugin distributions") == 1

    strict = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--strict-plugins"], env=env,
                            capture_output=True, text=True)
    assert strict.returncode == 2 and "'base.fcn' is registered by two plugin distributions" in strict.stderr


BAD_HEAD = """
import attrs
from torch import nn
from ctxseg.interfaces import ContextHead
from ctxseg.registry import Component, hookimpl

class Head(ContextHead):
    @attrs.define(frozen=True, kw_only=True)
    class Config:
        pass

    def __init__(self, config, in_channels, num_classes):
        super().__init__()
        self.out_channels = 8
        self.conv = nn.Conv2d(in_channels, 4, 1)

    def forward(self, x):
        return self.conv(x)

@hookimpl
def ctxseg_components():
    return [Component("context_head", "badhead.head", Head)]
"""


def test_plugins_check_runs_the_contract_and_tabulates(tmp_path):
    _install_fake_distribution(tmp_path, "ctxseg-badhead", "badhead", "ctxseg_badhead_plugin", BAD_HEAD)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    checked = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--check", "ctxseg-badhead", "base.fcn"],
                             env=env, capture_output=True, text=True)
    assert checked.returncode == 2
    lines = checked.stdout.splitlines()
    assert lines[0].split() == ["component", "plugin", "version", "contract"]
    assert lines[1].split()[:4] == ["badhead.head", "ctxseg-badhead", "0.1", "context_head"]
    assert "'badhead.head': output has 4 channels, declared out_channels=8" in lines[1]
    assert lines[2].split() == ["base.fcn", "ctxseg", version("ctxseg"), "ok"]
    assert checked.stderr.endswith("ctxseg: error: 1 of 2 components fail the contract: badhead.head\n")
    unknown = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--check", "nosuch"], env=env,
                             capture_output=True, text=True)
    assert unknown.stderr == "ctxseg: error: --check: no installed component or plugin distribution 'nosuch'\n"


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


def test_the_docs_list_the_built_in_components():
    page = Path(__file__).parents[1] / "docs" / "plugins.md"
    if not page.exists():
        pytest.skip("not a source checkout")
    row = next(line for line in page.read_text().splitlines() if line.startswith("| `ctxseg` (built in) |"))
    assert set(re.findall(r"`(base\.\w+)`", row)) == {c.name for c in Registry(autoload=False).components()}
