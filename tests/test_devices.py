"""The CUDA paths, taken from a CPU machine: device per process, collective backend, precision "auto",
and torch.compile reaching the training step."""

from __future__ import annotations

import json

import pytest
import torch

from ctxseg.engine import distributed
from ctxseg.engine import train as train_module
from ctxseg.engine.runtime import choose_device, choose_precision
from ctxseg.files.weights import read_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec
from ctxseg.testing.tolerance import training_bound


@pytest.mark.parametrize(("requested", "cuda", "local_rank", "expected"), [
    ("auto", False, 0, "cpu"),
    ("auto", True, 3, "cuda:3"),   # torchrun's fourth process on a node drives its fourth GPU
    ("cuda", True, 1, "cuda:1"),
    ("cpu", True, 2, "cpu"),
])
def test_each_process_takes_its_local_gpu(requested, cuda, local_rank, expected):
    assert choose_device(requested, cuda, local_rank) == torch.device(expected)


def test_gpus_talk_over_nccl_and_cpus_over_gloo():
    assert distributed.backend(torch.device("cuda", 0)) == "nccl"
    assert distributed.backend(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize(("native", "emulated", "expected"), [(True, True, "bf16"), (False, True, "fp32"),
                                                             (False, False, "fp32")])
def test_auto_precision_trains_in_bf16_on_a_gpu_that_runs_it_natively(monkeypatch, native, emulated, expected):
    """A GPU that only emulates bf16 (before Ampere) trains in fp32."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or (including_emulation and emulated))
    assert choose_precision("auto", torch.device("cuda", 0)) == expected
    assert choose_precision("fp32", torch.device("cuda", 0)) == "fp32"


def test_auto_precision_keeps_cpu_training_in_fp32(monkeypatch):
    """Even where torch reports AMX and AVX-512 BF16: CPU training keeps fp32's numbers everywhere."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert choose_precision("auto", torch.device("cpu")) == "fp32"
    assert choose_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.numerics
def test_compile_trains_through_torch_compile(tmp_path, tiny_spec_file):
    """``[run] compile = true``: the step runs the compiled model (dynamo traced frames),
    reaches the weights eager training reaches, and the first step is timed apart."""
    text = tiny_spec_file.read_text().replace("steps = 4", "steps = 2").replace("eval_every = 2", "eval_every = 0")
    eager_spec = tmp_path / "eager.toml"
    eager_spec.write_text(text)
    compiled_spec = tmp_path / "compiled.toml"
    compiled_spec.write_text(text.replace('device = "cpu"', 'device = "cpu"\ncompile = true'))
    assert load_spec(compiled_spec).run.compile

    # inductor's C++ code generation takes minutes on two cores; aot_eager traces the same forward
    # and backward graphs, where a model that cannot compile fails (the benchmark runs inductor)
    compiled = []
    real_compile = torch.compile
    def spy(model, **kwargs):
        compiled.append(real_compile(model, **{**kwargs, "backend": "aot_eager"}))
        return compiled[-1]
    torch._dynamo.reset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module.torch, "compile", spy)
        train_module.train(load_spec(compiled_spec), tmp_path / "compiled", progress=False)
    train_module.train(load_spec(eager_spec), tmp_path / "eager", progress=False)

    assert len(compiled) == 1 and torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    metrics = json.loads((tmp_path / "compiled" / "metrics.json").read_text())
    assert 0 < metrics["first_step_seconds"] <= metrics["train_seconds"]
    eager = read_weights(tmp_path / "eager" / "model.safetensors")[0]
    fused = read_weights(tmp_path / "compiled" / "model.safetensors")[0]
    # aot_eager decomposes the ops, so it sums in its own order: within rounding of how far the weights moved
    spec = load_spec(eager_spec)
    torch.manual_seed(spec.run.seed)
    model = SegmentationModel(spec.model, 8)  # as training drew it: context scenes' 8 classes
    initial = model.state_dict()
    for key, value in eager.items():
        moved = (value.double() - initial[key].double()).abs().max().item()
        torch.testing.assert_close(fused[key], value, rtol=0, atol=training_bound(model, moved, 2 * 48 * 48), msg=key)
