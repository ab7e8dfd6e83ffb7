"""Rebuilding a model from a weights file alone: its embedded spec, then its tensors."""

from __future__ import annotations

import warnings
from pathlib import Path

from ctxseg.errors import CtxsegError, WeightsError
from ctxseg.files.weights import load_state, plugin_versions, read_weights
from ctxseg.model.assemble import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.spec import spec_from_dict

__all__ = ["load_model"]


def load_model(path: str | Path, *, num_classes: int | None = None):
    """Rebuild the model a weights file describes and load its weights.

    :param num_classes: if given, the file's class count must equal it.
    :return: ``(model in eval mode, Spec, WeightsInfo)``.
    """
    tensors, info = read_weights(path)
    if num_classes is not None and num_classes != len(info.classes):
        raise WeightsError(f"{path}: trained for {len(info.classes)} classes ({', '.join(info.classes)}), "
                           f"but {num_classes} are expected")
    installed = plugin_versions()
    for dist, version in info.plugins.items():
        if installed.get(dist) != version:
            warnings.warn(f"{path}: saved with {dist} {version}, installed: {installed.get(dist, 'none')}",
                          stacklevel=2)
    try:
        spec = spec_from_dict(info.spec, source=f"{path} (embedded spec)")
    except CtxsegError as error:
        raise WeightsError(str(error)) from None
    model = SegmentationModel(spec.model, len(info.classes), pretrained=False, source=f"{path} (embedded spec)")
    check_model(model, spec.model, f"{path} (embedded spec)")
    load_state(model, tensors, str(path))
    return model.eval(), spec, info
