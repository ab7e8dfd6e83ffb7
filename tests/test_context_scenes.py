"""The context-scenes dataset: seeded, complete, atomic, and decided by context as designed
(version 2, the default, and version 1, kept for old runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ctxseg.data import scenes_v1, scenes_v2
from ctxseg.data.context_scenes import CLASSES, CONTEXT_PAIRS, ContextScenes, dataset_dir, sample_seed
from ctxseg.data.scene_art import BIRD, BOAT, CAR, GRASS, KITE, ROAD, SKY, WATER
from ctxseg.data.scenes_v1 import max_margin
from ctxseg.errors import DataError
from ctxseg.testing import check_dataset

N_SCENES = 300  # rendered in memory, shared by the statistical tests (about 1 s per version)
C2_REACH = 27  # examples/shallow/fcn_c2.toml's reach: receptive field 55 px (`ctxseg inspect --measure-rf`)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Render on one thread, as generation does: tiny ops are slower with threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, torch.Tensor]:
    """``N_SCENES`` version-1 training scenes of seed 0 at 64 px: images ``(N, 3, 64, 64)``, masks ``(N, 64, 64)``."""
    pairs = [scenes_v1.render_scene(sample_seed(0, "train", i)) for i in range(N_SCENES)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]).long()


@pytest.fixture(scope="module")
def scenes_v2_64() -> list[scenes_v2.Scene]:
    """``N_SCENES`` version-2 training scenes of seed 0 at 64 px."""
    return [scenes_v2.render_scene(sample_seed(0, "train", i)) for i in range(N_SCENES)]


def _config(root: Path, **changes: int) -> ContextScenes.Config:
    return ContextScenes.Config(root=str(root), **{"image_size": 48, "train_size": 4, "val_size": 2, **changes})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within Chebyshev distance ``radius`` of ``mask`` ``(N, H, W)`` bool."""
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


# --------------------------------------------------------------------------------------
# Generation on disk


def test_same_seed_same_bytes_and_independent_of_split_sizes(tmp_path: Path) -> None:
    first = ContextScenes(_config(tmp_path / "a"), "train")
    ContextScenes(_config(tmp_path / "b"), "train")
    ContextScenes(_config(tmp_path / "c", train_size=2, val_size=3), "val")
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 2 * (4 + 2) and a == b
    common = a.keys() & c.keys()  # train 0-1 and val 0-1, images and masks
    assert len(common) == 8 and all(a[k] == c[k] for k in common)
    assert first.names == ["000000", "000001", "000002", "000003"]
    image, mask = first[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.uint8
    assert mask.shape == (48, 48) and mask.dtype == torch.int64


def test_different_seed_different_scenes(tmp_path: Path) -> None:
    ContextScenes(_config(tmp_path / "a"), "train")
    ContextScenes(_config(tmp_path / "b", seed=1), "train")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if "/images/" in k)


def test_satisfies_the_dataset_contract(tmp_path: Path) -> None:
    check_dataset(ContextScenes, _config(tmp_path / "scenes"))
    assert ContextScenes.class_names(_config(tmp_path / "never")) == list(CLASSES)
    assert not (tmp_path / "never").exists()


def test_default_size_is_400_train_and_100_val(tmp_path: Path) -> None:
    dataset = ContextScenes(ContextScenes.Config(root=str(tmp_path / "scenes")), "val")
    assert len(dataset) == 100 and len(list((tmp_path / "scenes" / "train" / "images").iterdir())) == 400


def test_reuses_a_complete_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ContextScenes(_config(tmp_path / "scenes"), "train")
    monkeypatch.setattr(scenes_v2, "render_scene", _fail)
    assert len(ContextScenes(_config(tmp_path / "scenes"), "val")) == 2


