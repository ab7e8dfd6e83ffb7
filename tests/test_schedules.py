"""The schedules give the learning rates of torch.optim.lr_scheduler's own schedulers, step by step;
the optimizers are torch's, configured from TOML; backbone_lr_factor scales the backbone's steps."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from torch.optim import lr_scheduler

from ctxseg.builtin.optimizers import SGD, Adam, AdamW
from ctxseg.builtin.schedules import Cosine, MultiStep, Poly, Step
from ctxseg.engine.train import train
from ctxseg.errors import SpecError
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec, spec_from_dict
from ctxseg.spec.convert import structure
from ctxseg.testing.tolerance import unit_roundoff

BASE_LR = 0.1


def _torch_rates(make, steps: int, warmup_steps: int) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under ``make(optimizer)``, after torch's
    LinearLR warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps, the two chained."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = make(optimizer)
    if warmup_steps > 1:
        warmup = lr_scheduler.LinearLR(optimizer, 1 / warmup_steps, 1.0, total_iters=warmup_steps - 1)
        scheduler = lr_scheduler.ChainedScheduler([warmup, scheduler])
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _ours(cls, config: dict, steps: int) -> list[float]:
    schedule = cls(structure(config, cls.Config, source="test"), steps)
    return [BASE_LR * schedule(step) for step in range(steps)]


WARMUPS = pytest.mark.parametrize("warmup_steps", [0, 1, 7])


@WARMUPS
@pytest.mark.parametrize("power", [0.9, 1.0, 2.0])
def test_poly_is_torchs_polynomial_lr(warmup_steps: int, power: float) -> None:
    steps = 50
    expected = _torch_rates(lambda o: lr_scheduler.PolynomialLR(o, total_iters=steps, power=power), steps,
                            warmup_steps)
    assert _ours(Poly, {"power": power, "warmup_steps": warmup_steps}, steps) == pytest.approx(expected, rel=1e-9)


@WARMUPS
@pytest.mark.parametrize("steps", [1, 2, 50, 101])
def test_cosine_is_torchs_cosine_annealing(warmup_steps: int, steps: int) -> None:
    expected = _torch_rates(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=steps), steps, warmup_steps)
    assert _ours(Cosine, {"warmup_steps": warmup_steps}, steps) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("min_factor", [0.01, 0.5])
def test_cosine_anneals_to_min_factor_as_torchs_eta_min(min_factor: float) -> None:
    steps = 60  # no warm-up: torch's cosine with eta_min is not a factor that chains with one
    expected = _torch_rates(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=steps, eta_min=min_factor * BASE_LR),
                            steps, 0)
    assert _ours(Cosine, {"min_factor": min_factor}, steps) == pytest.approx(expected, rel=1e-9)


@WARMUPS
@pytest.mark.parametrize("gamma", [0.1, 0.5])
def test_step_is_torchs_step_lr(warmup_steps: int, gamma: float) -> None:
    expected = _torch_rates(lambda o: lr_scheduler.StepLR(o, step_size=13, gamma=gamma), 60, warmup_steps)
    ours = _ours(Step, {"step_size": 13, "gamma": gamma, "warmup_steps": warmup_steps}, 60)
    assert ours == pytest.approx(expected, rel=1e-9)


@WARMUPS
@pytest.mark.parametrize("milestones", [[1], [5, 20, 21], [30, 100]])
def test_multistep_is_torchs_multistep_lr(warmup_steps: int, milestones: list[int]) -> None:
    expected = _torch_rates(lambda o: lr_scheduler.MultiStepLR(o, milestones=milestones, gamma=0.1), 60,
                            warmup_steps)
    ours = _ours(MultiStep, {"milestones": milestones, "warmup_steps": warmup_steps}, 60)
    assert ours == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("schedule", "message"), [
    ({"name": "base.multistep", "milestones": [20, 10]}, "'milestones' must be increasing steps >= 1, got [20, 10]"),
    ({"name": "base.multistep"}, "schedule.milestones: required key missing"),
    ({"name": "base.step", "step_size": 0}, "'step_size' must be >= 1"),
    ({"name": "base.cosine", "min_factor": 1.5}, "'min_factor' must be <= 1.0"),
])
def test_schedule_spec_errors(schedule: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "schedule": schedule})
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize(("cls", "torch_cls", "config", "expected"), [
    (SGD, torch.optim.SGD, {}, {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}),
    (Adam, torch.optim.Adam, {"betas": [0.8, 0.99]}, {"lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-8,
                                                       "weight_decay": 0.0}),
    (AdamW, torch.optim.AdamW, {"lr": 6e-5}, {"lr": 6e-5, "betas": (0.9, 0.999), "eps": 1e-8,
                                              "weight_decay": 0.01}),
])
def test_optimizers_are_torchs_with_the_tables_values(cls, torch_cls, config: dict, expected: dict) -> None:
    """A step takes the same values as torch's optimizer given the same hyperparameters."""
    params, reference = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    reference.load_state_dict(params.state_dict())
    ours = cls(structure(config, cls.Config, source="test"), params.parameters())
    theirs = torch_cls(reference.parameters(), **expected)
    assert {key: ours.param_groups[0][key] for key in expected} == expected
    for _ in range(3):
        for optimizer, module in ((ours, params), (theirs, reference)):
            optimizer.zero_grad()
            module(torch.ones(4, 3)).square().sum().backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(params.parameters(), reference.parameters(), strict=True))


