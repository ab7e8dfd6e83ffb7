"""Rebuilding a model from a weights file alone: its embedded spec, then its tensors.

Only the inference graph's components must be installed: the model's parts (backbone,
context heads, fusion, auxiliary heads, whose tensors the file holds) and ``run.passes``.
A training-only component (loss, optimizer, schedule) or the dataset whose plugin is absent
is a warning, and the spec keeps ctxseg's default in its place; an absent metric or callback
is a warning, and is left out.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ctxseg.errors import CtxsegError, WeightsError
from ctxseg.files.weights import WeightsInfo, load_state, plugin_versions, reading_weights
from ctxseg.model.undrawn import undrawn_model
from ctxseg.registry import Kind, default_registry
from ctxseg.spec import Spec, spec_from_dict

__all__ = ["embedded_spec", "load_model"]


def load_model(path: str | Path, *, num_classes: int | None = None):
    """Rebuild the model a weights file describes and load its weights.

    :param num_classes: if given, the file's class count must equal it.
    :return: ``(model in eval mode, Spec, WeightsInfo)``.
    """
    with reading_weights(path) as (tensors, info):  # the checksum is verified while the model is built
        if num_classes is not None and num_classes != len(info.classes):
            raise WeightsError(f"{path}: trained for {len(info.classes)} classes ({', '.join(info.classes)}), "
                               f"but {num_classes} are expected")
        spec = embedded_spec(info, path)
        # undrawn: the file overwrites every value
        model = undrawn_model(spec.model, len(info.classes), f"{path} (embedded spec)")
    load_state(model, tensors, str(path))
    return model.eval(), spec, info


def embedded_spec(info: WeightsInfo, path: str | Path) -> Spec:
    """The spec a weights file (or an ONNX file ``ctxseg export`` wrote) embeds, as far as the
    installed plugins read it; warnings for plugins installed in other versions than saved."""
    installed = plugin_versions()
    for dist, version in info.plugins.items():
        if dist in installed and installed[dist] != version:
            warnings.warn(f"{path}: saved with {dist} {version}, installed: {installed[dist]}", stacklevel=3)
    try:
        return spec_from_dict(_installed_only(info, path), source=f"{path} (embedded spec)")
    except CtxsegError as error:
        raise WeightsError(str(error)) from None


def _installed_only(info: WeightsInfo, path: str | Path) -> dict[str, Any]:
    """The embedded spec without the training-only components whose plugin is absent (a warning
    each); a WeightsError naming the plugin to install if an inference component's is absent."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in info.spec.items()}
    model, run = data.get("model", {}), data.get("run", {})
    needed = [("model.backbone", Kind.BACKBONE, model.get("backbone")),
              *((f"model.context[{i}]", Kind.CONTEXT_HEAD, t) for i, t in enumerate(model.get("context", []))),
              ("model.fusion", Kind.FUSION, model.get("fusion")),
              *((f"model.aux[{i}]", Kind.CONTEXT_HEAD, t) for i, t in enumerate(model.get("aux", []))),
              ("run.passes", Kind.PASSES, run.get("passes"))]
    for where, kind, table in needed:
        if _absent(kind, table):
            raise WeightsError(f"{path}: {where} is {kind} {table['name']!r}, which is not installed; "
                               f"{_provider(info, table['name'])}")
    if "data" in data:
        data["data"] = dict(data["data"])
    optional = [("loss", Kind.LOSS, data, "loss"), ("optimizer", Kind.OPTIMIZER, data, "optimizer"),
                ("schedule", Kind.SCHEDULE, data, "schedule"),
                ("data.dataset", Kind.DATASET, data.get("data", {}), "dataset")]
    for where, kind, parent, key in optional:
        if _absent(kind, parent.get(key)):
            warnings.warn(f"{path}: {where} is {kind} {parent[key]['name']!r}, which is not installed; not needed "
                          f"to run the model, so the default is used ({_provider(info, parent[key]['name'])})",
                          stacklevel=4)
            del parent[key]
    for where, kind, parent, key in [("metrics", Kind.METRIC, data, "metrics"),
                                     ("run.callbacks", Kind.CALLBACK, run, "callbacks")]:
        kept = []
        for i, table in enumerate(parent.get(key, [])):
            if _absent(kind, table):
                warnings.warn(f"{path}: {where}[{i}] is {kind} {table['name']!r}, which is not installed; it is "
                              f"left out ({_provider(info, table['name'])})", stacklevel=4)
            else:
                kept.append(table)
        if key in parent:
            parent[key] = kept
    return data


def _absent(kind: Kind, table: Any) -> bool:
    if not (isinstance(table, dict) and isinstance(table.get("name"), str)):
        return False  # nothing to look up; the spec's validation says what is wrong
    return not any(c.name == table["name"] for c in default_registry().components(kind))


def _provider(info: WeightsInfo, name: str) -> str:
    """Which recorded distribution supplied ``name`` (by its ``<plugin>.`` prefix) and how to install it."""
    prefix = name.partition(".")[0]
    recorded = {dist: version for dist, version in info.plugins.items() if dist != "ctxseg"}
    matching = {d: v for d, v in recorded.items() if d.lower().replace("-", "_").removeprefix("ctxseg_") == prefix}
    found = matching or recorded
    if not found:
        return "the file records no plugin distribution that provides it"
    saved = ", ".join(f"{dist} {version}" for dist, version in sorted(found.items()))
    pins = " ".join(f"'{dist}=={version}'" for dist, version in sorted(found.items()))
    return f"the file was saved with plugin distribution {saved}; install it with: python -m pip install {pins}"
