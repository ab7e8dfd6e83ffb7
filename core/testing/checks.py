"""Contract checks that every ctxseg component passes, whoever wrote it.

The framework composes components it has never seen: it builds a head from the
backbone's declared channels, fuses maps by their declared strides, and trusts a loss
to ignore what the dataset marks as void. These checks turn each interface of
:mod:`ctxseg.interfaces` into properties and let hypothesis try them on many small
inputs, so a plugin that passes them plugs into any model. A plugin runs them in its
own tests::

    from ctxseg.testing import check_component

    def test_my_head():
        check_component(MyHead, {"channels": 8}, kind="context_head")

or, for everything a plugin registers (``tests/test_contracts.py`` does this for
every registered component)::

    for component in registry.components():
        check_component(component)  # built with ``component.example``

A violation raises :class:`AssertionError` naming the component and the property,
for instance ``context_head 'pspnet.pyramid_pooling': output has 12 channels,
declared out_channels=16 (in_channels=8, input (2, 8, 5, 7))``; hypothesis adds the
smallest failing example it found. Runs are derandomized, so CI is reproducible.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.metadata
import math
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from ctxseg import interfaces
from ctxseg.config import structure
from ctxseg.errors import PluginError, SpecError
from ctxseg.registry import Component, Kind, Registry

__all__ = [
    "check_backbone",
    "check_component",
    "check_context_head",
    "check_dataset",
    "check_fusion",
    "check_loss",
    "check_optimizer",
    "check_plugin",
    "check_schedule",
]

BATCH = 2
"""Two samples: enough to see leakage across the batch, and batch norm trains on it."""

_HEAD_CHANNELS = st.integers(1, 16)
_CLASSES = st.integers(1, 6)
_SIDE = st.integers(1, 12)
_SEED = st.integers(0, 2**31 - 1)


# --------------------------------------------------------------------------------------
# Entry point


def check_component(
    component_or_class: Component | type,
    config: Any = None,
    *,
    kind: Kind | str | None = None,
    max_examples: int = 8,
) -> None:
    """Check any component against the contract of its kind.

    :param component_or_class: a registry :class:`~ctxseg.registry.Component` (its
        class is imported, its ``example`` table is the default ``config``), or the
        class itself.
    :param config: the component's ``Config`` instance, or a parameter table as in
        TOML; ``None`` means the component's example, else the ``Config`` defaults.
    :param kind: the interface a bare class implements; inferred from its base class
        (``ctxseg.interfaces``) when not given.
    :param max_examples: hypothesis examples per property.
    """
    if isinstance(component_or_class, Component):
        component = component_or_class
        kind, name = component.kind, component.name
        try:
            cls = component.load()
        except PluginError as error:  # already names the component, its distribution and target
            raise AssertionError(str(error)) from error
        except Exception as error:  # noqa: BLE001 - whatever the import raised is the plugin's
            raise AssertionError(
                f"{kind} {name!r}: cannot import {component.target!r}: {type(error).__name__}: {error}"
            ) from error
        if config is None:
            config = component.example
    else:
        cls, name = component_or_class, None
        kind = Kind(kind) if kind is not None else _infer_kind(cls)
    _CHECKS[Kind(kind)](cls, config, name=name, max_examples=max_examples)


def _infer_kind(cls: type) -> Kind:
    bases = {
        Kind.BACKBONE: interfaces.Backbone,
        Kind.CONTEXT_HEAD: interfaces.ContextHead,
        Kind.FUSION: interfaces.Fusion,
        Kind.LOSS: interfaces.Loss,
        Kind.SCHEDULE: interfaces.Schedule,
        Kind.OPTIMIZER: torch.optim.Optimizer,
        Kind.DATASET: interfaces.SegmentationDataset,
    }
    for kind, base in bases.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return kind
    raise TypeError(f"cannot tell which interface {cls!r} implements; pass kind= (one of {', '.join(Kind)})")


def _single_threaded(check: Callable[..., None]) -> Callable[..., None]:
    """Run a check on one torch thread: its tensors are tiny, and on a busy machine
    (CI, ``pytest -n``) idle worker threads spinning for a core make it several times slower."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


# --------------------------------------------------------------------------------------
# Modules: backbones, context heads, fusions


