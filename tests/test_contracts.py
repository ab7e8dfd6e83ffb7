"""Every registered component passes ``ctxseg.testing``; and the kit catches broken ones.

The first test is parametrized over the registry, so a component is contract-tested
the day it is registered, whichever distribution provides it.
"""

from __future__ import annotations

import math
import shutil
import sys

import attrs
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.cli import main
from ctxseg.data.folder import FolderDataset
from ctxseg.interfaces import (
    Backbone,
    ContextHead,
    Fusion,
    Loss,
    Schedule,
    SegmentationDataset,
)
from ctxseg.registry import Component, Registry, default_registry, hookimpl
from ctxseg.testing import (
    check_backbone,
    check_component,
    check_context_head,
    check_dataset,
    check_fusion,
    check_loss,
    check_optimizer,
    check_schedule,
)

COMPONENTS = default_registry().components()


@pytest.mark.parametrize("component", COMPONENTS, ids=[c.name for c in COMPONENTS])
def test_component_contract(component: Component) -> None:
    """A dataset read from disk is checked on what its ``write_example`` writes in its layout;
    generated datasets go to conftest's temporary CTXSEG_DATA_DIR."""
    check_component(component)


def test_plugins_check_passes_the_datasets_read_from_disk(capsys) -> None:
    """``ctxseg plugins --check`` on a clean install: no dataset fails for want of data."""
    assert main(["plugins", "--check", "ctxseg-datasets", "base.folder"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == ["base.folder", "datasets.ade20k", "datasets.cityscapes",
                                              "datasets.pascal_context", "datasets.siftflow", "datasets.voc2012"]
    assert all(row[-1] == "ok" for row in rows)


# --------------------------------------------------------------------------------------
# Tiny inline components, per kind a correct one the kit passes and broken ones it
# must catch, each with a message naming the component and the violated property.


@attrs.frozen
class _NoParameters:
    pass


class GoodHead(ContextHead):
    """3x3 conv + per-sample global context: what a real context head looks like."""

    @attrs.frozen
    class Config:
        channels: int = 4

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = config.channels
        self.conv = nn.Conv2d(in_channels, config.channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(config.channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (B, C, h, w)
        return F.relu(self.norm(y + y.mean((2, 3), keepdim=True)))


class WrongChannelsHead(GoodHead):
    def __init__(self, config: GoodHead.Config, in_channels: int, num_classes: int):
        super().__init__(config, in_channels, num_classes)
        self.conv = nn.Conv2d(in_channels, 2 * config.channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(2 * config.channels)


class UnusedParameterHead(GoodHead):
    def __init__(self, config: GoodHead.Config, in_channels: int, num_classes: int):
        super().__init__(config, in_channels, num_classes)
        self.gate = nn.Parameter(torch.ones(1))  # never used in forward


class BatchMeanHead(GoodHead):
    """Normalizes by the batch mean in eval mode too: a sample's output depends on the others."""

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y - y.mean(0, keepdim=True)


class NonFiniteHead(GoodHead):
    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.conv(x).abs() * 0.0)  # log(0) = -inf


class NoisyHead(GoodHead):
    """Dropout that stays on in eval mode."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(super().forward(x), 0.5, training=True)


class WrongFieldOfViewHead(GoodHead):
    """A 3x3 conv that claims to see only its own pixel."""

    field_of_view = 1

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


class RootHead(GoodHead):
    """Defined on non-negative maps only (a square root first), and declares it."""

    input_domain = "nonnegative"

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.sqrt())


class UndeclaredRootHead(RootHead):
    input_domain = "real"


class MisdeclaredRootHead(RootHead):
    input_domain = "positive"


class BrokenPlugin:
    """An in-process plugin registering the broken heads, as a third party would."""

    @hookimpl
    def ctxseg_components(self) -> list[Component]:
        return [
            Component("context_head", "broken.wrong_channels", WrongChannelsHead, example={"channels": 8}),
            Component("context_head", "broken.unused_parameter", UnusedParameterHead),
            Component("context_head", "broken.batch_mean", BatchMeanHead),
            Component("context_head", "broken.non_finite", NonFiniteHead),
            Component("context_head", "broken.field_of_view", WrongFieldOfViewHead),
            Component("context_head", "broken.missing", "ctxseg_no_such_plugin.head:Head"),
        ]


@pytest.fixture(scope="module")
def broken() -> Registry:
    registry = Registry(autoload=False)
    registry.register(BrokenPlugin(), "broken-plugin", "0.0", entry_point="broken")
    return registry


def test_good_head_passes() -> None:
    check_context_head(GoodHead, {"channels": 3})
    check_component(GoodHead, kind="context_head")  # kind given
    check_component(GoodHead)  # kind inferred from the interface


BROKEN_HEADS = {
    "broken.wrong_channels": r"context_head 'broken.wrong_channels': output has 16 channels, declared "
                             r"out_channels=8 \(in_channels=\d+, num_classes=\d+, input \(2, \d+, \d+, \d+\)\)",
    "broken.unused_parameter": r"'broken.unused_parameter': parameter 'gate' gets no gradient",
    "broken.batch_mean": r"'broken.batch_mean': output of sample \d changes when it is run alone: "
                         r"it leaks across the batch in eval mode",
    "broken.non_finite": r"'broken.non_finite': output is not finite",
    "broken.field_of_view": r"'broken.field_of_view': declares field_of_view=1, but an output pixel sees a 3 x 3 "
                            r"window of its input \(7 x 7\)",
    "broken.missing": r"context_head 'broken.missing'.* cannot (be )?import.*'ctxseg_no_such_plugin",
}


@pytest.mark.parametrize(("name", "message"), BROKEN_HEADS.items(), ids=list(BROKEN_HEADS))
def test_kit_catches_broken_heads(broken: Registry, name: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_component(broken.get("context_head", name))


def test_kit_catches_nondeterministic_eval() -> None:
    with pytest.raises(AssertionError, match=r"'NoisyHead': eval mode is not deterministic"):
        check_context_head(NoisyHead)


def test_kit_draws_inputs_from_the_declared_domain() -> None:
    check_context_head(RootHead)
    with pytest.raises(AssertionError, match=r"'UndeclaredRootHead': output is not finite"):
        check_context_head(UndeclaredRootHead)
    with pytest.raises(AssertionError, match=r"'MisdeclaredRootHead': declares input_domain='positive', "
                                             r"expected 'real' or 'nonnegative'"):
        check_context_head(MisdeclaredRootHead)


def test_kit_rejects_a_table_that_does_not_fit_the_config() -> None:
    with pytest.raises(AssertionError, match=r"'GoodHead': its parameter table .* does not fit its Config:\n"
                                             r".*chanels"):
        check_context_head(GoodHead, {"chanels": 3})


class GoodBackbone(Backbone):
    Config = _NoParameters

    def __init__(self, config: _NoParameters):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.deep = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.channels = {"c1": 4, "c2": 6}
        self.strides = {"c1": 2, "c2": 4}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c1 = F.relu(self.stem(images))  # (B, 4, H/2, W/2)
        return {"c1": c1, "c2": self.deep(c1)}  # c2: (B, 6, H/4, W/4)


class WrongStrideBackbone(GoodBackbone):
    def __init__(self, config: _NoParameters):
        super().__init__(config)
        self.strides = {"c1": 2, "c2": 8}


def test_backbone_check() -> None:
    check_backbone(GoodBackbone)
    with pytest.raises(AssertionError, match=r"output 'c2' has size \dx\d, expected \dx\d "
                                             r"\(input size / strides\['c2'\]=8\)"):
        check_backbone(WrongStrideBackbone)


class GoodFusion(Fusion):
    """Late fusion: a 1x1 classifier per map, upsampled to the finest map and summed."""

    emits_scores = True
    Config = _NoParameters

    def __init__(self, config: _NoParameters, in_channels: list[int], strides: list[int], num_classes: int):
        super().__init__()
        self.out_channels = num_classes
        self.classifiers = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)

    def forward(self, maps: list[Tensor]) -> Tensor:
        size = maps[0].shape[-2:]  # the finest: maps come shallow to deep
        return sum(F.interpolate(c(m), size=size, mode="nearest") for c, m in zip(self.classifiers, maps))


class DetachingFusion(GoodFusion):
    """Detaches all but the first map: its classifiers train, the layers below them do not."""

    def forward(self, maps: list[Tensor]) -> Tensor:
        return super().forward([maps[0], *(m.detach() for m in maps[1:])])


def test_fusion_check() -> None:
    check_fusion(GoodFusion)
    with pytest.raises(AssertionError, match=r"'DetachingFusion': input 1 \(stride \d\) gets no gradient"):
        check_fusion(DetachingFusion)


class MeanCrossEntropy(Loss):
    """``F.cross_entropy`` with its default mean: NaN on an all-ignored batch."""

    Config = _NoParameters

    def __init__(self, config: _NoParameters, ignore_index: int):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(scores, target, ignore_index=self.ignore_index)


class InPlaceLoss(MeanCrossEntropy):
    """Right value and gradient, but zeroes the void labels of the caller's target in place."""

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        target[~valid] = 0
        return (F.cross_entropy(scores, target, reduction="none") * valid).sum() / valid.sum().clamp_min(1)


class VoidAsBackgroundLoss(MeanCrossEntropy):
    """Guards the all-void batch, but otherwise trains void pixels as class 0."""

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        void = target == self.ignore_index
        if void.all():
            return scores.sum() * 0.0
        return F.cross_entropy(scores, target.masked_fill(void, 0))


class ConstantWhenVoidLoss(MeanCrossEntropy):
    """Returns a fresh zero for an all-void batch: no graph, so ``backward()`` would crash training."""

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        if (target == self.ignore_index).all():
            return scores.new_zeros(())
        return super().forward(scores, target)


def test_loss_check() -> None:
    with pytest.raises(AssertionError, match=r"'ConstantWhenVoidLoss': an all-ignored batch gives a loss outside "
                                             r"the autograd graph"):
        check_loss(ConstantWhenVoidLoss)
    with pytest.raises(AssertionError, match=r"'MeanCrossEntropy': an all-ignored batch gives loss nan, expected 0"):
        check_loss(MeanCrossEntropy)
    with pytest.raises(AssertionError, match=r"'InPlaceLoss': modifies its inputs in place"):
        check_loss(InPlaceLoss)
    with pytest.raises(AssertionError, match=r"'VoidAsBackgroundLoss': pixels labelled ignore_index get a non-zero "
                                             r"gradient"):
        check_loss(VoidAsBackgroundLoss)


class Cosine(Schedule):
    """``cos(pi * turn * step / total_steps)``: a quarter period by default; more goes negative."""

    @attrs.frozen
    class Config:
        turn: float = 0.5

    def __init__(self, config: Config, total_steps: int):
        self.config, self.total_steps = config, total_steps

    def __call__(self, step: int) -> float:
        return math.cos(math.pi * self.config.turn * step / self.total_steps)


class StatefulSchedule(Cosine):
    def __call__(self, step: int) -> float:
        self.calls = getattr(self, "calls", 0) + 1
        return 1.0 / self.calls


def test_schedule_check() -> None:
    check_schedule(Cosine)
    with pytest.raises(AssertionError, match=r"'Cosine': factor at step \d+ is -[\d.e-]+, expected a finite value >= 0"):
        check_schedule(Cosine, {"turn": 1.0})
    with pytest.raises(AssertionError, match=r"'StatefulSchedule': is not stateless"):
        check_schedule(StatefulSchedule)


class FrozenSGD(torch.optim.SGD):
    """An SGD whose default learning rate is 0: it never moves."""

    @attrs.frozen
    class Config:
        lr: float = 0.0

    def __init__(self, config: Config, params):
        super().__init__(params, lr=config.lr)


def test_optimizer_check() -> None:
    check_optimizer(FrozenSGD, {"lr": 0.1})
    with pytest.raises(AssertionError, match=r"'FrozenSGD': a step with a non-zero gradient leaves 'weight' unchanged"):
        check_optimizer(FrozenSGD)


class TinyScenes(SegmentationDataset):
    """Three 4x5 samples in memory."""

    @attrs.frozen
    class Config:
        bad_label: int = -1  # >= 0: write this label into sample 2's mask

    def __init__(self, config: Config, split: str):
        self.classes, self.palette = ["sky", "sea"], [(0, 0, 255), (0, 128, 255)]
        self.names = [f"{split}_{i}" for i in range(3)]
        self.masks = [torch.tensor([[0, 1, 255, 0, 1]] * 4) for _ in range(3)]
        if config.bad_label >= 0:
            self.masks[2][0, 0] = config.bad_label

    @classmethod
    def class_names(cls, config: Config) -> list[str]:
        return ["sky", "sea"]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return torch.zeros(3, 4, 5, dtype=torch.uint8), self.masks[index]


def test_dataset_check() -> None:
    check_dataset(TinyScenes)
    with pytest.raises(AssertionError, match=r"'TinyScenes': mask values \[2\] are neither class indices in \[0, 2\) "
                                             r"nor ignore_index=255 \(split 'train', sample 2 'train_2'\)"):
        check_dataset(TinyScenes, {"bad_label": 2})


def test_dataset_check_reads_the_example_its_class_writes() -> None:
    roots = []

    class Recorded(FolderDataset):
        @classmethod
        def write_example(cls, root):
            roots.append(root)
            return super().write_example(root)

    check_dataset(Recorded)  # the folder format needs a root: only the written example fits
    assert len(roots) == 1 and not roots[0].exists()  # a temporary folder, removed after


class WithoutVal(FolderDataset):
    @classmethod
    def write_example(cls, root):
        table = super().write_example(root)
        shutil.rmtree(root / "val")
        return table


class FailingWriter(FolderDataset):
    @classmethod
    def write_example(cls, root):
        raise OSError("disk full")


class Unwritten(FolderDataset):
    write_example = classmethod(lambda cls, root: None)


@pytest.mark.parametrize(("cls", "message"), [
    (WithoutVal, r"'WithoutVal': constructor raised DataError: .*val: split folder not found .*\(split 'val'\)"),
    (FailingWriter, r"'FailingWriter': write_example raised OSError: disk full"),
    (Unwritten, r"'Unwritten': its parameter table \{\} does not fit its Config:(?s:.*)"
                r"SegmentationDataset\.write_example"),
])
def test_dataset_check_names_a_bad_example(cls: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_dataset(cls)


def test_a_component_whose_optional_package_is_absent_is_not_checked_here_not_failed(monkeypatch, capsys):
    """``plugins --check`` on an install without the tensorboard extra: base.tensorboard is reported
    as not checked, naming the extra, and the check passes."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert main(["plugins", "--check", "base.tensorboard"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "not checked here: base.tensorboard: writing TensorBoard logs needs the tensorboard package" in row
    assert "pip install 'ctxseg[tensorboard]'" in row
