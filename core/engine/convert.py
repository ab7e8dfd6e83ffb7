"""``ctxseg convert``: trained checkpoints of other libraries as ctxseg weights files.

Sources, recognised by their keys:

- torchvision's ``fcn_resnet50/101`` and ``deeplabv3_resnet50/101`` (``backbone.*``,
  ``classifier.*``, optionally ``aux_classifier.*``): ``base.resnet`` at output stride 8
  (torchvision's module names), then ``base.fcn``, or ``base.aspp`` + ``base.fcn`` for
  DeepLabv3's head; the auxiliary FCN head on ``c4``.
- MMSegmentation's PSPNet and FCN with a ResNetV1c-D8 backbone (``backbone.stem.*``,
  ``decode_head.*``, ``auxiliary_head.*``): ``base.resnet`` with ``stem = "deep"``, then
  ``pspnet.pyramid_pooling`` (ctxseg-pspnet) or ``base.fcn`` with MMSeg's ``convs`` and
  ``concat_input``. What the keys cannot tell is MMSeg's configs' default: output
  stride 8, pyramid bins 1, 2, 3, 6, bilinear upsampling without aligned corners.

``.pth`` files are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, no pickled code runs. Every tensor must find its place: the missing,
unexpected and mis-shaped ones are listed and nothing is written.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ctxseg.errors import WeightsError
from ctxseg.files.atomic import check_output
from ctxseg.files.weights import load_state, read_safetensors, save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import Spec, spec_from_dict

__all__ = ["VOC_CLASSES", "convert", "palette", "read_checkpoint"]

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
"""The classes torchvision's segmentation weights were trained on (PASCAL VOC's 20 and background)."""

DEPTHS = {6: 50, 23: 101, 36: 152}
"""ResNet depth by the number of blocks in ``layer3``."""


def palette(count: int) -> list[tuple[int, int, int]]:
    """PASCAL VOC's colour map, extended to ``count`` classes (the bits of the class index
    spread over the high bits of red, green and blue)."""
    colours = []
    for index in range(count):
        r = g = b = 0
        for shift in range(7, -1, -1):
            r |= (index >> 0 & 1) << shift
            g |= (index >> 1 & 1) << shift
            b |= (index >> 2 & 1) << shift
            index >>= 3
        colours.append((r, g, b))
    return colours


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


Rules = Sequence[tuple[str, str]]
"""(pattern, replacement) pairs of :func:`re.sub`, tried in order on each source key; the first that matches wins."""


def _torchvision(state: Mapping[str, Tensor]) -> tuple[str, dict[str, Any], Rules]:
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
    return f"torchvision {'deeplabv3' if aspp else 'fcn'}_resnet{model['backbone']['depth']}", {"model": model}, rules


def _mmseg(state: Mapping[str, Tensor]) -> tuple[str, dict[str, Any], Rules]:
    psp = "decode_head.psp_modules.0.1.conv.weight" in state
    width = state["decode_head.conv_seg.weight"].shape[1]
    if psp:
        bins = sum(1 for k in state if re.fullmatch(r"decode_head\.psp_modules\.\d+\.1\.conv\.weight", k))
        if bins != 4:
            raise WeightsError(f"a PSPNet with {bins} pyramid levels: their bins are not in the checkpoint "
                               "(MMSegmentation's default is 4 levels, 1, 2, 3, 6); pass --spec with them")
        head = {"name": "pspnet.pyramid_pooling", "bins": [1, 2, 3, 6], "channels": width, "align_corners": False}
        rules = [(r"^decode_head\.psp_modules\.(\d+)\.1\.conv\.", r"context.0.levels.\1.reduce.0."),
                 (r"^decode_head\.psp_modules\.(\d+)\.1\.bn\.", r"context.0.levels.\1.reduce.1."),
                 (r"^decode_head\.bottleneck\.conv\.", "context.0.conv.0."),
                 (r"^decode_head\.bottleneck\.bn\.", "context.0.conv.1.")]
    else:
        head = {"name": "base.fcn", **_mmseg_fcn(state, "decode_head")}
        rules = _mmseg_fcn_rules("decode_head", "context.0")
    model: dict[str, Any] = {
        "backbone": {"name": "base.resnet", "depth": _depth(state), "output_stride": 8, "stem": "deep"},
        "context": [{**head, "dropout": 0.1}],  # MMSeg's dropout before conv_seg
        "classifier": {"dropout": 0.0},
    }
    if "auxiliary_head.conv_seg.weight" in state:
        model["aux"] = [{"name": "base.fcn", "input": "c4", "weight": 0.4, "dropout": 0.1,
                         **_mmseg_fcn(state, "auxiliary_head")}]
    rules = [(r"^backbone\.((stem\.\d+|layer\d)\.)", r"backbone.\1"), *rules,
             (r"^decode_head\.conv_seg\.", "classifier.1."),
             *_mmseg_fcn_rules("auxiliary_head", "aux.c4.0"), (r"^auxiliary_head\.conv_seg\.", "aux.c4.1.1.")]
    return f"MMSegmentation {'pspnet' if psp else 'fcn'}_r{model['backbone']['depth']}-d8", {"model": model}, rules


def _mmseg_fcn(state: Mapping[str, Tensor], head: str) -> dict[str, Any]:
    """An MMSeg ``FCNHead``'s ``base.fcn`` parameters, from its tensors."""
    convs = sum(1 for k in state if re.fullmatch(rf"{head}\.convs\.\d+\.conv\.weight", k))
    return {"channels": state[f"{head}.conv_seg.weight"].shape[1], "convs": max(convs, 1),
            "concat_input": f"{head}.conv_cat.conv.weight" in state}


