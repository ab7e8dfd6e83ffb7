"""Contracts of the training components: losses, schedules and optimizers."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from ctxseg.registry import Kind
from ctxseg.testing._harness import (
    _SEED,
    BATCH,
    _construct,
    _describe,
    _fail,
    _make_config,
    _seeded,
    _settings,
    _single_threaded,
    _who,
)

__all__ = ["check_loss", "check_optimizer", "check_schedule"]


@_single_threaded
def check_loss(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Scores ``(2, K, h, w)`` and labels -> a finite scalar >= 0 that ignores ``ignore_index``.

    For K 2-6, h, w 1-8, logits up to 30 in size and up to most pixels ignored: the
    gradient reaches the scores, ignored pixels get exactly zero gradient (they
    contribute neither to the value nor to the gradient), an all-ignored batch (a
    crop of void) gives 0 rather than NaN, and the inputs are not modified in place.
    """
    who = _who(Kind.LOSS, cls, name)
    config = _make_config(who, cls, config)

    @_settings(max_examples)
    @given(
        num_classes=st.integers(2, 6), height=st.integers(1, 8), width=st.integers(1, 8),
        ignore_index=st.sampled_from((255, -1)), ignored=st.sampled_from((0.0, 0.3, 0.8)),
        scale=st.sampled_from((0.1, 1.0, 30.0)), seed=_SEED,
    )
    def loss_example(num_classes: int, height: int, width: int, ignore_index: int, ignored: float,
                     scale: float, seed: int) -> None:
        where = f"scores (2, {num_classes}, {height}, {width}), ignore_index={ignore_index}"
        with _seeded(seed):
            loss_fn = _construct(who, lambda: cls(config, ignore_index), where)
            scores = (torch.randn(BATCH, num_classes, height, width) * scale).requires_grad_(True)
            target = torch.randint(0, num_classes, (BATCH, height, width))
            void = torch.rand(BATCH, height, width) < ignored
            void[0, 0, 0] = False  # at least one labelled pixel
            target[void] = ignore_index
            scores_before, target_before = scores.detach().clone(), target.clone()

            loss = _evaluate_loss(who, loss_fn, scores, target, where)
            if not (torch.equal(scores.detach(), scores_before) and torch.equal(target, target_before)):
                _fail(who, f"modifies its inputs in place ({where})")
            if not torch.isfinite(loss) or loss.item() < 0:
                _fail(who, f"loss is {loss.item()}, expected a finite value >= 0 ({where})")
            loss.backward()
            grad = scores.grad
            if grad is None or not (grad != 0).any():
                _fail(who, f"the gradient does not reach the scores ({where})")
            if not torch.isfinite(grad).all():
                _fail(who, f"the scores get a non-finite gradient ({where})")
            leaked = grad.detach().permute(0, 2, 3, 1)[void]  # (ignored pixels, K)
            if (leaked != 0).any():
                _fail(who, f"pixels labelled ignore_index get a non-zero gradient "
                           f"(max |grad| {leaked.abs().max().item():.3g}) ({where})")

            scores.grad = None
            loss = _evaluate_loss(who, loss_fn, scores, torch.full_like(target, ignore_index), where)
            if not torch.isfinite(loss) or loss.item() != 0:
                _fail(who, f"an all-ignored batch gives loss {loss.item()}, expected 0 "
                           f"(a mean over zero pixels?) ({where})")
            if not loss.requires_grad:
                _fail(who, f"an all-ignored batch gives a loss outside the autograd graph, so backward() "
                           f"fails; return e.g. scores.sum() * 0 ({where})")
            loss.backward()
            if scores.grad is not None and not (scores.grad == 0).all():
                _fail(who, f"an all-ignored batch gives the scores a non-zero gradient ({where})")

    loss_example()


def _evaluate_loss(who: str, loss_fn: Any, scores: Tensor, target: Tensor, where: str) -> Tensor:
    try:
        loss = loss_fn(scores, target)
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{who}: forward raised {type(error).__name__}: {error} ({where})") from error
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        _fail(who, f"returned {_describe(loss)}, expected a scalar floating-point tensor ({where})")
    return loss


