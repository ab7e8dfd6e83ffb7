"""Fuzzing what a user hands ctxseg (issue 29 point 4): mutated example specs and mutated weights
files, through the entry points a user meets, give a ctxseg error or succeed, never another exception.

The loading functions take the bulk in-process; ``ctxseg inspect`` in its own process takes a
sample. Examples are derandomized (the same on every run, as the contract kit's). By default 50
of each kind run in-process and one through the command line, in about 5 s;
``CTXSEG_FUZZ_EXAMPLES=5000`` runs 5000 of each in-process and a hundredth as many through the
command line.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ctxseg.errors import CtxsegError
from ctxseg.files.weights import read_safetensors, write_tensors
from ctxseg.model.load import load_model
from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).parents[1] / "examples"
SPECS = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*.toml") if "thirdparty" not in p.parts)
BULK = int(os.environ.get("CTXSEG_FUZZ_EXAMPLES", "50"))
SAMPLE = max(1, BULK // 100)


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    report_multiple_bugs=False, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


SCALARS = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=12),
                    st.sampled_from(["", "\0", "a\0b", "..", "/", "~", ".", "base.resnet", "base.fcn", "c4", "slide"]))
TOML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=6)


def _slots(value, found: list) -> list:
    """Every ``(container, key)`` of a TOML value, at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in list(items):
        found.append((value, key))
        _slots(item, found)
    return found


@st.composite
def mutated_specs(draw) -> tuple[Path, bytes]:
    """An example spec (its relative path) with keys replaced, removed or added, then maybe bytes changed."""
    name = draw(st.sampled_from(SPECS))
    table = tomllib.loads((EXAMPLES / name).read_text())
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(table, [])
        action = draw(st.sampled_from(["replace", "remove", "add"])) if slots else "add"
        container, key = draw(st.sampled_from(slots)) if slots else (table, None)
        if action == "replace":
            container[key] = draw(TOML_VALUES)
        elif action == "remove":
            container.pop(key)
        else:
            parent = container[key] if key is not None and isinstance(container[key], dict) else table
            parent[draw(st.text(max_size=8))] = draw(TOML_VALUES)
    text = bytearray(tomli_w.dumps(table).encode())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text[at:at + draw(st.integers(0, 2))] = draw(st.binary(max_size=2))
    return name, bytes(text)


@pytest.fixture(scope="module")
def examples_copy(tmp_path_factory) -> Path:
    """The example specs, copied: a mutated spec is written beside its original, where its ``extends`` points."""
    copy = tmp_path_factory.mktemp("examples")
    for name in SPECS:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / name, copy / name)
    return copy


def _fuzzed(copy: Path, name: Path, text: bytes) -> Path:
    path = (copy / name).with_name("fuzzed.toml")
    path.write_bytes(text)
    return path


def test_mutated_specs_load_or_are_spec_errors(examples_copy):
    @_settings(BULK)
    @given(mutated_specs())
    def loads(mutated):
        try:
            load_spec(_fuzzed(examples_copy, *mutated)).to_toml()  # what ctxseg inspect --resolved prints
        except CtxsegError:
            pass

    loads()


def _ctxseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctxseg.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def _an_answer(done: subprocess.CompletedProcess) -> None:
    """Success, or a ctxseg error (exit 2, its lines only): never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0 or (done.returncode == 2 and done.stderr.startswith("ctxseg: error: ")), done.stderr


def test_mutated_specs_through_the_command_line(examples_copy):
    @_settings(SAMPLE)
    @given(mutated_specs())
    def inspects(mutated):
        _an_answer(_ctxseg("inspect", "--resolved", str(_fuzzed(examples_copy, *mutated))))

    inspects()


HEADER_DTYPES = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "", "f32"])


@st.composite
def mutated_weights(draw, blob: bytes) -> tuple[str, bytes]:
    """A weights file damaged (bytes changed, cut, or its header rewritten without a new checksum), or
    rewritten by a faulty writer (its metadata changed and checksummed anew: ``"rewrite"`` and the metadata)."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    kind = draw(st.sampled_from(["bytes", "cut", "header", "rewrite"]))
    if kind == "bytes":
        damaged = bytearray(blob)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(damaged) - 1))
            damaged[at:at + draw(st.integers(0, 2))] = draw(st.binary(max_size=2))
        return kind, bytes(damaged)
    if kind == "cut":
        return kind, blob[:draw(st.integers(0, len(blob) - 1))]
    meta = header["__metadata__"]
    key = draw(st.sampled_from(sorted(meta)))
    if draw(st.booleans()):
        meta[key] = draw(st.one_of(st.text(max_size=20), TOML_VALUES.map(json.dumps)))
    else:
        del meta[key]
    if kind == "rewrite":
        return kind, json.dumps(meta).encode()
    tensor = header[draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))]
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "metadata only"]))
    if field == "dtype":
        tensor["dtype"] = draw(HEADER_DTYPES)
    elif field != "metadata only":
        tensor[field] = draw(st.lists(st.integers(-2, 2**40), max_size=4))
    text = json.dumps(header).encode()
    return kind, len(text).to_bytes(8, "little") + text + blob[8 + length:]


def _written(tmp_path: Path, original: Path, mutated: tuple[str, bytes], counter) -> Path:
    """The mutated file, under a name of its own (a file read before may still be mapped)."""
    path = tmp_path / f"fuzzed-{next(counter)}.safetensors"
    kind, content = mutated
    if kind == "rewrite":
        write_tensors(path, read_safetensors(original)[0], json.loads(content))
    else:
        path.write_bytes(content)
    return path


def test_mutated_weights_load_or_are_weights_errors(tiny_weights, tmp_path):
    counter = itertools.count()

    @_settings(BULK)
    @given(mutated_weights(tiny_weights.read_bytes()))
    def loads(mutated):
        try:
            load_model(_written(tmp_path, tiny_weights, mutated, counter))
        except CtxsegError:
            pass

    loads()


def test_mutated_weights_through_the_command_line(tiny_weights, tiny_plugin, tmp_path):
    counter = itertools.count()

    @_settings(SAMPLE)
    @given(mutated_weights(tiny_weights.read_bytes()))
    def inspects(mutated):
        _an_answer(_ctxseg("inspect", str(_written(tmp_path, tiny_weights, mutated, counter)), env=tiny_plugin))

    inspects()
