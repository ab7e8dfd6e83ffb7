"""Training on two CPU processes (gloo) is training on one with the whole batch.

Two processes with 2 samples each must give the weights one process gives with the
4-sample global batch: the same samples and augmentations (the sampler shards each global
batch), batch norm over all 4 (synchronized), and the loss over every labelled pixel of the
global batch, across accumulation steps and processes. The processes add their partial
sums in another order than one process does, so the weights agree to float32 rounding,
not bit for bit: each tensor within the training bound of how far it moved from its
initial value (``ctxseg.testing.tolerance.training_bound``: a weight's gradient sums over
the global batch's pixels), at lr 0.001 and 4 steps (at 0.01 the tiny model is chaotic: a
1e-7 difference grows about 100-fold a step). A wrong batch statistic moves them far
beyond it (the unsynchronized control).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ctxseg.engine import distributed
from ctxseg.engine import train as train_module
from ctxseg.errors import SpecError, WeightsError
from ctxseg.files.weights import read_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec
from ctxseg.testing.tolerance import training_bound

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_env(rank: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


class _Killed(Exception):
    pass


def _forbid_writes() -> None:
    """In a process other than the first, any file written by training fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"process {dist.get_rank()} wrote a file")
    for name in ("save_checkpoint", "save_weights", "atomic_path", "plot_curves", "save_png"):
        setattr(train_module, name, refuse)


