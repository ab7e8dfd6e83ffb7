"""The typed interfaces every component implements, with their tensor contracts.

A component is a class with a ``Config`` attribute (an attrs class holding its TOML
parameters, defaults from its paper) and a constructor whose first argument is that
config; the other constructor arguments are what the framework infers (channel
counts, class count, ...), so a spec never repeats a number.

An optimizer is a ``torch.optim.Optimizer`` subclass constructed as
``Optimizer(config, param_groups)``; it needs no interface of its own.

Beside the model's parts, two extension points let a paper change how ctxseg runs and
scores a model without touching the engine: :class:`Passes` (how a batch is run in
training and at inference) and :class:`Metric` (what evaluation measures); a third,
:class:`Callback`, does what happens around training (logging, keeping a best model).

Shapes below: B batch, C channels, K classes, H x W the input image size.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor, nn

__all__ = [
    "INTERFACES",
    "Backbone",
    "Callback",
    "ContextHead",
    "Fusion",
    "Loss",
    "Metric",
    "Passes",
    "Schedule",
    "SegmentationDataset",
    "TrainingRun",
]


class Backbone(nn.Module, abc.ABC):
    """Images ``(B, 3, H, W)`` -> named feature maps, shallow to deep.

    Constructed as ``Backbone(config)``. Declares for every output its channels and
    stride: ``forward(x)[name]`` has shape ``(B, channels[name], ceil(H / strides[name]),
    ceil(W / strides[name]))`` when H and W are multiples of the largest stride.
    """

    Config: ClassVar[type]
    channels: dict[str, int]
    strides: dict[str, int]
    receptive_fields: dict[str, int] | None = None
    """Side of the input window a pixel ``i`` of each output sees, centred on input pixel
    ``i * strides[name]`` (symmetric padding, as torchvision's ResNet); None if undeclared.
    ``ctxseg inspect`` composes the model's receptive field from it without measuring."""

    @abc.abstractmethod
    def forward(self, images: Tensor) -> dict[str, Tensor]: ...

    @property
    def deepest(self) -> str:
        """Name of the last (deepest) output, the default input of the context heads."""
        return list(self.channels)[-1]


class ContextHead(nn.Module, abc.ABC):
    """A feature map ``(B, C_in, h, w)`` -> a context-enriched map ``(B, out_channels, h, w)``.

    Constructed as ``ContextHead(config, in_channels, num_classes)``; ``num_classes``
    lets a head that works on class scores (a context module) size itself. A head whose
    output pixel sees a bounded window of its input, centred on it, declares the window's
    side as ``field_of_view`` (3 for a 3x3 conv), from which ``ctxseg inspect`` reports FCRN's
    field of view and the receptive field; a head whose every output pixel sees the whole
    input (global pooling, non-local attention) declares ``"global"``; None means
    undeclared. A head that
    assumes non-negative maps declares ``input_domain = "nonnegative"``: the contract
    kit then checks it on such maps only. A head whose output is already the class
    scores (``out_channels = num_classes``) sets ``emits_scores = True``; when it is the
    model's last, no classifier follows it.
    """

    Config: ClassVar[type]
    out_channels: int
    field_of_view: int | Literal["global"] | None = None
    input_domain: Literal["real", "nonnegative"] = "real"
    emits_scores: bool = False

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor: ...


class Fusion(nn.Module, abc.ABC):
    """Several maps ``(B, C_i, H/s_i, W/s_i)`` -> one map ``(B, out_channels, H/s, W/s)``.

    Constructed as ``Fusion(config, in_channels, strides, num_classes)``; the maps come
    in the order of the spec's ``inputs``. The output stride ``s`` is ``out_stride``, or
    the finest input's (min s_i) when that is None; a fusion that upsamples further
    (GCN's learned deconvolutions) declares it. A fusion that already emits class
    scores sets ``out_channels = num_classes`` and ``emits_scores = True``; the model
    then adds no classifier.
    """

    Config: ClassVar[type]
    out_channels: int
    emits_scores: bool = False
    out_stride: int | None = None

    @abc.abstractmethod
    def forward(self, maps: Sequence[Tensor]) -> Tensor: ...


class Loss(nn.Module, abc.ABC):
    """Scores ``(B, K, H, W)`` and labels ``(B, H, W)`` (int64) -> a scalar.

    Constructed as ``Loss(config, ignore_index)``; pixels labelled ``ignore_index``
    contribute neither to the value nor to the gradient. The model's main output and
    its auxiliary outputs are each passed through it and weighted by the framework.
    """

    Config: ClassVar[type]

    @abc.abstractmethod
    def forward(self, scores: Tensor, target: Tensor) -> Tensor: ...


class Schedule(abc.ABC):
    """Learning-rate factor per optimizer step: ``lr(step) = base_lr * schedule(step)``.

    Constructed as ``Schedule(config, total_steps)``; stateless, so resuming a run
    needs only the step.
    """

    Config: ClassVar[type]

    @abc.abstractmethod
    def __call__(self, step: int) -> float: ...


class Passes:
    """How a model is run on a batch: in one forward pass (``base.single``, these defaults),
    or in several whose results combine (FCRN's simulated finer network, ``fcrn.simulated``).

    Constructed as ``Passes(config, model, source)`` once the model is assembled; a model
    it cannot run is a :class:`~ctxseg.errors.SpecError` naming ``source`` there, before
    any training. Chosen by the spec's ``[run.passes]`` table, so a weights file runs the
    way it was trained to; ``ctxseg eval --passes`` overrides it.
    """

    Config: ClassVar[type]

    def __init__(self, config: Any, model: nn.Module, source: str = "<spec>"):
        self.config = config

    def backward(self, model: nn.Module, images: Tensor, masks: Tensor,
                 objective: Callable[[dict[str, Tensor], Tensor], Tensor],
                 autocast: Callable[[], AbstractContextManager]) -> Tensor:
        """Run ``model`` on ``images`` ``(B, 3, H, W)`` in training and backpropagate.

        ``model`` is what to call: the model, or in a distributed run its
        DistributedDataParallel replica, so call it (``model(images)``, or
        ``model(images, full_size=False)`` for the scores at the output stride) rather
        than its methods, and read its structure from the model this was built with.
        ``objective(outputs, labels)`` is the loss of one pass: ``outputs`` a dict like
        ``model(images)``'s, ``labels`` ``(B, h, w)`` the masks at the outputs' pixels.
        Call ``.backward()`` on each pass's value (scaled so that they add up to one
        batch's) and return their sum, detached, as a scalar tensor where it was computed:
        not ``.item()``, which would make the host wait for the device at every step
        (training reads the losses every few steps; a float is still accepted). Forward
        passes run inside ``autocast()``. By default: one pass at input size.
        """
        with autocast():
            outputs = model(images)
        value = objective(outputs, masks)
        value.backward()
        return value.detach()

    def inference(self, model: nn.Module) -> nn.Module:
        """The module that labels images at evaluation and prediction: ``(B, 3, H, W)`` ->
        ``{"out": (B, K, H, W)}``, with ``output_stride`` if its score map's stride is not
        the model's. By default the model itself."""
        return model


class Metric(abc.ABC):
    """A measure accumulated over label maps, reported beside the confusion matrix's.

    Constructed as ``Metric(config, classes, ignore_index)``. ``update`` receives each
    image's predicted and true label maps ``(H, W)`` (int64; the true one may hold
    ``ignore_index``, which must not count); ``compute`` returns named numbers merged
    into the evaluation's metrics. Chosen by the spec's ``[[metrics]]`` tables or
    ``ctxseg eval --metric NAME --metric-arg KEY=VALUE``.

    ``sums`` names the attributes (tensors) that hold the metric's state as sums: an
    evaluation split across processes adds each up over them before ``compute``. A
    metric that leaves it empty can be evaluated in one process only.
    """

    Config: ClassVar[type]
    sums: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def update(self, prediction: Tensor, target: Tensor) -> None: ...

    @abc.abstractmethod
    def compute(self) -> dict[str, float]: ...


class SegmentationDataset(torch.utils.data.Dataset, abc.ABC):
    """Samples of ``(image, mask)``: ``(3, H, W)`` uint8 and ``(H, W)`` int64.

    Constructed as ``SegmentationDataset(config, split)`` with split ``"train"`` or
    ``"val"``. Mask values are class indices in ``[0, len(classes))`` or ``ignore_index``.
    ``names[i]`` identifies sample ``i`` (its file stem) in predictions and pictures.
    """

    Config: ClassVar[type]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = 255
    names: list[str]

    @classmethod
    @abc.abstractmethod
    def class_names(cls, config: Any) -> list[str]:
        """The class names, known without reading any sample (``ctxseg inspect`` sizes models with it)."""

    @classmethod
    def output_formats(cls) -> dict[str, Callable[[Tensor], Any]]:
        """Prediction file formats that the benchmark's own evaluation reads, by name.

        Each turns a ``(H, W)`` int64 map of class indices into a PIL image, which
        ``ctxseg predict --format NAME`` saves as ``<image stem>.png``. None by default.
        """
        return {}

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any] | None:
        """Write a small dataset in this dataset's on-disk layout under the empty folder ``root``
        (both splits, a few samples) and return the parameter table that reads it.

        ``ctxseg.testing`` (and so ``ctxseg plugins --check``) checks the dataset on it, in a
        temporary folder, when its registration gives no ``example``. None by default: no layout
        to write (a dataset built in memory, or one whose ``Config`` defaults find its data).
        """
        return None

    @classmethod
    def data_dir(cls, config: Any) -> Path | None:
        """The folder the dataset of ``config`` reads, or None where it reads none (data made in
        memory): by default the config's ``root``. ``ctxseg eval`` names it, and reads the folder a
        weights file names only where it exists here, so that data is never created where a file says.
        """
        root = getattr(config, "root", None)
        return None if root is None else Path(root)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]: ...


