"""ONNX export: every example architecture exports, onnxruntime agrees with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ctxseg.cli import main
from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec, spec_from_dict
from ctxseg.testing.tolerance import summation_bound

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ctxseg.engine.export import export_onnx, verify_onnx  # noqa: E402 - after the extra's check

EXAMPLES = Path(__file__).parent.parent / "examples"
CLASSES = ["sky", "water", "boat"]
PALETTE = [(0, 0, 255), (0, 128, 255), (255, 0, 0)]


def _weights(tmp_path: Path, spec) -> Path:
    torch.manual_seed(0)
    model = SegmentationModel(spec.model, len(CLASSES), pretrained=False)
    path = tmp_path / "model.safetensors"
    save_weights(path, model, spec.to_dict(), CLASSES, PALETTE)
    return path


def _deeplab():
    spec = load_spec(EXAMPLES / "fcn_resnet18.toml").to_dict()
    spec["model"]["context"] = [{"name": "deeplab.aspp", "channels": 32, "rates": [2, 4]}]
    return spec_from_dict(spec, source="deeplab")


ARCHITECTURES = {  # FCN: test_cli_exports_verifies_and_writes_the_metadata
    "parsenet": lambda: load_spec(EXAMPLES / "parsenet/context_scenes_resnet18.toml"),
    "pspnet": lambda: load_spec(EXAMPLES / "pspnet/context_scenes_resnet18.toml"),
    "dilation": lambda: load_spec(EXAMPLES / "dilation/context_scenes_basic.toml"),
    "gcn": lambda: load_spec(EXAMPLES / "gcn/context_scenes_k15_br.toml"),
    "fcrn (simulated 1/4)": lambda: load_spec(EXAMPLES / "fcrn/context_scenes_ce_simulated.toml"),
    "deeplab (third party)": _deeplab,
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_exports_with_dynamic_sizes_and_onnxruntime_agrees(tmp_path, name):
    exported, inference = export_onnx(_weights(tmp_path, ARCHITECTURES[name]()), tmp_path / "model.onnx")
    assert exported.dynamic, exported.fixed_because
    assert exported.shape == ("batch", 3, "height", "width")
    checks = list(verify_onnx(exported, inference))
    assert [c.shape for c in checks] == [(1, 3, 80, 112), (2, 3, 99, 75)]  # sizes not divisible by the strides
    for check in checks:  # onnxruntime's kernels sum in their own order (so every determined label agrees too)
        assert check.max_abs_diff <= summation_bound(inference.model, check.scale), check


def test_a_model_the_exporter_cannot_trace_for_every_size_is_exported_at_the_traced_size(tmp_path, monkeypatch,
                                                                                       capsys):
    from ctxseg.engine import export

    trace = export._export

    def no_dynamic_sizes(module, example, opset, *, dynamic):
        if dynamic:
            raise RuntimeError("Constraints violated (height)!\nmore lines")
        return trace(module, example, opset, dynamic=dynamic)

    monkeypatch.setattr(export, "_export", no_dynamic_sizes)
    weights = _weights(tmp_path, load_spec(EXAMPLES / "fcn_resnet18.toml"))
    assert main(["export", str(weights), "--out", str(tmp_path / "m.onnx"), "--verify"]) == 0
    captured = capsys.readouterr()
    assert "exported at a fixed input size (2 x 3 x 96 x 128)" in captured.err
    assert "(RuntimeError: Constraints violated (height)!)" in captured.err
    assert captured.out.count("verify 2x3x96x128: ") == 2  # every axis fixed: both checks at the traced size


def test_pyramid_pooling_bins_equal_adaptive_pooling():
    from ctxseg_pspnet.pyramid_pooling import bin_pool

    generator = torch.Generator().manual_seed(0)
    for height in range(1, 20):
        x = torch.randn(2, 3, height, 13, generator=generator)
        for bins in (1, 2, 3, 6):
            torch.testing.assert_close(bin_pool(x, bins, "avg"), F.adaptive_avg_pool2d(x, bins), rtol=0, atol=1e-6)
            assert torch.equal(bin_pool(x, bins, "max"), F.adaptive_max_pool2d(x, bins))


def test_cli_exports_verifies_and_writes_the_metadata(tmp_path, capsys):
    spec = load_spec(EXAMPLES / "fcn_resnet18.toml")
    weights = _weights(tmp_path, spec)
    assert main(["export", str(weights), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--opset", "18",
                 "--verify"]) == 0
    out = capsys.readouterr().out
    assert "input image (batch x 3 x height x width), output scores, opset 18" in out
    assert out.count("argmax agreement 100.000%") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "model.safetensors"]  # no temporary left
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["ctxseg.classes"]) == CLASSES
    assert json.loads(meta["ctxseg.palette"]) == [list(c) for c in PALETTE]
    assert json.loads(meta["ctxseg.mean"]) == list(spec.data.mean)
    assert json.loads(meta["ctxseg.std"]) == list(spec.data.std)
    assert meta["ctxseg.opset"] == "18"
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["scores"]


def test_cli_refuses_a_file_that_is_not_weights(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    assert main(["export", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "bad.safetensors: not a readable safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_never_writes_over_its_input(tmp_path, capsys):
    weights = _weights(tmp_path, load_spec(EXAMPLES / "fcn_resnet18.toml"))
    before = weights.read_bytes()
    assert main(["export", str(weights), "--out", str(weights)]) == 2
    assert "--out is an input file; ctxseg never overwrites an input" in capsys.readouterr().err
    assert weights.read_bytes() == before


def test_missing_extra_names_it(monkeypatch):
    import sys

    from ctxseg.engine.ort import require_extra
    from ctxseg.errors import CtxsegError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled package looks like to import
    with pytest.raises(CtxsegError, match=r"'onnxruntime'.*pip install 'ctxseg\[export\]'"):
        require_extra("onnxruntime")
