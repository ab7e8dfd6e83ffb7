"""On a CUDA device: the process's GPU, bf16 autocast, channels_last, torch.compile's GPU kernels,
SyncBatchNorm under DistributedDataParallel over NCCL, and ``ctxseg train`` resumed.

tests/test_devices.py takes these paths from a CPU machine with stand-ins; here they run for
real. Marked ``cuda`` and skipped without a CUDA device: ``pytest -m cuda`` runs them alone,
as examples/benchmarks/gpu_check.sh does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctxseg.cli import main
from ctxseg.engine import distributed
from ctxseg.engine import train as train_module
from ctxseg.engine.runtime import Runtime
from ctxseg.engine.train import train
from ctxseg.files.checkpoint import rng_key
from ctxseg.files.weights import read_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import RunSpec, load_spec
from ctxseg.testing.tolerance import TF32, training_bound

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason=f"no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
                              f"built with CUDA {torch.version.cuda})"),
]


GENTLE = ("[run]", '[optimizer]\nname = "base.sgd"\nlr = 0.001\n\n[run]')
"""lr 0.001: where two runs start float32 rounding apart, the tiny model keeps them that close
(at the default 0.01 it is chaotic, see tests/test_distributed.py)."""
FP32 = ('device = "cuda"', 'device = "cuda"\nprecision = "fp32"')


def _variant(tmp_path: Path, text: str, name: str, *replacements: tuple[str, str]) -> Path:
    """The tiny spec ``text`` on the GPU, with each (old, new) replaced, written to ``name``.toml."""
    for old, new in (('device = "cpu"', 'device = "cuda"'), *replacements):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_auto_runs_on_the_gpu_of_its_local_rank(monkeypatch):
    """torchrun's ``LOCAL_RANK``-th process drives the ``LOCAL_RANK``-th GPU; "auto" precision
    trains in bf16 where the GPU runs it natively (compute capability 8.0 and up)."""
    last = torch.cuda.device_count() - 1
    monkeypatch.setenv("LOCAL_RANK", str(last))
    runtime = Runtime(RunSpec())
    assert runtime.device == torch.device("cuda", last)
    assert runtime.model(nn.Conv2d(3, 4, 3)).weight.device == runtime.device
    assert runtime.images(torch.rand(1, 3, 8, 8)).device == runtime.device
    assert runtime.precision == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp32")


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_autocast_runs_convolutions_in_the_run_precision(precision, dtype):
    runtime = Runtime(RunSpec(device="cuda", precision=precision))
    conv = runtime.model(nn.Conv2d(3, 4, 3))
    with runtime.autocast():
        out = conv(runtime.images(torch.rand(2, 3, 8, 8)))
    assert out.is_cuda and out.dtype == dtype
    assert conv.weight.dtype == torch.float32


def test_bf16_and_channels_last_reach_every_convolution_of_a_training_step(tmp_path, tiny_spec_text):
    spec = _variant(tmp_path, tiny_spec_text, "cl", ("steps = 4", "steps = 1"),
                    ('device = "cuda"', 'device = "cuda"\nprecision = "bf16"\nchannels_last = true'))
    seen = []

    def record(module, inputs, output):
        if isinstance(module, nn.Conv2d) and module.training and torch.is_grad_enabled():
            seen.append((inputs[0].device.type, inputs[0].is_contiguous(memory_format=torch.channels_last),
                         output.dtype))

    hook = nn.modules.module.register_module_forward_hook(record)
    try:
        train(load_spec(spec), tmp_path / "run", progress=False)
    finally:
        hook.remove()
    assert len(seen) > 20  # resnet18's convs, the FCN head's and the auxiliary head's, one step
    assert set(seen) == {("cuda", True, torch.bfloat16)}
    weights = read_weights(tmp_path / "run" / "model.safetensors")[0]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_compiled_training_reaches_the_weights_eager_training_reaches(tmp_path, tiny_spec_text):
    """``[run] compile = true`` through inductor's Triton kernels: in fp32 (TF32 convolutions, as
    eager's) and without dropout (inductor draws its masks with its own generator), two steps
    land where eager's do, to rounding."""
    common = (("steps = 4", "steps = 2"), ("eval_every = 2", "eval_every = 0"),
              ("channels = ", "dropout = 0.0\nchannels = "), GENTLE, FP32)
    eager = _variant(tmp_path, tiny_spec_text, "eager", *common)
    compiled = _variant(tmp_path, tiny_spec_text, "compiled", *common,
                        ('precision = "fp32"', 'precision = "fp32"\ncompile = true'))
    assert load_spec(compiled).run.compile

    torch._dynamo.reset()
    train(load_spec(compiled), tmp_path / "compiled", progress=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    train(load_spec(eager), tmp_path / "eager", progress=False)

    metrics = json.loads((tmp_path / "compiled" / "metrics.json").read_text())
    assert 0 < metrics["first_step_seconds"] <= metrics["train_seconds"]
    expected = read_weights(tmp_path / "eager" / "model.safetensors")[0]
    fused = read_weights(tmp_path / "compiled" / "model.safetensors")[0]
    _within_training_rounding(fused, expected, compiled)


def _within_training_rounding(got: dict, expected: dict, spec: Path) -> None:
    """Two trainings of ``spec`` (batch 2, 48 px) that round differently end within the training
    bound of TF32 (CUDA's fp32 convolutions) of how far each tensor moved from its initial value."""
    torch.manual_seed(load_spec(spec).run.seed)
    model = SegmentationModel(load_spec(spec).model, 8)  # as training drew it: context scenes' 8 classes
    initial = model.state_dict()
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        moved = (value.double() - initial[key].double()).abs().max().item()
        torch.testing.assert_close(got[key], value, rtol=0, atol=training_bound(model, moved, 2 * 48 * 48, TF32),
                                   msg=key)


@pytest.fixture
def nccl_group(tmp_path):
    """This process as the one rank of a process group over NCCL, joined as distributed.session joins one."""
    device = torch.device("cuda", distributed.local_rank())
    torch.cuda.set_device(device)  # first: NCCL binds the process's communicator to the current device
    dist.init_process_group("nccl", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1,
                            device_id=device)
    yield device
    dist.destroy_process_group()


def test_synchronized_batch_norm_trains_under_ddp_over_nccl(nccl_group, tiny_spec_file):
    """The multi-GPU wiring on one GPU: torch's SyncBatchNorm in place of every batch norm, the
    DistributedDataParallel replica, one training step, and the engine's sums and gathers of CPU
    tensors through NCCL (which reduces GPU tensors only). With one rank SyncBatchNorm
    normalizes locally; tests/test_distributed.py checks the global statistics on CPU processes."""
    device = nccl_group
    model = SegmentationModel(load_spec(tiny_spec_file).model, 8).to(device).train()
    replaced = distributed.synchronize_batch_norm(model, device)
    assert replaced > 0 and sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == replaced
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())

    replica = distributed.replicate(model, device, side=4 * max(model.backbone.strides.values()))
    assert isinstance(replica, DistributedDataParallel)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.rand(2, 3, 48, 48, device=device)
    labels = torch.randint(0, 8, (2, 48, 48), device=device)
    loss = sum(F.cross_entropy(scores, labels) for scores in replica(images).values())
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    synced = next(m for m in model.modules() if isinstance(m, nn.SyncBatchNorm))
    assert synced.num_batches_tracked.item() == 1  # the step's statistics; replicate's probe put its own back

    assert distributed.all_sum(torch.tensor([1.5], dtype=torch.float64)).tolist() == [1.5]
    state = torch.cuda.get_rng_state(device)
    assert [s.equal(state) for s in distributed.gather(state)] == [True]


