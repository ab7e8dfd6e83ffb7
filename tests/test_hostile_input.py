"""Hostile and careless input (issue 16; issue 15 point 11): a clear error, never a
traceback, never a silent overwrite. One test (or a few) per point of the issue."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

from ctxseg.cli import main
from ctxseg.data.context_scenes import CLASSES, PALETTE
from ctxseg.data.folder import FolderDataset, write_classes, write_sample
from ctxseg.data.pipeline import batches, train_loader
from ctxseg.data.samples import read_image
from ctxseg.engine.predict import list_images
from ctxseg.engine.train import _check_run_directory
from ctxseg.errors import DataError, PluginError, WeightsError
from ctxseg.files.checkpoint import load_checkpoint
from ctxseg.files.weights import read_weights, save_weights, write_tensors
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.registry import Component, PluginFailure, Registry, discovery
from ctxseg.spec import DataSpec, load_spec


@pytest.fixture
def weights(tmp_path, tiny_spec_file):
    """An untrained tiny model's weights file (context-scenes classes), written without training."""
    spec = load_spec(tiny_spec_file)
    path = tmp_path / "w" / "model.safetensors"
    save_weights(path, SegmentationModel(spec.model, len(CLASSES)).eval(), spec.to_dict(), list(CLASSES),
                 list(PALETTE))
    return path


def _png(path, size=(16, 16), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# 1. train --out over a finished run, --resume without a checkpoint


def test_train_refuses_a_directory_holding_a_run(tmp_path, tiny_spec_file, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"a finished run's weights")
    assert main(["train", str(tiny_spec_file), "--out", str(run), "--quiet"]) == 2
    assert _error(capsys) == (f"ctxseg: error: {run}: already holds a run (model.safetensors); pass --resume to "
                              "continue it, --overwrite to replace it, or choose another --out\n")
    assert (run / "model.safetensors").read_bytes() == b"a finished run's weights"
    _check_run_directory(run, resume=False, overwrite=True)  # --overwrite lets it through


def test_resume_needs_a_checkpoint_and_out_must_be_a_directory(tmp_path, tiny_spec_file, capsys):
    assert main(["train", str(tiny_spec_file), "--out", str(tmp_path / "new"), "--resume", "--quiet"]) == 2
    assert _error(capsys) == (f"ctxseg: error: {tmp_path / 'new'}: --resume: there is no checkpoint.safetensors "
                              "to resume from; train without --resume to start a new run there\n")
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["train", str(tiny_spec_file), "--out", str(afile), "--quiet"]) == 2
    assert _error(capsys) == (f"ctxseg: error: {afile}: --out: {afile} is an existing file; expected a run "
                              "directory (existing or new)\n")
    assert main(["train", str(tiny_spec_file), "--out", str(afile / "run"), "--quiet"]) == 2
    assert f"error: {afile / 'run'}: --out: {afile} is an existing file" in _error(capsys)
    with pytest.raises(SystemExit):
        main(["train", str(tiny_spec_file), "--resume", "--overwrite"])


# 2. predict output collisions (and issue 15 point 9: an output never replaces an input)


@pytest.mark.parametrize("layout", ["same name in two folders", "a stem and its overlay", "output is an input"])
def test_colliding_outputs_are_refused_before_anything_is_written(tmp_path, capsys, layout):
    if layout == "same name in two folders":
        inputs, out = [_png(tmp_path / "dir1" / "img.png"), _png(tmp_path / "dir2" / "img.png")], tmp_path / "out"
        expected = f"{out / 'img.png'}: both {inputs[0]} and {inputs[1]} would be written to this file"
    elif layout == "a stem and its overlay":
        inputs, out = [_png(tmp_path / "p.png"), _png(tmp_path / "p_overlay.png")], tmp_path / "out"
        expected = f"{out / 'p_overlay.png'}: both {inputs[0]} and {inputs[1]} would be written to this file"
    else:
        inputs, out = [_png(tmp_path / "a.png"), _png(tmp_path / "b.jpg")], tmp_path
        expected = f"{tmp_path / 'a.png'}: the output for {inputs[0]} would replace the input image {inputs[0]}"
    before = {p: p.read_bytes() for p in inputs}
    # the weights file does not even exist: outputs are planned before the model is loaded
    assert main(["predict", str(tmp_path / "none.safetensors"), *map(str, inputs), "--out", str(out)]) == 2
    assert expected in _error(capsys)
    assert {p: p.read_bytes() for p in inputs} == before
    assert not (tmp_path / "out").exists()


