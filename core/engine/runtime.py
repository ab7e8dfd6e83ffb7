"""Where and how a model runs: device, precision (autocast) and memory format."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ctxseg.errors import SpecError
from ctxseg.spec import RunSpec

__all__ = ["Runtime"]


class Runtime:
    """The ``[run]`` settings that decide device, autocast and memory format."""

    def __init__(self, run: RunSpec, source: str = "<spec>"):
        if run.device == "cuda" and not torch.cuda.is_available():
            raise SpecError(f"{source}: run.device: 'cuda' was asked for, but no CUDA device is available")
        self.device = torch.device("cuda" if run.device == "auto" and torch.cuda.is_available() else
                                   "cpu" if run.device == "auto" else run.device)
        self.precision = run.precision
        self.memory_format = torch.channels_last if run.channels_last else torch.contiguous_format
        if run.threads:
            torch.set_num_threads(run.threads)

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device, memory_format=self.memory_format)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, memory_format=self.memory_format, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the forward pass when ``precision = "bf16"``."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
