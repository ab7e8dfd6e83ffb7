"""Faults of the machine named, not traced (issue 29 point 2): no space left, permission denied, a
read-only file system, a file vanishing while read and Ctrl-C during a checkpoint each end in one
line naming the file and what is intact. Each is met for real where this machine allows it: a
small tmpfs mounted by the test (as root), a folder without write permission, a signal to a child."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import ctxseg.engine.train
from ctxseg.cli import main
from ctxseg.engine.inference import Inference
from ctxseg.errors import WriteError
from ctxseg.files.checkpoint import checkpoint_step
from ctxseg.files.checksum import verify
from ctxseg.files.weights import read_safetensors, save_weights
from ctxseg.model.load import load_model

TINY_TRAINING = """
[model.backbone]
name = "tiny.backbone"

[[model.context]]
name = "base.fcn"
channels = 4

[data]
batch_size = 2

[data.dataset]
name = "base.context_scenes"
root = "{root}"
image_size = 48
train_size = 6
val_size = 3

[run]
steps = {steps}
eval_every = 1
device = "cpu"
"""


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(size)``: a tmpfs of ``size`` (``mount -o size=``) mounted in ``tmp_path``, unmounted after
    the test; ``small_fs(size, read_only=True)`` mounts it read-only. Skipped where mounting is not allowed."""
    mounted = []

    def mount(size: str, *, read_only: bool = False):
        if os.geteuid() != 0:
            pytest.skip("mounting a small file system needs root")
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: a mapped file may close late


def _without_permission_override() -> list[str]:
    """A command prefix under which a process meets file permissions as a user's does: root's
    own override (CAP_DAC_OVERRIDE) dropped by setpriv, nothing for anyone else."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], check=False).returncode:
        pytest.skip("running as root, and setpriv cannot drop the permission override here")
    return prefix


def _spec(tmp_path, root, steps: int):
    path = tmp_path / f"tiny-{steps}.toml"
    path.write_text(TINY_TRAINING.format(root=root, steps=steps))
    return path


def _intact(checkpoint) -> int:
    """The step of a checkpoint that matches its checksum."""
    tensors, meta = read_safetensors(checkpoint)
    verify(checkpoint, tensors, meta, required=True)
    return checkpoint_step(checkpoint)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def _images(folder, count: int, side: int = 32):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(folder / f"img{index:02}.png")
    return folder


def test_predict_on_a_full_disk_says_which_masks_were_written(tiny_weights, small_fs, tmp_path, capsys):
    out = small_fs("64k")
    images = _images(tmp_path / "in", 12)
    code = main(["predict", str(tiny_weights), str(images), "--out", str(out), "--quiet", "--precision", "fp32"])
    err = capsys.readouterr().err
    said = re.fullmatch(rf"ctxseg: error: {out}/img(\d\d)(_overlay)?\.png: no space left on device; (\d+) of the 12 "
                        rf"images' masks were written whole \(up to {out}/img(\d\d)\.png\), the rest were not; free "
                        r"space and run again\n", err)
    assert code == 2 and said, err
    failed, written, last = int(said[1]), int(said[3]), int(said[4])
    assert 0 < written == failed == last + 1 < 12
    for index in range(written):
        for name in (f"img{index:02}.png", f"img{index:02}_overlay.png"):
            with Image.open(out / name) as image:
                image.load()  # whole
    assert not (out / f"img{failed:02}_overlay.png").exists() and _leftovers(out) == []


def test_train_on_a_full_disk_keeps_its_last_checkpoint_and_resumes(tiny_plugin, small_fs, scenes_root, tmp_path,
                                                                   capsys):
    probe = tmp_path / "probe"
    assert main(["train", str(_spec(tmp_path, scenes_root, 1)), "--out", str(probe), "--quiet"]) == 0
    page = os.sysconf("SC_PAGE_SIZE")  # what a tmpfs allots
    pages = -(-(probe / "checkpoint.safetensors").stat().st_size * 11 // 10 // page)  # a checkpoint's, and 10 %
    disk = small_fs("4m")
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - (pages + 1) * page))  # room for one checkpoint, not for two
    spec = _spec(tmp_path, scenes_root, 4)
    out = disk / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"ctxseg: error: {out / 'checkpoint.safetensors'}: no space left on device; the last checkpoint, step 1, is "
        "intact; free space and run again with --resume\n")
    assert _intact(out / "checkpoint.safetensors") == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors"]
    (disk / "filler").unlink()  # space freed
    assert main(["train", str(spec), "--out", str(out), "--quiet", "--resume"]) == 0
    assert _intact(out / "checkpoint.safetensors") == 4 and (out / "model.safetensors").exists()


INTERRUPTED = """
import os, sys, time
import safetensors.torch
from ctxseg.cli import main
from ctxseg.engine.inference import Inference

save_file = safetensors.torch.save_file
calls = []

def slow_save_file(tensors, path, metadata=None):
    # the second checkpoint's write holds on, its file half made, until the parent's SIGINT arrives
    save_file(tensors, path, metadata=metadata)
    calls.append(path)
    if len(calls) == 2:
        open(sys.argv[2], "w").close()
        time.sleep(60)

