"""Every path in a spec is checked as a path (issue 29 point 3): a NUL byte, a folder where a file
is expected, a file where a folder is: a SpecError naming the key, never ``ValueError: embedded null byte``."""

from __future__ import annotations

import pytest

from ctxseg.cli import main
from ctxseg.errors import SpecError
from ctxseg.spec import load_spec

BACKBONE = '[model.backbone]\nname = "base.resnet"\ndepth = 18\n'


@pytest.fixture
def places(tmp_path):
    """``{file}`` and ``{folder}``: a file and a folder that exist."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.safetensors").write_bytes(b"")
    return {"file": tmp_path / "file.safetensors", "folder": tmp_path / "folder"}


@pytest.mark.parametrize(("table", "message"), [
    (f'{BACKBONE}[model]\ninit = "a\\u0000b"',
     r"model.init: expected a path, got 'a\x00b', which holds a NUL byte (no file system takes one)"),
    (f'{BACKBONE}[model]\ninit = "{{folder}}"', "model.init: expected a file, got '{folder}', which is a folder"),
    ('[model.backbone]\nname = "base.resnet"\npretrained = "{folder}"',
     "model.backbone.pretrained: expected a file, got '{folder}', which is a folder"),
    ('[model.backbone]\nname = "base.vgg16"\npretrained = "\\u0000"',
     r"model.backbone.pretrained: expected a path, got '\x00', which holds a NUL byte (no file system takes one)"),
    (f'{BACKBONE}[data.dataset]\nname = "base.context_scenes"\nroot = "{{file}}"',
     "data.dataset.root: expected a folder, got '{file}', which is a file"),
    (f'{BACKBONE}[data.dataset]\nname = "base.folder"\nroot = "x\\u0000"',
     r"data.dataset.root: expected a path, got 'x\x00', which holds a NUL byte (no file system takes one)"),
    (f'{BACKBONE}[data.dataset]\nname = "datasets.voc2012"\nroot = "{{file}}"',
     "data.dataset.root: expected a folder, got '{file}', which is a file"),
    (f'{BACKBONE}[data.dataset]\nname = "datasets.voc2012"\nroot = "{{folder}}"\nsbd = "{{file}}"',
     "data.dataset.sbd: expected a folder, got '{file}', which is a file"),
    (f'{BACKBONE}[data.dataset]\nname = "datasets.siftflow"\nroot = "{{folder}}"\ntest_list = "{{folder}}"',
     "data.dataset.test_list: expected a file, got '{folder}', which is a folder"),
    ('[model.backbone]\nname = "dilation.frontend"\npretrained = "{folder}"',
     "model.backbone.pretrained: expected a file, got '{folder}', which is a folder"),
])
def test_a_path_of_the_wrong_kind_is_a_spec_error_naming_its_key(tmp_path, places, table, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(table.format(**places))
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert f"{spec}: {message.format(**places)}" in str(error.value).splitlines()


@pytest.mark.parametrize(("extends", "message"), [
    ("\\u0000", r"extends: expected a path, got '\x00', which holds a NUL byte (no file system takes one)"),
    ("folder", "extends 'folder': a folder, expected a spec file ({spec} -> {folder})"),
])
def test_extends_is_checked_as_a_path_on_the_command_line(tmp_path, places, extends, message, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'extends = "{extends}"\n')
    assert main(["inspect", str(spec)]) == 2
    assert capsys.readouterr().err == f"ctxseg: error: {spec}: {message.format(spec=spec, **places)}\n"


def test_a_folder_given_as_the_spec_is_named(places, capsys):
    assert main(["inspect", str(places["folder"])]) == 2
    assert capsys.readouterr().err == f"ctxseg: error: {places['folder']}: a folder, expected a spec file\n"


def test_paths_that_do_not_exist_are_left_to_their_readers(tmp_path):
    """A root may be generated there, a weights file's spec may name another machine's folders."""
    spec = tmp_path / "spec.toml"
    spec.write_text(f'{BACKBONE}[model]\ninit = "nowhere.safetensors"\n[data.dataset]\nname = "base.context_scenes"\n'
                    f'root = "{tmp_path / "not yet"}"\n')
    assert load_spec(spec).model.init == "nowhere.safetensors"
