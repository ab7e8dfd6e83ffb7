"""The TOML spec: one file describes the model, its training and its data.

A component is chosen by a table with a ``name`` (its registry name) and its own
parameters; the registry's component class says which parameters exist::

    [model.backbone]
    name = "base.resnet"
    depth = 50
    output_stride = 8

Channel counts and the number of classes are never written: they flow from the
backbone and the dataset. See ``examples/`` and docs/spec.md for complete specs.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, ClassVar, Literal

import attrs
import tomli_w

from ctxseg.errors import ComponentError, CtxsegError
from ctxseg.registry import Kind, default_registry
from ctxseg.spec.convert import InvalidValue, converter, unstructure
from ctxseg.spec.paths import FilePath

__all__ = [
    "AuxRef", "BackboneRef", "CallbackRef", "ClassifierSpec", "ContextRef", "DataSpec", "DatasetRef", "DropoutSpec",
    "FusionRef", "LossRef", "MetricRef", "ModelSpec", "ModuleRef", "OptimizerRef", "PassesRef", "Ref", "RunSpec",
    "ScheduleRef", "Spec", "TestSpec",
]


@attrs.frozen
class Ref:
    """A component chosen in the spec: its registry name and its structured ``Config``.

    Subclasses fix the kind and may add framework keys that sit beside the
    component's own parameters in the same table (e.g. an auxiliary head's ``weight``).
    """

    kind: ClassVar[Kind]
    name: str
    config: Any

    def load(self) -> type:
        """The component's class."""
        return default_registry().get(self.kind, self.name).load()

    def describe(self, key: str) -> str:
        """``model.context[1] (nonlocal.block, plugin ctxseg-nonlocal 0.1)``: where the component
        sits in the spec (``key``) and who wrote it."""
        component = default_registry().get(self.kind, self.name)
        return f"{key} ({self.name}, plugin {component.distribution} {component.version})".rstrip()

    def build(self, *args: Any, key: str, source: str = "<spec>") -> Any:
        """The component, constructed as ``cls(config, *args)``: what every part of ctxseg builds
        a component with, so that a plugin's fault is named the same way everywhere.

        A class left abstract, a constructor that raises (but a :class:`~ctxseg.errors.CtxsegError`,
        which already says what to fix), or an object that is not an instance of its kind's
        interface is a :class:`~ctxseg.errors.ComponentError` naming ``source``, the spec ``key``
        (``loss``, ``model.context[1]``), the component and its plugin distribution.
        """
        from ctxseg.interfaces import INTERFACES  # torch: imported when a component is built, not when a spec is read

        cls = self.load()
        where = f"{source}: {self.describe(key)}"
        if inspect.isabstract(cls):
            raise ComponentError(f"{where}: class {cls.__qualname__} is abstract: it does not implement "
                                 f"{', '.join(sorted(cls.__abstractmethods__))}")
        try:
            component = cls(self.config, *args)
        except CtxsegError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever a component's constructor raises is its own
            raise ComponentError(f"{where}: constructor raised {type(error).__name__}: {error}") from error
        interface = INTERFACES[str(self.kind)]
        if not isinstance(component, interface):
            raise ComponentError(f"{where}: built a {type(component).__qualname__}, expected an instance of "
                                 f"{interface.__module__}.{interface.__qualname__}")
        return component


@attrs.frozen
class ModuleRef(Ref):
    """A model component; any of them can be frozen from TOML (``frozen = true``)."""

    frozen: bool = False
    """Not trained, and run in eval mode (batch-norm statistics and dropout fixed): Yu &
    Koltun train the context module on a fixed front end (Sec. 5)."""


@attrs.frozen
class BackboneRef(ModuleRef):
    kind = Kind.BACKBONE


@attrs.frozen
class ContextRef(ModuleRef):
    kind = Kind.CONTEXT_HEAD


