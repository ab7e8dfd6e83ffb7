"""Assembling a segmentation model from a spec's ``[model]`` table.

The graph is the one the five papers share::

    images -> backbone -> features[input] -> context heads (in order) -+
                      \\-> features[...] ---------------------------- fusion (optional)
                                                                       -> classifier -> upsample -> "out"
                      \\-> features[aux.input] -> aux head -> classifier -> upsample -> "aux.<input>"

Channel counts flow forward from the backbone's declaration; auxiliary heads run only
in training mode, so inference pays nothing for them.
"""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.errors import SpecError
from ctxseg.interfaces import Backbone
from ctxseg.spec import ClassifierSpec, ModelSpec, ModuleRef

__all__ = ["SegmentationModel"]

CONTEXT = "context"
"""Name of the context heads' output among a fusion's inputs."""


def _classifier(in_channels: int, num_classes: int, spec: ClassifierSpec) -> nn.Module:
    return nn.Sequential(nn.Dropout2d(spec.dropout), nn.Conv2d(in_channels, num_classes, 1))


class SegmentationModel(nn.Module):
    """Backbone, context heads, optional fusion, classifier and auxiliary heads.

    ``pretrained=False`` skips the backbone's ImageNet checkpoint, for when trained
    weights are loaded right after.

    ``forward(images)`` with images ``(B, 3, H, W)`` returns ``{"out": (B, K, H, W)}``
    scores at input resolution, plus ``"aux.<feature>"`` entries in training mode.
    """

    def __init__(self, spec: ModelSpec, num_classes: int, *, pretrained: bool = True, source: str = "<spec>"):
        super().__init__()
        self.num_classes = num_classes
        backbone_config = spec.backbone.config
        if not pretrained and hasattr(backbone_config, "pretrained"):
            backbone_config = attrs.evolve(backbone_config, pretrained="")
        self._frozen: list[nn.Module] = []
        self.backbone: Backbone = self._maybe_freeze(spec.backbone.load()(backbone_config), spec.backbone)
        features = self.backbone.channels

        def feature(name: str, where: str) -> str:
            if name not in features:
                raise SpecError(f"{source}: {where}: backbone {spec.backbone.name!r} has no feature "
                                f"{name!r}; it has {', '.join(features)}")
            return name

        self.input = feature(spec.input or self.backbone.deepest, "model.input")
        channels = features[self.input]
        self.context = nn.ModuleList()
        for ref in spec.context:
            head = self._maybe_freeze(ref.load()(ref.config, channels, num_classes), ref)
            self.context.append(head)
            channels = head.out_channels

        self.fusion = None
        self.fusion_inputs: tuple[str, ...] = ()
        emits_scores = False
        if spec.fusion is not None:
            self.fusion_inputs = tuple(
                name if name == CONTEXT else feature(name, f"model.fusion.inputs[{i}]")
                for i, name in enumerate(spec.fusion.inputs)
            )
            in_channels = [channels if n == CONTEXT else features[n] for n in self.fusion_inputs]
            strides = [self.backbone.strides[self.input if n == CONTEXT else n] for n in self.fusion_inputs]
            self.fusion = self._maybe_freeze(
                spec.fusion.load()(spec.fusion.config, in_channels, strides, num_classes), spec.fusion)
            channels, emits_scores = self.fusion.out_channels, self.fusion.emits_scores

        if spec.classifier.enabled and not emits_scores:
            self.classifier = _classifier(channels, num_classes, spec.classifier)
        elif channels != num_classes:
            raise SpecError(f"{source}: model.classifier.enabled: the model ends with {channels} channels, "
                            f"not the {num_classes} class scores; enable the classifier")
        else:
            self.classifier = nn.Identity()

        self.aux = nn.ModuleDict()
        self.aux_weights: dict[str, float] = {}
        for i, ref in enumerate(spec.aux):
            name = feature(ref.input, f"model.aux[{i}].input")
            head = self._maybe_freeze(ref.load()(ref.config, features[name], num_classes), ref)
            self.aux[name] = nn.Sequential(head, _classifier(head.out_channels, num_classes, ClassifierSpec()))
            self.aux_weights[f"aux.{name}"] = ref.weight

    def _maybe_freeze(self, module: nn.Module, ref: ModuleRef) -> nn.Module:
        if ref.frozen:
            module.requires_grad_(False)
            self._frozen.append(module)
        return module

    def train(self, mode: bool = True) -> SegmentationModel:
        """As ``nn.Module.train``, but frozen components always stay in eval mode."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    @property
    def output_stride(self) -> int:
        """Stride of the score map before the final upsampling."""
        if self.fusion is not None:
            finest = min(self.backbone.strides[self.input if n == CONTEXT else n] for n in self.fusion_inputs)
            return self.fusion.out_stride or finest
        return self.backbone.strides[self.input]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)  # {name: (B, C_i, H/s_i, W/s_i)}
        x = features[self.input]
        for head in self.context:
            x = head(x)
        if self.fusion is not None:
            x = self.fusion([x if n == CONTEXT else features[n] for n in self.fusion_inputs])
        outputs = {"out": _upsample(self.classifier(x), size)}  # (B, K, H, W)
        if self.training:
            for name, head in self.aux.items():
                outputs[f"aux.{name}"] = _upsample(head(features[name]), size)
        return outputs


def _upsample(scores: Tensor, size: tuple[int, int]) -> Tensor:
    if scores.shape[-2:] == size:
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

