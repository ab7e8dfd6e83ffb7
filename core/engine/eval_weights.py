"""``ctxseg eval``: a weights file's metrics on a split of its dataset, or of another spec's.

Which data a weights file is evaluated (or, by ``ctxseg export --quantize``, calibrated) on is
:func:`eval_dataset`'s choice: the ``[data]`` table of the file's own spec or of ``--spec``,
its root replaced by ``--data-root``. The folder a weights file names is read only where it
exists here, so that ctxseg never creates (generates) data where a file's author chose.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ctxseg.engine import distributed
from ctxseg.engine.evaluate import evaluate
from ctxseg.engine.inference import Inference
from ctxseg.errors import CtxsegError
from ctxseg.files.atomic import atomic_path, check_writable, file_in_the_way
from ctxseg.interfaces import SegmentationDataset
from ctxseg.spec import DataSpec, MetricRef, PassesRef, load_spec

__all__ = ["eval_dataset", "evaluate_weights"]


def eval_dataset(data: DataSpec, split: str, *, weights: str | Path, spec: str | Path | None = None,
                 data_root: str | None = None, command: str = "eval", doing: str = "evaluating") -> SegmentationDataset:
    """The ``split`` of ``data``: the ``[data]`` table of ``spec`` (a spec file) or else of the file
    ``weights``, its root replaced by ``data_root`` if given. The first process names the folder
    read (the dataset's :meth:`~ctxseg.interfaces.SegmentationDataset.data_dir`) on stderr, after
    ``doing``; a folder that the weights file names and that does not exist here is an error that
    names the options of ``ctxseg command`` that choose another."""
    ref = data.dataset
    if data_root:
        if not attrs.has(type(ref.config)) or "root" not in attrs.fields_dict(type(ref.config)):
            raise CtxsegError(f"--data-root: the dataset {ref.name!r} has no root to replace")
        ref = attrs.evolve(ref, config=attrs.evolve(ref.config, root=data_root))
    folder = ref.load().data_dir(ref.config)
    if folder is not None:
        folder = folder.expanduser()
        if not spec and not data_root and not folder.exists():
            raise CtxsegError(f"{weights}: its spec reads {ref.name!r} data from {folder}, which does not exist "
                              f"here; ctxseg {command} does not create data where a weights file says: pass "
                              "--data-root DIR (the dataset's folder; context scenes are generated there if it is "
                              "missing) or --spec SPEC (its [data] table)")
        if distributed.rank() == 0:
            print(f"ctxseg: {doing} on {ref.name!r} data, {split} split, in {folder}", file=sys.stderr)
    return ref.build(split, key="data.dataset", source=str(spec) if spec else f"{weights} (embedded spec)")


def evaluate_weights(weights: str | Path, split: str = "val", *, spec: str | Path | None = None,
                     data_root: str | None = None, passes: PassesRef | None = None, metrics: Sequence[MetricRef] = (),
                     test: Mapping[str, Any] | None = None, out: str | Path | None = None, announce: bool = True,
                     progress: bool = True) -> dict[str, Any]:
    """The metrics of ``weights`` (a weights file, or an ONNX file of ``ctxseg export``) on the
    ``split`` that :func:`eval_dataset` chooses: the confusion matrix's, the spec's ``[[metrics]]``
    and ``metrics``'; also written as JSON to ``out`` if given. ``passes`` and ``test`` override
    the file's ``[run.passes]`` and ``[test]``; ``announce`` prints the protocol in use.

    Under torchrun every process returns the whole split's metrics; only the first prints and writes.
    """
    if out and Path(out).is_dir():
        raise CtxsegError(f"{out}: --out is a folder; expected the path of a JSON file to write")
    if out and (blocking := file_in_the_way(Path(out).parent)) is not None:
        raise CtxsegError(f"{out}: --out: {blocking} is an existing file; expected a folder for the JSON file")
    if out:
        check_writable(Path(out))
    inference, info = Inference.from_weights(weights, passes=passes, test=test)
    chosen = load_spec(spec) if spec else inference.spec
    dataset = eval_dataset(chosen.data, split, weights=weights, spec=spec, data_root=data_root)
    if dataset.classes != info.classes:
        raise CtxsegError(f"{weights}: trained for classes {info.classes}, but the {split} split has {dataset.classes}")
    with distributed.session(inference.runtime.device):
        if len(dataset):
            inference.prepare(dataset[0][0].shape[-2:])  # under torchrun every process runs as the first chose
        if announce and distributed.rank() == 0:
            print(f"eval: {inference.describe()}")
        results, _ = evaluate(inference, dataset, [*chosen.metrics, *metrics], progress=progress)
    if out and distributed.rank() == 0:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    return results