def _fail(*args: object) -> None:
    raise AssertionError("regenerated")


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def render_then_stop(*args: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return scenes_v2.render_scene(*args)

    monkeypatch.setattr(scenes_v2, "render_scene", render_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ContextScenes(_config(tmp_path / "scenes"), "train")
    assert list(tmp_path.iterdir()) == []


def test_generates_into_an_empty_root(tmp_path: Path) -> None:
    (tmp_path / "scenes").mkdir()
    assert len(ContextScenes(_config(tmp_path / "scenes"), "train")) == 4


def test_refuses_a_folder_that_is_not_its_dataset(tmp_path: Path) -> None:
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="scenes: exists but is not a complete context-scenes dataset"):
        ContextScenes(_config(tmp_path / "scenes"), "train")


def test_refuses_a_dataset_generated_with_other_parameters(tmp_path: Path) -> None:
    ContextScenes(_config(tmp_path / "scenes"), "train")
    with pytest.raises(DataError, match=r"context_scenes.json: the dataset was generated with other parameters: "
                                        r"seed=0 \(wanted 3\), version=2 \(wanted 1\)"):
        ContextScenes(_config(tmp_path / "scenes", seed=3, version=1), "train")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'test'"):
        ContextScenes(_config(tmp_path / "scenes"), "test")


def test_cache_folder_is_named_after_the_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXSEG_DATA_DIR", str(tmp_path))
    assert dataset_dir(ContextScenes.Config()) == tmp_path / "context-scenes-v2-s0-64px-400-100"
    config = ContextScenes.Config(seed=2, image_size=48, train_size=6, val_size=3, version=1, margin=3)
    assert dataset_dir(config) == tmp_path / "context-scenes-v1-s2-48px-m3-6-3"
    assert dataset_dir(ContextScenes.Config(version=1)) == tmp_path / "context-scenes-v1-s0-64px-m4-400-100"


@pytest.mark.parametrize(("changes", "message"), [
    ({"image_size": 32}, "'image_size' must be a multiple of 16 and >= 48, got 32"),
    ({"image_size": 72}, "'image_size' must be a multiple of 16 and >= 48, got 72"),
    ({"version": 1, "margin": 6}, r"'margin' must be an integer in \[0, 5\] for image_size 64"),
    ({"version": 1, "margin": -1}, r"'margin' must be an integer in \[0, 5\]"),
    ({"margin": 2}, "'margin' is a parameter of version 1 only"),
    ({"version": 3}, "'version' must be in"),
    ({"train_size": 0}, "'train_size' must be >= 1"),
    ({"val_size": 10**6}, "'val_size' must be <= 500000"),
    ({"seed": -1}, "'seed' must be >= 0"),
])
def test_config_validation(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContextScenes.Config(**changes)


# --------------------------------------------------------------------------------------
# What the scenes contain


def test_render_is_deterministic() -> None:
    for size in (48, 64, 128):
        a, b = scenes_v1.render_scene(7, size, max_margin(size)), scenes_v1.render_scene(7, size, max_margin(size))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        a, b = scenes_v2.render_scene(7, size), scenes_v2.render_scene(7, size)
        assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert not torch.equal(scenes_v1.render_scene(7)[0], scenes_v1.render_scene(8)[0])
    assert not torch.equal(scenes_v2.render_scene(7).image, scenes_v2.render_scene(8).image)


# Version 2, the default: the scene decides, from far away


def test_every_class_appears(scenes_v2_64: list[scenes_v2.Scene]) -> None:
    masks = torch.stack([s.mask for s in scenes_v2_64]).long()
    counts = torch.bincount(masks.flatten(), minlength=len(CLASSES))
    assert len(counts) == len(CLASSES), "no ignore pixels, no values outside the classes"
    assert (counts > 0).all(), dict(zip(CLASSES, counts.tolist()))
    birds = (masks == BIRD).flatten(1).any(1).float().mean()
    assert birds > 0.95, "birds in (almost: a kite may hide one) every image: the small class is learnable"


def test_one_scene_per_image_with_even_odds(scenes_v2_64: list[scenes_v2.Scene]) -> None:
    harbours = 0
    for scene in scenes_v2_64:
        present = set(scene.mask.unique().tolist())
        thing = BOAT if scene.ground == WATER else CAR
        assert present >= {SKY, GRASS, scene.ground, thing}
        assert not present & {WATER + ROAD - scene.ground, BOAT + CAR - thing}
        harbours += scene.ground == WATER
    assert 0.4 <= harbours / len(scenes_v2_64) <= 0.6


def test_kite_is_rare(scenes_v2_64: list[scenes_v2.Scene]) -> None:
    frequency = sum(bool((s.mask == KITE).any()) for s in scenes_v2_64) / len(scenes_v2_64)
    assert 0.14 <= frequency <= 0.26, frequency


def test_the_pairs_look_the_same_and_only_the_band_differs(scenes_v2_64: list[scenes_v2.Scene]) -> None:
    """Boats and cars, and the deck in a harbour and in a city, have the same colour
    statistics; the bands of water and of road do not."""
    assert CONTEXT_PAIRS == (("water", "road"), ("boat", "car"))
    pixels: dict[str, list[torch.Tensor]] = {k: [] for k in ("boat", "car", "pier", "lot", "water", "road")}
    for scene in scenes_v2_64:
        image, mask = scene.image.float().flatten(1), scene.mask.flatten()
        rows = torch.arange(scene.mask.shape[0])[:, None]
        in_band = ((rows >= scene.band[0]) & (rows < scene.band[1])).expand_as(scene.mask).flatten()
        harbour = scene.ground == WATER
        pixels["boat" if harbour else "car"].append(image[:, mask == (BOAT if harbour else CAR)])
        pixels["pier" if harbour else "lot"].append(image[:, (mask == scene.ground) & ~in_band])
        pixels["water" if harbour else "road"].append(image[:, in_band])
    stats = {k: (torch.cat(v, 1).mean(1), torch.cat(v, 1).std(1)) for k, v in pixels.items()}
    for a, b in (("boat", "car"), ("pier", "lot")):
        assert (stats[a][0] - stats[b][0]).abs().max() < 6, (a, b, stats[a][0], stats[b][0])
        assert (stats[a][1] - stats[b][1]).abs().max() < 6, (a, b, stats[a][1], stats[b][1])
    assert (stats["water"][0] - stats["road"][0]).abs().max() > 30


def test_the_band_lies_beyond_a_stride_4_heads_reach(scenes_v2_64: list[scenes_v2.Scene]) -> None:
    """Much of each pair lies farther from the band, the only evidence of the scene, than the
    FCN head on ResNet-18's stride-4 stage sees; and some lies right beside it."""
    rows = torch.arange(64)[:, None].expand(64, 64)
    far = {"deck": [], "vehicle": []}
    for scene in scenes_v2_64:
        top, bottom = scene.band
        distance = torch.maximum(top - rows, rows - (bottom - 1)).clamp(min=0)
        deck = (scene.mask == scene.ground) & (distance > 0)
        vehicle = (scene.mask == BOAT) | (scene.mask == CAR)
        far["deck"].append(distance[deck])
        far["vehicle"].append(distance[vehicle])
    for part, distances in far.items():
        d = torch.cat(distances)
        assert (d > C2_REACH).float().mean() > 0.15, part  # measured: deck 28%, vehicles 19%
        assert (d <= 4).float().mean() > 0.02, part


# --------------------------------------------------------------------------------------
# Version 1


def test_v1_every_class_appears(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    counts = torch.bincount(scenes[1].flatten(), minlength=len(CLASSES))
    assert len(counts) == len(CLASSES), "no ignore pixels, no values outside the classes"
    assert (counts > 0).all(), dict(zip(CLASSES, counts.tolist()))


def test_v1_every_image_has_boats_on_water_and_cars_on_road(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    present = torch.stack([(scenes[1] == c).flatten(1).any(1) for c in (WATER, ROAD, BOAT, CAR)])
    assert present.all()


def test_v1_kite_is_rare(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    frequency = (scenes[1] == KITE).flatten(1).any(1).float().mean().item()
    assert 0.03 <= frequency <= 0.11, frequency


@pytest.mark.parametrize(("thing", "context"), [(BOAT, WATER), (CAR, ROAD)])
def test_v1_context_decides(scenes: tuple[torch.Tensor, torch.Tensor], thing: int, context: int) -> None:
    """A boat touches only water, a car only road, and so does the ring around them."""
    masks = scenes[1]
    on = masks == thing
    for radius in (1, 4 + 1):  # neighbours, and the first pixels past the (water or road) margin
        assert set(masks[_dilate(on, radius)].unique().tolist()) == {thing, context}


def test_v1_without_margin_objects_sit_straight_in_their_band() -> None:
    masks = torch.stack([scenes_v1.render_scene(i, 48, margin=0)[1] for i in range(20)]).long()
    for thing, context in ((BOAT, WATER), (CAR, ROAD)):
        assert set(masks[_dilate(masks == thing, 1)].unique().tolist()) == {thing, context}


def test_v1_boats_and_cars_look_the_same(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Same colour statistics for the objects, and for the rings around them; different context."""
    images, masks = scenes[0].float(), scenes[1]

    def colour_stats(where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = images.permute(1, 0, 2, 3)[:, where]  # (3, P)
        return pixels.mean(1), pixels.std(1)

    boat, car = masks == BOAT, masks == CAR
    assert abs(boat.sum().item() / car.sum().item() - 1) < 0.1
    for a, b in ((boat, car), (_dilate(boat, 4) & ~boat, _dilate(car, 4) & ~car)):
        (mean_a, std_a), (mean_b, std_b) = colour_stats(a), colour_stats(b)
        assert (mean_a - mean_b).abs().max() < 6, (mean_a, mean_b)
        assert (std_a - std_b).abs().max() < 6, (std_a, std_b)
    water_far = (masks == WATER) & ~_dilate(boat, 6)
    road_far = (masks == ROAD) & ~_dilate(car, 6)
    assert (colour_stats(water_far)[0] - colour_stats(road_far)[0]).abs().max() > 30
