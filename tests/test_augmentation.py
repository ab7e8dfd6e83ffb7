"""The training augmentation (PSPNet Sec. 5.1): image and mask stay aligned under every transform.

The images of the property tests encode their labels: pixel colour = ``PALETTE[label]``.
Each transform is run on the image, the mask, and the same colour image wrapped as a
``tv_tensors.Mask`` (resampled with nearest neighbour, like the mask): that copy must
equal ``PALETTE[mask]`` exactly, everywhere, which checks that both saw the same
geometry; the real (bilinear) image must agree with it inside label regions.
"""

from __future__ import annotations

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2

from ctxseg.data.normalize import EvalTransform
from ctxseg.data.pipeline import RandomRotateCrop, TrainTransform
from ctxseg.errors import SpecError
from ctxseg.spec import DataSpec, spec_from_dict

IGNORE = 255
K = 6
# Distinct colours, none of them white: white is the nearest copy's fill (IGNORE per channel).
PALETTE = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200], [120, 60, 0]],
                       dtype=torch.uint8)
WHITE = torch.tensor([IGNORE, IGNORE, IGNORE], dtype=torch.uint8)
MEAN = [round(255 * m) for m in DataSpec().mean]

GEOMETRIC = {
    "scale": {"scale": (0.5, 2.0)},
    "rotate": {"rotate": (-10.0, 10.0)},
    "crop": {"crop_size": 24},
    "flip": {"flip": True},
    "pspnet": {"scale": (0.5, 2.0), "rotate": (-10.0, 10.0), "crop_size": 24, "flip": True},
}


@st.composite
def scenes(draw) -> torch.Tensor:
    """A label map ``(H, W)`` of 4 x 4 blocks of random classes."""
    h, w = draw(st.integers(3, 10)), draw(st.integers(3, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    blocks = torch.randint(0, K, (h, w), generator=torch.Generator().manual_seed(seed))
    return blocks.repeat_interleave(4, 0).repeat_interleave(4, 1)


def _run(spec: DataSpec, mask: torch.Tensor, seed: int):
    transform = TrainTransform(spec, IGNORE)
    image = PALETTE[mask].permute(2, 0, 1).contiguous()  # (3, H, W)
    torch.manual_seed(seed)
    out_image, out_mask, nearest = transform.augment(tv_tensors.Image(image), tv_tensors.Mask(mask),
                                                     tv_tensors.Mask(image))
    return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor), nearest.as_subclass(torch.Tensor)


def _colours(mask: torch.Tensor, ignore_colour: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)``: the palette colour of each label, ``ignore_colour`` where ignored."""
    table = torch.cat([PALETTE, ignore_colour[None].expand(256 - K, 3)])
    table[IGNORE] = ignore_colour
    return table[mask].permute(2, 0, 1)


@pytest.mark.parametrize("name", GEOMETRIC)
@settings(max_examples=25, deadline=None)
@given(mask=scenes(), seed=st.integers(0, 2**31 - 1))
def test_image_and_mask_stay_aligned(name: str, mask: torch.Tensor, seed: int) -> None:
    spec = DataSpec(**{"flip": False, **GEOMETRIC[name]})
    image, out_mask, nearest = _run(spec, mask, seed)
    assert out_mask.dtype == mask.dtype and out_mask.shape == image.shape[1:] == nearest.shape[1:]
    if spec.crop_size:
        assert out_mask.shape == (spec.crop_size, spec.crop_size)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist()) | {IGNORE}
    # Same geometry: the nearest-resampled colour image is the palette of the mask, exactly.
    assert torch.equal(nearest, _colours(out_mask, WHITE))
    # The real image: exact where nothing is interpolated (crop, flip); elsewhere inside
    # label regions (7 x 7 neighbourhood of one label, inside the image), where bilinear sampling sees one colour.
    mean = torch.tensor(MEAN, dtype=torch.uint8)
    if spec.scale == (1.0, 1.0) and spec.rotate == (0.0, 0.0):
        assert torch.equal(image, _colours(out_mask, mean))
    else:
        labels = F.pad(out_mask[None, None].float(), (3, 3, 3, 3), value=IGNORE)  # the border is not interior
        interior = (F.max_pool2d(labels, 7, 1) == -F.max_pool2d(-labels, 7, 1))[0, 0]
        interior &= out_mask != IGNORE
        difference = (image.int() - nearest.int()).abs().amax(0)
        assert difference[interior].le(2).all()


def test_padding_is_the_mean_colour_and_ignored() -> None:
    mask = torch.zeros(8, 8, dtype=torch.int64)
    image, out_mask, _ = _run(DataSpec(crop_size=20, flip=False), mask, 0)
    padded = out_mask == IGNORE
    assert int(padded.sum()) == 20 * 20 - 8 * 8
    assert torch.equal(image[:, padded], torch.tensor(MEAN, dtype=torch.uint8)[:, None].expand(3, int(padded.sum())))


def test_rotation_fills_the_corners_with_the_mean_and_ignore() -> None:
    mask = torch.zeros(32, 32, dtype=torch.int64)
    torch.manual_seed(0)
    image, out_mask, _ = _run(DataSpec(rotate=(10.0, 10.0), flip=False), mask, 0)
    assert out_mask[0, 0] == IGNORE and out_mask[16, 16] == 0
    assert image[:, 0, 0].tolist() == MEAN


@settings(max_examples=10, deadline=None)
@given(mask=scenes(), seed=st.integers(0, 2**31 - 1))
def test_blur_changes_the_image_only(mask: torch.Tensor, seed: int) -> None:
    spec = DataSpec(flip=False, blur=1.0, blur_sigma=(1.0, 2.0))
    image, out_mask, nearest = _run(spec, mask, seed)
    assert torch.equal(out_mask, mask) and torch.equal(nearest, _colours(mask, WHITE))
    original = PALETTE[mask].permute(2, 0, 1)
    if len(mask.unique()) > 1:
        assert not torch.equal(image, original)
    assert abs(image.float().mean() - original.float().mean()) < 10


def test_blur_probability() -> None:
    mask = torch.arange(4).repeat_interleave(8).repeat(32, 1)  # four vertical stripes
    blurred = sum(not torch.equal(_run(DataSpec(flip=False, blur=0.5), mask, seed)[0],
                                  PALETTE[mask].permute(2, 0, 1)) for seed in range(40))
    assert 10 <= blurred <= 30


def test_normalization() -> None:
    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    mask = torch.randint(0, K, (5, 7))
    spec = DataSpec(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    for transform in (EvalTransform(spec), TrainTransform(attrs.evolve(spec, flip=False), IGNORE)):
        normalized, out_mask = transform(image, mask)
        expected = (image.float() / 255 - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
        assert normalized.dtype == torch.float32 and torch.allclose(normalized, expected, atol=1e-6)
        assert torch.equal(out_mask, mask)


def test_normalization_is_torchvisions_bit_for_bit() -> None:
    """EvalTransform does what torchvision's ToDtype(scale=True) + Normalize did before it, to the bit."""
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    spec = DataSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)])
    normalized, _ = EvalTransform(spec)(image, None)
    assert type(normalized) is torch.Tensor
    assert torch.equal(normalized, reference(tv_tensors.Image(image)).as_subclass(torch.Tensor))