@_single_threaded
def check_schedule(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """``schedule(step)`` is a finite factor >= 0 at every step of every run length.

    For total_steps 1-300 and every step in [0, total_steps), including step 0 where a
    warm-up must not divide by zero. A schedule is stateless (resuming needs only the
    step), so asking for the steps in reverse order gives the same factors.
    """
    who = _who(Kind.SCHEDULE, cls, name)
    config = _make_config(who, cls, config)

    @_settings(max_examples)
    @given(total_steps=st.integers(1, 300))
    def schedule_example(total_steps: int) -> None:
        where = f"total_steps={total_steps}"
        schedule = _construct(who, lambda: cls(config, total_steps), where)
        factors = {}
        for step in range(total_steps):
            try:
                factor = float(schedule(step))
            except Exception as error:  # noqa: BLE001
                raise AssertionError(f"{who}: schedule({step}) raised {type(error).__name__}: {error} "
                                     f"({where})") from error
            if not (math.isfinite(factor) and factor >= 0):
                _fail(who, f"factor at step {step} is {factor}, expected a finite value >= 0 ({where})")
            factors[step] = factor
        for step in reversed(range(total_steps)):
            if float(schedule(step)) != factors[step]:
                _fail(who, f"is not stateless: step {step} gives {float(schedule(step))} when asked again, "
                           f"{factors[step]} before ({where})")

    schedule_example()


@_single_threaded
def check_optimizer(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """A step with a known gradient changes every parameter and keeps it finite.

    Built as ``cls(config, [{"params": [...]}])`` on a tiny ``nn.Linear``. It must be a
    ``torch.optim.Optimizer`` whose groups carry an ``"lr"`` (the schedule scales it),
    and resuming from its ``state_dict`` continues exactly as if never stopped.
    """
    who = _who(Kind.OPTIMIZER, cls, name)
    config = _make_config(who, cls, config)

    @_settings(max_examples)
    @given(in_features=st.integers(1, 4), out_features=st.integers(1, 4), seed=_SEED)
    def optimizer_example(in_features: int, out_features: int, seed: int) -> None:
        where = f"nn.Linear({in_features}, {out_features})"
        with _seeded(seed):
            model = nn.Linear(in_features, out_features)
            grads = [_nonzero_like(p) for p in model.parameters()]
            optimizer = _construct(who, lambda: cls(config, [{"params": list(model.parameters())}]), where)
            if not isinstance(optimizer, torch.optim.Optimizer):
                _fail(who, f"is a {type(optimizer).__name__}, not a torch.optim.Optimizer ({where})")
            if not all("lr" in group for group in optimizer.param_groups):
                _fail(who, f"has a parameter group without 'lr': the schedule cannot scale it ({where})")
            before = [p.detach().clone() for p in model.parameters()]
            _step(who, optimizer, model, grads, where)
            for (param_name, param), old in zip(model.named_parameters(), before):
                if not torch.isfinite(param).all():
                    _fail(who, f"a step makes {param_name!r} non-finite ({where})")
                if torch.equal(param.detach(), old):
                    _fail(who, f"a step with a non-zero gradient leaves {param_name!r} unchanged ({where})")

            # Resume: a fresh optimizer loaded from the state dict takes the same next step.
            resumed_model = copy.deepcopy(model)
            resumed = cls(config, [{"params": list(resumed_model.parameters())}])
            resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
            _step(who, optimizer, model, grads, where)
            _step(who, resumed, resumed_model, grads, where)
            for (param_name, param), other in zip(model.named_parameters(), resumed_model.parameters()):
                if not torch.equal(param, other):
                    _fail(who, f"resuming from state_dict() changes the next step of {param_name!r} ({where})")

    optimizer_example()


def _nonzero_like(param: Tensor) -> Tensor:
    grad = torch.randn_like(param)
    return torch.where(grad.abs() < 0.1, torch.full_like(grad, 0.5), grad)


def _step(who: str, optimizer: torch.optim.Optimizer, model: nn.Module, grads: list[Tensor], where: str) -> None:
    for param, grad in zip(model.parameters(), grads):
        param.grad = grad.clone()
    try:
        optimizer.step()
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{who}: step() raised {type(error).__name__}: {error} ({where})") from error
