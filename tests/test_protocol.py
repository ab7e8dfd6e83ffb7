"""The test protocols (whole, sliding window, scales, flips) against what they must equal."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ctxseg.cli import main
from ctxseg.engine.inference import Inference
from ctxseg.engine.protocol import probabilities, window_starts
from ctxseg.engine.train import train
from ctxseg.errors import DataError
from ctxseg.spec import TestSpec, load_spec
from ctxseg.testing.tolerance import autocast_bound, determined

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

K = 3


def pointwise() -> nn.Module:
    """1x1 convolutions: translation- and flip-equivariant, borders included."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, K, 1)).eval()


def padded() -> nn.Module:
    """3x3 convolutions with zero padding: what a window sees at its border differs from the whole image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1)).eval()


def scorer(model: nn.Module, calls: list | None = None):
    def score(images):
        if calls is not None:
            calls.append(tuple(images.shape))
        with torch.no_grad():
            return model(images)
    return score


def test_one_whole_view_is_the_softmax_of_the_scores():
    images, model = torch.randn(2, 3, 20, 28), padded()
    torch.testing.assert_close(probabilities(scorer(model), images, TestSpec()), model(images).softmax(1))


def test_windows_tiling_the_image_give_each_tile_its_own_scores():
    """Slide with stride = crop on an exact multiple: each tile is scored alone."""
    images, model = torch.randn(1, 3, 32, 48), padded()
    got = probabilities(scorer(model), images, TestSpec(mode="slide", crop=16, stride=16))
    for y in (0, 16):
        for x in (0, 16, 32):
            tile = images[..., y:y + 16, x:x + 16]
            torch.testing.assert_close(got[..., y:y + 16, x:x + 16], model(tile).softmax(1))


@pytest.mark.parametrize(("size", "crop", "stride"), [
    ((50, 37), 16, 11),   # sizes no window grid divides
    ((40, 40), 16, 0),    # the default stride, 2/3 of the window
    ((10, 7), 16, 0),     # smaller than a window: padded, then cropped back
    ((1, 1), 16, 0),      # one pixel
])
def test_overlapping_windows_of_an_equivariant_model_give_the_whole_image_result(size, crop, stride):
    images, model = torch.randn(2, 3, *size), pointwise()
    slide = TestSpec(mode="slide", crop=crop, stride=stride, batch=3)
    torch.testing.assert_close(probabilities(scorer(model), images, slide),
                               probabilities(scorer(model), images, TestSpec()))


def test_windows_are_batched():
    calls = []
    probabilities(scorer(pointwise(), calls), torch.randn(1, 3, 40, 40), TestSpec(mode="slide", crop=16, stride=12, batch=4))
    assert calls == [(4, 3, 16, 16), (4, 3, 16, 16), (1, 3, 16, 16)]  # 3 x 3 windows, 4 at a time


def test_every_pixel_is_covered_and_the_last_window_is_flush():
    for length, crop, stride in [(50, 16, 11), (713 * 3, 713, 476), (16, 16, 11), (17, 16, 11)]:
        starts = window_starts(length, crop, stride)
        covered = torch.zeros(length, dtype=torch.bool)
        for start in starts:
            covered[start:start + crop] = True
        assert covered.all() and starts[-1] + crop == length and starts[0] == 0
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_flipping_a_flip_equivariant_model_changes_nothing():
    images, model = torch.randn(2, 3, 12, 17), pointwise()
    torch.testing.assert_close(probabilities(scorer(model), images, TestSpec(flip=True)),
                               probabilities(scorer(model), images, TestSpec()))


def test_flip_and_scales_average_the_views_resized_back():
    images, model = torch.randn(1, 3, 16, 16), padded()
    got = probabilities(scorer(model), images, TestSpec(scales=(1.0, 0.5), flip=True))
    half = nn.functional.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False)
    views = [model(images).softmax(1), model(images.flip(-1)).softmax(1).flip(-1)]
    views += [nn.functional.interpolate(p, size=(16, 16), mode="bilinear", align_corners=False)
              for p in (model(half).softmax(1), model(half.flip(-1)).softmax(1).flip(-1))]
    torch.testing.assert_close(got, sum(views) / 4)


def test_slide_mode_needs_a_window():
    with pytest.raises(ValueError, match="'crop' must be the window's side"):
        TestSpec(mode="slide")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_spec_text):
    """The weights of a tiny model trained for a few steps on context scenes."""
    path = tmp_path_factory.mktemp("protocol") / "tiny.toml"
    path.write_text(tiny_spec_text.replace("steps = 4", "steps = 60").replace("eval_every = 2", "eval_every = 60"))
    out = path.parent / "run"
    train(load_spec(path), out, progress=False)
    return out / "model.safetensors"


def test_fast_path_flags_take_effect(trained):
    """inference_mode, channels_last images and (asked for) bf16 autocast reach every conv."""
    seen = []

    def record(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            seen.append((torch.is_inference_mode_enabled(), inputs[0].is_contiguous(memory_format=torch.channels_last),
                         output.dtype))

    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        inference, _ = Inference.from_weights(trained, test={"precision": precision})
        seen.clear()
        hook = nn.modules.module.register_module_forward_hook(record)
        try:
            inference.predict(image)
        finally:
            hook.remove()
        assert seen and all(mode and last and out == dtype for mode, last, out in seen), precision


def _val_images(inference: Inference) -> list[torch.Tensor]:
    dataset = inference.spec.data.dataset
    val = dataset.load()(dataset.config, "val")
    return [val[i][0] for i in range(len(val))]


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_labels_agree_with_fp32_where_the_answer_is_determined(trained, precision):
    """The default ("auto": whichever mode the timing chose here) and bf16 forced label every
    pixel as fp32 does where the answer is determined: the two best fp32 scores lie further
    apart than twice the bound on bf16 autocast's error (which also covers fp32 summed in
    another order). Near-ties may go either way on a correct machine, so they are not counted."""
    reference, _ = Inference.from_weights(trained, test={"precision": "fp32"})
    images = _val_images(reference)
    with torch.inference_mode():
        scores = reference.module(torch.stack([reference.transform(image, None)[0] for image in images]))["out"]
    sure = determined(scores, autocast_bound(reference.model, scores.abs().max().item()))
    assert sure.any()  # else the comparison below would be empty
    inference, _ = Inference.from_weights(trained, test={"precision": precision})
    labels = torch.stack(inference.predict_many(images))
    assert torch.equal(labels[sure], scores.argmax(1)[sure])


def test_eval_prints_and_records_the_protocol_and_precision(trained, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", str(trained), "--quiet", "--mode", "slide", "--crop", "32",
                 "--scales", "1.0", "0.75", "--flip", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    recorded = json.loads(out.read_text())["inference"]
    assert recorded["precision"] in ("fp32", "bf16")  # "auto" as it resolved on this machine
    layout = "channels_last" if recorded["channels_last"] else "contiguous"
    assert (f"eval: 32 px windows 22 px apart, scales [1.0, 0.75], flipped too, auto: {recorded['precision']}, "
            f"{layout} on cpu (" in printed)
    assert (recorded["mode"], recorded["crop"], recorded["flip"]) == ("slide", 32, True)


def test_a_bad_protocol_option_names_the_key(trained, capsys):
    assert main(["eval", str(trained), "--quiet", "--mode", "slide"]) == 2
    assert "command line: test: 'crop' must be the window's side (>= 1) in slide mode, got 0" in capsys.readouterr().err


def test_python_api_labels_tensors_and_pil_images(trained):
    import numpy as np
    from PIL import Image

    import ctxseg

    model = ctxseg.load(trained, test={"precision": "fp32"})
    image = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    assert model.predict(image).shape == (48, 40) and model.predict(image).dtype == torch.int64
    assert torch.equal(model.predict(image), model.predict(pil))
    gray16 = Image.fromarray(image[0].numpy().astype(np.uint16) * 257)  # mode "I;16", as a 16-bit PNG reads
    torch.testing.assert_close(model.predict(gray16), model.predict(image[:1].expand(3, -1, -1)), rtol=0, atol=0)
    dataset = model.spec.data.dataset
    metrics, _ = ctxseg.evaluate(model, dataset.load()(dataset.config, "val"))
    assert 0 <= metrics["mean_iou"] <= 1 and metrics["inference"]["precision"] == "fp32"
    with pytest.raises(DataError, match=r"expected a PIL image or a uint8 tensor \(3, H, W\)"):
        model.predict(np.zeros((4, 4)))