def _mmseg_fcn_rules(head: str, to: str) -> Rules:
    return [(rf"^{head}\.convs\.(\d+)\.(conv|bn)\.", lambda m: f"{to}.block.{3 * int(m[1]) + (m[2] == 'bn')}."),
            (rf"^{head}\.conv_cat\.conv\.", f"{to}.concat.0."), (rf"^{head}\.conv_cat\.bn\.", f"{to}.concat.1.")]


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


SOURCES: dict[str, tuple[Callable[[Mapping[str, Tensor]], bool], Callable]] = {
    "torchvision": (lambda s: "backbone.conv1.weight" in s and "classifier.0.weight" in s
                    or "classifier.0.convs.0.0.weight" in s, _torchvision),
    "mmsegmentation": (lambda s: "backbone.stem.0.weight" in s and "decode_head.conv_seg.weight" in s, _mmseg),
}


def _rename(state: Mapping[str, Tensor], rules: Rules) -> tuple[dict[str, Tensor], list[str]]:
    """The tensors under ctxseg's names, and the source keys no rule maps."""
    renamed, unmapped = {}, []
    for key, tensor in state.items():
        for pattern, replacement in rules:
            new, count = re.subn(pattern, replacement, key)
            if count:
                renamed[new] = tensor
                break
        else:
            unmapped.append(key)
    return renamed, unmapped


def convert(source: str | Path, to: str | Path, *, spec: Spec | None = None,
            classes: Sequence[str] | None = None) -> tuple[str, Spec, list[str]]:
    """Write the checkpoint ``source`` as the ctxseg weights file ``to``.

    :param spec: the model to load it into (default: inferred from the keys).
    :param classes: class names (default: the checkpoint's own, MMSegmentation's
        ``meta.dataset_meta`` or ``meta.CLASSES``; VOC's 21 for torchvision's).
    :return: what the source was recognised as, the spec written and the classes.
    """
    check_output(Path(to), "--to", Path(source))
    state, meta = read_checkpoint(source)
    found = [name for name, (recognise, _) in SOURCES.items() if recognise(state)]
    if not found:
        raise WeightsError(f"{source}: not a checkpoint ctxseg can convert: expected torchvision's fcn/deeplabv3 "
                           "keys (backbone.conv1.weight, classifier.0.weight) or MMSegmentation's "
                           f"(backbone.stem.0.weight, decode_head.conv_seg.weight); its first keys are "
                           f"{', '.join(list(state)[:5])}")
    try:
        kind, inferred, rules = SOURCES[found[0]][1](state)
    except WeightsError as error:
        raise WeightsError(f"{source}: {error}") from None
    spec = spec or spec_from_dict(inferred, source=f"{source} (inferred spec)")
    scores = "classifier.4.weight" if found[0] == "torchvision" else "decode_head.conv_seg.weight"
    if scores not in state:
        raise WeightsError(f"{source} ({kind}): missing tensors: {scores} (the classifier, which says the classes)")
    num = int(state[scores].shape[0])
    # MMSegmentation 1.x stores meta.dataset_meta.classes and .palette, 0.x meta.CLASSES and meta.PALETTE
    dataset_meta = meta["dataset_meta"] if isinstance(meta.get("dataset_meta"), dict) else \
        {"classes": meta.get("CLASSES"), "palette": meta.get("PALETTE")}
    names = [str(name) for name in
             classes or dataset_meta.get("classes") or (VOC_CLASSES if found[0] == "torchvision" else [])]
    if not names:
        raise WeightsError(f"{source}: the checkpoint names no classes (no meta.dataset_meta.classes); pass "
                           f"--classes with its {num} class names")
    if len(names) != num:
        raise WeightsError(f"{source}: its classifier scores {num} classes, but {len(names)} class names are given")
    colours = dataset_meta.get("palette") if not classes else None
    colours = [tuple(int(v) for v in c) for c in colours] if colours and len(colours) == num else palette(num)
    model = SegmentationModel(spec.model, num, pretrained=False, source=f"{source} ({kind})")
    renamed, unmapped = _rename(state, rules)
    if unmapped:
        shown = ", ".join(unmapped[:10]) + (f" and {len(unmapped) - 10} more" if len(unmapped) > 10 else "")
        raise WeightsError(f"{source} ({kind}): unexpected tensors, which no part of the model takes: {shown}")
    load_state(model, renamed, f"{source} ({kind}, tensors under ctxseg's names)")
    save_weights(to, model, spec.to_dict(), names, colours)
    return kind, spec, names