def test_betas_are_checked() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"model": {"backbone": {"name": "base.resnet"}},
                        "optimizer": {"name": "base.adamw", "betas": [0.9, 1.0]}})
    assert "'betas' must be two numbers in [0, 1), got [0.9, 1.0]" in str(info.value)


def test_backbone_lr_factor_scales_the_backbones_step_only(tmp_path, tiny_spec_file) -> None:
    """One plain SGD step (no momentum, no weight decay: the step is lr x gradient), from the same weights on
    the same batch: with backbone_lr_factor = 0.25 the backbone moves a quarter as far, the new layers as far."""
    text = tiny_spec_file.read_text().replace("[data]", '[model]\nbatch_norm = "frozen_statistics"\n\n[data]')
    text = text.replace("steps = 4", "steps = 1").replace("eval_every = 2", "eval_every = 0")
    text += '\n[optimizer]\nname = "base.sgd"\nmomentum = 0.0\nweight_decay = 0.0\n'
    (tmp_path / "full.toml").write_text(text)
    (tmp_path / "quarter.toml").write_text(text + "backbone_lr_factor = 0.25\n")
    spec = load_spec(tmp_path / "quarter.toml")
    assert spec.optimizer.backbone_lr_factor == 0.25
    for name in ("full", "quarter"):
        train(load_spec(tmp_path / f"{name}.toml"), tmp_path / name, progress=False)
    full, quarter = (safetensors.torch.load_file(tmp_path / name / "model.safetensors") for name in ("full", "quarter"))
    torch.manual_seed(spec.run.seed)
    model = SegmentationModel(spec.model, 8)
    initial = dict(model.named_parameters())
    u = unit_roundoff(torch.float32)
    for key, start in initial.items():
        factor = 0.25 if key.startswith("backbone.") else 1.0
        start, moved = start.detach().double(), full[key].double()
        expected = start + factor * (moved - start)
        # each run rounds p - lr * g twice (the product, the sum), to within u of |p| and of |lr * g| each
        bound = 2 * u * (start.abs() + (moved - start).abs())
        assert ((quarter[key].double() - expected).abs() <= bound).all(), key
    assert sum(not full[key].equal(start) for key, start in initial.items() if key.startswith("backbone.")) > 10


def test_backbone_lr_factor_is_checked() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"model": {"backbone": {"name": "base.resnet"}},
                        "optimizer": {"name": "base.sgd", "backbone_lr_factor": -1.0}})
    assert "optimizer" in str(info.value) and "'backbone_lr_factor' must be >= 0.0" in str(info.value)
