"""The architecture rules hold: import-linter checks them on a configuration this test writes.

- Core is layered (:data:`LAYERS`, top to bottom): a part imports only from the layers below
  its own, the parts of one layer never import each other, and every part is in a layer.
- Plugins import only the modules ``ctxseg.PLUGIN_API`` names and never each other, and core
  never imports a plugin. The plugins are the packages that ``plugins/*/pyproject.toml`` and
  the third-party example declare, so a new plugin or a new core module is covered without a
  list to edit.
- The registry imports no torch, so that ``ctxseg --help`` and ``ctxseg plugins`` stay fast.

import-linter (grimp) reads a package from the one folder its import spec names, but ctxseg
is installed from two (pyproject's ``package-dir``: core/ as ``ctxseg``, registry/ as
``ctxseg.registry``, which the editable install's finder maps), so ``lint-imports`` runs
with ctxseg laid out as installed first on its path: a tree of links to the sources, as
setuptools' strict editable mode builds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from ctxseg import PLUGIN_API

ROOT = Path(__file__).parents[1]

LAYERS = (
    "cli",                            # parses and prints
    "engine | testing | nn",          # running models; the contract kit; what plugins build on
    "builtin",                        # ctxseg's own components
    "model | data",                   # assembling a model; datasets
    "metrics | files | spec",         # scores; the files ctxseg writes; the TOML spec
    "registry",                       # finding plugins, without torch
    "errors | interfaces | threads",  # what everything shares
)
"""Core's parts (modules of ``ctxseg``), top to bottom; ``|`` separates independent parts."""


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def plugin_packages() -> list[str]:
    """The import packages of the plugin distributions in this repository, as they declare them."""
    projects = [*ROOT.glob("plugins/*/pyproject.toml"), ROOT / "examples/thirdparty/ctxseg-deeplab/pyproject.toml"]
    return sorted(package for project in projects for package in _toml(project)["tool"]["setuptools"]["packages"])


def contracts(plugins: list[str]) -> dict[str, Any]:
    """import-linter's configuration (pyproject.toml's form) of the rules above."""
    return {"tool": {"importlinter": {
        "root_packages": ["ctxseg", *plugins],
        "include_external_packages": True,
        "contracts": [
            {"name": "Core is layered", "type": "layers", "containers": ["ctxseg"], "layers": list(LAYERS),
             "exhaustive": True, "exhaustive_ignores": ["__main__"]},
            {"name": "The registry imports no torch", "type": "forbidden", "source_modules": ["ctxseg.registry"],
             "forbidden_modules": ["torch", "torchvision"]},
            {"name": "Core never imports a plugin", "type": "forbidden", "source_modules": ["ctxseg"],
             "forbidden_modules": plugins},
            # an allow-list: all of ctxseg is forbidden but the direct imports of the public modules
            {"name": "Plugins import only ctxseg.PLUGIN_API", "type": "forbidden", "source_modules": plugins,
             "forbidden_modules": ["ctxseg"], "allow_indirect_imports": True,
             "ignore_imports": [f"** -> {module}" for module in PLUGIN_API],
             "unmatched_ignore_imports_alerting": "none"},
            {"name": "Plugins never import each other", "type": "independence", "modules": plugins},
        ],
    }}}


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A folder with ctxseg laid out as installed (pyproject's ``package-dir``): links to the sources."""
    tree = tmp_path / "installed"
    for package, folder in sorted(_toml(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-dir"].items()):
        shutil.copytree(ROOT / folder, tree.joinpath(*package.split(".")), copy_function=os.symlink,
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return tree


def lint_imports(tmp_path: Path, plugins: list[str], *path: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the rules for ``plugins``, with the folders ``path`` first on the import path."""
    config = tmp_path / "importlinter.toml"
    config.write_text(tomli_w.dumps(contracts(plugins)))
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed (pip install -e '.[test]')"
    search = os.pathsep.join([*map(str, path), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([lint, str(config), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": search})


def test_every_plugin_in_the_repository_is_found() -> None:
    plugins = plugin_packages()
    assert len(plugins) >= 7 and {"ctxseg_pspnet", "ctxseg_datasets", "ctxseg_deeplab"} <= set(plugins)


def test_the_architecture_rules_hold(tmp_path: Path, installed: Path) -> None:
    result = lint_imports(tmp_path, plugin_packages(), installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "source", "contract", "reported"), [
    ("model/check.py", "from ctxseg.engine.runtime import Runtime\n", "Core is layered",
     "ctxseg.model.check -> ctxseg.engine.runtime (l.1)"),
    ("newpart.py", "", "Core is layered", "- ctxseg.newpart\n"),  # in no layer
    ("registry/component.py", "import torch\n", "The registry imports no torch",
     "ctxseg.registry.component -> torch (l.1)"),
    ("engine/convert.py", "import ctxseg_pspnet\n", "Core never imports a plugin",
     "ctxseg.engine.convert -> ctxseg_pspnet (l.1)"),
])
def test_a_core_module_breaking_a_rule_is_reported(tmp_path: Path, installed: Path, module: str, source: str,
                                                   contract: str, reported: str) -> None:
    changed = installed / "ctxseg" / module
    changed.unlink(missing_ok=True)  # a link to the source: replaced, not written through
    changed.write_text(source)
    result = lint_imports(tmp_path, plugin_packages(), installed)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout and "4 kept, 1 broken" in result.stdout
    assert reported in result.stdout


def test_a_plugin_importing_anything_but_the_public_api_is_reported(tmp_path: Path, installed: Path) -> None:
    plugin = tmp_path / "plugin" / "ctxseg_fake"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("from ctxseg.data import FileDataset\nfrom ctxseg.nn import ResNet\n")
    (plugin / "engine.py").write_text("from ctxseg.engine.train import train\n")
    (plugin / "folder.py").write_text("from ctxseg.data.folder import FolderDataset\n")
    (plugin / "root.py").write_text("import ctxseg\n")
    result = lint_imports(tmp_path, ["ctxseg_fake"], installed, plugin.parent)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Plugins import only ctxseg.PLUGIN_API BROKEN" in result.stdout and "4 kept, 1 broken" in result.stdout
    reported = re.findall(r"^-\s+(\S+ -> \S+) \(l\.\d+\)$", result.stdout, re.MULTILINE)
    assert sorted(reported) == ["ctxseg_fake.engine -> ctxseg.engine.train", "ctxseg_fake.folder -> ctxseg.data.folder",
                                "ctxseg_fake.root -> ctxseg"]  # not the public modules its __init__ imports
