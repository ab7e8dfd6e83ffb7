"""Files ctxseg writes: the mode open() would give under the umask, and no stale temporaries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from ctxseg.files import atomic
from ctxseg.files.atomic import atomic_path
from ctxseg.files.weights import read_safetensors, write_tensors


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_mode_open_gives(tmp_path, umask):
    with open(tmp_path / "plain", "w"):
        pass
    with atomic_path(tmp_path / "metrics.json") as tmp:
        tmp.write_text("{}")
    write_tensors(tmp_path / "model.safetensors", {"w": torch.zeros(2)}, {})
    expected = 0o666 & ~umask
    assert _mode(tmp_path / "plain") == expected
    assert _mode(tmp_path / "metrics.json") == expected
    assert _mode(tmp_path / "model.safetensors") == expected


KILLED_WRITE = """
import os, signal, sys, torch
from ctxseg.files import atomic
from ctxseg.files.atomic import atomic_path
import safetensors.torch
with atomic_path(sys.argv[1]) as tmp:
    safetensors.torch.save_file({"w": torch.ones(1000)}, str(tmp))
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of a checkpoint write
"""


def test_a_killed_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    checkpoint = tmp_path / "checkpoint.safetensors"
    write_tensors(checkpoint, {"w": torch.zeros(3)}, {"step": "1"})
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(checkpoint)])
    assert killed.returncode == -9
    stale = list(tmp_path.glob(".checkpoint.safetensors.*.tmp"))
    assert len(stale) == 1
    assert read_safetensors(checkpoint)[1]["step"] == "1"  # never half-written
    with pytest.warns(UserWarning, match=f"removed {stale[0]}, left by an interrupted write of checkpoint.safetensors"):
        write_tensors(checkpoint, {"w": torch.zeros(3)}, {"step": "2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]
    assert read_safetensors(checkpoint)[1]["step"] == "2"


def test_a_running_writers_temporary_folder_is_left_to_it(tmp_path):
    """Two processes writing one file (torchrun ranks, two commands exporting one cache file): the
    second never removes the first's folder while it runs, only once it has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".m.json.{atomic._HOST}-{child.pid}.abcd1234.tmp"
        live.mkdir()
        with atomic_path(tmp_path / "m.json") as tmp:
            tmp.write_text("{}")
        assert live.exists()
    finally:
        child.kill()
        child.wait()
    with pytest.warns(UserWarning, match="left by an interrupted write of m.json"), atomic_path(tmp_path / "m.json") as tmp:
        tmp.write_text("{}")
    assert not live.exists()
    other = tmp_path / ".m.json.elsewhere-1.abcd1234.tmp"  # another machine sharing the folder
    other.mkdir()
    with atomic_path(tmp_path / "m.json") as tmp:
        tmp.write_text("{}")
    assert other.exists()