@attrs.frozen
class AuxRef(ModuleRef):
    """A deeply supervised auxiliary head (PSPNet Sec. 4): trained, never run at inference."""

    kind = Kind.CONTEXT_HEAD
    input: str = "c4"
    """Backbone feature the head reads."""
    weight: float = attrs.field(default=0.4, validator=attrs.validators.ge(0.0))
    """Weight of its loss in the total (PSPNet: 0.4)."""


@attrs.frozen
class FusionRef(ModuleRef):
    kind = Kind.FUSION
    inputs: tuple[str, ...] = ("context",)
    """Backbone feature names, and "context" for the context heads' output."""


@attrs.frozen
class LossRef(Ref):
    kind = Kind.LOSS


@attrs.frozen
class ScheduleRef(Ref):
    kind = Kind.SCHEDULE


@attrs.frozen
class OptimizerRef(Ref):
    kind = Kind.OPTIMIZER
    backbone_lr_factor: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    """The backbone's learning rate as a fraction of ``lr``, the new layers' (context heads, fusion,
    classifier, auxiliary heads). DeepLab's fine-tuning gives new layers 10 times the rate (0.1
    here); none of the five papers does: FCRN Sec. 4.7 found it "shows no obvious advantage"."""


@attrs.frozen
class DatasetRef(Ref):
    kind = Kind.DATASET


@attrs.frozen
class PassesRef(Ref):
    kind = Kind.PASSES


@attrs.frozen
class MetricRef(Ref):
    kind = Kind.METRIC


@attrs.frozen
class CallbackRef(Ref):
    kind = Kind.CALLBACK


@functools.cache
def _keys_class(ref_cls: type[Ref]) -> type:
    """An attrs class of the framework keys a Ref subclass adds (for strict structuring)."""
    own = {f.name: attrs.field(type=f.type, default=f.default, validator=f.validator)
           for f in attrs.fields(ref_cls) if f.name not in ("name", "config")}
    return attrs.make_class(f"{ref_cls.__name__}Keys", own, frozen=True)


def _structure_ref(data: Any, ref_cls: type[Ref]) -> Ref:
    if not isinstance(data, dict):
        raise InvalidValue(f"expected a table with a 'name' key, got {data!r}")
    params = dict(data)
    name = params.pop("name", None)
    if not isinstance(name, str):
        known = ", ".join(c.name for c in default_registry().components(ref_cls.kind))
        raise InvalidValue(f"expected 'name' = one of the registered {ref_cls.kind}s: {known}")
    keys_cls = _keys_class(ref_cls)
    keys = {f.name: params.pop(f.name) for f in attrs.fields(keys_cls) if f.name in params}
    component_cls = default_registry().get(ref_cls.kind, name).load()
    config = converter.structure(params, component_cls.Config)
    return ref_cls(name=name, config=config, **attrs.asdict(converter.structure(keys, keys_cls)))


def _unstructure_ref(ref: Ref) -> dict[str, Any]:
    keys = {f.name: unstructure(getattr(ref, f.name)) for f in attrs.fields(type(ref))
            if f.name not in ("name", "config")}
    return {"name": ref.name, **keys, **unstructure(ref.config)}


converter.register_structure_hook_func(lambda t: isinstance(t, type) and issubclass(t, Ref), _structure_ref)
converter.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, Ref), _unstructure_ref)


def _default(ref_cls: type[Ref], name: str) -> Any:
    return attrs.Factory(lambda: _structure_ref({"name": name}, ref_cls))


@attrs.frozen(kw_only=True)
class ClassifierSpec:
    """The 1x1 convolution from the last feature map to class scores; left out when the
    last context head or the fusion already emits them (``emits_scores``)."""

    dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    """Dropout before the 1x1 conv; 0 by default because heads (FCN, PSPNet) end with their own."""


@attrs.frozen(kw_only=True)
class DropoutSpec:
    """Traditional (element-wise) dropout on the outputs of chosen modules, in training only.

    Wu et al. (FCRN, Sec. 4.5) put it into "some of the top-most" residual blocks
    against over-fitting; any module of the model can be named.
    """

    p: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    """Probability of zeroing an element."""
    after: tuple[str, ...] = ()
    """Module paths, as in the weights file's tensor names: e.g. "backbone.layer4.2"."""


