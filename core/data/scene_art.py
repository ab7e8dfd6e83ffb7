"""What every version of the context scenes shares: the classes, their colours, and the
drawing primitives (seeded scalar draws, the looks and their textures, a boat-or-car
silhouette, the final painting with noise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BIRD", "BOAT", "CAR", "CLASSES", "GRASS", "KITE", "L_BIRD", "L_PLANKS", "L_TRIM", "L_VEHICLE", "PALETTE",
           "ROAD", "SKY", "WATER", "Dice", "Geometry", "draw_kite", "draw_vehicle", "label", "paint",
           "rgb", "smooth", "vehicle_paint"]

CLASSES = ("sky", "water", "road", "grass", "boat", "car", "bird", "kite")
PALETTE = ((135, 206, 235), (0, 64, 192), (128, 64, 128), (107, 142, 35),
           (255, 140, 0), (220, 20, 60), (40, 40, 40), (255, 0, 255))
SKY, WATER, ROAD, GRASS, BOAT, CAR, BIRD, KITE = range(len(CLASSES))

# Looks: where a pixel's colour comes from. The stuff looks share their class index;
# L_VEHICLE + j is the body paint of an image's j-th vehicle.
L_PLANKS, L_TRIM, L_BIRD, L_KITE_A, L_KITE_B, L_VEHICLE = range(4, 10)
_VEHICLE_COLORS = ((200, 40, 40), (235, 200, 50), (235, 235, 230), (240, 130, 40), (130, 60, 170))
_PLANKS_COLOR = (128, 114, 96)
_SOLID_COLORS = {L_TRIM: (35, 45, 60), L_BIRD: (30, 28, 32), L_KITE_A: (235, 40, 170), L_KITE_B: (40, 215, 225)}
# Per-pixel noise amplitude of each look (the vehicles share the last one).
_NOISE = (3.0, 6.0, 9.0, 14.0, 6.0, 4.0, 6.0, 5.0, 5.0, 6.0)


class Dice:
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


class Geometry:
    """Sizes in pixels for one image size: a version's numbers are for 64 px and scale linearly."""

    def __init__(self, size: int):
        self.size = size

    def px(self, value: float) -> int:
        return max(1, round(value * self.size / 64))


def draw_kite(look: Tensor, cy: int, cx: int, a: int, b: int) -> None:
    """A two-tone diamond centred at ``(cy, cx)``, half-width ``a``, half-height ``b``, in front."""
    dy = torch.arange(-b, b + 1)[:, None]
    dx = torch.arange(-a, a + 1)[None, :]
    tone = torch.where(dy * dx >= 0, L_KITE_A, L_KITE_B)
    region = look[cy - b: cy + b + 1, cx - a: cx + a + 1]
    region.copy_(torch.where(dy.abs() * a + dx.abs() * b <= a * b, tone, region))


def vehicle_paint(dice: Dice) -> list[float]:
    """The body colour of one vehicle: a stock colour, shaded."""
    shade = dice.uniform(0.85, 1.1)
    return [c * shade for c in _VEHICLE_COLORS[dice.randint(0, len(_VEHICLE_COLORS) - 1)]]


