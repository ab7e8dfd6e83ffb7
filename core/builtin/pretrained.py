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
from ctxseg.files.weights import load_state

__all__ = ["load_pretrained"]

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
    # Checkpoints saved before PyTorch 0.4.1 (torchvision's original ImageNet files) have
    # no BatchNorm step counter; it is bookkeeping, not a weight, so the model keeps its own.
    for name, tensor in module.state_dict().items():
        if name.endswith(".num_batches_tracked") and name not in state:
            state[name] = tensor
    load_state(module, state, str(path))

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

