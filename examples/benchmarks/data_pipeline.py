"""Throughput of the training data pipeline: decode, PSPNet augmentation, 512 crop, batching.

Prints images per second with 0, 1 and 2 loader workers, to tell whether loading
would starve a GPU. Not a test (pytest does not collect it). Without ``--root`` it
generates a Cityscapes-layout dataset at the real size (1024 x 2048 PNG) or a
VOC-layout one (500 x 375 JPEG) in a temporary folder::

    python examples/benchmarks/data_pipeline.py                      # Cityscapes-sized
    python examples/benchmarks/data_pipeline.py --dataset voc2012
    python examples/benchmarks/data_pipeline.py --root ~/data/cityscapes --workers 0 4 8

The augmentation is PSPNet's (Sec. 5.1): random resize 0.5-2, rotation -10..10
degrees, Gaussian blur (half the images), mirror, 512 x 512 crop padded with the mean.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ctxseg.data.pipeline import train_loader
from ctxseg.spec import DataSpec
from ctxseg_datasets import fixtures
from ctxseg_datasets.cityscapes import Cityscapes
from ctxseg_datasets.voc import VOC2012


def generate(dataset: str, folder: Path, images: int) -> Path:
    """A dataset of ``images`` training images at the benchmark's real size; returns its root."""
    if dataset == "cityscapes":
        return fixtures.write_cityscapes(folder, {"train": {"aachen": images}}, size=(1024, 2048), block=64)
    ids = [f"2007_{i:06d}" for i in range(images)]
    return fixtures.write_voc2012(folder, {"train": ids, "val": ids[:1]}, size=(375, 500), block=25)


def open_dataset(dataset: str, root: Path):
    if dataset == "cityscapes":
        return Cityscapes(Cityscapes.Config(root=str(root)), "train")
    return VOC2012(VOC2012.Config(root=str(root), train="train"), "train")


def images_per_second(dataset, spec: DataSpec, batches: int) -> float:
    """Images/s over ``batches`` batches, after one warm-up batch (worker start-up excluded)."""
    loader = iter(train_loader(dataset, spec, seed=0))
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        images, masks = next(loader)
        assert images.shape[-2:] == masks.shape[-2:] == (spec.crop_size, spec.crop_size)
    return batches * spec.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["cityscapes", "voc2012"], default="cityscapes")
    parser.add_argument("--root", type=Path, help="an existing dataset in the official layout (default: generate one)")
    parser.add_argument("--images", type=int, default=8, help="images to generate (default 8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per worker count")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (default 1, as in each loader worker; "
                             "0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.root is None:
            start = time.perf_counter()
            root = generate(args.dataset, Path(tmp), args.images)
            print(f"generated {args.images} {args.dataset}-sized images in {time.perf_counter() - start:.1f} s")
        else:
            root = args.root
        dataset = open_dataset(args.dataset, root)
        image, _ = dataset[0]
        print(f"{args.dataset}: {len(dataset)} training images, first {image.shape[2]} x {image.shape[1]}; "
              f"crop {args.crop}, batch {args.batch_size}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads in the main process")
        print(f"workers  images/s  (load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())})")
        for workers in args.workers:
            spec = DataSpec(batch_size=args.batch_size, workers=workers, crop_size=args.crop, scale=(0.5, 2.0),
                            rotate=(-10.0, 10.0), flip=True, blur=0.5)
            print(f"{workers:>7}  {images_per_second(dataset, spec, args.batches):8.2f}", flush=True)


if __name__ == "__main__":
    main()
