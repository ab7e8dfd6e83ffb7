"""Where and how a model runs: device, precision (autocast) and memory format."""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ctxseg.engine.distributed import local_rank
from ctxseg.errors import SpecError
from ctxseg.spec import RunSpec

__all__ = ["Runtime", "choose_device", "choose_precision"]


def choose_device(requested: str, cuda_available: bool, local_rank: int = 0) -> torch.device:
    """The device ``run.device`` names for this process: "auto" is the process's GPU
    (``LOCAL_RANK``-th under torchrun) where CUDA is available, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not cuda_available):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def choose_precision(requested: str, device: torch.device) -> str:
    """Training's ``precision``, with "auto" resolved: bf16 on a GPU that runs it natively
    (not emulated), fp32 on the CPU, so CPU training keeps fp32's numbers on every machine.
    Inference resolves "auto" by measuring instead (:mod:`ctxseg.engine.autotune`)."""
    if requested != "auto":
        return requested
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return "bf16" if native else "fp32"


class Runtime:
    """The ``[run]`` settings that decide device, autocast and memory format.

    ``precision`` and ``channels_last`` override the spec's (inference chooses its own);
    ``precision = "auto"`` is resolved by :func:`choose_precision`, unless inference measures
    the fastest mode and sets it with :meth:`use`.
    """

    def __init__(self, run: RunSpec, source: str = "<spec>", *, precision: str | None = None,
                 channels_last: bool | None = None):
        if run.device == "cuda" and not torch.cuda.is_available():
            raise SpecError(f"{source}: run.device: 'cuda' was asked for, but no CUDA device is available")
        self.device = choose_device(run.device, torch.cuda.is_available(), local_rank())
        # the run's own precision is training's; inference passes the [test] table's
        self.precision = choose_precision(precision or run.precision, self.device)
        channels_last = run.channels_last if channels_last is None else channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if run.threads:
            torch.set_num_threads(run.threads)

    def in_precision(self, precision: str) -> Runtime:
        """This runtime in ``precision`` ("auto" resolved as for training), on its device and in its
        memory format, with nothing chosen or set again: a training run's evaluations, which run in
        the ``[test]`` table's precision."""
        other = copy.copy(self)
        other.precision = choose_precision(precision, self.device)
        return other

    def use(self, precision: str, channels_last: bool) -> None:
        """Run in ``precision`` and this memory format from now on (models moved with :meth:`model`)."""
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @property
    def channels_last(self) -> bool:
        return self.memory_format == torch.channels_last

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device, memory_format=self.memory_format)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, memory_format=self.memory_format, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the forward pass when ``precision = "bf16"``."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def describe(self) -> str:
        """The precision and where it runs, as printed: "bf16 on cuda", "fp32 on cpu"."""
        return f"{self.precision} on {self.device.type}"
