"""The README's plugin reference: the component it shows passes the contract and plugs into a model."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from ctxseg.model import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.model.summary import declared_receptive_field
from ctxseg.registry import default_registry, reset_default_registry
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_component

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture
def readme_plugin(monkeypatch):
    """The README's complete component, run as its own module (which contract-checks it)."""
    if not README.exists():
        pytest.skip("not a source checkout")
    section = README.read_text().split("### A complete component, contract-checked", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    module = types.ModuleType("readme_plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, f"{README}:plugin example", "exec"), module.__dict__)  # noqa: S102 - our own README
    default_registry().register(module, "ctxseg-mine", "0.1", entry_point="mine")
    yield module
    reset_default_registry()


def test_the_readme_component_passes_the_contract_and_builds(readme_plugin):
    check_component(default_registry().get("context_head", "mine.global_gate"))  # the block did too, as shown
    spec = spec_from_dict({"model": {"backbone": {"name": "base.resnet", "depth": 18},
                                     "context": [{"name": "mine.global_gate", "reduction": 8}]}})
    model = SegmentationModel(spec.model, 3, pretrained=False)
    check_model(model, spec.model)
    assert declared_receptive_field(model, (64, 64)) is None  # "global": the whole input