@_single_threaded
def check_backbone(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Images ``(2, 3, H, W)`` -> every declared output at its declared channels and stride.

    H and W are one or two multiples of the largest declared stride. Also checks, for
    each output: finite values; a gradient for every trainable parameter and for the
    images (train mode); bitwise-repeatable eval passes; no leakage across the batch
    in eval mode. The declaration itself must be well formed: the same names in
    ``channels`` and ``strides``, positive integers, strides non-decreasing from shallow
    to deep (``deepest`` is the last name).
    """
    who = _who(Kind.BACKBONE, cls, name)
    config = _make_config(who, cls, config)
    with _seeded(0):
        prototype = _construct(who, lambda: cls(config), "")
    channels, strides = _declared_dict(who, prototype, "channels"), _declared_dict(who, prototype, "strides")
    if not channels or list(channels) != list(strides):
        _fail(who, f"declares outputs {list(channels)} in channels but {list(strides)} in strides")
    for out, value in [*channels.items(), *strides.items()]:
        if not (isinstance(value, int) and value > 0):
            _fail(who, f"output {out!r} declares {value!r}; channels and strides are positive integers")
    declared = list(strides.values())
    if declared != sorted(declared):
        _fail(who, f"strides {strides} are not ordered shallow to deep (non-decreasing)")
    largest = max(declared)

    @_settings(max_examples)
    @given(rows=st.integers(1, 2), cols=st.integers(1, 2), seed=_SEED)
    def backbone_example(rows: int, cols: int, seed: int) -> None:
        height, width = rows * largest, cols * largest
        where = f"input (2, 3, {height}, {width})"
        expected = {
            out: _Expected(
                (BATCH, channels[out], math.ceil(height / strides[out]), math.ceil(width / strides[out])),
                f"declared channels[{out!r}]={channels[out]}",
                f"input size / strides[{out!r}]={strides[out]}",
            )
            for out in channels
        }

        def call(module: nn.Module, inputs: list[Tensor]) -> dict[str, Tensor]:
            result = module(inputs[0])
            if not isinstance(result, Mapping) or list(result) != list(channels):
                got = list(result) if isinstance(result, Mapping) else type(result).__name__
                _fail(who, f"forward returned {got}, declared outputs {list(channels)} (in this order) ({where})")
            return {f"output {out!r}": value for out, value in result.items()}

        with _seeded(seed):
            images = torch.randn(BATCH, 3, height, width)
            _check_module(who, copy.deepcopy(prototype), [images], call,
                          {f"output {out!r}": e for out, e in expected.items()}, ["the images"], where)

    backbone_example()


@_single_threaded
def check_context_head(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """A map ``(2, C_in, h, w)`` -> ``(2, out_channels, h, w)``, for C_in 1-16, h, w 1-12.

    Any channel count and any small size must work, since the framework builds the
    head from whatever the backbone declares and inputs of any size. Also checks:
    finite values; a gradient for every trainable parameter and for the input (train
    mode); bitwise-repeatable eval passes; no leakage across the batch in eval mode;
    and a declared ``field_of_view`` is the window its output pixel really sees.
    """
    who = _who(Kind.CONTEXT_HEAD, cls, name)
    config = _make_config(who, cls, config)
    _check_field_of_view(who, _construct(who, lambda: cls(config, 3, 2), "in_channels=3, num_classes=2"))

    @_settings(max_examples)
    @given(in_channels=_HEAD_CHANNELS, num_classes=_CLASSES, height=_SIDE, width=_SIDE, seed=_SEED)
    def context_head_example(in_channels: int, num_classes: int, height: int, width: int, seed: int) -> None:
        where = f"in_channels={in_channels}, num_classes={num_classes}, input (2, {in_channels}, {height}, {width})"
        with _seeded(seed):
            head = _construct(who, lambda: cls(config, in_channels, num_classes), where)
            out_channels = _declared_out_channels(who, head, where)
            expected = _Expected((BATCH, out_channels, height, width),
                                 f"declared out_channels={out_channels}", "the input's size")
            x = torch.randn(BATCH, in_channels, height, width)
            _check_module(who, head, [x], lambda m, xs: {"output": m(xs[0])}, {"output": expected},
                          ["the input"], where)

    context_head_example()


def _check_field_of_view(who: str, head: nn.Module) -> None:
    """The centre output's gradient, in a copy made linear and positive (so no ReLU hides
    a path), reaches exactly a ``field_of_view``-wide square of the input."""
    from ctxseg.summary import positive_linear_copy, reached

    span = getattr(head, "field_of_view", None)
    if span is None:
        return
    if type(span) is not int or span < 1:
        _fail(who, f"field_of_view must be a positive integer or None, got {span!r}")
    side = span + 6
    rows, cols = reached(positive_linear_copy(head), 3, (side, side))
    seen = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if seen != (span, span):
        _fail(who, f"declares field_of_view={span}, but an output pixel sees a {seen[0]} x {seen[1]} window "
                   f"of its input ({side} x {side})")


@st.composite
def _fusion_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """1-3 maps, shallow to deep (non-decreasing strides from {1, 2, 4}), of one image."""
    strides = sorted(draw(st.lists(st.sampled_from((1, 2, 4)), min_size=1, max_size=3)))
    in_channels = [draw(_HEAD_CHANNELS) for _ in strides]
    coarsest = max(strides)
    height, width = draw(st.integers(1, 3)) * coarsest, draw(st.integers(1, 3)) * coarsest  # image size
    return {"in_channels": in_channels, "strides": strides, "image": (height, width)}


@_single_threaded
def check_fusion(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Maps ``(2, C_i, H/s_i, W/s_i)`` -> ``(2, out_channels, H/s, W/s)``, s = ``out_stride`` or the finest.

    The maps come shallow to deep (non-decreasing strides), 1-3 of them with strides
    in {1, 2, 4}. A fusion that ``emits_scores`` must have ``out_channels ==
    num_classes``. Also checks: finite values; a gradient for every trainable
    parameter and for *every* input map (a fusion that ignores one is a bug); bitwise-
    repeatable eval passes; no leakage across the batch in eval mode.
    """
    who = _who(Kind.FUSION, cls, name)
    config = _make_config(who, cls, config)

    @_settings(max_examples)
    @given(inputs=_fusion_inputs(), num_classes=_CLASSES, seed=_SEED)
    def fusion_example(inputs: dict[str, Any], num_classes: int, seed: int) -> None:
        in_channels, strides, (height, width) = inputs["in_channels"], inputs["strides"], inputs["image"]
        shapes = [(BATCH, c, height // s, width // s) for c, s in zip(in_channels, strides)]
        where = f"in_channels={in_channels}, strides={strides}, num_classes={num_classes}, inputs {shapes}"
        finest = min(strides)
        with _seeded(seed):
            fusion = _construct(who, lambda: cls(config, list(in_channels), list(strides), num_classes), where)
            out_channels = _declared_out_channels(who, fusion, where)
            if getattr(fusion, "emits_scores", False) and out_channels != num_classes:
                _fail(who, f"emits_scores but declares out_channels={out_channels}, "
                           f"not num_classes={num_classes} ({where})")
            stride = getattr(fusion, "out_stride", None) or finest
            expected = _Expected((BATCH, out_channels, height // stride, width // stride),
                                 f"declared out_channels={out_channels}", f"the size at stride {stride}")
            maps = [torch.randn(shape) for shape in shapes]
            labels = [f"input {i} (stride {s})" for i, s in enumerate(strides)]
            _check_module(who, fusion, maps, lambda m, xs: {"output": m(list(xs))}, {"output": expected},
                          labels, where)

    fusion_example()


@attrs.frozen
class _Expected:
    shape: tuple[int, ...]
    channels: str  # where the channel count comes from, for messages
    size: str  # where the spatial size comes from


def _check_module(
    who: str,
    module: nn.Module,
    inputs: list[Tensor],
    call: Callable[[nn.Module, list[Tensor]], dict[str, Tensor]],
    expected: dict[str, _Expected],
    input_labels: list[str],
    where: str,
) -> None:
    """The properties every module kind shares, on one batch ``inputs`` (batch dim first)."""
    if not isinstance(module, nn.Module):
        _fail(who, f"is a {type(module).__name__}, not a torch.nn.Module")

    # Eval mode: what inference, evaluation and exported weights rely on.
    module.eval()
    with torch.no_grad():
        first = _forward(who, module, inputs, call, where)
        _check_outputs(who, first, expected, where, "")
        # (d) Bitwise repeatable: predictions and checkpoints must not depend on luck.
        second = _forward(who, module, inputs, call, where)
        for label, value in first.items():
            if not torch.equal(value, second[label]):
                diff = (value - second[label]).abs().max().item()
                _fail(who, f"eval mode is not deterministic: two passes give different {label} "
                           f"(max |diff| {diff:.3g}) ({where})")
        # (e) A sample's prediction must not depend on what else is in the batch
        # (e.g. normalizing by batch statistics in eval mode).
        for index in range(BATCH):
            alone = _forward(who, module, [x[index : index + 1] for x in inputs], call, where)
            for label, value in first.items():
                # Batch size changes the kernels' summation order: allow rounding at the
                # output's own scale, far below what mixing samples would cause.
                scale = max(1.0, value.abs().max().item())
                try:
                    torch.testing.assert_close(alone[label][0], value[index], rtol=1e-4, atol=1e-5 * scale)
                except AssertionError:
                    diff = (alone[label][0] - value[index]).abs().max().item()
                    _fail(who, f"{label} of sample {index} changes when it is run alone: it leaks across the "
                               f"batch in eval mode (max |diff| {diff:.3g}) ({where})")

    # (c) Train mode: a random linear functional of the outputs must reach every
    # trainable parameter (an unused one is dead weight in the checkpoint and
    # breaks distributed training) and the input (else the backbone below learns nothing).
    module.train()
    module.zero_grad(set_to_none=True)
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    outputs = _forward(who, module, leaves, call, where)
    _check_outputs(who, outputs, expected, where, " in train mode")
    functional = sum((value * torch.randn_like(value)).sum() for value in outputs.values())
    functional.backward()
    for param_name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            _fail(who, f"parameter {param_name!r} gets no gradient: it is not used in forward "
                       f"(freeze it with requires_grad=False or remove it) ({where})")
        if not torch.isfinite(param.grad).all():
            _fail(who, f"parameter {param_name!r} gets a non-finite gradient ({where})")
    for label, leaf in zip(input_labels, leaves):
        if leaf.grad is None or not (leaf.grad != 0).any():
            _fail(who, f"{label} gets no gradient: the output does not depend on it ({where})")
        if not torch.isfinite(leaf.grad).all():
            _fail(who, f"{label} gets a non-finite gradient ({where})")
    module.zero_grad(set_to_none=True)


def _forward(who: str, module: nn.Module, inputs: list[Tensor], call: Callable, where: str) -> dict[str, Tensor]:
    try:
        return call(module, inputs)
    except AssertionError:
        raise
    except Exception as error:  # noqa: BLE001 - any input within the contract must work
        raise AssertionError(f"{who}: forward raised {type(error).__name__}: {error} ({where})") from error


def _check_outputs(who: str, outputs: dict[str, Tensor], expected: dict[str, _Expected], where: str, mode: str) -> None:
    """(a) Shape exactly as declared, (b) finite values."""
    for label, value in outputs.items():
        want = expected[label]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            _fail(who, f"{label} is {_describe(value)}, expected a floating-point tensor{mode} ({where})")
        got = tuple(value.shape)
        if len(got) != 4 or got[0] != want.shape[0]:
            _fail(who, f"{label} has shape {got}, expected {want.shape}{mode} ({where})")
        if got[1] != want.shape[1]:
            _fail(who, f"{label} has {got[1]} channels, {want.channels}{mode} ({where})")
        if got[2:] != want.shape[2:]:
            _fail(who, f"{label} has size {got[2]}x{got[3]}, expected {want.shape[2]}x{want.shape[3]} "
                       f"({want.size}){mode} ({where})")
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            _fail(who, f"{label} is not finite: {bad} NaN/inf values{mode} ({where})")


def _declared_dict(who: str, module: Any, attribute: str) -> dict[str, Any]:
    value = getattr(module, attribute, None)
    if not isinstance(value, Mapping):
        _fail(who, f"declares {attribute}={value!r}, expected a dict from output name to integer")
    return dict(value)


def _declared_out_channels(who: str, module: Any, where: str) -> int:
    value = getattr(module, "out_channels", None)
    if not (isinstance(value, int) and value > 0):
        _fail(who, f"declares out_channels={value!r}, expected a positive integer ({where})")
    return value


# --------------------------------------------------------------------------------------
# Loss, schedule, optimizer


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


# --------------------------------------------------------------------------------------
# Dataset


@_single_threaded
def check_dataset(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Both splits hold samples of the documented types, with consistent class metadata.

    For ``"train"`` and ``"val"``: at least one sample; ``classes`` non-empty strings,
    the same as ``class_names(config)`` (which sizes models without reading data),
    with one ``(r, g, b)`` palette colour (0-255) each; ``ignore_index`` an integer that
    is not a class index; ``names`` unique, one per sample. Up to ``max_examples``
    samples spread over the split (first and last included) are an image ``(3, H, W)``
    uint8 and a mask ``(H, W)`` int64 of the same size whose values are class indices
    or ``ignore_index``.
    """
    who = _who(Kind.DATASET, cls, name)
    config = _make_config(who, cls, config)
    for split in ("train", "val"):
        where = f"split {split!r}"
        dataset = _construct(who, lambda: cls(config, split), where)
        size = len(dataset)
        if size <= 0:
            _fail(who, f"is empty ({where})")
        classes, palette = list(dataset.classes), list(dataset.palette)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            _fail(who, f"classes must be non-empty strings, got {classes!r} ({where})")
        if len(palette) != len(classes):
            _fail(who, f"has {len(palette)} palette colours for {len(classes)} classes ({where})")
        for colour in palette:
            if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
                _fail(who, f"palette colour {colour!r} is not an (r, g, b) of integers 0-255 ({where})")
        ignore = dataset.ignore_index
        if not isinstance(ignore, int) or 0 <= ignore < len(classes):
            _fail(who, f"ignore_index={ignore!r} must be an integer that is not a class index ({where})")
        declared = getattr(cls, "class_names", None)
        if declared is not None and list(declared(config)) != classes:
            _fail(who, f"class_names(config) gives {list(declared(config))!r}, the dataset has {classes!r} ({where})")
        names = list(dataset.names)
        if len(names) != size:
            _fail(who, f"has {len(names)} names for {size} samples ({where})")
        if len(set(names)) != size:
            _fail(who, f"sample names are not unique; predictions would overwrite each other ({where})")

        count = min(max_examples, size)
        indices = sorted({round(i * (size - 1) / max(count - 1, 1)) for i in range(count)})
        for index in indices:
            _check_sample(who, dataset, index, len(classes), ignore, f"{where}, sample {index} {names[index]!r}")


def _check_sample(who: str, dataset: Any, index: int, num_classes: int, ignore: int, where: str) -> None:
    try:
        image, mask = dataset[index]
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{who}: loading raised {type(error).__name__}: {error} ({where})") from error
    if not (isinstance(image, Tensor) and image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3):
        _fail(who, f"image is {_describe(image)}, expected a (3, H, W) uint8 tensor ({where})")
    if not (isinstance(mask, Tensor) and mask.dtype == torch.int64 and mask.dim() == 2):
        _fail(who, f"mask is {_describe(mask)}, expected an (H, W) int64 tensor ({where})")
    if tuple(mask.shape) != tuple(image.shape[1:]):
        _fail(who, f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size ({where})")
    bad = mask[((mask < 0) | (mask >= num_classes)) & (mask != ignore)].unique().tolist()
    if bad:
        _fail(who, f"mask values {bad} are neither class indices in [0, {num_classes}) "
                   f"nor ignore_index={ignore} ({where})")


_CHECKS: dict[Kind, Callable[..., None]] = {
    Kind.BACKBONE: check_backbone,
    Kind.CONTEXT_HEAD: check_context_head,
    Kind.FUSION: check_fusion,
    Kind.LOSS: check_loss,
    Kind.SCHEDULE: check_schedule,
    Kind.OPTIMIZER: check_optimizer,
    Kind.DATASET: check_dataset,
}


# --------------------------------------------------------------------------------------
# Helpers


def _who(kind: Kind, cls: type, name: str | None) -> str:
    return f"{kind} {name or getattr(cls, '__qualname__', repr(cls))!r}"


def _fail(who: str, message: str) -> None:
    raise AssertionError(f"{who}: {message}")


def _make_config(who: str, cls: type, config: Any) -> Any:
    """The component's ``Config`` from an instance, a TOML-like table or ``None`` (defaults).

    A table goes through the project's strict converter, so an example is read exactly
    as the same table in a spec would be (lists become tuples, nested tables configs).
    """
    config_cls = getattr(cls, "Config", None)
    if not (isinstance(config_cls, type) and attrs.has(config_cls)):
        _fail(who, "has no attrs class `Config` holding its parameters")
    if isinstance(config, config_cls):
        return config
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        _fail(who, f"config must be a {config_cls.__qualname__} or a parameter table, got {config!r}")
    try:
        return structure(dict(config), config_cls, source="parameters")
    except SpecError as error:
        raise AssertionError(f"{who}: its parameter table {dict(config)!r} does not fit its Config:\n{error}") from None


def _construct(who: str, build: Callable[[], Any], where: str) -> Any:
    try:
        return build()
    except Exception as error:  # noqa: BLE001 - any constructor argument within the contract must work
        suffix = f" ({where})" if where else ""
        raise AssertionError(f"{who}: constructor raised {type(error).__name__}: {error}{suffix}") from error


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block and restore the caller's state after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI failures reproduce
        database=None,
        report_multiple_bugs=False,  # one clear AssertionError, not an exception group
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain": it reruns too much
        suppress_health_check=[HealthCheck.too_slow],
    )


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def check_plugin(module: str, distribution: str, components: Mapping[tuple[str, str], type]) -> None:
    """A plugin's registration contract, for its own tests.

    Its hook declares each ``(kind, name)`` of ``components`` with a summary and an
    example (a dataset that reads data from disk may have none), loading to the given
    class; once installed, entry-point discovery attributes them to ``distribution`` at
    its installed version; and listing them (importing ``module`` and calling its hook)
    does not import torch, so ``ctxseg plugins`` and ``ctxseg --help`` stay fast.
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

