"""Pictures a person looks at: coloured masks, overlays and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ctxseg.files.atomic import atomic_path

__all__ = ["colorize", "overlay", "panel", "plot_curves", "save_png", "voc_palette"]


def voc_palette(count: int) -> list[tuple[int, int, int]]:
    """PASCAL VOC's colour map (the devkit's ``labelcolormap.m``) for ``count`` classes.

    The bits of a class index are spread over the high bits of red, green and blue, so
    neighbouring indices get very different colours; index 255 is (224, 224, 192).
    """
    colours = []
    for index in range(count):
        r = g = b = 0
        for shift in range(7, -1, -1):
            r |= (index & 1) << shift
            g |= (index >> 1 & 1) << shift
            b |= (index >> 2 & 1) << shift
            index >>= 3
        colours.append((r, g, b))
    return colours


def colorize(mask: Tensor, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    """A palette ("P" mode) PNG image of a ``(H, W)`` label map; 255 shows black."""
    image = Image.fromarray(mask.to(torch.uint8).cpu().numpy(), mode="P")
    flat = [v for color in palette for v in color]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def overlay(image: Tensor, mask: Tensor, palette: Sequence[tuple[int, int, int]], alpha: float = 0.5) -> Image.Image:
    """The ``(3, H, W)`` uint8 image with its coloured mask blended on top."""
    rgb = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    return Image.blend(rgb, colorize(mask, palette).convert("RGB"), alpha)


def save_png(image: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def panel(image: Tensor, truth: Tensor | None, prediction: Tensor, palette: Sequence[tuple[int, int, int]],
          min_height: int = 256) -> Image.Image:
    """Image | ground truth | prediction side by side (ground truth omitted if None).

    Small images are enlarged by an integer factor (nearest neighbour) to ``min_height``
    so that a 64-pixel scene is readable.
    """
    tiles = [Image.fromarray(image.permute(1, 2, 0).cpu().numpy())]
    tiles += [colorize(m, palette).convert("RGB") for m in (truth, prediction) if m is not None]
    factor = max(1, min_height // tiles[0].height)
    tiles = [t.resize((t.width * factor, t.height * factor), Image.Resampling.NEAREST) for t in tiles]
    width, height = tiles[0].size
    out = Image.new("RGB", (width * len(tiles) + 2 * (len(tiles) - 1), height), "white")
    for i, tile in enumerate(tiles):
        out.paste(tile, (i * (width + 2), 0))
    return out


def plot_curves(history: Sequence[dict], path: str | Path) -> None:
    """Training loss and validation mIoU against step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(9, 3.5))
    train = [h for h in history if "loss" in h]
    val = [h for h in history if "mean_iou" in h]
    ax_loss.plot([h["step"] for h in train], [h["loss"] for h in train])
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    ax_iou.plot([h["step"] for h in val], [100 * h["mean_iou"] for h in val], marker="o")
    ax_iou.set(xlabel="step", ylabel="mIoU (%)", title="validation mIoU")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