@attrs.frozen(kw_only=True)
class ModelSpec:
    backbone: BackboneRef
    input: str = ""
    """Backbone feature the context heads read; empty means the deepest."""
    context: tuple[ContextRef, ...] = ()
    """Context heads applied in order ([[model.context]] tables)."""
    fusion: FusionRef | None = None
    classifier: ClassifierSpec = attrs.Factory(ClassifierSpec)
    aux: tuple[AuxRef, ...] = ()
    batch_norm: Literal["batch", "frozen_statistics", "frozen"] = "batch"
    """How every batch-norm layer trains: "batch" normalizes with batch statistics;
    "frozen_statistics" uses the stored means and variances (FCRN Sec. 3.2, after He et
    al.: a linear transform, so batches of one crop train well); "frozen" also keeps
    its scale and shift fixed."""
    dropout: DropoutSpec = attrs.Factory(DropoutSpec)
    init: FilePath = ""
    """A ctxseg weights file to start training from, where tensor names match (a trained
    front end under a new context module); tensors it lacks keep their initialisation."""


def _range(low: float, high: float | None = None):
    """Validator of a ``[a, b]`` pair with ``low <= a <= b`` (``<= high`` if given)."""
    bounds = f"{low} <= a <= b" + (f" <= {high}" if high is not None else "")

    def check(instance: Any, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
        a, b = value
        if not (low <= a <= b and (high is None or b <= high)):
            raise ValueError(f"'{attribute.name}' must be [a, b] with {bounds}, got {list(value)}")
    return check


def _color(low: float, *, std: bool = False):
    """Validator of an RGB triple of finite numbers in ``[low, 1]`` (``(0, 1]`` for a std, which divides)."""
    bounds = "(0, 1]" if std else f"[{low}, 1]"

    def check(instance: Any, attribute: attrs.Attribute, value: tuple[float, float, float]) -> None:
        if not all(math.isfinite(v) and (v > 0 if std else v >= low) and v <= 1 for v in value):
            raise ValueError(f"'{attribute.name}' must be three numbers in {bounds} (RGB, images scaled to "
                             f"[0, 1]), got {list(value)}")
    return check


MAX_BATCH = 4096
"""Largest batch a spec may ask for; more is a typo that would allocate the memory of thousands of images."""
MAX_CROP = 8192
"""Largest training crop side in pixels (Cityscapes images are 2048 wide; PSPNet crops 713)."""


@attrs.frozen(kw_only=True)
class DataSpec:
    """The dataset, batching, and the training augmentation (PSPNet Sec. 5.1; FCRN Sec. 4.2).

    Training samples go through, in this order: random resize (``scale``), random
    rotation (``rotate``), random crop with padding (``crop_size``), random mirror
    (``flip``), random Gaussian blur (``blur``), normalization (``mean``, ``std``).
    Labels are always resampled with nearest neighbour; pixels brought in by
    rotation or padding are the mean colour in the image and ignored in the mask.
    Evaluation only normalizes. The defaults change nothing but the mirror.
    """

    dataset: DatasetRef = _default(DatasetRef, "base.context_scenes")
    batch_size: int = attrs.field(default=8, validator=[attrs.validators.ge(1), attrs.validators.le(MAX_BATCH)])
    """The global batch, as the papers report it: split evenly across the processes of a
    distributed run (16 on 8 GPUs is 2 per GPU), so it must divide by their number."""
    workers: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(256)])
    crop_size: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(MAX_CROP)])
    """Square training crop in pixels; 0 trains on whole images."""
    scale: tuple[float, float] = attrs.field(default=(1.0, 1.0), validator=_range(0.01, 16.0))
    """Random resize range for training (PSPNet: 0.5 to 2; FCRN resizes too, range not given); at most 16."""
    rotate: tuple[float, float] = attrs.field(default=(0.0, 0.0), validator=_range(-180.0, 180.0))
    """Random rotation range in degrees for training (PSPNet on VOC and ImageNet: -10 to 10)."""
    flip: bool = True
    """Random horizontal mirror for training."""
    blur: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    """Probability of a random Gaussian blur in training (PSPNet on VOC and ImageNet; the
    paper gives no parameters, the authors' later PyTorch code blurs half of the images)."""
    blur_sigma: tuple[float, float] = attrs.field(default=(0.1, 2.0), validator=_range(0.01, 100.0))
    """Range of the blur's standard deviation in pixels, drawn per image (at most 100)."""
    mean: tuple[float, float, float] = attrs.field(default=(0.485, 0.456, 0.406), validator=_color(0.0))
    """Normalization mean (RGB, in [0, 1]); also the colour of padding and rotation corners."""
    std: tuple[float, float, float] = attrs.field(default=(0.229, 0.224, 0.225), validator=_color(0.0, std=True))
    """Normalization standard deviation (RGB, in (0, 1]: images are divided by it)."""


