"""Resumable training state in a safetensors file: model, optimizer, step, RNG, history.

Tensors are stored under ``model/<name>``, ``optimizer/<param index>/<key>``,
``rng/<device>`` (``rng/<device>/<rank>`` for the other processes of a distributed run) and
``callbacks/<spec key>/<key>``; everything else (step, number of processes, optimizer
hyper-parameters, the resolved spec, the metric history, the callbacks' other state) is JSON
in the metadata, with the file's checksum
(:mod:`ctxseg.files.checksum`, verified on resume). No pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import safetensors
import torch
from torch import nn

from ctxseg.errors import CtxsegError, WeightsError
from ctxseg.files import checksum
from ctxseg.files.weights import load_state, read_safetensors, write_tensors

__all__ = ["TrainingState", "checkpoint_step", "load_checkpoint", "rng_key", "save_checkpoint", "state_problem"]

FORMAT = "ctxseg.checkpoint/2"
UNCHECKED_FORMAT = "ctxseg.checkpoint/1"
"""The format before checksums: still resumed from, with a warning."""


@attrs.define
class TrainingState:
    step: int
    history: list[dict[str, Any]]
    world_size: int = 1
    """Processes the run trains on: a distributed run resumes on as many."""
    callbacks: dict[str, dict[str, Any]] = attrs.Factory(dict)
    """Each callback's ``state_dict``, by its spec key (``run.callbacks[0]``)."""


def state_problem(state: Any) -> str | None:
    """Why a callback's ``state_dict`` cannot be stored in a checkpoint, or None: it must be a
    table whose values are tensors, or JSON values that read back equal (lists, not tuples)."""
    if not (isinstance(state, dict) and all(isinstance(key, str) for key in state)):
        return f"it is {type(state).__name__}, not a table with string keys"
    values = {key: value for key, value in state.items() if not isinstance(value, torch.Tensor)}
    try:
        if json.loads(json.dumps(values, allow_nan=False)) == values:
            return None
    except (TypeError, ValueError, RecursionError) as error:
        return f"its values are not JSON values ({error})"
    return "its values do not read back equal from JSON (a tuple becomes a list: use lists)"


def rng_key(device: str, rank: int) -> str:
    """Where process ``rank``'s random state for ``device`` ("cpu", "cuda") is stored."""
    return f"rng/{device}" if rank == 0 else f"rng/{device}/{rank}"


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainingState, spec: dict[str, Any], rng: dict[str, torch.Tensor]) -> None:
    """Write everything needed to continue training at ``state.step``, atomically.
    ``rng`` holds every process's random states, under :func:`rng_key`'s names."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in optim["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors.update(rng)
    callbacks: dict[str, dict[str, Any]] = {}
    for owner, entries in state.callbacks.items():
        callbacks[owner] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"callbacks/{owner}/{key}"] = value
            else:
                callbacks[owner][key] = value
    metadata = {
        "ctxseg.format": FORMAT,
        "ctxseg.spec": json.dumps(spec),
        "ctxseg.step": str(state.step),
        "ctxseg.world_size": str(state.world_size),
        "ctxseg.history": json.dumps(state.history),
        "ctxseg.param_groups": json.dumps(optim["param_groups"]),
        "ctxseg.optimizer_scalars": json.dumps(scalars),
        "ctxseg.callbacks": json.dumps(callbacks),
    }
    write_tensors(path, tensors, metadata)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    spec: dict[str, Any], *, rank: int = 0, world_size: int = 1,
                    resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> TrainingState:
    """Restore model, optimizer and process ``rank``'s RNG from ``path``; the run's spec,
    and its number of processes, must be the ones saved. ``resolve`` reads the saved spec as
    the run's was read (defaults of keys added since it was saved filled in)."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    if meta.get("ctxseg.format") not in (FORMAT, UNCHECKED_FORMAT):
        raise WeightsError(f"{path}: not a ctxseg checkpoint (expected format {FORMAT!r})")
    checksum.verify(path, tensors, meta, required=meta["ctxseg.format"] == FORMAT)
    try:
        saved = json.loads(meta["ctxseg.spec"])
    except (KeyError, ValueError, RecursionError):
        raise WeightsError(f"{path}: corrupt checkpoint: metadata 'ctxseg.spec' is missing or unreadable") from None
    if resolve is not None:
        try:
            saved = json.loads(json.dumps(resolve(saved)))
        except CtxsegError:
            pass  # a spec that no longer reads is a different one
    if saved != json.loads(json.dumps(spec)):
        raise WeightsError(f"{path}: was written by a run with a different spec; "
                           "resume with the same spec or train into a new --out directory")
    if (saved_size := meta.get("ctxseg.world_size", "1")) != str(world_size):
        how = "in one process, without torchrun" if saved_size == "1" else f"on {saved_size} processes (torchrun)"
        raise WeightsError(f"{path}: was written by a run on {saved_size} process(es), this one has {world_size}; "
                           f"resume it {how}: its data shards and random states are per process")
    load_state(model, {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}, str(path))
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        for index, entries in json.loads(meta["ctxseg.optimizer_scalars"]).items():
            state.setdefault(int(index), {}).update(entries)
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["ctxseg.param_groups"])})
        torch.set_rng_state(tensors[rng_key("cpu", rank)])
        if rng_key("cuda", rank) in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[rng_key("cuda", rank)])
        callbacks: dict[str, dict[str, Any]] = json.loads(meta.get("ctxseg.callbacks", "{}"))
        for key, value in tensors.items():
            if key.startswith("callbacks/"):
                _, owner, name = key.split("/", 2)
                callbacks.setdefault(owner, {})[name] = value
        return TrainingState(step=int(meta["ctxseg.step"]), history=json.loads(meta["ctxseg.history"]),
                             world_size=int(meta.get("ctxseg.world_size", "1")), callbacks=callbacks)
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, RecursionError) as error:
        raise WeightsError(f"{path}: corrupt checkpoint ({type(error).__name__}: {error}); train without "
                           "--resume (--overwrite) to start the run again") from None


def checkpoint_step(path: str | Path) -> int | None:
    """The step of the checkpoint ``path``, read from its header alone; None if there is none to read.

    What a stopped run reports as intact: ctxseg writes checkpoints whole or not at all.
    """
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["ctxseg.step"])
    except Exception:  # noqa: BLE001 - absent, unreadable or not a checkpoint: none to report
        return None