@attrs.frozen
class TrainingRun:
    """The training run a :class:`Callback` watches."""

    out: Path
    """The run directory (``checkpoint.safetensors``, ``model.safetensors``, ...), where a callback
    writes; created after the callbacks are built, before their first hook."""
    steps: int
    """Optimizer updates in the whole run (``run.steps``)."""
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    """The dataset's colour of each class."""
    val_names: tuple[str, ...]
    """The validation samples' names, by index (an evaluation example's first element)."""


class Callback:
    """What happens around training, beside it: logging, keeping a best model, notifying
    (Lightning's callbacks, MMEngine's hooks). Chosen by the spec's ``[[run.callbacks]]`` tables.

    Constructed as ``Callback(config, run)`` with the :class:`TrainingRun`, in the process that
    writes the run directory (the first of a distributed run), where its hooks are then called
    in the order of the tables. Each hook does nothing by default. A callback observes: it
    changes neither the model nor the optimizer, and draws no random numbers from torch's
    generators, so that a run trains the same with it or without it.

    ``state_dict`` is what it needs to go on after a resume: a table of JSON values (numbers,
    strings, booleans, lists, tables) and tensors, at its top level. It is saved in every
    checkpoint, and a resumed run hands it to ``load_state_dict`` before any other hook, so
    that the callback continues as if the run had never stopped.
    """

    Config: ClassVar[type]

    def __init__(self, config: Any, run: TrainingRun):
        self.config = config

    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        """Optimizer update ``step`` (1 to ``run.steps``) is done: its ``loss`` (the mean over the
        global batch's labelled pixels) and the learning rate it used (the first parameter group's).

        Training reads the losses from the device every few steps only (``ctxseg.engine.train.LOG_EVERY``),
        so this hook is called then, once for each step since, in order: every step's own values,
        always before the evaluation, checkpoint and end of training that follow the step."""

    def on_evaluation(self, step: int, metrics: Mapping[str, Any],
                      examples: Sequence[tuple[int, Tensor, Tensor, Tensor]]) -> None:
        """The model was evaluated after update ``step``: the ``metrics`` (as ``metrics.json``'s
        ``final``), and ``(index, image, mask, prediction)`` for the first validation samples."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """The checkpoint of update ``step`` was written to ``path`` (after its evaluation), with
        this callback's ``state_dict`` in it."""

    def on_train_end(self, metrics: Mapping[str, Any]) -> None:
        """Training is over, with these final validation metrics (also when a resumed run had
        nothing left to train); the last hook called."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this callback; nothing by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` saved in a checkpoint."""


INTERFACES: dict[str, type] = {
    "backbone": Backbone,
    "context_head": ContextHead,
    "fusion": Fusion,
    "loss": Loss,
    "schedule": Schedule,
    "optimizer": torch.optim.Optimizer,
    "dataset": SegmentationDataset,
    "metric": Metric,
    "passes": Passes,
    "callback": Callback,
}
"""What a component of each kind (a :class:`ctxseg.registry.Kind`'s value) is an instance of."""
