"""Context scenes, version 2: the scene of the whole image decides what its objects are.

Every image is a harbour or a city street, one or the other with even odds. Below the
sky lie, in random order, a narrow band of the scene's own ground (water in a harbour,
asphalt with a lane line in a city) and a wide deck of grey-brown planks (a pier in a
harbour, a parking lot in a city); grass closes the bottom. Boats and cars stand on the
deck. Three things are drawn from one distribution whatever the scene:

* the deck, labelled as the scene's ground (water or road): the first pair of
  identical-looking regions;
* the vehicles (hull or chassis, cabin, windows, a thin mast or antenna), labelled boat
  in a harbour and car in a city: the second pair.

So nothing near a vehicle or inside the deck says which scene it is: only the band does,
and it lies anywhere from 1 px to most of the image away (up to ~40 px at 64 px, past
the +-27 px that a head on ResNet-18's stride-4 stage sees; the pairs are
:data:`ctxseg.data.context_scenes.CONTEXT_PAIRS`). A model with image-level context
(ParseNet's pool6, PSPNet's pyramid) can read the scene from anywhere; a local one is
right only near the band; one with a larger window (the dilation context module, GCN's
large kernels) is right farther from it.

The rest exercises the other papers: birds (3-10 px at 64 px, many smaller than one
cell of a stride-8 network's output) in every image and a kite (13-19 px) in about 20%
of them are the small and the rare class of FCRN's bootstrapping and simulated finer
network; masts and antennas one pixel wide, and the vehicles' bevelled corners, are the
thin structures and boundaries of GCN's boundary refinement. There are no ignore pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ctxseg.data.scene_art import (
    BOAT,
    CAR,
    GRASS,
    L_BIRD,
    L_PLANKS,
    L_TRIM,
    L_VEHICLE,
    ROAD,
    SKY,
    WATER,
    Dice,
    Geometry,
    draw_kite,
    draw_vehicle,
    label,
    paint,
    vehicle_paint,
)

__all__ = ["KITE_PROBABILITY", "Scene", "render_scene"]

KITE_PROBABILITY = 0.2


class Scene(NamedTuple):
    """One rendered scene, and where its deciding evidence lies."""

    image: Tensor
    """``(3, S, S)`` uint8."""
    mask: Tensor
    """``(S, S)`` uint8 class indices."""
    ground: int
    """The scene: WATER (a harbour) or ROAD (a city)."""
    band: tuple[int, int]
    """Rows ``[top, bottom)`` of the band of that ground, the only evidence of the scene."""


class _Geometry(Geometry):
    """This version's sizes in pixels."""

    def __init__(self, size: int):
        super().__init__(size)
        self.sky_h = (self.px(13), self.px(17))
        self.band_h = (self.px(5), self.px(8))
        self.grass_h = (self.px(4), self.px(7))
        self.pad = self.px(1)  # deck visible around every vehicle
        self.vehicle_w = (self.px(12), self.px(20))
        self.vehicle_h = (self.px(7), self.px(11))
        self.mast_h = (self.px(3), self.px(6))
        self.bird_w, self.bird_h = (self.px(3), self.px(10)), (self.px(3), self.px(6))
        self.kite_a, self.kite_b = (self.px(6), self.px(9)), (self.px(6), self.px(9))


def render_scene(seed: int, image_size: int = 64) -> Scene:
    """Draw one scene of ``image_size`` x ``image_size`` pixels from the generator seed ``seed``."""
    geo = _Geometry(image_size)
    S = image_size
    g = torch.Generator().manual_seed(seed)
    dice = Dice(g)

    # Layout: sky, then the band and the deck in random order, then grass.
    ground = WATER if dice.uniform() < 0.5 else ROAD
    sky_h, band_h, grass_h = (dice.randint(*geo.sky_h), dice.randint(*geo.band_h), dice.randint(*geo.grass_h))
    deck_h = S - sky_h - band_h - grass_h
    band_first = dice.uniform() < 0.5
    band_top = sky_h if band_first else sky_h + deck_h
    deck_top = sky_h + band_h if band_first else sky_h
    row_class = torch.full((S,), ground, dtype=torch.long)
    row_class[:sky_h] = SKY
    row_class[S - grass_h:] = GRASS
    look = row_class[:, None].repeat(1, S)  # (S, S)
    look[deck_top: deck_top + deck_h] = L_PLANKS

    colors = []
    for j, (x, y, w, h) in enumerate(_place_vehicles(dice, geo, deck_top, deck_top + deck_h)):
        draw_vehicle(look, dice, x, y, w, h, body=L_VEHICLE + j, trim=L_TRIM, around=L_PLANKS)
        mast_x = x + dice.randint(1, w - 2)
        mast_h = min(dice.randint(*geo.mast_h), y - deck_top)
        look[y - mast_h: y, mast_x] = L_TRIM
        colors.append(vehicle_paint(dice))

    # Birds: 1-4 small dark blobs, a plus shape (only its bar where a side is under 3 px).
    for _ in range(dice.randint(1, 4)):
        w, h = dice.randint(*geo.bird_w), dice.randint(*geo.bird_h)
        y, x = dice.randint(1, sky_h - h - 1), dice.randint(0, S - w)
        look[y: y + h, x + 1: x + w - 1] = L_BIRD
        look[y + 1: y + h - 1, x: x + w] = L_BIRD

    # The rare kite: a large two-tone diamond, its centre in the sky, in front of all else.
    if dice.uniform() < KITE_PROBABILITY:
        a, b = dice.randint(*geo.kite_a), dice.randint(*geo.kite_b)
        cy, cx = dice.randint(b + 1, sky_h - 1), dice.randint(a, S - a - 1)
        draw_kite(look, cy, cx, a, b)

    image = paint(g, dice, look, sky_h, (band_top, band_top + band_h), colors)
    vehicle = torch.tensor(BOAT if ground == WATER else CAR)
    mask = label(look, row_class[:, None].expand(S, S), vehicle)
    return Scene(image, mask, ground, (band_top, band_top + band_h))


def _place_vehicles(dice: Dice, geo: _Geometry, top: int, bottom: int) -> list[tuple[int, int, int, int]]:
    """1-3 boxes ``(x, y, w, h)`` side by side on the deck rows ``[top, bottom)``."""
    pad = geo.pad
    count = dice.randint(1, 3)
    widths = [dice.randint(*geo.vehicle_w) for _ in range(count)]
    span = geo.size - 2 * pad
    while count > 1 and sum(widths[:count]) + (count - 1) * pad > span:
        count -= 1
    widths = widths[:count]
    slack = span - sum(widths) - (count - 1) * pad
    offsets = sorted(dice.randint(0, slack) for _ in range(count))
    boxes = []
    x = pad
    for offset, w in zip(offsets, widths):
        h = dice.randint(*geo.vehicle_h)
        y = dice.randint(top + pad, bottom - pad - h)
        boxes.append((x + offset, y, w, h))
        x += w + pad
    return boxes
