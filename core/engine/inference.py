"""A model ready to label images, set up once: the inference path train, eval and predict share,
and the Python API (``ctxseg.load(weights).predict(image)``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image
from torch import Tensor, nn

from ctxseg.data.normalize import EvalTransform
from ctxseg.data.samples import image_tensor
from ctxseg.engine import autotune, distributed, ort
from ctxseg.engine.protocol import probabilities
from ctxseg.engine.runtime import Runtime
from ctxseg.errors import CtxsegError, DataError, SpecError
from ctxseg.files.weights import WeightsInfo
from ctxseg.interfaces import Passes
from ctxseg.model.load import embedded_spec, load_model
from ctxseg.spec import PassesRef, Spec, TestSpec
from ctxseg.spec.convert import structure, unstructure

__all__ = ["Inference"]


class Inference:
    """A segmentation model run as its spec says: ``[run.passes]`` (one pass, or e.g. FCRN's
    four shifted passes) and the ``[test]`` protocol (whole or sliding window, scales,
    flips), by the ``[test]`` backend: torch on its device, in the fast path by default
    (``torch.inference_mode``, batched, and with ``precision = "auto"`` the fastest of fp32
    and bf16, contiguous and channels_last), or ONNX Runtime on the CPU, running the weights
    file's ONNX export (:mod:`ctxseg.engine.ort`). Whatever is "auto" is timed on this model
    at the first input's size (:meth:`prepare`).

    ``model`` is the assembled :class:`~ctxseg.model.SegmentationModel`; ``module`` is
    what runs it (``module(images)["out"]`` are scores at input size). A model that is
    also being trained is given its training's ``runtime`` and ``passes``: it runs in torch,
    on training's device and in its memory format, in the ``[test]`` precision ("auto" as
    training resolves it). ``weights``, the file the model was read from, is what the
    onnxruntime backend exports. An ONNX file that ``ctxseg export`` wrote runs alone
    (``model`` None, its ``session`` given): :meth:`from_weights` of a ``.onnx`` file.
    """

    def __init__(self, model: nn.Module | None, spec: Spec, *, source: str = "<spec>", runtime: Runtime | None = None,
                 passes: Passes | None = None, weights: str | Path | None = None, session: ort.Session | None = None):
        self.spec = spec
        self.test = spec.test
        self.weights = None if weights is None else Path(weights)
        self.session = session
        training = runtime is not None
        backend = "onnxruntime" if session is not None else "torch" if training else self.test.backend
        if training:
            self.runtime = runtime.in_precision(self.test.precision)
        else:
            run = attrs.evolve(spec.run, device="cpu") if backend == "onnxruntime" else spec.run  # its provider's
            self.runtime = Runtime(run, source, precision=self.test.precision, channels_last=True)
        self.model = self.module = None
        if model is not None:
            self.model = self.runtime.model(model)
            if passes is None:
                passes = spec.run.passes.build(self.model, source, key="run.passes", source=source)
            self.module = passes.inference(self.model)
        self.transform = EvalTransform(spec.data)
        self.candidates = self._candidates(backend, training, source)
        self.tuning = len(self.candidates) > 1
        self.choice: autotune.Choice | None = None
        self.backend = "torch"  # until the timing chooses, where it is to choose
        if not self.tuning:
            self._use(self.candidates[0])

    @classmethod
    def from_weights(cls, path: str | Path, *, passes: PassesRef | None = None,
                     test: Mapping[str, Any] | None = None) -> tuple[Inference, WeightsInfo]:
        """The inference set-up of a weights file, optionally run with other ``passes``, and
        ``test`` keys (as in the ``[test]`` table) overriding the embedded spec's protocol.

        ``path`` may also be an ONNX file of ``ctxseg export`` (the int8 model of ``--quantize
        int8``, say): it runs on onnxruntime alone, with the spec, classes and palette its
        metadata carries, in the precision it holds, and with the passes it was exported with.
        """
        path = Path(path)
        if path.suffix == ".onnx":
            return cls._from_onnx(path, passes, test or {})
        model, spec, info = load_model(path)
        if passes is not None:
            spec = attrs.evolve(spec, run=attrs.evolve(spec.run, passes=passes))
        return cls(model, _with_test(spec, test), source=f"{path} (embedded spec)", weights=path), info

    @classmethod
    def _from_onnx(cls, path: Path, passes: PassesRef | None, test: Mapping[str, Any]) -> tuple[Inference, WeightsInfo]:
        if passes is not None:
            raise CtxsegError(f"{path}: an ONNX file runs the passes it was exported with; "
                              "other passes need its weights file")
        if test.get("backend", "onnxruntime") != "onnxruntime":
            raise CtxsegError(f"{path}: an ONNX file runs on onnxruntime; backend {test['backend']!r} needs "
                              "its weights file")
        session = ort.Session(path)
        if test.get("precision", "auto") not in ("auto", session.precision):
            raise CtxsegError(f"{path}: holds a {session.precision} model, so it cannot run in precision "
                              f"{test['precision']!r}; that needs its weights file")
        spec = _with_test(embedded_spec(session.info, path), {**test, "precision": "auto", "backend": "onnxruntime"})
        return cls(None, spec, source=f"{path} (embedded spec)", session=session), session.info

    def _candidates(self, backend: str, training: bool, source: str) -> tuple[autotune.Mode, ...]:
        """The modes this set-up may run in; with one, nothing is timed."""
        if self.session is not None:
            return (autotune.Mode(self.session.precision, False, "onnxruntime"),)
        if training:
            return (autotune.Mode(self.runtime.precision, self.runtime.channels_last),)
        if backend == "onnxruntime":
            if self.weights is None:
                raise SpecError(f"{source}: test.backend 'onnxruntime' runs the ONNX export of a weights file; "
                                "load the model from one (ctxseg.load, Inference.from_weights)")
            ort.require_extra("onnxruntime", "test.backend 'onnxruntime'")
        onnxruntime = (self.weights is not None and self.runtime.device.type == "cpu"
                       and (backend == "onnxruntime" or ort.available()))
        modes = autotune.candidates(self.test.precision, backend, onnxruntime=onnxruntime)
        if not modes:
            raise SpecError(f"{source}: test.backend 'onnxruntime' runs fp32 (or the int8 model of ctxseg export "
                            f"--quantize int8); test.precision {self.test.precision!r} needs backend 'torch'")
        return modes

    def _use(self, mode: autotune.Mode) -> None:
        """Run in ``mode`` from now on (the ``[test]`` table records the backend as resolved)."""
        self.backend = mode.backend
        self.test = attrs.evolve(self.test, backend=mode.backend)
        self.runtime.use(mode.precision, mode.channels_last)
        if mode.backend == "torch":
            self.runtime.model(self.model)

    def _onnx(self) -> ort.Session:
        """The onnxruntime session: on the weights file's export, made (and cached) on first use."""
        if self.session is None:
            self.session = ort.Session(ort.cached_export(self.weights))
        return self.session

    def describe(self) -> str:
        """The protocol and precision in use, as printed before an evaluation or prediction."""
        test = self.test
        how = "whole images" if test.mode == "whole" else f"{test.crop} px windows {test.step} px apart"
        views = f", scales {list(test.scales)}" if test.scales != (1.0,) else ""
        if self.choice is not None:
            precision = self.choice.describe(self.runtime.device.type)
        elif self.tuning:
            precision = f"auto on {self.runtime.device.type} (measured at the first image)"
        elif self.backend == "onnxruntime":
            precision = f"onnxruntime, {self.runtime.describe()}"
        else:
            precision = self.runtime.describe()
        if self.backend == "onnxruntime" and self.session is not None:
            precision += f" ({self.session.path})"
        return f"{how}{views}{', flipped too' if test.flip else ''}, {precision}"

    def prepare(self, size: Sequence[int]) -> None:
        """Set up for images of ``size`` (H, W): export the model for onnxruntime if it runs
        there and is not exported yet, and resolve what is "auto": the fastest mode, timed on
        this model's forward pass at the size a view is scored at (the window in slide mode),
        or read from the cache (:func:`ctxseg.engine.autotune.fastest`). Done once; later
        sizes run in the mode chosen for the first.

        Under torchrun the first process exports and measures, and every process takes its
        file and its choice, so that each labels its share as one process would.
        """
        first = distributed.world_size() == 1 or distributed.rank() == 0
        if self.backend == "onnxruntime" and self.session is None:
            if first:
                self._onnx()
            distributed.gather_objects(None)  # the others wait for the export
            self._onnx()
        if not self.tuning or self.choice is not None:
            return
        with self._evaluating():
            choice = self._measure(size) if first else None
        self.choice = distributed.gather_objects(choice)[0]
        self._use(self.choice.mode)

    def _measure(self, size: Sequence[int]) -> autotune.Choice:
        """The fastest of the candidate modes (onnxruntime's left out, with a warning, where
        the model cannot be exported for every size) at the size a view is scored at."""
        modes = self.candidates
        if autotune.ONNXRUNTIME in modes:
            try:
                self._onnx()
            except CtxsegError as error:
                warnings.warn(f"test.backend 'auto': onnxruntime left out, as it cannot run this model: {error}",
                              stacklevel=3)
                modes = tuple(mode for mode in modes if mode.backend == "torch")
        test = self.test
        shape = (test.batch, 3, test.crop, test.crop) if test.mode == "slide" else (1, 3, *size)
        example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        device = self.runtime.device
        key = {**autotune.machine(device), "model": self._fingerprint(), "input": list(shape)}
        if self.session is not None:
            key["onnxruntime"] = self.session.version

        def time_one(mode: autotune.Mode) -> float:
            self._use(mode)
            images = self.runtime.images(example) if mode.backend == "torch" else example
            with torch.inference_mode():
                _synchronize(device)
                start = time.perf_counter()
                self._score(images)
                _synchronize(device)
                return time.perf_counter() - start

        return autotune.fastest(time_one, key, modes=modes)

    def _fingerprint(self) -> str:
        """The model's layout (spec, passes, parameter count): what a measured speed depends on."""
        layout = [unstructure(self.spec.model), unstructure(self.spec.run.passes),
                  sum(p.numel() for p in self.model.parameters())]
        return hashlib.sha256(json.dumps(layout, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _score(self, images: Tensor) -> Tensor:
        if self.backend == "onnxruntime":
            return self._onnx()(images)
        with self.runtime.autocast():
            return self.module(self.runtime.images(images))["out"].float()

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """The torch module in eval mode within the block, and back in training after it if it was."""
        if self.module is None:
            yield
            return
        was_training = self.module.training
        self.module.eval()
        try:
            yield
        finally:
            self.module.train(was_training)

    def probabilities(self, images: Sequence[Tensor | Image.Image]) -> list[Tensor]:
        """Class probabilities ``(K, H, W)`` (float32, on the device) of each image, a uint8
        tensor ``(3, H, W)`` or a PIL image; images of one size run batched."""
        tensors = [_as_tensor(image) for image in images]
        if tensors:
            self.prepare(tensors[0].shape[-2:])
        out: list[Tensor | None] = [None] * len(tensors)
        with self._evaluating(), torch.inference_mode():
            for indices in _same_size_runs(tensors, self.test.batch):
                batch = torch.stack([self.transform(tensors[i], None)[0] for i in indices])
                for i, probs in zip(indices, probabilities(self._score, batch, self.test), strict=True):
                    out[i] = probs
        return out

    def predict(self, image: Tensor | Image.Image) -> Tensor:
        """Class indices ``(H, W)`` (int64, on the CPU) of one image (uint8 ``(3, H, W)`` or PIL)."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[Tensor | Image.Image]) -> list[Tensor]:
        """:meth:`predict` of several images, batched where they share a size."""
        return [probs.argmax(0).cpu() for probs in self.probabilities(images)]


def _with_test(spec: Spec, test: Mapping[str, Any] | None) -> Spec:
    """``spec`` with ``test`` keys (as in the ``[test]`` table) overriding its protocol."""
    if not test:
        return spec
    return attrs.evolve(spec, test=structure({**unstructure(spec.test), **test}, TestSpec,
                                             source="command line", path="test"))


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
