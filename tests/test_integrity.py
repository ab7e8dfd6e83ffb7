"""Weights and checkpoints prove they are intact (issue 29 point 1): 200 damaged copies of a
weights file, none accepted; files written before checksums still load, with a notice."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
import safetensors.torch

from ctxseg.cli import main
from ctxseg.errors import CtxsegError, WeightsError
from ctxseg.files.checkpoint import load_checkpoint
from ctxseg.files.checksum import KEY
from ctxseg.files.weights import UNCHECKED_FORMAT, read_safetensors
from ctxseg.model.load import load_model

DAMAGED = "tensor data does not match its checksum (damaged after it was written); it cannot be trusted"


def _split(blob: bytes) -> tuple[dict, bytes]:
    """A safetensors file's header (JSON) and tensor data."""
    length = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + length]), blob[8 + length:]


def _join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def _with_header(blob: bytes, change) -> bytes:
    header, data = _split(blob)
    change(header)
    return _join(header, data)


def _tensors(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


def _drop_with_its_bytes(blob: bytes, rng: random.Random) -> bytes:
    """A well-formed file one tensor short: its bytes gone too, the others' offsets moved."""
    header, data = _split(blob)
    dropped = rng.choice(_tensors(header))
    start, end = header.pop(dropped)["data_offsets"]
    for name in _tensors(header):
        offsets = header[name]["data_offsets"]
        if offsets[0] >= end:
            header[name]["data_offsets"] = [offsets[0] - (end - start), offsets[1] - (end - start)]
    return _join(header, data[:start] + data[end:])


def _reshaped(header: dict, rng: random.Random) -> None:
    """A tensor's shape changed: to another of as many elements (layout still valid) or not."""
    name = rng.choice([n for n in _tensors(header) if len(header[n]["shape"]) > 1])
    shape = header[name]["shape"]
    header[name]["shape"] = rng.choice([[shape[0] * shape[1], *shape[2:]], shape[::-1], [*shape[:-1], shape[-1] + 1],
                                        [*shape, 1], [0, *shape[1:]]])


def _retyped(header: dict, rng: random.Random) -> None:
    name = rng.choice(_tensors(header))
    same_size = {"F32": "I32", "I64": "F64", "I32": "F32", "F64": "I64"}
    dtype = header[name]["dtype"]
    header[name]["dtype"] = rng.choice([same_size.get(dtype, "U8"), "F16", "BF16", "U8", "BOOL", "XX"])


def _garbled(header: dict, rng: random.Random) -> None:
    meta = header["__metadata__"]
    key = rng.choice(sorted(meta))
    value = meta[key]
    meta[key] = rng.choice(["", "{", "garbage", value[::-1], value[:len(value) // 2], value.replace("a", "b", 1),
                            json.dumps(value)])


def damaged_copies(blob: bytes, seed: int = 29) -> list[tuple[str, bytes]]:
    """The 200 damaged copies of issue 29, in kinds; the same on every run."""
    rng = random.Random(seed)
    header_length = int.from_bytes(blob[:8], "little")
    data_start = 8 + header_length
    header_text = blob[8:data_start]

    def flipped(position: int) -> bytes:
        damaged = bytearray(blob)
        damaged[position] ^= 1 << rng.randrange(8)
        return bytes(damaged)

    bad_json = [header_text.rstrip()[:-1], header_text + b",", header_text.replace(b'"', b"'", 1), b"\xff" + header_text[1:],
                b"[" + header_text[1:], b"null", b"[]", b'{"a": }', header_text[:len(header_text) // 2],
                header_text.replace(b"}", b"]", 1)]
    meta_keys = sorted(_split(blob)[0]["__metadata__"])
    copies = [
        *(("truncated", blob[:rng.randrange(1, len(blob))]) for _ in range(17)),
        *(("truncated", blob[:n]) for n in (8, data_start, len(blob) - 1)),
        *(("header byte flipped", flipped(rng.randrange(8, data_start))) for _ in range(30)),
        *(("lying header length", n.to_bytes(8, "little") + blob[8:]) for n in (
            0, 1, 2, header_length - 1, header_length + 1, header_length - 8, header_length + 8, len(blob),
            len(blob) + 1, 2**63, 2**64 - 1, rng.randrange(2**32), rng.randrange(header_length),
            rng.randrange(header_length, len(blob)), 100_000_000)),
        *(("bad JSON", len(text).to_bytes(8, "little") + text + blob[data_start:]) for text in bad_json),
        ("metadata removed", _with_header(blob, lambda h: h.pop("__metadata__"))),
        ("metadata removed", _with_header(blob, lambda h: h.update(__metadata__={}))),
        *(("metadata removed", _with_header(blob, lambda h, k=k: h["__metadata__"].pop(k))) for k in meta_keys[:6]),
        *(("metadata garbled", _with_header(blob, lambda h: _garbled(h, rng))) for _ in range(12)),
        *(("shape changed", _with_header(blob, lambda h: _reshaped(h, rng))) for _ in range(15)),
        *(("dtype changed", _with_header(blob, lambda h: _retyped(h, rng))) for _ in range(10)),
        *(("tensor dropped", _with_header(blob, lambda h: h.pop(rng.choice(_tensors(h))))) for _ in range(5)),
        *(("tensor dropped", _drop_with_its_bytes(blob, rng)) for _ in range(5)),
        ("empty", b""),
        *(("random bytes", rng.randbytes(rng.randrange(1, 2 * len(blob)))) for _ in range(10)),
    ]
    copies += [("tensor data byte flipped", flipped(rng.randrange(data_start, len(blob))))
               for _ in range(200 - len(copies))]
    return copies


def _outcome(path) -> str:
    """What loading ``path`` as ``ctxseg inspect`` does gives: "accepted", a ctxseg error's message, or another
    exception's type."""
    try:
        load_model(path)
    except CtxsegError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - what the test counts
        return f"traceback: {type(error).__name__}: {error}"
    return "accepted"


def test_none_of_200_damaged_copies_is_accepted(tiny_weights, tmp_path):
    assert _outcome(tiny_weights) == "accepted"
    copies = damaged_copies(tiny_weights.read_bytes())
    assert len(copies) == 200 and Counter(kind for kind, _ in copies)["tensor data byte flipped"] == 59
    outcomes = []
    for index, (kind, blob) in enumerate(copies):
        path = tmp_path / f"damaged-{index:03}.safetensors"
        path.write_bytes(blob)
        outcomes.append((kind, _outcome(path), path))
    assert [(kind, outcome) for kind, outcome, _ in outcomes if outcome == "accepted"] == []
    assert [(kind, outcome) for kind, outcome, _ in outcomes if outcome.startswith("traceback")] == []
    assert all(outcome.startswith(f"{path}: ") for _, outcome, path in outcomes)
    assert all(outcome == f"{path}: {DAMAGED}" for kind, outcome, path in outcomes if kind == "tensor data byte flipped")


def test_damaged_copies_through_the_command_line(tiny_weights, tiny_plugin, tmp_path):
    """Damaged copies given to ``ctxseg inspect`` in its own process: one line, exit 2. The last of their kinds:
    a byte flipped in the tensor data, and a well-formed file without one of its tensors."""
    copies = damaged_copies(tiny_weights.read_bytes())
    sample = {kind: blob for kind, blob in copies if kind in ("tensor data byte flipped", "tensor dropped")}
    runs = {}
    for kind, blob in sample.items():
        path = tmp_path / f"{kind.replace(' ', '-')}.safetensors"
        path.write_bytes(blob)
        runs[kind] = path, subprocess.Popen([sys.executable, "-m", "ctxseg.cli", "inspect", str(path)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tiny_plugin)
    for kind, (path, run) in runs.items():
        out, err = run.communicate(timeout=120)
        assert (run.returncode, out) == (2, ""), (kind, err)
        assert err.startswith(f"ctxseg: error: {path}: ") and err.count("\n") == 1, (kind, err)
        if kind == "tensor data byte flipped":
            assert err == f"ctxseg: error: {path}: {DAMAGED}\n"


def test_a_file_written_before_checksums_loads_with_a_notice(tiny_weights, capsys):
    tensors, meta = read_safetensors(tiny_weights)
    del meta[KEY]
    safetensors.torch.save_file(tensors, str(tiny_weights), metadata={**meta, "ctxseg.format": UNCHECKED_FORMAT})
    with pytest.warns(UserWarning) as notices:
        load_model(tiny_weights)
    assert [str(n.message) for n in notices] == [
        f"{tiny_weights}: written before ctxseg checksummed its files, so damage to its tensors cannot be detected"]
    assert main(["inspect", str(tiny_weights), "--input-size", "32", "32"]) == 0
    err = capsys.readouterr().err
    assert err == (f"ctxseg: warning: {tiny_weights}: written before ctxseg checksummed its files, so damage to "
                   "its tensors cannot be detected\n")


def test_a_current_file_without_its_checksum_is_refused(tiny_weights):
    tensors, meta = read_safetensors(tiny_weights)
    del meta[KEY]
    safetensors.torch.save_file(tensors, str(tiny_weights), metadata=meta)
    with pytest.raises(WeightsError, match=f"^{tiny_weights}: corrupt ctxseg metadata: 'ctxseg.checksum' is "
                                           r"missing \(damaged after it was written\); it cannot be trusted$"):
        load_model(tiny_weights)


def test_a_damaged_checkpoint_is_not_resumed(linear_checkpoint):
    path, model, optimizer = linear_checkpoint
    assert load_checkpoint(path, model, optimizer, {"a": 1}).step == 3
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x10  # inside the tensor data
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match=f"^{re.escape(f'{path}: {DAMAGED}')}$"):
        load_checkpoint(path, model, optimizer, {"a": 1})