def test_spec_keys() -> None:
    data = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}},
                           "data": {"scale": [0.5, 2.0], "rotate": [-10, 10], "blur": 0.5,
                                    "blur_sigma": [1.1, 1.1], "crop_size": 473}}).data
    assert (data.scale, data.rotate, data.blur, data.blur_sigma) == ((0.5, 2.0), (-10.0, 10.0), 0.5, (1.1, 1.1))
    assert DataSpec().rotate == (0.0, 0.0) and DataSpec().blur == 0.0  # defaults: no rotation, no blur


@pytest.mark.parametrize(("key", "value", "message"), [
    ("scale", [2.0, 0.5], r"'scale' must be \[a, b\] with 0.01 <= a <= b <= 16.0, got \[2.0, 0.5\]"),
    ("rotate", [-200, 10], r"'rotate' must be \[a, b\] with -180.0 <= a <= b <= 180.0, got \[-200.0, 10.0\]"),
    ("blur", 1.5, "blur"),
    ("blur_sigma", [0, 1], r"'blur_sigma' must be \[a, b\] with 0.01 <= a <= b"),
])
def test_bad_augmentation_keys(key: str, value, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "data": {key: value}}, source="s.toml")


@pytest.mark.parametrize(("size", "degrees"), [((40, 56), 30), ((24, 24), 30), ((20, 60), 30), ((60, 20), 30),
                                               ((24, 200), 180)])  # the last: windows far from their source
@pytest.mark.parametrize("seed", range(6))
def test_rotate_crop_equals_rotation_then_crop(size: tuple[int, int], degrees: float, seed: int) -> None:
    """The fast path rotates only the crop's source region; the result is the slow path's."""
    g = torch.Generator().manual_seed(seed)
    image = tv_tensors.Image(torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, K, size, generator=g))
    fill = {tv_tensors.Image: MEAN, tv_tensors.Mask: IGNORE}
    fast = RandomRotateCrop((-degrees, degrees), 24, fill)
    torch.manual_seed(seed)
    fast_image, fast_mask = fast(image, mask)
    torch.manual_seed(seed)
    slow_image, slow_mask = fast.crop(fast.rotate(image, mask))
    assert fast_image.shape == slow_image.shape == (3, 24, 24) and fast_mask.shape == (24, 24)
    assert (fast_mask == slow_mask).float().mean() > 0.99  # nearest-neighbour ties may round apart
    # Away from the rotated image's edge: there torchvision blends with zeros before
    # thresholding to the fill, while the region here is padded with the fill itself.
    # (A crop as large as the image has that edge on its outer ring too.)
    edge = F.max_pool2d((slow_mask == IGNORE).float()[None, None], 3, 1, 1)[0, 0] > 0
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    assert (fast_image.int() - slow_image.int()).abs()[:, ~edge].le(1).all()