# 3. 16-bit PNGs


def test_16_bit_grey_png_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 257, 32768], [65535, 1000, 128]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"  # really a 16-bit PNG
    image = read_image(path)
    expected = np.rint(values / 257).astype(np.uint8)  # 0, 1, 128, 255, 4, 0
    assert image.dtype == torch.uint8 and image.shape == (3, 2, 3)
    for channel in image:
        assert channel.numpy().tolist() == expected.tolist()


# 4. one unreadable image in a batch; issue 15 point 11: folders as inputs, a file as --out


def test_predict_goes_on_past_an_unreadable_image_and_exits_1(tmp_path, weights, capsys):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "c.png")
    bad = tmp_path / "in" / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["predict", str(weights), str(tmp_path / "in"), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err == (f"ctxseg: error: {bad}: not a readable image (cannot identify image file '{bad}')\n"
                            "ctxseg: 1 of 3 images failed (reported above); the others were written\n")
    assert captured.out == f"wrote 2 masks and overlays (palette) to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_overlay.png", "c.png", "c_overlay.png"]


def test_folders_are_listed_sorted_and_keep_their_sub_paths(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "sub/c.png"):
        _png(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    listed = [(p.relative_to(tmp_path).as_posix(), s.as_posix()) for p, s in list_images([tmp_path / "in"])]
    assert listed == [("in/a.JPG", "a"), ("in/b.png", "b")]
    deep = [s.as_posix() for _, s in list_images([tmp_path / "in"], recursive=True)]
    assert deep == ["a", "b", "sub/c"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    _png(tmp_path / "empty" / "sub" / "d.png")
    with pytest.raises(DataError, match=r"empty: no images \(.png, .jpg, .jpeg\) in this folder \(sub-folders"):
        list_images([tmp_path / "empty"])
    with pytest.raises(DataError, match="nowhere.png: no such image or folder"):
        list_images([tmp_path / "nowhere.png"])


def test_predict_into_an_existing_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    image = _png(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "w.safetensors"), str(image), "--out", str(afile)]) == 2
    assert _error(capsys) == (f"ctxseg: error: {afile}: --out: {afile} is an existing file; expected a folder "
                              "for the masks (existing or new)\n")
    assert afile.read_text() == "keep me"


# 5. tracebacks turned into errors


def test_eval_out_that_is_a_folder_is_refused_before_evaluating(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "w.safetensors"), "--out", str(tmp_path)]) == 2
    assert _error(capsys) == (f"ctxseg: error: {tmp_path}: --out is a folder; expected the path of a JSON file "
                              "to write\n")
    (tmp_path / "afile").write_text("keep me")
    assert main(["eval", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "afile" / "m.json")]) == 2
    assert f"--out: {tmp_path / 'afile'} is an existing file; expected a folder for the JSON file" in _error(capsys)


def _rewrite_metadata(path, **changes):
    """Rewrite ``path`` with its metadata changed, as a faulty tool would: checksummed anew."""
    tensors = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    meta.update(changes)
    write_tensors(path, tensors, meta)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("ctxseg.spec", "[" * 200_000 + "]" * 200_000, "'ctxseg.spec' is nested too deeply to read"),
    ("ctxseg.plugins", '["ctxseg"]', """'ctxseg.plugins' must be a JSON object {"distribution": "version"}, got"""),
    ("ctxseg.palette", json.dumps([[0, 0, 300]] * 8),
     "'ctxseg.palette' must be a JSON list of [r, g, b] colours, integers in [0, 255], got [[0, 0, 300]"),
    ("ctxseg.classes", "{}", "'ctxseg.classes' must be a non-empty JSON list of class-name strings, got {}"),
])
def test_damaged_weights_metadata_names_the_key(weights, key, value, message):
    _rewrite_metadata(weights, **{key: value})
    with pytest.raises(WeightsError) as info:
        read_weights(weights)
    assert str(info.value).startswith(f"{weights}: corrupt ctxseg metadata: ")
    assert message in str(info.value)


