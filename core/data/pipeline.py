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
from torch.utils._pytree import tree_flatten
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from ctxseg.data.normalize import EvalTransform
from ctxseg.errors import CtxsegError
from ctxseg.interfaces import SegmentationDataset
from ctxseg.spec import DataSpec

__all__ = ["RandomRotateCrop", "RandomScale", "TrainTransform", "batches", "train_loader"]


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
        height, width = _size(flat_inputs)
        s = self.low + (self.high - self.low) * torch.rand(()).item()
        return {"size": [max(1, round(s * height)), max(1, round(s * width))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(v2.functional.resize, inpt, params["size"], antialias=True)


class RandomRotateCrop(v2.Transform):
    """Random rotation, then a random crop padded as needed, rotating only what the crop keeps.

    The same draws and, up to float rounding, the same pixels as ``v2.RandomRotation``
    (bilinear, ``fill``) followed by ``v2.RandomCrop(size, pad_if_needed=True, fill)``.
    When the image is at least the crop size, only a box holding the crop window and its
    source (the window turned back about the image centre, plus a margin for bilinear
    sampling) is rotated: on a Cityscapes image resized to 2048 x 4096 that is a few
    percent of the pixels, and rotating whole images was the pipeline's most expensive
    step. Smaller images (whose crop is padded) go through the two transforms as they are.
    """

    def __init__(self, degrees: tuple[float, float], size: int, fill: dict[type, Any]):
        super().__init__()
        self.rotate = v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)
        self.crop = v2.RandomCrop(size, pad_if_needed=True, fill=fill)
        self.degrees, self.size, self.fill = degrees, size, fill

    def forward(self, *inputs: Any) -> Any:
        height, width = _size(tree_flatten(inputs)[0])
        if height < self.size or width < self.size:
            return self.crop(self.rotate(*inputs))
        return super().forward(*inputs)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _size(flat_inputs)
        angle = torch.empty(1).uniform_(*self.degrees).item()  # the draws of RandomRotation, then RandomCrop
        top = int(torch.randint(0, height - self.size + 1, size=())) if height > self.size else 0
        left = int(torch.randint(0, width - self.size + 1, size=())) if width > self.size else 0
        # The box holds the window and where its corners come from: turned back by the angle
        # about the image centre (counter-clockwise on screen for a positive angle, as torchvision).
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        cx, cy = width / 2, height / 2
        xs, ys = [left, left + self.size], [top, top + self.size]
        for x in (left, left + self.size):
            for y in (top, top + self.size):
                xs.append(cx + (x - cx) * cos - (y - cy) * sin)
                ys.append(cy + (x - cx) * sin + (y - cy) * cos)
        x0, y0 = math.floor(min(xs)) - 2, math.floor(min(ys)) - 2
        x1, y1 = math.ceil(max(xs)) + 2, math.ceil(max(ys)) + 2
        return {"angle": angle, "top": top - y0, "left": left - x0, "box": (x0, y0, x1, y1),
                "center": [cx - x0, cy - y0]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        fill = self.fill[type(inpt)]
        x0, y0, x1, y1 = params["box"]
        height, width = v2.functional.get_size(inpt)
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)  # holds the window
        region = self._call_kernel(v2.functional.crop, inpt, top, left, bottom - top, right - left)
        padding = [left - x0, top - y0, x1 - right, y1 - bottom]  # the rest of the box: fill
        if any(padding):
            region = self._call_kernel(v2.functional.pad, region, padding, fill=fill)
        turned = self._call_kernel(v2.functional.rotate, region, params["angle"],
                                   interpolation=v2.InterpolationMode.BILINEAR, center=params["center"], fill=fill)
        return self._call_kernel(v2.functional.crop, turned, params["top"], params["left"], self.size, self.size)


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    """Height and width of the first image or mask among a transform's inputs."""
    return tuple(v2.functional.get_size(next(i for i in flat_inputs if isinstance(i, tv_tensors.TVTensor))))


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
        rotate = spec.rotate != (0.0, 0.0)
        if rotate and spec.crop_size:
            steps.append(RandomRotateCrop(spec.rotate, spec.crop_size, fill))
        elif rotate:
            steps.append(v2.RandomRotation(spec.rotate, interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
        elif spec.crop_size:
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
        return super().__call__(image.as_subclass(Tensor), mask.as_subclass(Tensor))


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
    """Endless ``(index, seed)`` pairs: a seeded permutation per epoch, from batch ``start`` on.

    The stream is the same for any number of processes: each global batch of ``batch``
    samples is cut into ``shards`` equal parts and this process takes part ``shard``, so
    every sample, and its augmentation seed, is the one a single process would draw.
    """

    def __init__(self, size: int, seed: int, batch: int, start: int = 0, shard: int = 0, shards: int = 1):
        self.size, self.seed, self.batch, self.start = size, seed, batch, start
        self.shard, self.part = shard, batch // shards

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start * self.batch
        epoch, offset = divmod(position, self.size)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            for index in range(offset, self.size):
                if (position % self.batch) // self.part == self.shard:
                    yield int(order[index]), random.Random(f"{self.seed}/{epoch}/{index}").getrandbits(63)
                position += 1
            epoch, offset = epoch + 1, 0


def train_loader(dataset: SegmentationDataset, spec: DataSpec, seed: int, start_step: int = 0, *,
                 shard: int = 0, shards: int = 1) -> DataLoader:
    """An endless loader of ``(images (b,3,h,w), masks (b,h,w))``, resuming at batch ``start_step``.

    ``b`` is this process's part of the global ``batch_size``: all of it in a single
    process, a ``1/shards`` part in process ``shard`` of a distributed run.
    """
    sampler = _EpochSampler(len(dataset), seed, spec.batch_size, start=start_step, shard=shard, shards=shards)
    return DataLoader(
        _Augmented(dataset, TrainTransform(spec, dataset.ignore_index)),
        batch_size=spec.batch_size // shards, sampler=sampler, num_workers=spec.workers,
        persistent_workers=spec.workers > 0, drop_last=True,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG (dropout's) untouched
    )


def batches(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches of ``loader``; a user error raised in a loader worker keeps its own message.

    torch re-raises a worker's exception with "Caught ... in DataLoader worker process 0.
    Original Traceback (most recent call last): ..." in front of its message; for an
    error the user is to fix (a bad image), that traceback is noise in front of the file's name.
    """
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except CtxsegError as error:
            text = str(error)
            marker = f"{type(error).__module__}.{type(error).__qualname__}: "
            if "Original Traceback" not in text or marker not in text:
                raise
            raise type(error)(text.rpartition(marker)[2].rstrip("\n")) from None
        yield batch