def _window(instance: TestSpec, attribute: attrs.Attribute, value: int) -> None:
    if instance.mode == "slide" and value < 1:
        raise ValueError(f"'{attribute.name}' must be the window's side (>= 1) in slide mode, got {value}")


def _scales(instance: TestSpec, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if not value or not all(0.05 <= s <= 8 for s in value):
        raise ValueError(f"'{attribute.name}' must be one or more factors in [0.05, 8], got {list(value)}")


@attrs.frozen(kw_only=True)
class TestSpec:
    """How a trained model labels an image: ``ctxseg eval``, ``ctxseg predict`` and the
    evaluations during training (their CLI options override it).

    Each view of the image (every scale, mirrored too with ``flip``) is scored whole or
    by a sliding window; the views' class probabilities (softmax), resized back to the
    image, are averaged (PSPNet Sec. 5: multi-scale testing, 'MS' in Tables 3-4).
    """

    __test__ = False  # not a pytest test class

    mode: Literal["whole", "slide"] = "whole"
    """"whole": the image in one forward pass; "slide": square windows of side ``crop``,
    ``stride`` apart, their overlapping scores averaged (PSPNet's and MMSegmentation's
    Cityscapes protocol); an image smaller than a window is padded with the mean colour."""
    crop: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(8192), _window])
    """The window's side in pixels (slide mode)."""
    stride: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(8192)])
    """Pixels between windows; 0 means two thirds of the window, rounded up (PSPNet's)."""
    batch: int = attrs.field(default=4, validator=[attrs.validators.ge(1), attrs.validators.le(1024)])
    """Images (whole mode, same size) or windows per forward pass."""
    scales: tuple[float, ...] = attrs.field(default=(1.0,), validator=_scales)
    """Resize factors of the views (PSPNet: 0.5, 0.75, 1, 1.25, 1.5, 1.75)."""
    flip: bool = False
    """Also score each view mirrored."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """"auto": the fastest of fp32 and bf16 autocast (and of contiguous and channels_last),
    timed on the model at the first image's size on this machine, cached per machine."""
    backend: Literal["torch", "onnxruntime", "auto"] = "torch"
    """What runs the model: "torch"; "onnxruntime", the weights file exported to ONNX once
    (cached by its content hash in ``~/.cache/ctxseg/onnx``) and run by ONNX Runtime on the
    CPU in fp32 (needs the ``export`` extra); "auto", the faster of the two, timed with
    ``precision`` (torch alone where the extra is not installed). torch is the default: an
    export takes a while the first time (about 10 s for an FCN-ResNet50), and evaluations
    during training always run torch (the weights change at every step)."""

    @property
    def step(self) -> int:
        """The stride between windows in use."""
        return self.stride or -(-2 * self.crop // 3)


TENSORBOARD = "base.tensorboard"
"""The callback ``[run] tensorboard = true`` stands for."""


def _one_tensorboard(instance: RunSpec, attribute: attrs.Attribute, value: tuple[CallbackRef, ...]) -> None:
    if instance.tensorboard and any(ref.name == TENSORBOARD for ref in value):
        raise ValueError(f"'tensorboard = true' adds a {TENSORBOARD!r} callback, and '{attribute.name}' names "
                         "one too; keep the [[run.callbacks]] table and remove 'tensorboard'")


@attrs.frozen(kw_only=True)
class RunSpec:
    steps: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    """Optimizer updates."""
    accumulate: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    """Batches whose gradients are summed before each update (FCRN Sec. 3.2: several
    crops per update when one crop fills the memory). Each batch's loss is weighted by its
    share of the labelled pixels, so an update sees the mean over all labelled pixels of
    batch_size x accumulate samples, as one big batch would."""
    eval_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Evaluate (and checkpoint) every so many steps; 0 means only at the end."""
    seed: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(2**32 - 1)])
    """Seed of every random draw (initialisation, sampling, augmentation); 0 to 2**32 - 1."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """"auto": the process's GPU (``LOCAL_RANK`` under torchrun) if CUDA is there, else the CPU."""
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    """bf16 runs the forward pass under autocast; weights and optimizer stay fp32. "auto":
    bf16 on a GPU that supports it, fp32 elsewhere (CPU training keeps fp32's numbers)."""
    channels_last: bool = False
    compile: bool = False
    """Train the model through ``torch.compile`` (the first step's compile time is reported apart)."""
    sync_batch_norm: bool = True
    """With several processes (torchrun), batch norm that trains on batch statistics
    normalizes over the global batch, as PSPNet's (Sec. 4.1); frozen modes stay frozen."""
    threads: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(4096)])
    """CPU threads for torch (at most 4096); 0 keeps torch's default."""
    passes: PassesRef = _default(PassesRef, "base.single")
    """How the model runs on a batch in training and at inference: "base.single" (one
    forward pass), or a plugin's, e.g. "fcrn.simulated" (FCRN's four shifted passes)."""
    callbacks: tuple[CallbackRef, ...] = attrs.field(default=(), validator=_one_tensorboard)
    """What happens around training ([[run.callbacks]] tables), e.g. "base.tensorboard"."""
    tensorboard: bool = False
    """Shorthand for a [[run.callbacks]] table naming "base.tensorboard" with its defaults: TensorBoard
    event files in the run directory (loss, learning rate, validation metrics per class, prediction
    panels; needs ``ctxseg[tensorboard]``)."""

    @property
    def all_callbacks(self) -> tuple[tuple[str, CallbackRef], ...]:
        """The run's callbacks with their spec keys: ``callbacks``', then ``tensorboard``'s."""
        keyed = tuple((f"run.callbacks[{i}]", ref) for i, ref in enumerate(self.callbacks))
        if self.tensorboard:
            keyed += (("run.tensorboard", _structure_ref({"name": TENSORBOARD}, CallbackRef)),)
        return keyed


@attrs.frozen(kw_only=True)
class Spec:
    """A whole run: model, data, loss, optimizer, schedule and run settings."""

    model: ModelSpec
    data: DataSpec = attrs.Factory(DataSpec)
    loss: LossRef = _default(LossRef, "base.cross_entropy")
    optimizer: OptimizerRef = _default(OptimizerRef, "base.sgd")
    schedule: ScheduleRef = _default(ScheduleRef, "base.poly")
    run: RunSpec = attrs.Factory(RunSpec)
    test: TestSpec = attrs.Factory(TestSpec)
    metrics: tuple[MetricRef, ...] = ()
    """Measures evaluated beside the confusion matrix's ([[metrics]] tables), e.g.
    GCN's boundary accuracy ("gcn.boundary")."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as a TOML-compatible table (every default filled in)."""
        return unstructure(self)

    def to_toml(self) -> str:
        """The resolved spec as TOML text that loads back to an equal Spec (``ctxseg inspect --resolved``)."""
        return tomli_w.dumps(_without_none(self.to_dict()))


def _without_none(value: Any) -> Any:
    """``value`` without ``None`` in its tables: TOML has no null, and an absent key means the same (e.g. no fusion)."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(item) for item in value]
    return value
