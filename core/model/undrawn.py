"""A model built to be filled or described, not trained: zeros where its weights would be drawn.

Loading a weights file overwrites every value the build drew (``load_state`` is exact),
and ``ctxseg inspect`` reports nothing that depends on them (the measured receptive
field sets every weight itself); drawing them is most of a large model's build: 1 s of
the dilation front end's 134M parameters, against 0.1 s for zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ctxseg.model.assemble import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.spec import ModelSpec

__all__ = ["undrawn_model"]


def undrawn_model(spec: ModelSpec, num_classes: int, source: str) -> SegmentationModel:
    """The spec's model with zeros where weights would be drawn at random, held to its
    declarations by the dry forward (:func:`~ctxseg.model.check.check_model`, which zeros
    pass as well as any weights)."""
    with _ZerosForRandomFills():
        model = SegmentationModel(spec, num_classes, pretrained=False, source=source)
    check_model(model, spec, source)
    return model


class _ZerosForRandomFills(TorchFunctionMode):
    """Within the block, the random fills that initialise weights fill zeros instead: the
    ``torch.nn.init`` functions that draw (which ``reset_parameters`` and ctxseg's
    ``he_init`` call, and which dispatch here as a whole) and the in-place draws of a
    tensor. The deterministic ones (``constant_``, ``eye_``, ``dirac_``...) still run, so
    an identity initialisation stays what it is."""

    FILLS = frozenset({
        nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_, nn.init.xavier_uniform_, nn.init.xavier_normal_,
        nn.init.kaiming_uniform_, nn.init.kaiming_normal_, nn.init.orthogonal_, nn.init.sparse_,
        Tensor.uniform_, Tensor.normal_, Tensor.bernoulli_, Tensor.random_, Tensor.exponential_, Tensor.geometric_,
        Tensor.log_normal_, Tensor.cauchy_,
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FILLS:  # torch.nn.init passes the tensor by keyword
            with torch.no_grad():
                return (args[0] if args else kwargs["tensor"]).zero_()
        return func(*args, **kwargs)
