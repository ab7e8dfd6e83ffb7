"""From dataset samples to training batches: augmentation, sampling, batching.

Training is resumable and reproducible whatever the number of loader workers: the
sampler yields ``(index, seed)`` pairs in an order fixed by the run's seed, and every
sample's augmentation draws from its own seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from ctxseg.interfaces import SegmentationDataset
from ctxseg.spec import DataSpec

__all__ = ["EvalTransform", "RandomScale", "TrainTransform", "train_loader"]


class EvalTransform:
    """uint8 image -> normalized float image; the mask passes through unchanged."""

    def __init__(self, spec: DataSpec):
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)])

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.normalize(tv_tensors.Image(image)).as_subclass(Tensor), mask


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``[low, high]``, keeping the aspect ratio.

    PSPNet's "random resize between 0.5 and 2" (Sec. 5.1): relative to the image, unlike
    torchvision's ``RandomResize`` (absolute sizes) and ``ScaleJitter`` (relative to a
    target size). Images are resampled bilinearly (antialiased), masks by nearest neighbour.
    """

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.functional.get_size(next(i for i in flat_inputs if isinstance(i, tv_tensors.TVTensor)))
        s = self.low + (self.high - self.low) * torch.rand(()).item()
        return {"size": [max(1, round(s * height)), max(1, round(s * width))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(v2.functional.resize, inpt, params["size"], antialias=True)


class TrainTransform(EvalTransform):
    """The spec's training augmentation (see :class:`~ctxseg.spec.DataSpec`), then normalization.

    ``augment`` is a torchvision ``v2`` pipeline over ``tv_tensors.Image`` and
    ``tv_tensors.Mask``: one draw of parameters moves every input it is given alike, and
    masks are always resampled with nearest neighbour, so no label is ever interpolated.
    """

    def __init__(self, spec: DataSpec, ignore_index: int):
        super().__init__(spec)
        fill = {tv_tensors.Image: [round(255 * m) for m in spec.mean], tv_tensors.Mask: ignore_index}
        steps: list[v2.Transform] = []
        if spec.scale != (1.0, 1.0):
            steps.append(RandomScale(*spec.scale))
        if spec.rotate != (0.0, 0.0):
            steps.append(v2.RandomRotation(spec.rotate, interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
        if spec.crop_size:
            steps.append(v2.RandomCrop(spec.crop_size, pad_if_needed=True, fill=fill))
        if spec.flip:
            steps.append(v2.RandomHorizontalFlip())
        if spec.blur:
            # after the crop: blurring a 512-pixel crop is cheaper than the whole resized image
            kernel = 2 * math.ceil(3 * spec.blur_sigma[1]) + 1  # +-3 sigma
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, spec.blur_sigma)], p=spec.blur))
        self.augment = v2.Compose(steps or [v2.Identity()])

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        image, mask = self.augment(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return super().__call__(image, mask.as_subclass(Tensor))


class _Augmented(Dataset):
    """Applies a transform to ``dataset[index]`` under the per-sample seed it is given."""

    def __init__(self, dataset: SegmentationDataset, transform: TrainTransform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = key
        image, mask = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image, mask)


class _EpochSampler(Sampler):
    """Endless ``(index, seed)`` pairs: a seeded permutation per epoch, starting at ``start``."""

    def __init__(self, size: int, seed: int, start: int = 0):
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.size)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            for position in range(offset, self.size):
                yield int(order[position]), random.Random(f"{self.seed}/{epoch}/{position}").getrandbits(63)
            epoch, offset = epoch + 1, 0


def train_loader(dataset: SegmentationDataset, spec: DataSpec, seed: int, start_step: int = 0) -> DataLoader:
    """An endless loader of ``(images (B,3,h,w), masks (B,h,w))``, resuming at ``start_step``."""
    sampler = _EpochSampler(len(dataset), seed, start=start_step * spec.batch_size)
    return DataLoader(
        _Augmented(dataset, TrainTransform(spec, dataset.ignore_index)),
        batch_size=spec.batch_size, sampler=sampler, num_workers=spec.workers,
        persistent_workers=spec.workers > 0, drop_last=True,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG (dropout's) untouched
    )
