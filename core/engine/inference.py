"""A model ready to label images, set up once: the inference path train, eval, predict share."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
from torch import Tensor, nn

from ctxseg.data.pipeline import EvalTransform
from ctxseg.engine.runtime import Runtime
from ctxseg.files.weights import WeightsInfo
from ctxseg.model.load import load_model
from ctxseg.spec import PassesRef, Spec

__all__ = ["Inference"]


class Inference:
    """A segmentation model on its runtime's device and precision, run as its spec's
    ``[run.passes]`` say (one pass, or e.g. FCRN's four shifted passes), with the spec's
    normalisation.

    ``model`` is the assembled :class:`~ctxseg.model.SegmentationModel`; ``module`` is
    what runs it at inference (``module(images)["out"]`` are scores at input size).
    """

    def __init__(self, model: nn.Module, spec: Spec, *, source: str = "<spec>"):
        self.spec = spec
        self.runtime = Runtime(spec.run, source)
        self.model = self.runtime.model(model)
        passes = spec.run.passes
        self.module = passes.load()(passes.config, self.model, source).inference(self.model)
        self.transform = EvalTransform(spec.data)

    @classmethod
    def from_weights(cls, path: str | Path, *, passes: PassesRef | None = None) -> tuple[Inference, WeightsInfo]:
        """The inference set-up of a weights file, optionally run with other ``passes``."""
        model, spec, info = load_model(path)
        if passes is not None:
            spec = attrs.evolve(spec, run=attrs.evolve(spec.run, passes=passes))
        return cls(model, spec, source=f"{path} (embedded spec)"), info

    @property
    def output_stride(self) -> int:
        """Stride of the score map the module computes before upsampling (halved by FCRN's simulation)."""
        return getattr(self.module, "output_stride", self.model.output_stride)

    @torch.no_grad()
    def scores(self, image: Tensor) -> Tensor:
        """Class scores ``(K, H, W)`` (float32) of one uint8 image ``(3, H, W)``."""
        was_training = self.module.training
        self.module.eval()
        normalized = self.transform(image, None)[0]
        with self.runtime.autocast():
            scores = self.module(self.runtime.images(normalized[None]))["out"]
        self.module.train(was_training)
        return scores[0].float()

    def predict(self, image: Tensor) -> Tensor:
        """Class indices ``(H, W)`` (int64, on the CPU) of one uint8 image ``(3, H, W)``."""
        return self.scores(image).argmax(0).cpu()