def test_cli_trains_on_the_gpu_and_resumes_a_killed_run(tmp_path, tiny_spec_text, monkeypatch, capsys):
    """``ctxseg train`` on the GPU, and a run killed after its step-2 checkpoint, then resumed
    with ``--resume`` from its weights, optimizer and CPU and CUDA random states (dropout draws
    on the GPU). CUDA's atomic adds (bilinear upsampling's backward) sum in no fixed order, so
    the two runs agree to float32 rounding, not bit for bit."""
    spec = str(_variant(tmp_path, tiny_spec_text, "tiny", GENTLE, FP32))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", spec, "--out", str(straight), "--quiet"]) == 0
    assert "mean iou" in capsys.readouterr().out
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["peak_memory"] == "cuda allocated" and metrics["peak_memory_mib"] > 0

    real_save = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    assert main(["train", spec, "--out", str(killed), "--quiet"]) == 130
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert rng_key("cuda", 0) in safetensors.torch.load_file(killed / "checkpoint.safetensors")
    assert not (killed / "model.safetensors").exists()
    assert main(["train", spec, "--out", str(killed), "--resume", "--quiet"]) == 0

    history = json.loads((killed / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history if "mean_iou" in h] == [2, 4]
    _within_training_rounding(read_weights(killed / "model.safetensors")[0],
                              read_weights(straight / "model.safetensors")[0], Path(spec))
