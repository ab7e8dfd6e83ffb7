"""``ctxseg inspect``'s report on the model of a spec or weights file: as data
(:func:`inspect_report`, what ``--json`` prints) and as text (:func:`report_text`).

A spec's model is built without drawing its weights (:mod:`ctxseg.model.undrawn`), sized by
its dataset's class names, which are read without reading any sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ctxseg.errors import DataError
from ctxseg.model.load import load_model
from ctxseg.model.summary import summarize
from ctxseg.model.undrawn import undrawn_model
from ctxseg.spec import Override, Spec, load_spec

__all__ = ["inspect_report", "report_text", "resolved_spec"]


def resolved_spec(target: Path, overrides: Sequence[Override] = ()) -> Spec:
    """The spec of a weights file (``.safetensors``) or of a spec file, after ``extends`` and
    ``overrides`` (``--set``, for a spec file), every default filled in."""
    return load_model(target)[1] if target.suffix == ".safetensors" else load_spec(target, overrides)


def _class_names(spec: Spec, override: int | None) -> list[str]:
    """The classes a spec's model is sized by: ``override`` numbered ones, or its dataset's."""
    if override:
        return [str(i) for i in range(override)]
    ref = spec.data.dataset
    try:
        return ref.load().class_names(ref.config)
    except DataError as error:
        raise DataError(f"{error}\n(pass --classes N to inspect the model without its dataset)") from None


def inspect_report(target: Path, size: tuple[int, int], rf_size: tuple[int, int] | None = None, *,
                   measure: bool = False, classes: int | None = None,
                   overrides: Sequence[Override] = ()) -> dict[str, Any]:
    """The source and class count of ``target``'s model, its :func:`~ctxseg.model.summary.summarize`,
    and its output stride at inference where its ``[run.passes]`` changes it. ``classes`` sizes a
    spec's model instead of its dataset's class names (a weights file's model has its own);
    ``overrides`` (``--set``) change a spec file's spec."""
    if target.suffix == ".safetensors":
        model, spec, info = load_model(target)
        names = info.classes
    else:
        spec = load_spec(target, overrides)
        names = _class_names(spec, classes)
        model = undrawn_model(spec.model, len(names), str(target))
    report = {"source": str(target), "classes": len(names), **summarize(model, size, rf_size, measure=measure)}
    passes = spec.run.passes.build(model, str(target), key="run.passes", source=str(target))
    stride = getattr(passes.inference(model), "output_stride", model.output_stride)  # halved by FCRN's simulation
    if stride != model.output_stride:
        report["inference_output_stride"] = stride
    return report


def report_text(report: Mapping[str, Any]) -> str:
    """The report as ``ctxseg inspect`` prints it, a figure a line."""
    lines = [f"{report['source']}: {report['classes']} classes",
             *(f"  parameters {name:<28} {count:>13,}" for name, count in report["parameters"].items()),
             f"  output stride                         {report['output_stride']:>13}"]
    if "inference_output_stride" in report:
        lines.append(f"  output stride at inference (run.passes) {report['inference_output_stride']:>11}")
    if report["field_of_view"]:
        lines.append(f"  field of view (score layers)          {report['field_of_view']:>13}")
    rf = report["receptive_field"]
    how, _, why = report["receptive_field_from"].partition(": ")
    if rf == "undeclared":
        lines.append(f"  receptive field: not declared ({why}); --measure-rf measures it")
    else:
        label = f"receptive field ({how} at {'x'.join(map(str, report['receptive_field_measured_at']))})"
        lines.append(f"  {label:<38}{rf if isinstance(rf, str) else 'x'.join(map(str, rf)):>13}")
    lines.append(f"  output shape for {report['input_shape']}: {report['output_shape']}")
    return "\n".join(lines)