safetensors.torch.save_file = slow_save_file
sys.exit(main(["train", sys.argv[1], "--out", sys.argv[3], "--quiet"]))
"""


def test_ctrl_c_during_a_checkpoint_keeps_the_last_one(tiny_plugin, scenes_root, tmp_path):
    out, writing = tmp_path / "run", tmp_path / "writing"
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(_spec(tmp_path, scenes_root, 4)), str(writing),
                              str(out)], env=tiny_plugin, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not writing.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writing.exists(), child.communicate()[1]
    assert _leftovers(out)  # the second checkpoint is half made
    child.send_signal(signal.SIGINT)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 130
    assert err == (f"ctxseg: interrupted; {out / 'checkpoint.safetensors'} was not written; the last checkpoint, "
                   "step 1, is intact; run again with --resume\n")
    assert _intact(out / "checkpoint.safetensors") == 1 and _leftovers(out) == []


def test_training_data_vanishing_says_what_is_intact(tiny_plugin, tmp_path, monkeypatch, capsys):
    root = tmp_path / "scenes"  # its own data: one of its images is deleted while the run reads them
    save_checkpoint = ctxseg.engine.train.save_checkpoint
    gone = []

    def save_and_delete(path, *args, **kwargs):
        save_checkpoint(path, *args, **kwargs)
        if not gone:
            gone.append(min(root.glob("train/images/*.png")))
            gone[0].unlink()

    monkeypatch.setattr(ctxseg.engine.train, "save_checkpoint", save_and_delete)
    out = tmp_path / "run"
    assert main(["train", str(_spec(tmp_path, root, 6)), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: {gone[0]}: no such image; the last checkpoint, step "
                                       f"{checkpoint_step(out / 'checkpoint.safetensors')}, is intact; run again "
                                       "with --resume\n")


@pytest.mark.parametrize("command", ["train", "predict", "eval", "export", "convert"])
def test_a_read_only_file_system_is_named_before_the_work(tiny_weights, small_fs, scenes_root, tmp_path, command,
                                                          capsys):
    folder = small_fs("1m", read_only=True)
    target, args = {
        "train": (folder / "checkpoint.safetensors", [str(_spec(tmp_path, scenes_root, 1)), "--out", str(folder)]),
        "predict": (folder / "img00.png", [str(tiny_weights), str(_images(tmp_path / "in", 1)), "--out", str(folder)]),
        "eval": (folder / "metrics.json", [str(tiny_weights), "--out", str(folder / "metrics.json")]),
        "export": (folder / "model.onnx", [str(tiny_weights), "--out", str(folder / "model.onnx")]),
        "convert": (folder / "w.safetensors", [str(tiny_weights), "--to", str(folder / "w.safetensors")]),
    }[command]
    assert main([command, *args]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: {target}: read-only file system; nothing was written; make "
                                       f"{folder} writable and run again\n")


def test_predict_goes_on_past_an_image_that_vanishes(tiny_weights, tmp_path, monkeypatch, capsys):
    """An input deleted after predict listed it: named, and the others labelled (exit 1, as any unreadable image)."""
    images = _images(tmp_path / "in", 3)
    predict = Inference.predict

    def predict_and_delete(self, image):
        (images / "img01.png").unlink(missing_ok=True)
        return predict(self, image)

    monkeypatch.setattr(Inference, "predict", predict_and_delete)
    out = tmp_path / "out"
    assert main(["predict", str(tiny_weights), str(images), "--out", str(out), "--quiet", "--precision", "fp32"]) == 1
    assert capsys.readouterr().err == (f"ctxseg: error: {images / 'img01.png'}: no such image\n"
                                       "ctxseg: 1 of 3 images failed (reported above); the others were written\n")
    assert sorted(p.name for p in out.glob("img??.png")) == ["img00.png", "img02.png"]


def test_a_folder_without_write_permission_is_named(tiny_weights, tiny_plugin, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    target = locked / "w.safetensors"
    done = subprocess.run([*_without_permission_override(), sys.executable, "-m", "ctxseg.cli", "convert",
                           str(tiny_weights), "--to", str(target)], capture_output=True, text=True, env=tiny_plugin,
                          check=False)
    assert done.returncode == 2
    assert done.stderr == (f"ctxseg: error: {target}: permission denied; nothing was written; make {locked} writable "
                           "and run again\n")


def test_a_write_that_fails_leaves_the_file_there_and_says_so(tiny_weights, small_fs, tmp_path):
    """The writer's own message, for a fault met in the middle of a write (convert's, export's)."""
    model, spec, info = load_model(tiny_weights)
    folder = small_fs("16k")
    target = folder / "w.safetensors"
    target.write_bytes(b"an earlier file")
    (folder / "filler").write_bytes(b"\0" * (os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - 4096))
    with pytest.raises(WriteError) as error:
        save_weights(target, model, spec.to_dict(), info.classes, info.palette)
    assert str(error.value) == (f"{target}: no space left on device; it was not written; the file already there is "
                                "unchanged; free space and run again")
    assert target.read_bytes() == b"an earlier file" and _leftovers(folder) == []


def test_an_os_error_elsewhere_is_one_line(monkeypatch, tmp_path, capsys):
    """A fault met outside ctxseg's readers and writers (a folder gone while listed, say) is one line too."""
    from ctxseg.cli import commands

    def vanished(args):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone"))

    monkeypatch.setattr(commands, "run_inspect", vanished)
    assert main(["inspect", "x.toml"]) == 2
    assert capsys.readouterr().err == f"ctxseg: error: {tmp_path / 'gone'}: no such file or directory\n"
