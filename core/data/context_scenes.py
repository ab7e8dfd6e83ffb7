"""Context scenes: the embedded default dataset, procedurally generated, where context decides.

Every image is a sky band above three ground bands (water, road and grass, in random
order). Boats sit in the water band, cars on the road band, birds and (rarely) a kite
fly in the sky.

The point is :data:`CONTEXT_CLASSES`: a boat and a car are drawn from one and the same
appearance distribution (shape, size, colours, texture), so nothing inside the
object tells them apart; only the band around it does. To push that deciding context
beyond the reach of a shallow network, every boat and car is surrounded by a
``margin`` ring drawn with one neutral look in both cases (grey-brown planks: a dock
or a parking lot) but labelled as the surrounding band (water or road). The nearest
water or road pixel is then ``margin + 1`` pixels outside the object, so at least
``h / 2 + margin + 1`` (about 10 px at 64 px) from the object's centre: a model must
see that far to label the centre, and must see past the ring to label the ring
itself. A model without enough receptive field or global context can only guess
between the two; the boat/car confusion measures how much context it uses.

The rest gives the usual difficulties: textured stuff classes (sky, water, road,
grass), small objects (birds, 2-4 px at 64 px) and a rare class (a kite in about
6.5% of the images). There are no ignore pixels.

The dataset is written on first use in the folder format of :mod:`ctxseg.data.folder`
and then read from disk. Generation is seeded per image (:func:`sample_seed`), so an
image does not depend on the split sizes, and is bit-identical for a seed on a given
torch version. It is written to a temporary folder that is renamed into place when
complete, so an interrupted generation never leaves a half dataset behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ctxseg.data.folder import FolderDataset, write_classes, write_sample
from ctxseg.engine.runtime import one_thread
from ctxseg.errors import DataError

__all__ = ["CLASSES", "CONTEXT_CLASSES", "KITE_PROBABILITY", "PALETTE", "VERSION",
           "ContextScenes", "dataset_dir", "ensure_generated", "max_margin", "render_scene",
           "sample_seed"]

log = logging.getLogger(__name__)

VERSION = 1  # bump when the renderer changes, so cached datasets are regenerated
CLASSES = ("sky", "water", "road", "grass", "boat", "car", "bird", "kite")
PALETTE = ((135, 206, 235), (0, 64, 192), (128, 64, 128), (107, 142, 35),
           (255, 140, 0), (220, 20, 60), (40, 40, 40), (255, 0, 255))
CONTEXT_CLASSES = ("boat", "car")
SKY, WATER, ROAD, GRASS, BOAT, CAR, BIRD, KITE = range(len(CLASSES))
KITE_PROBABILITY = 0.065
MAX_SPLIT_SIZE = 500_000
_SPLIT_OFFSET = {"train": 0, "val": MAX_SPLIT_SIZE + 1}

# Looks: where a pixel's colour comes from. The stuff looks share their class index.
_L_MARGIN, _L_TRIM, _L_BIRD, _L_KITE_A, _L_KITE_B, _L_VEHICLE = range(4, 10)
# _L_VEHICLE + j is the body colour of the image's j-th boat or car.
_VEHICLE_COLORS = ((200, 40, 40), (235, 200, 50), (235, 235, 230), (240, 130, 40), (130, 60, 170))
_MARGIN_COLOR = (128, 114, 96)
_TRIM_COLOR = (35, 45, 60)
_BIRD_COLOR = (30, 28, 32)
_KITE_COLORS = ((235, 40, 170), (40, 215, 225))
# Per-pixel noise amplitude of each look (the vehicles share the last one).
_NOISE = (3.0, 6.0, 9.0, 14.0, 6.0, 4.0, 6.0, 5.0, 5.0, 6.0)


class _Dice:
    """Scalar draws (the layout) from the image's generator, fetched in batches."""

    def __init__(self, generator: torch.Generator):
        self._generator = generator
        self._pool: list[float] = []

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if not self._pool:
            self._pool = torch.rand(64, generator=self._generator, dtype=torch.float64).tolist()[::-1]
        return lo + (hi - lo) * self._pool.pop()

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in ``[lo, hi]``, both included."""
        return lo + min(int(self.uniform() * (hi - lo + 1)), hi - lo)


class _Geometry:
    """Sizes in pixels for one image size: the numbers are for 64 px and scale linearly."""

    def __init__(self, size: int, margin: int):
        self.size, self.margin = size, margin
        self.sky_h = (self.px(12), self.px(18))
        self.grass_min = self.px(3)
        self.pad = self.px(1)  # water or road visible above and below a margin ring
        self.vehicle_w = (self.px(14), self.px(22))
        self.vehicle_h = (self.px(8), self.px(12))
        self.band_min = self.vehicle_h[0] + 2 * margin + 2 * self.pad
        self.bird_w, self.bird_h = (self.px(2), self.px(4)), (self.px(2), self.px(3))
        self.kite_a, self.kite_b = (self.px(3), self.px(5)), (self.px(3), self.px(5))

    def px(self, value: float) -> int:
        return max(1, round(value * self.size / 64))

    @property
    def spare(self) -> int:
        """Rows left over when every band has its minimum height (>= 0 when the layout fits)."""
        return self.size - self.sky_h[1] - self.grass_min - 2 * self.band_min


def max_margin(image_size: int) -> int:
    """The widest margin ring with which the water and road bands still hold a vehicle."""
    return _Geometry(image_size, 0).spare // 4


def sample_seed(seed: int, split: str, index: int) -> int:
    """The generator seed of image ``index`` of ``split``: independent of the split sizes."""
    return seed * 1_000_003 + _SPLIT_OFFSET[split] + index


def render_scene(seed: int, image_size: int = 64, margin: int = 4) -> tuple[Tensor, Tensor]:
    """Draw one scene: image ``(3, S, S)`` uint8 and mask ``(S, S)`` uint8 of class indices."""
    geo = _Geometry(image_size, margin)
    S = image_size
    g = torch.Generator().manual_seed(seed)
    dice = _Dice(g)

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
        look[y - m: y + h + m, x - m: x + w + m] = _L_MARGIN
    colors = []
    for j, (cls, (x, y, w, h)) in enumerate(vehicles):
        _draw_vehicle(look, dice, x, y, w, h, _L_VEHICLE + j, around=_L_MARGIN if m else cls)
        shade = dice.uniform(0.85, 1.1)
        colors.append([c * shade for c in _VEHICLE_COLORS[dice.randint(0, len(_VEHICLE_COLORS) - 1)]])

    # Birds: small dark blobs, a plus shape when 3 x 3 or larger.
    for _ in range(dice.randint(0, 4)):
        w, h = dice.randint(*geo.bird_w), dice.randint(*geo.bird_h)
        y, x = dice.randint(1, sky_h - h - 1), dice.randint(0, S - w)
        if w >= 3 and h >= 3:
            look[y: y + h, x + 1: x + w - 1] = _L_BIRD
            look[y + 1: y + h - 1, x: x + w] = _L_BIRD
        else:
            look[y: y + h, x: x + w] = _L_BIRD

    # The rare kite: a two-tone diamond.
    if dice.uniform() < KITE_PROBABILITY:
        a = dice.randint(*geo.kite_a)
        b = dice.randint(geo.kite_b[0], min(geo.kite_b[1], (sky_h - 3) // 2))
        cy, cx = dice.randint(b + 1, sky_h - b - 2), dice.randint(a, S - a - 1)
        dy = torch.arange(-b, b + 1)[:, None]
        dx = torch.arange(-a, a + 1)[None, :]
        tone = torch.where(dy * dx >= 0, _L_KITE_A, _L_KITE_B)
        region = look[cy - b: cy + b + 1, cx - a: cx + a + 1]
        region.copy_(torch.where(dy.abs() * a + dx.abs() * b <= a * b, tone, region))

    textures = _textures(g, dice, S, sky_h, bands, colors)  # (L, 3, S, S)
    image = textures.gather(0, look.expand(1, 3, S, S))[0]
    noise = torch.randn(1, S, S, generator=g) + 0.3 * torch.randn(3, S, S, generator=g)
    image = image + noise * torch.tensor(_NOISE)[look.clamp(max=len(_NOISE) - 1)]
    image = image.round().clamp(0, 255).to(torch.uint8)

    mask = row_class[:, None].expand(S, S)
    on_vehicle = (look == _L_TRIM) | (look >= _L_VEHICLE)
    mask = torch.where(on_vehicle, torch.where(mask == WATER, BOAT, CAR), mask)
    mask = torch.where(look == _L_BIRD, BIRD, mask)
    mask = torch.where((look == _L_KITE_A) | (look == _L_KITE_B), KITE, mask)
    return image, mask.to(torch.uint8)


def _place_vehicles(dice: _Dice, geo: _Geometry, top: int, bottom: int) -> list[tuple[int, int, int, int]]:
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


def _draw_vehicle(look: Tensor, dice: _Dice, x: int, y: int, w: int, h: int, body: int, around: int) -> None:
    """A hull or chassis with a cabin on top: a boat or a car, depending on where it is.

    ``body`` is the look of its paint, ``around`` the look of what surrounds it (the
    margin ring, or the band without one), shown at its bevelled bottom corners.
    """
    cabin_h = h - max(2, round(h * dice.uniform(0.45, 0.6)))
    cabin_w = max(2, round(w * dice.uniform(0.35, 0.6)))
    cabin_x = x + dice.randint(1, w - cabin_w - 1)
    look[y + cabin_h: y + h, x: x + w] = body
    look[y: y + cabin_h, cabin_x: cabin_x + cabin_w] = body
    if cabin_h >= 3:  # windows
        look[y + 1: y + cabin_h, cabin_x + 1: cabin_x + cabin_w - 1] = _L_TRIM
    look[y + (cabin_h + h) // 2, x + 1: x + w - 1] = _L_TRIM  # a stripe along the side
    bevel = dice.randint(0, 2)
    for r in range(bevel):
        row = y + h - 1 - r
        look[row, x: x + bevel - r] = around
        look[row, x + w - bevel + r: x + w] = around


def _textures(g: torch.Generator, dice: _Dice, S: int, sky_h: int,
              bands: list[tuple[int, int, int]], vehicle_colors: list[list[float]]) -> Tensor:
    """The colour of every look over the whole image, ``(looks, 3, S, S)`` float."""
    yy = torch.arange(S, dtype=torch.float32)[:, None].expand(S, S)
    xx = torch.arange(S, dtype=torch.float32)[None, :].expand(S, S)
    tex = torch.empty(_L_VEHICLE + len(vehicle_colors), 3, S, S)

    # Sky: darker at the top, paler at the horizon, soft clouds.
    t = (yy / sky_h).clamp(max=1)
    sky = _rgb(60, 120, 200) + _rgb(100, 80, 40) * t
    cloud = ((_smooth(g, S, 4) - 0.55) * 4).clamp(0, 0.8)
    tex[SKY] = sky + (_rgb(240, 242, 248) - sky) * cloud
    # Water: broken horizontal ripples.
    period = 4.0
    wave = ((yy + 2 * _smooth(g, S, 3) + dice.uniform(0, period)) / period).frac() < 0.3
    ripples = (wave & (_smooth(g, S, 8) > 0.45)).float()
    tex[WATER] = _rgb(30, 90, 150) + _rgb(50, 60, 55) * ripples
    # Road: asphalt with a dashed centre line.
    road_top, road_bottom = next((top, bottom) for cls, top, bottom in bands if cls == ROAD)
    centre = (road_top + road_bottom) // 2
    dash = round(10 * S / 64)
    lane = (yy >= centre) & (yy < centre + max(1, round(S / 64)))
    lane &= ((xx + dice.randint(0, dash - 1)) % dash) < 0.6 * dash
    tex[ROAD] = _rgb(85, 85, 90) + _rgb(150, 135, 30) * lane.float()
    # Grass: blades (column streaks) and patches.
    blades = torch.rand(S, generator=g)[None, :] * 24 - 12 + (_smooth(g, S, 6) - 0.5) * 30
    tex[GRASS] = _rgb(65, 140, 55) + blades
    # The neutral ring: planks, the same for a dock and a parking lot.
    tex[_L_MARGIN] = _rgb(*_MARGIN_COLOR) - 22 * (yy % 3 == 0).float()
    for look, color in ((_L_TRIM, _TRIM_COLOR), (_L_BIRD, _BIRD_COLOR),
                        (_L_KITE_A, _KITE_COLORS[0]), (_L_KITE_B, _KITE_COLORS[1])):
        tex[look] = _rgb(*color)
    for j, color in enumerate(vehicle_colors):
        tex[_L_VEHICLE + j] = _rgb(*color)
    return tex


def _rgb(r: float, g: float, b: float) -> Tensor:
    """A colour, ``(3, 1, 1)``, to broadcast over an image."""
    return torch.tensor([r, g, b], dtype=torch.float32)[:, None, None]


def _smooth(g: torch.Generator, S: int, cells: int) -> Tensor:
    """Value noise in [0, 1], ``(S, S)``: a ``cells x cells`` random grid, bilinearly upsampled."""
    grid = torch.rand(1, 1, cells + 1, cells + 1, generator=g)
    return F.interpolate(grid, size=(S, S), mode="bilinear", align_corners=True)[0, 0]


def _cache_dir() -> Path:
    return Path(os.environ.get("CTXSEG_DATA_DIR") or Path.home() / ".cache" / "ctxseg")


def _check_margin(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    limit = max_margin(instance.image_size)
    if not 0 <= value <= limit:
        raise ValueError(f"'margin' must be in [0, {limit}] for image_size {instance.image_size} "
                         f"(the water and road bands must hold a vehicle and its ring), got {value}")


def _check_image_size(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 48 or value % 16:
        raise ValueError(f"'image_size' must be a multiple of 16 and >= 48, got {value}")


_split_size = [attrs.validators.instance_of(int), attrs.validators.ge(1),
               attrs.validators.le(MAX_SPLIT_SIZE)]


class ContextScenes(FolderDataset):
    """The context-scenes dataset, generated on first use, then read as a folder dataset."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        """Generation parameters; images and masks are ``image_size`` x ``image_size``.

        :param root: where the dataset lives; empty means a folder named after the
            parameters in ``$CTXSEG_DATA_DIR``, by default ``~/.cache/ctxseg``.
        :param seed: generation seed (images differ across seeds).
        :param image_size: side in pixels; every size scales with it except ``margin``.
        :param train_size: number of training images.
        :param val_size: number of validation images.
        :param margin: width in pixels of the neutral ring around boats and cars.
        """

        root: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
        seed: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int),
                                                       attrs.validators.ge(0)])
        image_size: int = attrs.field(default=64, validator=[attrs.validators.instance_of(int),
                                                              _check_image_size])
        train_size: int = attrs.field(default=400, validator=_split_size)
        val_size: int = attrs.field(default=100, validator=_split_size)
        margin: int = attrs.field(default=4, validator=[attrs.validators.instance_of(int),
                                                         _check_margin])

    def __init__(self, config: Config, split: str):
        if split not in _SPLIT_OFFSET:
            raise DataError(f"context scenes: unknown split {split!r} (expected 'train' or 'val')")
        self.config = config
        super().__init__(FolderDataset.Config(root=str(ensure_generated(config))), split)

    @classmethod
    def class_names(cls, config: Config) -> list[str]:
        """The eight classes, without generating anything."""
        return list(CLASSES)


def dataset_dir(config: ContextScenes.Config) -> Path:
    """Where the dataset of ``config`` lives (``config.root``, or a folder in the cache)."""
    if config.root:
        return Path(config.root).expanduser()
    return _cache_dir() / (f"context-scenes-v{VERSION}-s{config.seed}-{config.image_size}px"
                           f"-m{config.margin}-{config.train_size}-{config.val_size}")


def ensure_generated(config: ContextScenes.Config) -> Path:
    """Generate the dataset of ``config`` unless it is already there; return its folder."""
    target = dataset_dir(config)
    params = {"version": VERSION, **attrs.asdict(config, filter=lambda a, _: a.name != "root")}
    if (target / "classes.json").is_file():
        _check_params(target, params)
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target}: exists but is not a complete context-scenes dataset "
                        "(no classes.json); delete it to regenerate, or choose another root")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        start = time.perf_counter()
        _generate(tmp, config, params)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "classes.json").is_file():  # not a concurrent generation: a real error
                raise
        log.info("generated context scenes in %s (%.1f s)", target, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _check_params(target, params)
    return target


def _generate(root: Path, config: ContextScenes.Config, params: dict[str, Any]) -> None:
    """Write every sample, the parameters, then classes.json (the completeness marker)."""
    with one_thread():
        _write_samples(root, config)
    (root / "context_scenes.json").write_text(json.dumps(params, indent=2) + "\n")
    write_classes(root, CLASSES, PALETTE)


def _write_samples(root: Path, config: ContextScenes.Config) -> None:
    """Render and write both splits."""
    for split, size in (("train", config.train_size), ("val", config.val_size)):
        for index in range(size):
            image, mask = render_scene(sample_seed(config.seed, split, index),
                                       config.image_size, config.margin)
            write_sample(root, split, f"{index:06d}", image, mask, PALETTE)


def _check_params(root: Path, params: dict[str, Any]) -> None:
    """The dataset in ``root`` was generated with ``params``."""
    path = root / "context_scenes.json"
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataError(f"{path}: missing or unreadable, so {root} is not a context-scenes "
                        "dataset; choose another root") from None
    if found != params:
        diff = ", ".join(f"{k}={found.get(k)!r} (wanted {v!r})" for k, v in params.items()
                         if found.get(k) != v)
        raise DataError(f"{path}: the dataset was generated with other parameters: {diff}; "
                        "delete it to regenerate, or choose another root")
