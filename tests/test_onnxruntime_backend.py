"""ONNX Runtime as a backend: every protocol labels as torch fp32 does, the export is made
once per weights file, and the int8 model of ``ctxseg export --quantize int8`` runs in
predict and eval."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

import ctxseg
from ctxseg.cli import main
from ctxseg.engine import autotune, ort
from ctxseg.engine.inference import Inference
from ctxseg.engine.protocol import probabilities
from ctxseg.engine.train import train
from ctxseg.files.weights import read_weights, save_weights
from ctxseg.model.load import load_model
from ctxseg.spec import load_spec
from ctxseg.testing.tolerance import CONFIDENCE, determined, layers, summation_bound

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_spec_text):
    """Trained 16 steps: far enough from its random start that int8's larger error leaves some labels determined."""
    path = tmp_path_factory.mktemp("ort") / "tiny.toml"
    path.write_text(tiny_spec_text.replace("steps = 4", "steps = 16").replace("eval_every = 2", "eval_every = 0"))
    train(load_spec(path), path.parent / "run", progress=False)
    return path.parent / "run" / "model.safetensors"


@pytest.fixture(scope="module")
def exported(weights):
    """The fp32 export in the cache folder, made once for the module."""
    return ort.cached_export(weights)


@pytest.fixture(scope="module")
def int8(weights, exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    assert main(["export", str(weights), "--out", str(out), "--quantize", "int8", "--calibrate", "6", "--quiet"]) == 0
    return out


def _val_images(inference: Inference) -> list[torch.Tensor]:
    dataset = inference.spec.data.dataset
    val = dataset.load()(dataset.config, "val")
    return [val[i][0] for i in range(len(val))]


def onnxruntime_bound(model: torch.nn.Module, scale: float) -> float:
    """How far ONNX Runtime's fp32 scores can be from torch's: both sum each layer's products
    in an order of their own (:func:`summation_bound`: two runs of ``depth x length``
    roundings), and ONNX Runtime also folds each batch norm into its convolution's weights,
    one more rounding per product: twice the roundings in its run, sqrt(2) times its half of the bound."""
    return summation_bound(model, scale) * (1 + math.sqrt(2)) / 2


def int8_bound(model: torch.nn.Module, scale: float) -> float:
    """How far the int8 model's scores can be from fp32's, in the model of
    :mod:`ctxseg.testing.tolerance` (independent roundings, each relative to the scale of the
    values it rounds): every layer rounds its weights to 7 bits per channel (an error of at
    most 1/126 of the channel's largest weight) and its input to uint8 over the calibrated
    range (at most 1/510 of the range). Activations beyond the calibrated range are clipped,
    which no rounding model covers: so "most" determined pixels agree, not all."""
    depth, _ = layers(model)
    return CONFIDENCE * math.sqrt(depth * ((1 / 126) ** 2 + (1 / 510) ** 2)) * scale


PROTOCOLS = {
    "whole": {},
    "slide": {"mode": "slide", "crop": 32, "batch": 3},
    "scales and flip": {"scales": [0.75, 1.0, 1.25], "flip": True},
}


@pytest.mark.numerics
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_onnxruntime_labels_like_torch_fp32_where_the_answer_is_determined(weights, exported, protocol):
    """The protocol's views, windows and averages run in torch around either backend's
    scores, so the backends' probabilities differ only through the scores: by a factor of
    at most exp(2b) for scores within b (softmax), kept by averaging and resizing (sums with
    non-negative weights). A label is determined where the two best log-probabilities lie
    further apart than 4b; there onnxruntime's label must be torch fp32's."""
    test = {"precision": "fp32", **PROTOCOLS[protocol]}
    reference, _ = Inference.from_weights(weights, test=test)
    images = _val_images(reference)
    batch = torch.stack([reference.transform(image, None)[0] for image in images])
    scales = []

    def score(views: torch.Tensor) -> torch.Tensor:
        scores = reference.module(views)["out"]
        scales.append(scores.abs().max().item())
        return scores

    with torch.inference_mode():
        probs = probabilities(score, batch, reference.spec.test)
    sure = determined(probs.log(), 2 * onnxruntime_bound(reference.model, max(scales)))
    assert sure.float().mean() > 0.5  # most pixels take part, else the comparison says little
    inference = ctxseg.load(weights, backend="onnxruntime", test=test)
    assert inference.backend == "onnxruntime"
    labels = torch.stack(inference.predict_many(images))
    assert torch.equal(labels[sure], probs.argmax(1)[sure])
    assert inference.session.path == exported


def test_the_export_is_cached_by_the_weights_content(weights, exported, tmp_path, monkeypatch):
    from ctxseg.engine import export

    made = []

    def counted(source, out, **options):  # the export of the module's weights, copied: no second trace needed
        made.append(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(exported.read_bytes())

    monkeypatch.setattr(export, "export_onnx", counted)
    stamp = exported.stat().st_mtime_ns
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    ctxseg.load(weights, backend="onnxruntime").predict(image)
    assert made == [] and exported.stat().st_mtime_ns == stamp  # loaded again, not exported again

    model, spec, info = load_model(weights)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # retrained, say
    changed = tmp_path / "changed.safetensors"
    save_weights(changed, model, spec.to_dict(), info.classes, info.palette)
    ctxseg.load(changed, backend="onnxruntime").predict(image)
    assert made == [changed] and (exported.parent / f"{ort.content_hash(changed)}.onnx").exists()
    ctxseg.load(changed, backend="onnxruntime").predict(image)
    assert made == [changed]


def test_auto_races_onnxruntime_and_runs_its_choice(weights, exported, monkeypatch):
    timed = []

    def onnxruntime_wins(time_one, key, *, modes, **kwargs):
        for mode in modes:
            time_one(mode)
            timed.append(mode)
        return autotune.Choice(autotune.ONNXRUNTIME, {str(mode): 1.0 for mode in modes}, autotune.cache_file(), True)

    monkeypatch.setattr(autotune, "fastest", onnxruntime_wins)
    inference = ctxseg.load(weights, backend="auto")
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    labels = inference.predict(image)
    assert timed == [*autotune.MODES, autotune.ONNXRUNTIME]
    assert inference.backend == "onnxruntime" and inference.test.backend == "onnxruntime"
    assert "auto: onnxruntime, fp32 on cpu" in inference.describe()
    assert torch.equal(labels, ctxseg.load(weights, backend="onnxruntime").predict(image))


def test_the_backend_without_onnxruntime_installed_is_a_clear_error(weights, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled package looks like to import
    assert main(["eval", str(weights), "--quiet", "--backend", "onnxruntime"]) == 2
    assert ("test.backend 'onnxruntime' needs the package 'onnxruntime', which is not installed; install it with: "
            "python -m pip install 'ctxseg[export]'") in capsys.readouterr().err
    assert ctxseg.load(weights, backend="auto").candidates == autotune.MODES  # auto races what is installed


def test_the_int8_file_holds_quantized_operators_and_its_metadata(int8, weights):
    model = onnx.load(str(int8))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ctxseg.precision"] == "int8" and "min/max over 6 training images" in meta["ctxseg.quantization"]
    _, info = read_weights(weights)
    assert json.loads(meta["ctxseg.classes"]) == info.classes and json.loads(meta["ctxseg.spec"]) == info.spec


@pytest.mark.numerics
def test_predict_and_eval_run_the_int8_file_and_it_labels_most_determined_pixels_as_fp32(int8, weights, tmp_path,
                                                                                        capsys):
    reference, _ = Inference.from_weights(weights, test={"precision": "fp32"})
    images = _val_images(reference)
    with torch.inference_mode():
        scores = reference.module(torch.stack([reference.transform(image, None)[0] for image in images]))["out"]
    sure = determined(scores, int8_bound(reference.model, scores.abs().max().item()))
    assert sure.sum() >= 50  # else the comparison says little
    quantized = ctxseg.load(int8)
    assert (quantized.backend, quantized.runtime.precision) == ("onnxruntime", "int8")
    labels = torch.stack(quantized.predict_many(images))
    assert (labels[sure] == scores.argmax(1)[sure]).double().mean() >= 0.99

    metrics = tmp_path / "metrics.json"
    assert main(["eval", str(int8), "--quiet", "--out", str(metrics)]) == 0
    assert f"onnxruntime, int8 on cpu ({int8})" in capsys.readouterr().out
    assert json.loads(metrics.read_text())["inference"]["precision"] == "int8"
    scenes = reference.spec.data.dataset.config.root
    assert main(["predict", str(int8), f"{scenes}/val/images", "--out", str(tmp_path / "masks"), "--quiet"]) == 0
    assert len(list((tmp_path / "masks").glob("*_overlay.png"))) == len(images)


def test_an_onnx_file_refuses_what_only_its_weights_file_can_do(int8, capsys):
    assert main(["eval", str(int8), "--quiet", "--backend", "torch"]) == 2
    assert "an ONNX file runs on onnxruntime; backend 'torch' needs its weights file" in capsys.readouterr().err
    assert main(["eval", str(int8), "--quiet", "--precision", "fp32"]) == 2
    assert "holds a int8 model, so it cannot run in precision 'fp32'" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "error"), [
    (["--calibrate", "7"], "--calibrate 7: the training split has only 6 images"),
    (["--calibrate", "0"], "argument --calibrate: expected an integer in [1, 1000000]"),
    ([], "--quantize int8 needs --calibrate N"),
    (["--calibrate", "2", "--verify"], "--verify compares the fp32 export with PyTorch"),
])
def test_calibration_that_cannot_be_done_is_a_named_error(weights, tmp_path, capsys, options, error):
    args = ["export", str(weights), "--out", str(tmp_path / "m.onnx"), "--quantize", "int8", "--quiet", *options]
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    assert code == 2
    assert error in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_spec_without_training_data_here_is_named(tmp_path, weights, capsys):
    model, spec, info = load_model(weights)
    moved = spec.to_dict()
    moved["data"]["dataset"]["root"] = str(tmp_path / "elsewhere")
    elsewhere = tmp_path / "elsewhere.safetensors"
    save_weights(elsewhere, model, moved, info.classes, info.palette)
    assert main(["export", str(elsewhere), "--out", str(tmp_path / "m.onnx"), "--quantize", "int8",
                 "--calibrate", "2"]) == 2
    assert (f"{elsewhere}: its spec reads 'base.context_scenes' data from {tmp_path / 'elsewhere'}, which does not "
            "exist here; ctxseg export does not create data") in capsys.readouterr().err
