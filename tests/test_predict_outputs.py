"""``ctxseg predict`` never writes over an input, nor two predictions into one file (issue 15, point 9)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ctxseg.cli import main
from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec


@pytest.fixture
def weights(tmp_path, tiny_spec_file):
    spec = load_spec(tiny_spec_file)
    path = tmp_path / "model.safetensors"
    save_weights(path, SegmentationModel(spec.model, 2, pretrained=False), spec.to_dict(), ["a", "b"],
                 [(0, 0, 0), (255, 0, 0)])
    return path


def _image(path):
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path)
    return path


def test_an_output_that_is_an_input_is_refused_before_writing(tmp_path, weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _image(tmp_path / "a.png")
    _image(tmp_path / "b.jpg")
    before = a.read_bytes()
    assert main(["predict", str(weights), "a.png", "b.jpg", "--out", ".", "--quiet"]) == 2
    assert capsys.readouterr().err == ("ctxseg: error: a.png: the output for a.png would replace the input image "
                                       "a.png; choose another --out\n")
    assert a.read_bytes() == before and not (tmp_path / "b.png").exists() and not (tmp_path / "b_overlay.png").exists()


def test_two_inputs_of_one_stem_are_refused(tmp_path, weights, capsys):
    (tmp_path / "in").mkdir()
    x_png, x_jpg = _image(tmp_path / "in" / "x.png"), _image(tmp_path / "in" / "x.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(weights), str(x_png), str(x_jpg), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: {out / 'x.png'}: both {x_png} and {x_jpg} would be written "
                                       "to this file; rename one, or predict them into different --out folders\n")
    assert not out.exists()


def test_distinct_inputs_are_predicted(tmp_path, weights):
    images = [_image(tmp_path / "x.png"), _image(tmp_path / "y.jpg")]
    assert main(["predict", str(weights), *map(str, images), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "x_overlay.png", "y.png", "y_overlay.png"]
