"""FCRN's k x k dilated classifier and the field of view of Tables 1 and 2 (Sec. 3.1)."""

from __future__ import annotations

import pytest
import torch

from ctxseg.model import SegmentationModel
from ctxseg.spec import spec_from_dict
from ctxseg_fcrn.classifier import DilatedClassifier

# (resolution 1/s, kernel, dilation) -> FoV, every distinct setting of Tables 1 and 2
FIELDS_OF_VIEW = {
    (16, 3, 6): 208, (8, 3, 6): 104, (8, 3, 12): 200, (8, 3, 18): 296, (8, 5, 6): 200,
    (8, 5, 12): 392, (8, 5, 18): 584, (8, 7, 6): 296, (8, 7, 12): 584,
}


def fcrn(stride: int, kernel: int, dilation: int, depth: int = 18) -> SegmentationModel:
    spec = spec_from_dict({"model": {
        "backbone": {"name": "base.resnet", "depth": depth, "output_stride": stride},
        "context": [{"name": "fcrn.classifier", "kernel": kernel, "dilation": dilation}],
    }})
    return SegmentationModel(spec.model, num_classes=21, pretrained=False)


@pytest.mark.parametrize(("stride", "kernel", "dilation"), FIELDS_OF_VIEW)
def test_field_of_view_of_tables_1_and_2(stride, kernel, dilation):
    assert fcrn(stride, kernel, dilation).field_of_view == FIELDS_OF_VIEW[stride, kernel, dilation]


@pytest.mark.parametrize(("kernel", "dilation"), [(1, 1), (3, 6), (5, 12), (7, 3)])
def test_declared_span_is_the_measured_one(kernel, dilation):
    """The centre score's gradient reaches exactly a ((k - 1) d + 1)-wide square of the features."""
    head = DilatedClassifier(DilatedClassifier.Config(kernel=kernel, dilation=dilation), 4, 3)
    side = head.field_of_view + 10
    features = torch.randn(1, 4, side, side, requires_grad=True)
    scores = head(features)
    assert scores.shape == (1, 3, side, side) and head.out_channels == 3
    scores[0, :, side // 2, side // 2].sum().backward()
    reached = features.grad[0].abs().sum(0) > 0
    rows, cols = reached.any(1).nonzero().flatten(), reached.any(0).nonzero().flatten()
    assert rows[-1] - rows[0] + 1 == cols[-1] - cols[0] + 1 == head.field_of_view
    assert int(reached.sum()) == kernel * kernel


def test_it_emits_the_scores_so_the_model_adds_no_classifier():
    """Sec. 3.1: the k x k convolution maps the features straight to the class scores."""
    model = fcrn(8, 3, 12)
    assert model.context[0].emits_scores and isinstance(model.classifier, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.backbone.parameters()) + (
        3 * 3 * 512 * 21 + 21)  # ResNet-18's 512 features to 21 classes, nothing after it


def test_parameters_are_one_convolution():
    """2048 features of ResNet-50/101/152 to 21 classes: k^2 x 2048 x 21 weights + 21 biases."""
    head = DilatedClassifier(DilatedClassifier.Config(kernel=5, dilation=12), 2048, 21)
    assert sum(p.numel() for p in head.parameters()) == 5 * 5 * 2048 * 21 + 21


@pytest.mark.parametrize("kernel", [0, 2, 4])
def test_even_kernels_are_refused(kernel):
    with pytest.raises(ValueError, match=rf"'kernel' must be an odd kernel size in \[1, 255\], got {kernel}"):
        DilatedClassifier.Config(kernel=kernel)
