"""Loading a local ImageNet checkpoint into a built-in backbone, shared by ResNet and VGG16.

The files are the ones torchvision publishes (a ``.pth`` state dict) or the same
tensors as ``.safetensors``. A ``.pth`` file is read with ``weights_only=True``, so no
pickled code ever runs (DESIGN: no pickle anywhere). A mismatch is reported tensor
by tensor instead of torch's ``load_state_dict`` traceback, because a user picking
the wrong file (ResNet-18 weights for a ResNet-50) needs to see which names differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

from ctxseg.errors import WeightsError

__all__ = ["load_pretrained"]

_LISTED = 10
"""Names shown per kind of mismatch; the rest are counted, so a wrong-depth file stays readable."""


def load_pretrained(module: nn.Module, path: str | Path, ignore_prefixes: Iterable[str] = ()) -> None:
    """Load the state dict in ``path`` into ``module`` (every tensor must match exactly).

    :param module: the model whose ``state_dict()`` keys the file must provide.
    :param path: a ``.safetensors`` file, or any other name for a ``torch.save``'d state dict.
    :param ignore_prefixes: key prefixes of the file dropped before matching (a classifier head).
    :raises WeightsError: the file is unreadable, or tensors are missing, unexpected or
        mis-shaped; the message names the file and the tensors.
    """
    state = _read(Path(path))
    prefixes = tuple(ignore_prefixes)
    state = {name: tensor for name, tensor in state.items() if not name.startswith(prefixes)}
    expected = module.state_dict()
    # Checkpoints saved before PyTorch 0.4.1 (torchvision's original ImageNet files) have
    # no BatchNorm step counter; it is bookkeeping, not a weight, so the model keeps its own.
    for name, tensor in expected.items():
        if name.endswith(".num_batches_tracked") and name not in state:
            state[name] = tensor
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    misshaped = [
        f"{name} (file {tuple(state[name].shape)}, model {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    problems = [
        f"{kind} tensors: {_listing(names)}"
        for kind, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if names
    ]
    if problems:
        raise WeightsError(f"{path} does not match {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state)


def _read(path: Path) -> dict[str, Tensor]:
    """The file's name -> tensor mapping, or a WeightsError naming the file."""
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    # Each reader fails on a corrupt file with its own exception type (OSError,
    # UnpicklingError, RuntimeError, EOFError, SafetensorError, ...); all mean "unreadable".
    except Exception as error:
        raise WeightsError(f"cannot read weights file {path}: {error}") from None
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(tensor, Tensor) for name, tensor in state.items()
    ):
        raise WeightsError(f"{path} is not a state dict (a mapping of tensor names to tensors)")
    return state


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"
