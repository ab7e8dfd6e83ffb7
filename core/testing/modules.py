"""Contracts of the model components: backbones, context heads and fusions."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from ctxseg.registry import Kind
from ctxseg.testing._harness import (
    _CLASSES,
    _HEAD_CHANNELS,
    _SEED,
    _SIDE,
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

__all__ = ["check_backbone", "check_context_head", "check_fusion"]


@_single_threaded
def check_backbone(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Images ``(2, 3, H, W)`` -> every declared output at its declared channels and stride.

    H and W are one or two multiples of the largest declared stride. Also checks, for
    each output: finite values; a gradient (zero is fine, absent is not) for every
    trainable parameter and for the images (train mode); bitwise-repeatable eval
    passes; no leakage across the batch in eval mode. The declaration itself must be well formed: the same names in
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
    head from whatever the backbone declares and inputs of any size. The map's values
    are drawn from the head's declared ``input_domain``: standard normal, or its
    absolute value for ``"nonnegative"``. Also checks: finite values; a gradient (zero
    is fine, absent is not) for every trainable parameter and for the input (train
    mode); bitwise-repeatable eval passes; no leakage across the batch in eval mode; a
    declared ``field_of_view`` is the window its output pixel really sees (the whole
    input for ``"global"``); and a head that declares ``emits_scores`` has
    ``num_classes`` output channels.
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
            if getattr(head, "emits_scores", False) and out_channels != num_classes:
                _fail(who, f"declares emits_scores but out_channels={out_channels}, not num_classes={num_classes} "
                           f"({where})")
            expected = _Expected((BATCH, out_channels, height, width),
                                 f"declared out_channels={out_channels}", "the input's size")
            x = torch.randn(BATCH, in_channels, height, width)
            if _declared_input_domain(who, head) == "nonnegative":
                x = x.abs()
            _check_module(who, head, [x], lambda m, xs: {"output": m(xs[0])}, {"output": expected},
                          ["the input"], where)

    context_head_example()


def _check_field_of_view(who: str, head: nn.Module) -> None:
    """The centre output's gradient, in a copy made linear and positive (so no ReLU hides
    a path), reaches exactly a ``field_of_view``-wide square of the input."""
    from ctxseg.model.summary import positive_linear_copy, reached

    span = getattr(head, "field_of_view", None)
    if span is None:
        return
    if span != "global" and (type(span) is not int or span < 1):
        _fail(who, f"field_of_view must be a positive integer, \"global\" or None, got {span!r}")
    side = 9 if span == "global" else span + 6
    rows, cols = reached(positive_linear_copy(head), 3, (side, side))
    seen = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if span == "global" and seen != (side, side):
        _fail(who, f"declares field_of_view=\"global\", but an output pixel sees a {seen[0]} x {seen[1]} window "
                   f"of its input ({side} x {side})")
    if span != "global" and seen != (span, span):
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
    # A parameter's gradient may be zero, only not absent: a branch initialised to zero
    # (Yu & Koltun's identity initialisation, a zero-initialised residual) legitimately
    # gives the layers before its last none at the first step, and trains all the same.
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


def _declared_input_domain(who: str, module: Any) -> str:
    value = getattr(module, "input_domain", "real")
    if value not in ("real", "nonnegative"):
        _fail(who, f"declares input_domain={value!r}, expected 'real' or 'nonnegative'")
    return value


def _declared_out_channels(who: str, module: Any, where: str) -> int:
    value = getattr(module, "out_channels", None)
    if not (isinstance(value, int) and value > 0):
        _fail(who, f"declares out_channels={value!r}, expected a positive integer ({where})")
    return value
