"""A third party's plugin, pip-installed, is a first-class citizen.

The out-of-tree example ``examples/thirdparty/ctxseg-deeplab`` is installed with pip
into a scratch directory; a fresh interpreter with that directory on its path must
list it in ``ctxseg plugins``, build a model naming its head from TOML, and pass the
contract checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[1] / "examples" / "thirdparty" / "ctxseg-deeplab"

SPEC = """
[model.backbone]
name = "base.resnet"
depth = 18
output_stride = 8

[[model.context]]
name = "deeplab.aspp"
channels = 16
rates = [1, 2]
"""

BUILD_AND_CHECK = """
import sys, torch
from ctxseg.model import SegmentationModel
from ctxseg.registry import default_registry
from ctxseg.spec import load_spec
from ctxseg.testing import check_component

spec = load_spec(sys.argv[1])
model = SegmentationModel(spec.model, num_classes=5).eval()
assert model(torch.zeros(1, 3, 32, 32))["out"].shape == (1, 5, 32, 32)
check_component(default_registry().get("context_head", "deeplab.aspp"), max_examples=3)
print("ok")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN)], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return env


def test_installed_plugin_is_listed(site):
    out = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--json"], env=site,
                         check=True, capture_output=True, text=True).stdout
    listing = json.loads(out)
    (aspp,) = [c for c in listing["components"] if c["name"] == "deeplab.aspp"]
    assert aspp["kind"] == "context_head" and aspp["distribution"] == "ctxseg-deeplab"
    assert aspp["version"]
    assert listing["failures"] == []


def test_installed_plugin_builds_from_toml_and_passes_the_contract(site, tmp_path):
    spec = tmp_path / "aspp.toml"
    spec.write_text(SPEC)
    result = subprocess.run([sys.executable, "-c", BUILD_AND_CHECK, str(spec)], env=site,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def broken_site(tmp_path):
    """An installed distribution whose plugin module fails to import."""
    info = tmp_path / "ctxseg_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ctxseg-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ctxseg]\nbroken = ctxseg_broken_plugin\n")
    (tmp_path / "ctxseg_broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_broken_plugin_is_named_and_the_rest_work(broken_site):
    result = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins"], env=broken_site,
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "plugin distribution 'ctxseg-broken' failed to load: ModuleNotFoundError" in result.stderr
    assert "base.resnet" in result.stdout

    strict = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins", "--strict-plugins"],
                            env=broken_site, capture_output=True, text=True)
    assert strict.returncode == 2
    assert strict.stderr.startswith("ctxseg: error: plugin distribution 'ctxseg-broken' failed to load")
    assert "Traceback" not in strict.stderr
