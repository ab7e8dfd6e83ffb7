"""The converters of ctxseg's own components: the key maps of torchvision's and MMSegmentation's checkpoints.

- torchvision's ``fcn_resnet50/101`` and ``deeplabv3_resnet50/101`` (``backbone.*``,
  ``classifier.*``, optionally ``aux_classifier.*``): ``base.resnet`` at output stride 8
  (torchvision's module names), then ``base.fcn``, or ``base.aspp`` + ``base.fcn`` for
  DeepLabv3's head; the auxiliary FCN head on ``c4``.
- MMSegmentation's segmentors with a ResNetV1c-D8 backbone (``backbone.stem.*``,
  ``decode_head.*``, ``auxiliary_head.*``): ``base.resnet`` with ``stem = "deep"``, then the
  decode head as the first ``mmsegmentation.decode_head`` converter recognises it (its
  ``FCNHead`` here, as ``base.fcn`` with MMSeg's ``convs`` and ``concat_input``; its ``PSPHead``
  in ctxseg-pspnet), the auxiliary ``FCNHead`` on ``c4``. What the keys cannot tell is MMSeg's
  configs' default: output stride 8, dropout 0.1 before the classifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ctxseg.errors import WeightsError
from ctxseg.registry import Conversion, default_registry

__all__ = ["VOC_CLASSES", "mmsegmentation", "mmsegmentation_fcn_head", "torchvision"]

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
"""The classes torchvision's segmentation weights were trained on (PASCAL VOC's 20 and background)."""

DEPTHS = {6: 50, 23: 101, 36: 152}
"""ResNet depth by the number of blocks in ``layer3``."""


def torchvision(state: Mapping[str, Tensor]) -> Conversion | None:
    """torchvision's FCN and DeepLabv3 (``backbone.conv1.*``, ``classifier.*``); None for another checkpoint."""
    if not ("backbone.conv1.weight" in state and "classifier.0.weight" in state
            or "classifier.0.convs.0.0.weight" in state):
        return None
    aspp = "classifier.0.convs.0.0.weight" in state
    context = [{"name": "base.aspp"}, {"name": "base.fcn", "channels": 256, "dropout": 0.0}] if aspp else \
        [{"name": "base.fcn"}]
    model: dict[str, Any] = {"backbone": {"name": "base.resnet", "depth": _depth(state), "output_stride": 8},
                             "context": context, "classifier": {"dropout": 0.0}}
    if any(k.startswith("aux_classifier.") for k in state):
        model["aux"] = [{"name": "base.fcn", "input": "c4", "weight": 0.5}]  # torchvision's reference recipe
    head = [(r"^classifier\.0\.", "context.0."),  # DeepLabHead: ASPP, then 3x3 conv-BN-ReLU, then the scores
            (r"^classifier\.([12])\.", lambda m: f"context.1.block.{int(m[1]) - 1}."),
            (r"^classifier\.4\.", "classifier.1.")] if aspp else \
        [(r"^classifier\.([01])\.", r"context.0.block.\1."), (r"^classifier\.4\.", "classifier.1.")]
    rules = [(r"^backbone\.((conv1|bn1|layer\d)\.)", r"backbone.\1"), *head,
             (r"^aux_classifier\.([01])\.", r"aux.c4.0.block.\1."), (r"^aux_classifier\.4\.", "aux.c4.1.1.")]
    return Conversion(f"torchvision {'deeplabv3' if aspp else 'fcn'}_resnet{model['backbone']['depth']}",
                      {"model": model}, rules, classifier="classifier.4.weight", classes=VOC_CLASSES)


def mmsegmentation(state: Mapping[str, Tensor]) -> Conversion | None:
    """MMSegmentation's encoder-decoders on ResNetV1c (``backbone.stem.*``, ``decode_head.*``); None for
    another checkpoint. The decode head is left to the ``mmsegmentation.decode_head`` converters."""
    if not ("backbone.stem.0.weight" in state and "decode_head.conv_seg.weight" in state):
        return None
    head = default_registry().recognise("mmsegmentation.decode_head", _under(state, "decode_head"))
    depth = _depth(state)
    model: dict[str, Any] = {
        "backbone": {"name": "base.resnet", "depth": depth, "output_stride": 8, "stem": "deep"},
        "context": [{**head.table, "dropout": 0.1}],  # MMSeg's dropout before conv_seg
        "classifier": {"dropout": 0.0},
    }
    parts = [("decode_head", "context.0", head)]
    if "auxiliary_head.conv_seg.weight" in state:
        aux = mmsegmentation_fcn_head(_under(state, "auxiliary_head"))
        if aux is None:
            raise WeightsError("auxiliary_head: not an FCNHead (no auxiliary_head.convs.0.conv.weight), the only "
                               "auxiliary head ctxseg converts")
        model["aux"] = [{**aux.table, "input": "c4", "weight": 0.4, "dropout": 0.1}]
        parts.append(("auxiliary_head", "aux.c4.0", aux))
    rules = [(r"^backbone\.((stem\.\d+|layer\d)\.)", r"backbone.\1"), (r"^decode_head\.conv_seg\.", "classifier.1."),
             (r"^auxiliary_head\.conv_seg\.", "aux.c4.1.1.")]
    return Conversion(f"MMSegmentation {head.kind}_r{depth}-d8", {"model": model}, rules, parts,
                      classifier="decode_head.conv_seg.weight")


def mmsegmentation_fcn_head(state: Mapping[str, Tensor]) -> Conversion | None:
    """MMSegmentation's ``FCNHead`` (``convs.N.conv``/``.bn``, optionally ``conv_cat``) as ``base.fcn``;
    None for another head."""
    convs = sum(1 for k in state if re.fullmatch(r"convs\.\d+\.conv\.weight", k))
    if not convs:
        return None
    table = {"name": "base.fcn", "channels": state["conv_seg.weight"].shape[1], "convs": convs,
             "concat_input": "conv_cat.conv.weight" in state}
    rules = [(r"^convs\.(\d+)\.(conv|bn)\.", lambda m: f"block.{3 * int(m[1]) + (m[2] == 'bn')}."),
             (r"^conv_cat\.conv\.", "concat.0."), (r"^conv_cat\.bn\.", "concat.1.")]
    return Conversion("fcn", table, rules)


def _under(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix.``, named from there."""
    return {k.removeprefix(f"{prefix}."): v for k, v in state.items() if k.startswith(f"{prefix}.")}


def _depth(state: Mapping[str, Tensor]) -> int:
    if "backbone.layer1.0.conv3.weight" not in state:
        raise WeightsError("a ResNet of BasicBlocks (ResNet-18/34): ctxseg converts bottleneck ResNets only "
                           "(50/101/152; MMSegmentation's dilated BasicBlock leaves its second conv undilated, "
                           "ctxseg's dilates it)")
    blocks = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
    if blocks not in DEPTHS:
        raise WeightsError(f"backbone.layer3 has {blocks} blocks; expected {', '.join(map(str, DEPTHS))} "
                           "(ResNet-50, -101, -152)")
    return DEPTHS[blocks]
