"""examples/reproduce.py: its tables compare like with like, and it writes mean ± std over seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import attrs
import pytest

from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", EXAMPLES / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reproduce = _reproduce()


@pytest.mark.parametrize("name", list(reproduce.TABLES))
def test_a_tables_rows_share_data_and_budget(name: str) -> None:
    """Every row of a table trains on the same data for as many steps of as many images,
    with the same optimizer and schedule; only the model, the loss or the passes differ."""
    specs = [load_spec(EXAMPLES / spec) for _, spec in reproduce.TABLES[name].rows]
    first = specs[0]
    for spec in specs[1:]:
        assert (spec.data, spec.optimizer, spec.schedule) == (first.data, first.optimizer, first.schedule)
        assert attrs.evolve(spec.run, passes=first.run.passes) == first.run
    assert first.data.dataset.name == "base.context_scenes"
    assert first.data.dataset.config.version == 2


def test_writes_mean_and_std_over_seeds_and_reuses_finished_runs(
        tmp_path: Path, tiny_spec_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "a.toml").write_text(tiny_spec_text.replace("steps = 4\neval_every = 2", "steps = 2\neval_every = 0"))
    (folder / "b.toml").write_text('extends = "a.toml"\n\n[optimizer]\nname = "base.sgd"\nlr = 0.02\n')
    table = reproduce.Table("Tiny", "b is not a", (("a", str(folder / "a.toml")), ("b", str(folder / "b.toml"))))
    monkeypatch.setattr(reproduce, "TABLES", {"tiny": table})
    out = tmp_path / "out"

    assert reproduce.main(["--table", "tiny", "--seeds", "2", "--out", str(out)]) == 0
    text = (out / "tiny.md").read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert sorted(p.name for p in out.iterdir()) == ["specs_a", "specs_b", "tiny.md"]
    assert all((out / f"specs_{s}" / f"seed{k}" / "metrics.json").is_file() for s in "ab" for k in (0, 1))
    rows = [line for line in text.splitlines() if line.startswith("| a (") or line.startswith("| b (")]
    assert len(rows) == 2 and all(line.count(" ± ") == 8 for line in rows), text  # mIoU, pairs, 6 classes
    assert "python examples/reproduce.py --table tiny" in text and "over 2 seeds" in text

    weights = [(out / "specs_a" / f"seed{k}" / "model.safetensors").read_bytes() for k in (0, 1)]
    assert weights[0] != weights[1], "each seed trains its own run"
    trained = []
    monkeypatch.setattr(reproduce, "train", lambda spec, directory, **_: trained.append(directory))
    assert reproduce.main(["--table", "tiny", "--seeds", "2", "--out", str(out), "--jobs", "1"]) == 0
    assert (out / "tiny.md").read_text() == text and trained == [], "finished runs are reused"

    (folder / "b.toml").write_text('extends = "a.toml"\n\n[optimizer]\nname = "base.sgd"\nlr = 0.03\n')
    assert reproduce.main(["--table", "tiny", "--seeds", "2", "--out", str(out)]) == 0
    assert trained == [out / "specs_b" / "seed0", out / "specs_b" / "seed1"], "an edited spec trains again"


def test_a_bad_spec_stops_before_anything_trains(tmp_path: Path, tiny_spec_text: str,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.toml").write_text(tiny_spec_text)
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n\n[optimizer]\nlr = 0.02\n')
    table = reproduce.Table("Tiny", "-", (("a", str(tmp_path / "a.toml")), ("b", str(tmp_path / "b.toml"))))
    monkeypatch.setattr(reproduce, "TABLES", {"tiny": table})
    monkeypatch.setattr(reproduce, "train", lambda *a, **k: pytest.fail("trained before every spec was checked"))
    assert reproduce.main(["--table", "tiny", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"reproduce: error: {tmp_path / 'b.toml'}: optimizer: expected 'name' = "
                                       "one of the registered optimizers: base.adam, base.adamw, base.sgd\n")


def test_one_seed_has_no_standard_deviation(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        reproduce.main(["--all", "--seeds", "1"])
    assert "--seeds: at least 2" in capsys.readouterr().err
