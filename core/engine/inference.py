"""A model ready to label images, set up once: the inference path train, eval and predict share,
and the Python API (``ctxseg.load(weights).predict(image)``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image
from torch import Tensor, nn

from ctxseg.data.normalize import EvalTransform
from ctxseg.data.samples import image_tensor
from ctxseg.engine import autotune, distributed
from ctxseg.engine.protocol import probabilities
from ctxseg.engine.runtime import Runtime
from ctxseg.errors import DataError
from ctxseg.files.weights import WeightsInfo
from ctxseg.interfaces import Passes
from ctxseg.model.load import load_model
from ctxseg.spec import PassesRef, Spec, TestSpec
from ctxseg.spec.convert import structure, unstructure

__all__ = ["Inference"]


class Inference:
    """A segmentation model on its device, run as its spec says: ``[run.passes]`` (one pass,
    or e.g. FCRN's four shifted passes) and the ``[test]`` protocol (whole or sliding
    window, scales, flips), in the fast path by default: ``torch.inference_mode``, batched,
    and with ``precision = "auto"`` the fastest of fp32 and bf16, contiguous and
    channels_last, timed on this model at the first input's size (:meth:`prepare`).

    ``model`` is the assembled :class:`~ctxseg.model.SegmentationModel`; ``module`` is
    what runs it (``module(images)["out"]`` are scores at input size). A model that is
    also being trained keeps its memory format (``channels_last=None``: the spec's) and
    precision ("auto" as training resolves it), and shares the ``passes`` its training built.
    """

    def __init__(self, model: nn.Module, spec: Spec, *, source: str = "<spec>", channels_last: bool | None = True,
                 passes: Passes | None = None):
        self.spec = spec
        self.test = spec.test
        self.runtime = Runtime(spec.run, source, precision=self.test.precision, channels_last=channels_last)
        self.tuning = self.test.precision == "auto" and channels_last is not None
        self.choice: autotune.Choice | None = None
        self.model = self.runtime.model(model)
        if passes is None:
            passes = spec.run.passes.load()(spec.run.passes.config, self.model, source)
        self.module = passes.inference(self.model)
        self.transform = EvalTransform(spec.data)

    @classmethod
    def from_weights(cls, path: str | Path, *, passes: PassesRef | None = None,
                     test: Mapping[str, Any] | None = None) -> tuple[Inference, WeightsInfo]:
        """The inference set-up of a weights file, optionally run with other ``passes``, and
        ``test`` keys (as in the ``[test]`` table) overriding the embedded spec's protocol."""
        model, spec, info = load_model(path)
        if passes is not None:
            spec = attrs.evolve(spec, run=attrs.evolve(spec.run, passes=passes))
        if test:
            spec = attrs.evolve(spec, test=structure({**unstructure(spec.test), **test}, TestSpec,
                                                     source="command line", path="test"))
        return cls(model, spec, source=f"{path} (embedded spec)"), info

    def describe(self) -> str:
        """The protocol and precision in use, as printed before an evaluation or prediction."""
        test = self.test
        how = "whole images" if test.mode == "whole" else f"{test.crop} px windows {test.step} px apart"
        views = f", scales {list(test.scales)}" if test.scales != (1.0,) else ""
        if self.choice is not None:
            precision = self.choice.describe(self.runtime.device.type)
        elif self.tuning:
            precision = f"auto on {self.runtime.device.type} (measured at the first image)"
        else:
            precision = self.runtime.describe()
        return f"{how}{views}{', flipped too' if test.flip else ''}, {precision}"

    def prepare(self, size: Sequence[int]) -> None:
        """Resolve ``precision = "auto"`` for images of ``size`` (H, W): the fastest mode, timed
        on this model's forward pass at the size a view is scored at (the window in slide mode),
        or read from the cache (:func:`ctxseg.engine.autotune.fastest`). Done once; later sizes
        run in the mode chosen for the first."""
        if not self.tuning or self.choice is not None:
            return
        test = self.test
        shape = (test.batch, 3, test.crop, test.crop) if test.mode == "slide" else (1, 3, *size)
        example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        device = self.runtime.device
        key = {**autotune.machine(device), "model": self._fingerprint(), "input": list(shape)}

        def time_one(mode: autotune.Mode) -> float:
            self.runtime.use(mode.precision, mode.channels_last)
            self.runtime.model(self.model)
            images = self.runtime.images(example)
            with torch.inference_mode():
                _synchronize(device)
                start = time.perf_counter()
                self._score(images)
                _synchronize(device)
                return time.perf_counter() - start

        was_training = self.module.training
        self.module.eval()
        try:
            # under torchrun the first process measures and every process takes its choice, so
            # that each labels its share as one process would
            first = distributed.world_size() == 1 or distributed.rank() == 0
            choice = autotune.fastest(time_one, key) if first else None
        finally:
            self.module.train(was_training)
        self.choice = distributed.gather_objects(choice)[0]
        self.runtime.use(self.choice.mode.precision, self.choice.mode.channels_last)
        self.runtime.model(self.model)

    def _fingerprint(self) -> str:
        """The model's layout (spec, passes, parameter count): what a measured speed depends on."""
        layout = [unstructure(self.spec.model), unstructure(self.spec.run.passes),
                  sum(p.numel() for p in self.model.parameters())]
        return hashlib.sha256(json.dumps(layout, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _score(self, images: Tensor) -> Tensor:
        with self.runtime.autocast():
            return self.module(self.runtime.images(images))["out"].float()

    def probabilities(self, images: Sequence[Tensor | Image.Image]) -> list[Tensor]:
        """Class probabilities ``(K, H, W)`` (float32, on the device) of each image, a uint8
        tensor ``(3, H, W)`` or a PIL image; images of one size run batched."""
        tensors = [_as_tensor(image) for image in images]
        if tensors:
            self.prepare(tensors[0].shape[-2:])
        was_training = self.module.training
        self.module.eval()
        out: list[Tensor | None] = [None] * len(tensors)
        try:
            with torch.inference_mode():
                for indices in _same_size_runs(tensors, self.test.batch):
                    batch = torch.stack([self.transform(tensors[i], None)[0] for i in indices])
                    for i, probs in zip(indices, probabilities(self._score, batch, self.test), strict=True):
                        out[i] = probs
        finally:
            self.module.train(was_training)
        return out

    def predict(self, image: Tensor | Image.Image) -> Tensor:
        """Class indices ``(H, W)`` (int64, on the CPU) of one image (uint8 ``(3, H, W)`` or PIL)."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[Tensor | Image.Image]) -> list[Tensor]:
        """:meth:`predict` of several images, batched where they share a size."""
        return [probs.argmax(0).cpu() for probs in self.probabilities(images)]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _as_tensor(image: Tensor | Image.Image) -> Tensor:
    if isinstance(image, Image.Image):
        return image_tensor(image, "PIL image")
    if not (isinstance(image, Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3):
        raise DataError(f"expected a PIL image or a uint8 tensor (3, H, W), got "
                        f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}")
    return image


def _same_size_runs(images: Sequence[Tensor], batch: int) -> list[list[int]]:
    """Indices of consecutive images of one size, at most ``batch`` to a run."""
    runs: list[list[int]] = []
    for i, image in enumerate(images):
        if runs and len(runs[-1]) < batch and images[runs[-1][0]].shape == image.shape:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
