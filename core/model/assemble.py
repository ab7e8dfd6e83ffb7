"""Assembling a segmentation model from a spec's ``[model]`` table.

The graph is the one the five papers share::

    images -> backbone -> features[input] -> context heads (in order) -+
                      \\-> features[...] ---------------------------- fusion (optional)
                                                                       -> classifier -> upsample -> "out"
                      \\-> features[aux.input] -> aux head -> classifier -> upsample -> "aux.<input>"

There is no classifier after a last context head or a fusion that already emits the
class scores (``emits_scores``).

Channel counts flow forward from the backbone's declaration; auxiliary heads run only
in training mode, so inference pays nothing for them. Two training options act on
the assembled model as a whole: how batch norm trains (``batch_norm``) and dropout on
the outputs of named modules (``dropout``).
"""

from __future__ import annotations

import difflib
import functools

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.errors import SpecError
from ctxseg.interfaces import Backbone
from ctxseg.model.blocks import upsample
from ctxseg.spec import ClassifierSpec, ModelSpec, ModuleRef

__all__ = ["SegmentationModel", "submodule"]

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
        self.backbone: Backbone = self._maybe_freeze(
            attrs.evolve(spec.backbone, config=backbone_config).build(key="model.backbone", source=source),
            spec.backbone)
        features = self.backbone.channels

        def feature(name: str, where: str) -> str:
            if name not in features:
                raise SpecError(f"{source}: {where}: backbone {spec.backbone.name!r} has no feature "
                                f"{name!r}; it has {', '.join(features)}")
            return name

        self.input = feature(spec.input or self.backbone.deepest, "model.input")
        channels = features[self.input]
        self.context = nn.ModuleList()
        for i, ref in enumerate(spec.context):
            head = self._maybe_freeze(ref.build(channels, num_classes, key=f"model.context[{i}]", source=source), ref)
            self.context.append(head)
            channels = head.out_channels

        self.fusion = None
        self.fusion_inputs: tuple[str, ...] = ()
        last = f"model.context[{len(self.context) - 1}]"
        emits_scores = bool(self.context) and self.context[-1].emits_scores
        if spec.fusion is not None:
            self.fusion_inputs = tuple(
                name if name == CONTEXT else feature(name, f"model.fusion.inputs[{i}]")
                for i, name in enumerate(spec.fusion.inputs)
            )
            in_channels = [channels if n == CONTEXT else features[n] for n in self.fusion_inputs]
            strides = [self.backbone.strides[self.input if n == CONTEXT else n] for n in self.fusion_inputs]
            self.fusion = self._maybe_freeze(
                spec.fusion.build(in_channels, strides, num_classes, key="model.fusion", source=source), spec.fusion)
            last, channels, emits_scores = "model.fusion", self.fusion.out_channels, self.fusion.emits_scores

        if not emits_scores:
            self.classifier = _classifier(channels, num_classes, spec.classifier)
        elif channels != num_classes:
            raise SpecError(f"{source}: {last}: emits class scores, but {channels} channels, "
                            f"not the {num_classes} classes")
        else:
            self.classifier = nn.Identity()

        self.aux = nn.ModuleDict()
        self.aux_weights: dict[str, float] = {}
        for i, ref in enumerate(spec.aux):
            name = feature(ref.input, f"model.aux[{i}].input")
            head = self._maybe_freeze(ref.build(features[name], num_classes, key=f"model.aux[{i}]", source=source), ref)
            self.aux[name] = nn.Sequential(head, _classifier(head.out_channels, num_classes, ClassifierSpec()))
            self.aux_weights[f"aux.{name}"] = ref.weight

        self.batch_norm = spec.batch_norm
        if spec.batch_norm == "frozen":
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.requires_grad_(False)
        for i, path in enumerate(spec.dropout.after):
            submodule(self, path, f"{source}: model.dropout.after[{i}]").register_forward_hook(
                functools.partial(_dropout, p=spec.dropout.p))

    def _maybe_freeze(self, module: nn.Module, ref: ModuleRef) -> nn.Module:
        if ref.frozen:
            module.requires_grad_(False)
            self._frozen.append(module)
        return module

    def train(self, mode: bool = True) -> SegmentationModel:
        """As ``nn.Module.train``, but frozen components, and batch norm unless it
        trains on batch statistics, always stay in eval mode."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        if self.batch_norm != "batch":
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def output_stride(self) -> int:
        """Stride of the score map before the final upsampling."""
        if self.fusion is not None:
            finest = min(self.backbone.strides[self.input if n == CONTEXT else n] for n in self.fusion_inputs)
            return self.fusion.out_stride or finest
        return self.backbone.strides[self.input]

    @property
    def field_of_view(self) -> int | str | None:
        """Side, in input pixels, of the region the score layers see around a pixel of
        their input map: FCRN's field of view (Sec. 3.1, Table 1), ``((k - 1) d + 1)``
        times the output stride for one k x k classifier of dilation d. ``"global"`` if a
        context head declares itself global; None unless every context head declares its
        own ``field_of_view`` and no fusion is used.
        """
        spans = [getattr(head, "field_of_view", None) for head in self.context]
        if "global" in spans:
            return "global"
        if self.fusion is not None or None in spans:
            return None
        return (1 + sum(span - 1 for span in spans)) * self.output_stride

    def scores(self, images: Tensor) -> dict[str, Tensor]:
        """Score maps before upsampling: ``"out"`` at the output stride, plus the
        auxiliary heads' ``"aux.<feature>"`` in training mode."""
        features = self.backbone(images)  # {name: (B, C_i, H/s_i, W/s_i)}
        x = features[self.input]
        for head in self.context:
            x = head(x)
        if self.fusion is not None:
            x = self.fusion([x if n == CONTEXT else features[n] for n in self.fusion_inputs])
        outputs = {"out": self.classifier(x)}  # (B, K, H/s, W/s)
        if self.training:
            for name, head in self.aux.items():
                outputs[f"aux.{name}"] = head(features[name])
        return outputs

    def forward(self, images: Tensor, *, full_size: bool = True) -> dict[str, Tensor]:
        """The score maps upsampled to the input's size, or with ``full_size=False`` as
        :meth:`scores` returns them (the form a distributed replica, which runs only
        ``forward``, gives them in)."""
        if not full_size:
            return self.scores(images)
        size = images.shape[-2:]
        return {name: upsample(scores, size) for name, scores in self.scores(images).items()}  # (B, K, H, W)


def submodule(model: nn.Module, path: str, where: str) -> nn.Module:
    """The module named ``path`` (as in the weights file); a SpecError at ``where`` if none."""
    modules = dict(model.named_modules())
    if path not in modules:
        near = difflib.get_close_matches(path, modules, n=3)
        raise SpecError(f"{where}: the model has no module {path!r}"
                        + (f"; did you mean {' or '.join(map(repr, near))}?" if near else ""))
    return modules[path]


def _dropout(module: nn.Module, inputs: tuple, output: Tensor, *, p: float) -> Tensor:
    return F.dropout(output, p, module.training)