def test_embedded_threads_overflow_is_a_weights_error(weights):
    spec = json.loads(safetensors.safe_open(str(weights), "pt").metadata()["ctxseg.spec"])
    spec["run"]["threads"] = 2**62
    _rewrite_metadata(weights, **{"ctxseg.spec": json.dumps(spec)})
    with pytest.raises(WeightsError, match=r"\(embedded spec\): run: 'threads' must be <= 4096"):
        load_model(weights)


@pytest.mark.parametrize(("table", "message"), [
    ('[[model.context]]\nname = "base.fcn"\nchannels = 4000000',
     "model.context[0]: 'channels' must be a channel count in [0, 65536], got 4000000"),
    ('[model.fusion]\nname = "parsenet.fusion"\ninputs = ["c4", "context"]\nmode = "early"\nprojection = 99999999999',
     "model.fusion: 'projection' must be a channel count in [0, 65536] (0 = none), got 99999999999"),
    ("[data]\nbatch_size = 1000000", "data: 'batch_size' must be <= 4096: 1000000"),
    ("[data]\ncrop_size = 1000000", "data: 'crop_size' must be <= 8192: 1000000"),
    ("[data]\nscale = [1.0, 1e300]", "data: 'scale' must be [a, b] with 0.01 <= a <= b <= 16.0, got [1.0, 1e+300]"),
    ("[data]\nblur_sigma = [1.0, inf]",
     "data.blur_sigma[1]: expected a finite number, got inf"),
    ("[data]\nstd = [0.2, 0.0, 0.2]",
     "data: 'std' must be three numbers in (0, 1] (RGB, images scaled to [0, 1]), got [0.2, 0.0, 0.2]"),
    ("[data]\nmean = [nan, 0.5, 0.5]", "data.mean[0]: expected a finite number, got nan"),
    ("[run]\nseed = 9223372036854775807", "run: 'seed' must be <= 4294967295: 9223372036854775807"),
    ("[run]\nthreads = 1099511627776", "run: 'threads' must be <= 4096: 1099511627776"),
])
def test_implausible_values_are_refused_before_building(tmp_path, table, message, capsys):
    spec = tmp_path / "huge.toml"
    spec.write_text(f'[model.backbone]\nname = "base.resnet"\ndepth = 18\n\n{table}\n')
    assert main(["inspect", str(spec), "--classes", "3"]) == 2
    assert f"ctxseg: error: {spec}: {message}" in _error(capsys)


@pytest.mark.parametrize(("args", "message"), [
    (["--input-size", "0", "0"], "argument --input-size: expected an integer in [1, 4096]"),
    (["--input-size", "-5", "64"], "argument --input-size: expected an integer in [1, 4096]"),
    (["--rf-size", "64", "100000"], "argument --rf-size: expected an integer in [1, 4096]"),
    (["--classes", "-3"],
     "argument --classes: expected an integer in [1, 255] (8-bit masks hold at most 255 classes), got -3"),
])
def test_inspect_refuses_sizes_it_cannot_build(tiny_spec_file, args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(tiny_spec_file), *args])
    assert info.value.code == 2
    assert message in _error(capsys)


def test_eval_refuses_a_negative_boundary_width(weights, capsys):
    assert main(["eval", str(weights), "--metric", "gcn.boundary", "--metric-arg", "width=-1"]) == 2
    assert "--metric gcn.boundary: (top level): 'width' must be >= 1: -1" in _error(capsys)


def test_a_loader_worker_error_keeps_its_own_message(tmp_path):
    root = tmp_path / "data"
    write_classes(root, ["a", "b"], [(0, 0, 0), (255, 255, 255)])
    write_sample(root, "train", "x", torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(8, 8, dtype=torch.long),
                 [(0, 0, 0)] * 2)
    broken = root / "train" / "images" / "x.png"
    broken.write_bytes(b"broken")
    dataset = FolderDataset(FolderDataset.Config(root=str(root)), "train")
    with pytest.raises(DataError) as info:
        next(batches(train_loader(dataset, DataSpec(batch_size=1, workers=1), seed=0)))
    assert str(info.value) == f"{broken}: not a readable image (cannot identify image file '{broken}')"


# 6. a plugin that raises SystemExit when imported


