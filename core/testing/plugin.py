"""A plugin's registration contract: declared, discovered from its distribution, listed without torch."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Mapping

from ctxseg.registry import Kind, Registry

__all__ = ["check_plugin"]


def check_plugin(module: str, distribution: str, components: Mapping[tuple[str, str], type]) -> None:
    """A plugin's registration contract, for its own tests.

    Its hook declares each ``(kind, name)`` of ``components`` with a summary and an
    example (a dataset that reads data from disk may have none: the kit checks it on what
    its class's ``write_example`` writes), loading to the given class; once installed,
    entry-point discovery attributes them to ``distribution`` at its installed version; and
    listing them (importing ``module`` and calling its hook) does not import torch, so
    ``ctxseg plugins`` and ``ctxseg --help`` stay fast.
    """
    registry = Registry(autoload=False)
    registry.register(importlib.import_module(module), distribution)
    for (kind, name), cls in components.items():
        component = registry.get(kind, name)
        assert component.load() is cls, f"{kind} {name!r} loads {component.load()!r}, not {cls!r}"
        assert component.summary, f"{kind} {name!r} needs a summary"
        # A dataset may have no example: it may only read data from disk.
        assert component.example is not None or kind == Kind.DATASET, f"{kind} {name!r} needs an example"
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise AssertionError(f"{distribution} is not installed; pip install -e it to test discovery") from None
    discovered = Registry(autoload=True)
    for kind, name in components:
        component = discovered.get(kind, name)
        assert (component.distribution, component.version) == (distribution, version), (
            f"{kind} {name!r} is discovered from {component.distribution} {component.version}")
    code = f"import sys, {module} as p; p.ctxseg_components(); print('torch' in sys.modules)"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "False", f"importing {module} to list its components imports torch"
