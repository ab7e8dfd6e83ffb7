"""Context scenes, version 1: both water and road in every image, and a neutral ring.

Every image is a sky band above three ground bands (water, road and grass, in random
order). Boats sit in the water band, cars on the road band, birds and (rarely) a kite
fly in the sky.

A boat and a car are drawn from one and the same appearance distribution (shape, size,
colours, texture), so nothing inside the object tells them apart; only the band around
it does. To push that deciding context beyond the reach of a shallow network, every
boat and car is surrounded by a ``margin`` ring drawn with one neutral look in both
cases (grey-brown planks: a dock or a parking lot) but labelled as the surrounding band
(water or road). The nearest water or road pixel is then ``margin + 1`` pixels outside
the object. Kept so that runs on version 1 stay reproducible: the deciding band lies
within ~15-21 px of every object, inside even a shallow head's receptive field, and
every image holds both water and road, so image-level context cannot help here
(version 2, :mod:`ctxseg.data.scenes_v2`, is built so that it does).
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_MARGIN", "KITE_PROBABILITY", "max_margin", "render_scene"]

DEFAULT_MARGIN = 4
KITE_PROBABILITY = 0.065


class _Geometry(Geometry):
    """This version's sizes in pixels."""

    def __init__(self, size: int, margin: int):
        super().__init__(size)
        self.margin = margin
        self.sky_h = (self.px(12), self.px(18))
        self.grass_min = self.px(3)
        self.pad = self.px(1)  # water or road visible above and below a margin ring
        self.vehicle_w = (self.px(14), self.px(22))
        self.vehicle_h = (self.px(8), self.px(12))
        self.band_min = self.vehicle_h[0] + 2 * margin + 2 * self.pad
        self.bird_w, self.bird_h = (self.px(2), self.px(4)), (self.px(2), self.px(3))
        self.kite_a, self.kite_b = (self.px(3), self.px(5)), (self.px(3), self.px(5))

    @property
    def spare(self) -> int:
        """Rows left over when every band has its minimum height (>= 0 when the layout fits)."""
        return self.size - self.sky_h[1] - self.grass_min - 2 * self.band_min


def max_margin(image_size: int) -> int:
    """The widest margin ring with which the water and road bands still hold a vehicle."""
    return _Geometry(image_size, 0).spare // 4


def render_scene(seed: int, image_size: int = 64, margin: int = DEFAULT_MARGIN) -> tuple[Tensor, Tensor]:
    """Draw one scene: image ``(3, S, S)`` uint8 and mask ``(S, S)`` uint8 of class indices."""
    geo = _Geometry(image_size, margin)
    S = image_size
    g = torch.Generator().manual_seed(seed)
    dice = Dice(g)

    # Layout: the sky, then water, road and grass in random order; water and road have
    # the same height distribution so that band position says nothing about boat vs car.
    sky_h = dice.randint(*geo.sky_h)
    spare = S - sky_h - geo.grass_min - 2 * geo.band_min
    weights = [dice.uniform() for _ in range(3)]
    extra = [int(spare * w / sum(weights)) for w in weights[:2]]
    heights = {WATER: geo.band_min + extra[0], ROAD: geo.band_min + extra[1],
               GRASS: geo.grass_min + spare - extra[0] - extra[1]}
    order = [WATER, ROAD, GRASS]
    for i in (2, 1):  # Fisher-Yates
        j = dice.randint(0, i)
        order[i], order[j] = order[j], order[i]
    row_class = torch.empty(S, dtype=torch.long)
    row_class[:sky_h] = SKY
    bands, top = [], sky_h
    for cls in order:
        row_class[top: top + heights[cls]] = cls
        bands.append((cls, top, top + heights[cls]))
        top += heights[cls]
    look = row_class[:, None].repeat(1, S)  # (S, S)

    # Boats and cars: one appearance distribution; margins first, so no ring covers a body.
    vehicles = [(cls, box) for cls, top, bottom in bands if cls in (WATER, ROAD)
                for box in _place_vehicles(dice, geo, top, bottom)]
    m = margin
    for _, (x, y, w, h) in vehicles:
        look[y - m: y + h + m, x - m: x + w + m] = L_PLANKS
    colors = []
    for j, (cls, (x, y, w, h)) in enumerate(vehicles):
        draw_vehicle(look, dice, x, y, w, h, body=L_VEHICLE + j, trim=L_TRIM, around=L_PLANKS if m else cls)
        colors.append(vehicle_paint(dice))

    # Birds: small dark blobs, a plus shape when 3 x 3 or larger.
    for _ in range(dice.randint(0, 4)):
        w, h = dice.randint(*geo.bird_w), dice.randint(*geo.bird_h)
        y, x = dice.randint(1, sky_h - h - 1), dice.randint(0, S - w)
        if w >= 3 and h >= 3:
            look[y: y + h, x + 1: x + w - 1] = L_BIRD
            look[y + 1: y + h - 1, x: x + w] = L_BIRD
        else:
            look[y: y + h, x: x + w] = L_BIRD

    # The rare kite: a two-tone diamond.
    if dice.uniform() < KITE_PROBABILITY:
        a = dice.randint(*geo.kite_a)
        b = dice.randint(geo.kite_b[0], min(geo.kite_b[1], (sky_h - 3) // 2))
        cy, cx = dice.randint(b + 1, sky_h - b - 2), dice.randint(a, S - a - 1)
        draw_kite(look, cy, cx, a, b)

    road = next((top, bottom) for cls, top, bottom in bands if cls == ROAD)
    image = paint(g, dice, look, sky_h, road, colors)
    ground = row_class[:, None].expand(S, S)
    return image, label(look, ground, torch.where(ground == WATER, BOAT, CAR))


def _place_vehicles(dice: Dice, geo: _Geometry, top: int, bottom: int) -> list[tuple[int, int, int, int]]:
    """1-3 boxes ``(x, y, w, h)`` in the band ``[top, bottom)``, rings inside the band."""
    m, pad = geo.margin, geo.pad
    count = dice.randint(1, 3)
    widths = [dice.randint(*geo.vehicle_w) for _ in range(count)]
    gap = max(1, m)
    span = geo.size - 2 * m  # a ring may touch the left or right image border
    while count > 1 and sum(widths[:count]) + (count - 1) * gap > span:
        count -= 1
    widths = widths[:count]
    slack = span - sum(widths) - (count - 1) * gap
    offsets = sorted(dice.randint(0, slack) for _ in range(count))
    boxes = []
    x = m
    for offset, w in zip(offsets, widths):
        h = dice.randint(geo.vehicle_h[0], min(geo.vehicle_h[1], bottom - top - 2 * (m + pad)))
        y = dice.randint(top + m + pad, bottom - m - pad - h)
        boxes.append((x + offset, y, w, h))
        x += w + gap
    return boxes