def draw_vehicle(look: Tensor, dice: Dice, x: int, y: int, w: int, h: int, *,
                 body: int, trim: int, around: int) -> None:
    """A hull or chassis with a cabin on top: a boat or a car, depending on where it is.

    ``body`` is the look of its paint, ``trim`` of its windows and side stripe, ``around``
    of what surrounds it, shown at its bevelled bottom corners.
    """
    cabin_h = h - max(2, round(h * dice.uniform(0.45, 0.6)))
    cabin_w = max(2, round(w * dice.uniform(0.35, 0.6)))
    cabin_x = x + dice.randint(1, w - cabin_w - 1)
    look[y + cabin_h: y + h, x: x + w] = body
    look[y: y + cabin_h, cabin_x: cabin_x + cabin_w] = body
    if cabin_h >= 3:  # windows
        look[y + 1: y + cabin_h, cabin_x + 1: cabin_x + cabin_w - 1] = trim
    look[y + (cabin_h + h) // 2, x + 1: x + w - 1] = trim  # a stripe along the side
    bevel = dice.randint(0, 2)
    for r in range(bevel):
        row = y + h - 1 - r
        look[row, x: x + bevel - r] = around
        look[row, x + w - bevel + r: x + w] = around


def paint(g: torch.Generator, dice: Dice, look: Tensor, sky_h: int, road: tuple[int, int],
          vehicle_colors: list[list[float]]) -> Tensor:
    """The image ``(3, S, S)`` uint8 of a map of looks ``(S, S)``: each look's texture, and noise.

    ``sky_h`` is the horizon's row, ``road`` the rows ``[top, bottom)`` of the road whose
    centre line is drawn, ``vehicle_colors`` the paint of each vehicle.
    """
    S = look.shape[-1]
    textures = _textures(g, dice, S, sky_h, road, vehicle_colors)  # (L, 3, S, S)
    image = textures.gather(0, look.expand(1, 3, S, S))[0]
    noise = torch.randn(1, S, S, generator=g) + 0.3 * torch.randn(3, S, S, generator=g)
    image = image + noise * torch.tensor(_NOISE)[look.clamp(max=len(_NOISE) - 1)]
    return image.round().clamp(0, 255).to(torch.uint8)


def label(look: Tensor, ground: Tensor, vehicle: Tensor) -> Tensor:
    """The mask ``(S, S)`` uint8: ``ground`` (class per pixel, the stuff) under the vehicles
    (class ``vehicle`` per pixel), the birds and the kite of the map of looks."""
    on_vehicle = (look == L_TRIM) | (look >= L_VEHICLE)
    mask = torch.where(on_vehicle, vehicle, ground)
    mask = torch.where(look == L_BIRD, BIRD, mask)
    mask = torch.where((look == L_KITE_A) | (look == L_KITE_B), KITE, mask)
    return mask.to(torch.uint8)


def _textures(g: torch.Generator, dice: Dice, S: int, sky_h: int, road: tuple[int, int],
              vehicle_colors: list[list[float]]) -> Tensor:
    """The colour of every look over the whole image, ``(looks, 3, S, S)`` float."""
    yy = torch.arange(S, dtype=torch.float32)[:, None].expand(S, S)
    xx = torch.arange(S, dtype=torch.float32)[None, :].expand(S, S)
    tex = torch.empty(L_VEHICLE + len(vehicle_colors), 3, S, S)

    # Sky: darker at the top, paler at the horizon, soft clouds.
    t = (yy / sky_h).clamp(max=1)
    sky = rgb(60, 120, 200) + rgb(100, 80, 40) * t
    cloud = ((smooth(g, S, 4) - 0.55) * 4).clamp(0, 0.8)
    tex[SKY] = sky + (rgb(240, 242, 248) - sky) * cloud
    # Water: broken horizontal ripples.
    period = 4.0
    wave = ((yy + 2 * smooth(g, S, 3) + dice.uniform(0, period)) / period).frac() < 0.3
    ripples = (wave & (smooth(g, S, 8) > 0.45)).float()
    tex[WATER] = rgb(30, 90, 150) + rgb(50, 60, 55) * ripples
    # Road: asphalt with a dashed centre line.
    centre = (road[0] + road[1]) // 2
    dash = round(10 * S / 64)
    lane = (yy >= centre) & (yy < centre + max(1, round(S / 64)))
    lane &= ((xx + dice.randint(0, dash - 1)) % dash) < 0.6 * dash
    tex[ROAD] = rgb(85, 85, 90) + rgb(150, 135, 30) * lane.float()
    # Grass: blades (column streaks) and patches.
    blades = torch.rand(S, generator=g)[None, :] * 24 - 12 + (smooth(g, S, 6) - 0.5) * 30
    tex[GRASS] = rgb(65, 140, 55) + blades
    # Planks: the same for a dock, a pier and a parking lot.
    tex[L_PLANKS] = rgb(*_PLANKS_COLOR) - 22 * (yy % 3 == 0).float()
    for look, color in _SOLID_COLORS.items():
        tex[look] = rgb(*color)
    for j, color in enumerate(vehicle_colors):
        tex[L_VEHICLE + j] = rgb(*color)
    return tex


def rgb(r: float, g: float, b: float) -> Tensor:
    """A colour, ``(3, 1, 1)``, to broadcast over an image."""
    return torch.tensor([r, g, b], dtype=torch.float32)[:, None, None]


def smooth(g: torch.Generator, S: int, cells: int) -> Tensor:
    """Value noise in [0, 1], ``(S, S)``: a ``cells x cells`` random grid, bilinearly upsampled."""
    grid = torch.rand(1, 1, cells + 1, cells + 1, generator=g)
    return F.interpolate(grid, size=(S, S), mode="bilinear", align_corners=True)[0, 0]
