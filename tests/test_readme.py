"""The README and docs/: the plugin component they show passes the contract and plugs into a model, their specs
load, the README's plugin example is the reference's, and every link between them reaches a file and a heading."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from ctxseg.model import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.model.summary import declared_receptive_field
from ctxseg.registry import default_registry, reset_default_registry
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_component

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _section(heading: str) -> tuple[Path, str]:
    """The text after a heading (any level) in README.md or a docs/ page, and the file it is in."""
    for path in [README, *DOCS]:
        parts = re.split(rf"^#+ {re.escape(heading)}$", path.read_text(), maxsplit=1, flags=re.MULTILINE)
        if len(parts) == 2:
            return path, parts[1]
    raise AssertionError(f"no heading {heading!r} in README.md or docs/*.md")


def _first_block(text: str, language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", text, re.DOTALL).group(1)


@pytest.fixture
def readme_plugin(monkeypatch):
    """docs/plugins.md's complete component, run as its own module (which contract-checks it)."""
    if not README.exists():
        pytest.skip("not a source checkout")
    path, section = _section("A complete component, contract-checked")  # docs/plugins.md
    code = _first_block(section, "python")
    module = types.ModuleType("readme_plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, f"{path}:plugin example", "exec"), module.__dict__)  # noqa: S102 - our own docs
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


@pytest.mark.skipif(not README.exists(), reason="not a source checkout")
def test_the_specs_shown_load():
    """The README's short spec and docs/spec.md's spec with every key both load."""
    readme_spec = _first_block(README.read_text().split("## Writing a spec", 1)[1], "toml")
    reference = _first_block((ROOT / "docs" / "spec.md").read_text(), "toml")
    for text in (readme_spec, reference):
        spec = spec_from_dict(tomllib.loads(text))
        assert spec.model.context[0].name == "base.fcn"


@pytest.mark.skipif(not README.exists(), reason="not a source checkout")
def test_the_readme_plugin_example_is_the_references():
    readme = README.read_text().split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:toml|python)\n.*?```", readme, re.DOTALL)
    assert len(blocks) == 2
    reference = (ROOT / "docs" / "plugins.md").read_text()
    for block in blocks:
        assert block in reference


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (outside code blocks)."""
    anchors, seen, fence = set(), {}, False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = None if fence else re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.skipif(not README.exists(), reason="not a source checkout")
@pytest.mark.parametrize("page", [README, *DOCS, *sorted(ROOT.glob("plugins/**/README.md")),
                                  *sorted(ROOT.glob("examples/**/README.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_links_reach_a_file_and_a_heading(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.relative_to(ROOT)}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(path), f"{page.relative_to(ROOT)}: link to {target}: no such heading"
