"""The architecture rules hold: import-linter's contracts (``.importlinter``, ``.importlinter-registry``).

Core never imports a plugin, plugins import only ctxseg's public API and never each
other, and the registry imports no torch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("config", [".importlinter", ".importlinter-registry"])
def test_import_contracts_are_kept(config: str) -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed (pip install -e '.[test]')"
    result = subprocess.run([lint, "--config", config, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
