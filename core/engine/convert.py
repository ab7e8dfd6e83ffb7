"""``ctxseg convert``: trained checkpoints of other libraries as ctxseg weights files.

The converters (:class:`ctxseg.registry.Converter`) recognise a checkpoint by its keys and
hold its key map, each with the component it targets: torchvision's and MMSegmentation's
for ctxseg's own components in :mod:`ctxseg.builtin.convert`, the others in the plugins
(``ctxseg_converters``; MMSegmentation's PSPHead in ctxseg-pspnet). This module reads the
file, builds the model of the converter's spec and puts every tensor in its place.

``.pth`` files are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, no pickled code runs. Every tensor must find its place: the missing,
unexpected and mis-shaped ones are listed and nothing is written.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ctxseg.errors import WeightsError
from ctxseg.files.atomic import check_output
from ctxseg.files.pictures import voc_palette
from ctxseg.files.weights import load_state, read_safetensors, read_weights, save_weights
from ctxseg.model import SegmentationModel
from ctxseg.registry import default_registry
from ctxseg.spec import Spec, spec_from_dict

__all__ = ["convert", "read_checkpoint"]


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict of a ``.pth``/``.pt`` (its ``state_dict`` entry if it has one) or
    ``.safetensors`` file, and the ``meta`` that MMSegmentation stores beside it (or {})."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0], {}
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path}: holds more than tensors and plain containers, which ctxseg does not unpickle "
                           f"(torch.load(weights_only=True) says: {str(error).splitlines()[0]}); if you trust it, "
                           "save its state dict alone: torch.save(torch.load(PATH)['state_dict'], 'state.pth')"
                           ) from None
    except Exception as error:  # noqa: BLE001 - torch.load raises several types for damaged files
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    meta = data.get("meta", {}) if isinstance(data, dict) else {}
    state = data.get("state_dict", data) if isinstance(data, dict) else data
    if not (isinstance(state, Mapping) and state and all(isinstance(v, Tensor) for v in state.values())):
        raise WeightsError(f"{path}: expected a state dict (names -> tensors), or a dict with one under "
                           "'state_dict'")
    return dict(state), meta if isinstance(meta, dict) else {}


def convert(source: str | Path, to: str | Path, *, spec: Spec | None = None,
            classes: Sequence[str] | None = None) -> tuple[str, Spec, list[str]]:
    """Write the checkpoint ``source`` as the ctxseg weights file ``to``.

    :param spec: the model to load it into (default: inferred from the keys).
    :param classes: class names (default: the checkpoint's own, MMSegmentation's
        ``meta.dataset_meta`` or ``meta.CLASSES``, else its converter's: VOC's 21 for torchvision's).
    :return: what the source was recognised as, the spec written and the classes.
    """
    check_output(Path(to), "--to", Path(source))
    state, meta = read_checkpoint(source)
    try:
        conversion = default_registry().recognise("checkpoint", state)
    except WeightsError as error:
        raise WeightsError(f"{source}: {error}") from None
    kind, scores = conversion.kind, conversion.classifier
    spec = spec or spec_from_dict(conversion.table, source=f"{source} (inferred spec)")
    if scores not in state:
        raise WeightsError(f"{source} ({kind}): missing tensors: {scores} (the classifier, which says the classes)")
    num = int(state[scores].shape[0])
    # MMSegmentation 1.x stores meta.dataset_meta.classes and .palette, 0.x meta.CLASSES and meta.PALETTE
    dataset_meta = meta["dataset_meta"] if isinstance(meta.get("dataset_meta"), dict) else \
        {"classes": meta.get("CLASSES"), "palette": meta.get("PALETTE")}
    names = [str(name) for name in classes or dataset_meta.get("classes") or conversion.classes]
    if not names:
        raise WeightsError(f"{source}: the checkpoint names no classes (no meta.dataset_meta.classes); pass "
                           f"--classes with its {num} class names")
    if len(names) != num:
        raise WeightsError(f"{source}: its classifier scores {num} classes, but {len(names)} class names are given")
    colours = dataset_meta.get("palette") if not classes else None
    colours = [tuple(int(v) for v in c) for c in colours] if colours and len(colours) == num else voc_palette(num)
    model = SegmentationModel(spec.model, num, pretrained=False, source=f"{source} ({kind})")
    renamed, unmapped = {}, []
    for key, tensor in state.items():
        if (name := conversion.rename(key)) is None:
            unmapped.append(key)
        else:
            renamed[name] = tensor
    if unmapped:
        shown = ", ".join(unmapped[:10]) + (f" and {len(unmapped) - 10} more" if len(unmapped) > 10 else "")
        raise WeightsError(f"{source} ({kind}): unexpected tensors, which no part of the model takes: {shown}")
    load_state(model, renamed, f"{source} ({kind}, tensors under ctxseg's names)")
    save_weights(to, model, spec.to_dict(), names, colours)
    read_weights(to)  # read back: the file matches its checksum, as every later read will check
    return kind, spec, names
