"""A plugin's way of running a model (``[run.passes]``), FCRN's simulated finer network,
goes through training, evaluation and inspection without a core special case."""

from __future__ import annotations

import json

import pytest
import torch

from ctxseg.cli import main
from ctxseg.engine.inference import Inference
from ctxseg.engine.train import train
from ctxseg.errors import CtxsegError, SpecError
from ctxseg.spec import PassesRef, load_spec
from ctxseg.spec.convert import structure

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

AUX = '[[model.aux]]\nname = "base.fcn"\ninput = "c4"\nweight = 0.4\nchannels = 8\n'


def simulated(path, layer: str = "backbone.layer2", extra: str = "", text: str | None = None):
    """The tiny spec at ``path``, run by FCRN's four shifted passes before ``layer``."""
    text = text if text is not None else path.read_text()
    passes = f'\n\n[run.passes]\nname = "fcrn.simulated"\nlayer = "{layer}"\n{extra}'
    path.write_text(text.replace('device = "cpu"', 'device = "cpu"' + passes))
    return path


def test_training_and_evaluating_with_simulation(tmp_path, tiny_spec_file, capsys, undetermined, counted_confusion):
    text = tiny_spec_file.read_text().replace(AUX, '[model]\nbatch_norm = "frozen_statistics"\n')
    spec = load_spec(simulated(tiny_spec_file, text=text.replace("steps = 4", "steps = 2")))
    assert (spec.run.passes.name, spec.run.passes.config.layer) == ("fcrn.simulated", "backbone.layer2")
    metrics = train(spec, tmp_path / "simulated", progress=False)
    capsys.readouterr()

    weights = str(tmp_path / "simulated" / "model.safetensors")
    assert main(["eval", weights, "--json", "--quiet", "--precision", "fp32"]) == 0  # the weights' own passes
    # eval runs channels_last, training contiguous: near-tied scores may round apart
    evaluated = torch.tensor(json.loads(capsys.readouterr().out)["confusion"])
    flips = 2 * undetermined(weights, weights)
    assert (evaluated - torch.tensor(metrics["confusion"])).abs().sum() <= flips
    # and with the matrix counted directly from the scores of the weights' own passes
    assert (evaluated - counted_confusion(weights)).abs().sum() <= flips
    # at 1/8, not at simulated 1/4: other scores (compared as scores, since a model two
    # steps old may label every pixel alike either way)
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    own = Inference.from_weights(weights)[0].probabilities([image])[0]
    single = Inference.from_weights(weights, passes=structure({"name": "base.single"}, PassesRef, source="test"))[0]
    assert not torch.allclose(single.probabilities([image])[0], own, atol=1e-4)


def test_eval_options_name_a_bad_passes_table(tmp_path, tiny_spec_file, capsys):
    weights = tmp_path / "run" / "model.safetensors"
    train(load_spec(tiny_spec_file), weights.parent, progress=False)
    assert main(["eval", str(weights), "--quiet", "--passes", "fcrn.simulated", "--passes-arg", "layr=x"]) == 2
    assert "--passes: (top level): unknown key 'layr' (did you mean 'layer'?)" in capsys.readouterr().err


def test_an_aux_head_before_the_shifted_layer_is_refused(tmp_path, tiny_spec_file):
    text = tiny_spec_file.read_text().replace('input = "c4"', 'input = "c2"')
    spec = load_spec(simulated(tiny_spec_file, text=text))
    with pytest.raises(CtxsegError, match="an auxiliary head reads a feature from before 'backbone.layer2'"):
        train(spec, tmp_path / "aux", progress=False)


def test_training_names_a_bad_layer_before_it_starts(tmp_path, tiny_spec_file):
    spec = load_spec(simulated(tiny_spec_file, "backbone.layer1", "test = false\n"))
    with pytest.raises(SpecError, match=r"tiny.toml: run.passes.layer: 'backbone.layer1' must down-sample"):
        train(spec, tmp_path / "bad", source=str(tiny_spec_file), progress=False)
    assert not (tmp_path / "bad" / "checkpoint.safetensors").exists()


def test_inspect_reports_the_inference_output_stride(tiny_spec_file, capsys):
    simulated(tiny_spec_file)
    assert main(["inspect", str(tiny_spec_file), "--json", "--input-size", "32", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["output_stride"], report["inference_output_stride"]) == (8, 4)
    assert main(["inspect", str(tiny_spec_file), "--input-size", "32", "32"]) == 0
    assert "output stride at inference (run.passes)           4" in capsys.readouterr().out