def test_a_plugin_exiting_at_import_is_isolated_and_named(tmp_path, monkeypatch):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = types.SimpleNamespace(name="exiting", value="exiting_plugin",
                                  load=lambda: importlib.import_module("exiting_plugin"),
                                  dist=types.SimpleNamespace(name="ctxseg-exiting", version="0.1"))
    monkeypatch.setattr(discovery.importlib.metadata, "entry_points", lambda group: [entry])
    with pytest.warns(PluginFailure, match="plugin distribution 'ctxseg-exiting' failed to load: SystemExit: 3"):
        registry = Registry(autoload=True)
    assert registry.get("backbone", "base.resnet")  # every other component still works
    sys.modules.pop("exiting_plugin", None)
    with pytest.raises(PluginError, match="'ctxseg-exiting' failed to load: SystemExit: 3"):
        Registry(autoload=True, strict=True)
    exiting = Component("context_head", "x.head", "exiting_plugin:Head", distribution="ctxseg-exiting")
    with pytest.raises(PluginError, match="of plugin distribution 'ctxseg-exiting' cannot be imported from "
                                          "'exiting_plugin:Head': SystemExit: 3"):
        exiting.load()


def test_an_installed_plugin_calling_sys_exit_does_not_end_the_command(tmp_path):
    info = tmp_path / "ctxseg_exiting-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ctxseg-exiting\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ctxseg]\nexiting = ctxseg_exiting_plugin\n")
    (tmp_path / "ctxseg_exiting_plugin.py").write_text("import sys\nsys.exit(0)\n")
    result = subprocess.run([sys.executable, "-m", "ctxseg.cli", "plugins"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=False)
    assert result.returncode == 0
    assert result.stderr == ("ctxseg: warning: plugin distribution 'ctxseg-exiting' failed to load: SystemExit: 0\n")
    assert "base.resnet" in result.stdout


# 7. eval never generates data where a weights file says


def test_eval_names_its_data_and_never_generates_at_an_embedded_root(tmp_path, weights, scenes_root, capsys):
    nowhere = tmp_path / "authors" / "scenes"
    spec = json.loads(safetensors.safe_open(str(weights), "pt").metadata()["ctxseg.spec"])
    spec["data"]["dataset"]["root"] = str(nowhere)
    _rewrite_metadata(weights, **{"ctxseg.spec": json.dumps(spec)})
    assert main(["eval", str(weights), "--quiet"]) == 2
    assert _error(capsys) == (
        f"ctxseg: error: {weights}: its spec reads 'base.context_scenes' data from {nowhere}, which does not "
        "exist here; ctxseg eval does not create data where a weights file says: pass --data-root DIR (the "
        "dataset's folder; context scenes are generated there if it is missing) or --spec SPEC (its [data] table)\n")
    assert not (tmp_path / "authors").exists()
    assert main(["eval", str(weights), "--quiet", "--json", "--data-root", str(scenes_root)]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"ctxseg: evaluating on 'base.context_scenes' data, val split, in {scenes_root}\n"
    assert 0 <= json.loads(captured.out)["mean_iou"] <= 1


# 8. dtypes in the header, palettes shorter than the class list


def test_a_tensor_of_the_wrong_dtype_is_refused(weights):
    tensors = safetensors.torch.load_file(str(weights))
    with safetensors.safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    key = next(k for k in tensors if k.endswith("num_batches_tracked"))
    tensors[key] = tensors[key].double()  # I64 -> F64
    write_tensors(weights, tensors, meta)
    with pytest.raises(WeightsError, match=rf"wrong dtype tensors: {key} \(file F64, model I64\)"):
        load_model(weights)


def test_a_palette_shorter_than_the_classes_is_refused(weights):
    _rewrite_metadata(weights, **{"ctxseg.palette": json.dumps([list(c) for c in PALETTE[:5]])})
    with pytest.raises(WeightsError, match="'ctxseg.palette' has 5 colours for 8 classes; expected one colour per"):
        read_weights(weights)



@pytest.mark.parametrize(("key", "value"), [("ctxseg.param_groups", '[{"lr": 1}]'), ("ctxseg.step", "many"),
                                            ("ctxseg.spec", "[" * 200_000)])
def test_a_damaged_checkpoint_is_a_weights_error(linear_checkpoint, key, value):
    path, model, optimizer = linear_checkpoint
    load_checkpoint(path, model, optimizer, {"a": 1})  # intact, it loads
    _rewrite_metadata(path, **{key: value})
    with pytest.raises(WeightsError, match=rf"^{path}: corrupt checkpoint"):
        load_checkpoint(path, model, optimizer, {"a": 1})