def _worker(rank: int, port: int, runs: dict[str, str], resume_spec: str, odd_spec: str) -> None:
    """Every scenario of one process of the pair, in one process group (spawning is the slow part)."""
    os.environ.update(_rank_env(rank, port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        if rank:
            _forbid_writes()
        for spec, out in runs.items():
            train_module.train(load_spec(spec), Path(out), progress=False)

        # killed after the step-2 checkpoint, as every process reaches step 4's, then resumed
        real = train_module._random_states
        calls = []
        def die_at_second_checkpoint(device):
            calls.append(device)
            if len(calls) == 2:
                raise _Killed
            return real(device)
        train_module._random_states = die_at_second_checkpoint
        with pytest.raises(_Killed):
            train_module.train(load_spec(resume_spec), Path(runs[resume_spec] + "-killed"), progress=False)
        train_module._random_states = real
        train_module.train(load_spec(resume_spec), Path(runs[resume_spec] + "-killed"), resume=True, progress=False)

        with pytest.raises(SpecError, match="data.batch_size: 3 is the global batch, split across the 2 "
                                            "processes of this run; it must divide by 2"):
            train_module.train(load_spec(odd_spec), Path(runs[resume_spec] + "-odd"), progress=False)
    finally:
        dist.destroy_process_group()


def _variant(tmp_path, text: str, name: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_spec_text):
    """The 2-process runs (in ``runs[spec]``) and the specs they ran."""
    tmp_path = tmp_path_factory.mktemp("distributed")
    # no dropout: each process draws its own masks, for its own samples
    base = tiny_spec_text.replace("batch_size = 2", "batch_size = 4")
    base = base.replace("channels = ", "dropout = 0.0\nchannels = ")
    base = base.replace("[run]", '[optimizer]\nname = "base.sgd"\nlr = 0.001\n\n[run]')
    assert base.count("dropout = 0.0") == 2
    specs = {
        "plain": _variant(tmp_path, base, "plain", ("[run]", '[[metrics]]\nname = "gcn.boundary"\n\n[run]')),
        # rotation fills the corners with ignore pixels, a different number in every crop
        "ignore": _variant(tmp_path, base, "ignore", ("batch_size = 4", "batch_size = 4\nrotate = [-30.0, 30.0]"),
                           ('device = "cpu"', 'device = "cpu"\naccumulate = 2')),
        "unsynced": _variant(tmp_path, base, "unsynced", ('device = "cpu"', 'device = "cpu"\nsync_batch_norm = false')),
        "bf16": _variant(tmp_path, base, "bf16", ('device = "cpu"', 'device = "cpu"\nprecision = "bf16"\n'
                                                                    + "channels_last = true")),
        # FCRN: four shifted passes per batch through the replica, batch norm frozen (never synchronized)
        "simulated": _variant(tmp_path, base, "simulated", ("[data]", '[model]\nbatch_norm = "frozen_statistics"\n\n[data]'),
                              ('device = "cpu"', 'device = "cpu"\n\n[run.passes]\nname = "fcrn.simulated"\n'
                                                 + 'layer = "backbone.layer2"\n')),
    }
    # one step of each: weights compared before an untrained network's sensitivity grows the rounding
    specs.update({f"{name}, 1 step": _variant(tmp_path, Path(spec).read_text(), f"{name}-1", ("steps = 4", "steps = 1"),
                                               ("eval_every = 2", "eval_every = 0"))
                  for name, spec in specs.items()})
    odd = _variant(tmp_path, base, "odd", ("batch_size = 4", "batch_size = 3"))
    runs = {spec: str(tmp_path / f"{name}-2") for name, spec in specs.items()}
    mp.spawn(_worker, args=(_free_port(), runs, specs["ignore"], odd), nprocs=2)
    return specs, runs


def _weights(run: str) -> dict[str, torch.Tensor]:
    return read_weights(os.path.join(run, "model.safetensors"))[0]


def _initial(spec: str) -> dict[str, torch.Tensor]:
    """The weights a training of ``spec`` starts from (context scenes' 8 classes)."""
    torch.manual_seed(load_spec(spec).run.seed)
    return SegmentationModel(load_spec(spec).model, 8).state_dict()


def _excess(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], spec: str) -> float:
    """The largest difference between two trainings' weights in units of its bound, below 1 where
    they agree to rounding: the training bound of how far ``b``'s tensor moved from its initial
    value (the global batch: 4 images of 48 x 48 pixels)."""
    assert a.keys() == b.keys()
    loaded = load_spec(spec)
    model, initial = SegmentationModel(loaded.model, 8), _initial(spec)

    def bound(key: str) -> float:
        moved = (b[key].double() - initial[key].double()).abs().max().item()
        return training_bound(model, moved, 4 * 48 * 48, value=b[key].abs().max().item(), steps=loaded.run.steps)
    return max(((a[k].double() - b[k].double()).abs().max() / bound(k)).item()
               for k in a if a[k].is_floating_point() and not a[k].equal(b[k]))


@pytest.fixture(scope="module")
def singles(pair, tmp_path_factory):
    """The same specs trained in this one process, by name."""
    specs, _ = pair
    tmp_path = tmp_path_factory.mktemp("single")
    names = [f"{name}{steps}" for name in ("plain", "ignore", "simulated") for steps in ("", ", 1 step")]
    for name in names:
        train_module.train(load_spec(specs[name]), tmp_path / name, progress=False)
    return {name: str(tmp_path / name) for name in names}


@pytest.mark.parametrize("name", ["plain", "ignore", "simulated"])
def test_two_processes_train_as_one_with_the_whole_batch(pair, singles, name, undetermined):
    specs, runs = pair
    first = f"{name}, 1 step"
    assert _excess(_weights(runs[specs[first]]), _weights(singles[first]), specs[first]) < 1
    # each process evaluated half the images; the confusion matrices (and metric sums) were added up:
    # a pixel counted in another cell than one process counts it must be one whose label the
    # models' rounding-level difference can flip (each such pixel moves two cells by one)
    final = json.loads((Path(singles[name]) / "metrics.json").read_text())["final"]
    distributed = json.loads((Path(runs[specs[name]]) / "metrics.json").read_text())
    assert distributed["processes"] == 2 and final["inference"]["precision"] == "fp32"
    flippable = undetermined(Path(singles[name]) / "model.safetensors", Path(runs[specs[name]]) / "model.safetensors")
    moved = (torch.tensor(distributed["final"]["confusion"]) - torch.tensor(final["confusion"])).abs().sum()
    assert moved <= 2 * flippable, (moved, flippable)
    if name == "plain" and not flippable:
        assert distributed["final"]["boundary_accuracy"] == pytest.approx(final["boundary_accuracy"], rel=1e-12)


def test_without_synchronized_batch_norm_the_processes_differ(pair, singles):
    """The control: the bound above rejects per-process batch statistics (16 times it, measured)."""
    specs, runs = pair
    unsynced, plain = specs["unsynced, 1 step"], specs["plain, 1 step"]
    assert _excess(_weights(runs[unsynced]), _weights(singles["plain, 1 step"]), plain) > 1


def test_bf16_and_channels_last_train_under_ddp(pair, singles):
    """Autocast and channels_last through the replica and the CPU batch norm: the run completes with
    finite weights, and its first step moves them where fp32's does, up to less than the step
    itself (bf16's rounding of a gradient's sum over 9,216 pixels has no useful finer bound)."""
    specs, runs = pair
    assert all(torch.isfinite(w).all() for w in _weights(runs[specs["bf16"]]).values() if w.is_floating_point())
    bf16, fp32 = _weights(runs[specs["bf16, 1 step"]]), _weights(singles["plain, 1 step"])
    initial = _initial(specs["plain, 1 step"])
    steps = {k: (fp32[k].double() - initial[k].double(), bf16[k].double() - initial[k].double())
             for k in fp32 if fp32[k].is_floating_point()}
    apart = sum((b - a).square().sum() for a, b in steps.values()).sqrt()
    assert apart < sum(a.square().sum() for a, _ in steps.values()).sqrt()


def test_a_killed_distributed_run_resumes_to_the_same_weights(pair):
    specs, runs = pair
    straight, resumed = _weights(runs[specs["ignore"]]), _weights(runs[specs["ignore"]] + "-killed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_distributed_checkpoint_is_not_resumed_in_one_process(pair):
    specs, runs = pair
    with pytest.raises(WeightsError, match=r"written by a run on 2 process\(es\), this one has 1; resume it "
                                           r"on 2 processes \(torchrun\)"):
        train_module.train(load_spec(specs["ignore"]), Path(runs[specs["ignore"]] + "-killed"), resume=True,
                           progress=False)


def test_torchrun_trains_from_the_command_line(tmp_path, tiny_spec_text):
    """What users type: ``torchrun --nproc-per-node 2 -m ctxseg train``; one table is printed."""
    spec = _variant(tmp_path, tiny_spec_text, "cli", ("steps = 4", "steps = 2"))
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(_free_port()), "-m", "ctxseg", "train", spec, "--out", str(out),
                           "--quiet"], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("mean iou") == 1 and "run directory" in done.stdout
    assert json.loads((out / "metrics.json").read_text())["processes"] == 2


def test_synchronized_batch_norm_keeps_state_and_frozen_parameters():
    """The swap changes how statistics are gathered, nothing else: values, which parameters
    train, train/eval mode; outside a process group it normalizes as batch norm does."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    model[2].requires_grad_(False)
    model[2].eval()
    images = torch.randn(2, 3, 8, 8)
    expected = model(images)
    model[1].running_mean.fill_(0.5)
    assert distributed.synchronize_batch_norm(model, torch.device("cpu")) == 2
    assert all(isinstance(m, distributed.GlooSyncBatchNorm) for m in model[1:])
    assert model[1].running_mean.eq(0.5).all() and model[1].training and not model[2].training
    assert model[1].weight.requires_grad and not model[2].weight.requires_grad
    assert torch.allclose(model(images), expected, atol=1e-6)
