"""What each ``ctxseg`` command does: it reads its arguments, calls the engine, and prints.
Each imports torch (and the engine) only when it runs, so ``ctxseg --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ctxseg.errors import CtxsegError, PluginError, SpecError

if TYPE_CHECKING:
    from ctxseg.spec import Override

__all__ = ["run_convert", "run_eval", "run_export", "run_inspect", "run_plugins", "run_predict", "run_train"]


def run_plugins(args: argparse.Namespace) -> None:
    from ctxseg.registry import Registry

    registry = Registry(strict=args.strict_plugins or None)
    if args.check is not None:
        _check_plugins(registry, args.check, args.json)
        return
    rows = [{"kind": str(c.kind), "name": c.name, "distribution": c.distribution, "version": c.version,
             "summary": c.summary} for c in registry.components()]
    if args.json:
        failures = [{"distribution": f.distribution, "error": f"{type(f.error).__name__}: {f.error}"}
                    for f in registry.failures]
        print(json.dumps({"components": rows, "failures": failures}, indent=2))
        return
    _table(rows, ("kind", "name", "distribution", "version", "summary"))


def _check_plugins(registry, names: list[str], as_json: bool) -> None:
    """``ctxseg plugins --check [NAME...]``: the contract kit's verdicts as a table, and an error if any fails."""
    from ctxseg.testing.installed import NOT_CHECKED, check_installed

    rows = check_installed(registry.components(), names)
    if as_json:
        print(json.dumps({"checks": rows}, indent=2))
    else:
        columns = ("component", "plugin", "version", "contract")
        _table([dict(zip(columns, columns, strict=True)), *rows], columns)
    failed = [r["component"] for r in rows if r["contract"] != "ok" and not r["contract"].startswith(NOT_CHECKED)]
    if failed:
        raise PluginError(f"{len(failed)} of {len(rows)} components fail the contract: {', '.join(failed)}")


def _table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """Left-aligned columns; the last one unpadded."""
    widths = [max(len(r[k]) for r in rows) if rows else 0 for k in columns[:-1]]
    for r in rows:
        print("  ".join([*(r[k].ljust(w) for k, w in zip(columns, widths, strict=False)), r[columns[-1]]]))


def _overrides(args: argparse.Namespace) -> list[Override]:
    """The ``--set KEY=VALUE`` options as :class:`~ctxseg.spec.Override`s."""
    from ctxseg.spec import Override

    return [Override.parse(text) for text in args.set]


def run_inspect(args: argparse.Namespace) -> None:
    from ctxseg.model.report import inspect_report, report_text, resolved_spec

    overrides = _overrides(args)
    if overrides and Path(args.target).suffix == ".safetensors":
        raise SpecError(f"--set {overrides[0].key}: --set changes a spec file; {args.target} holds the spec its "
                        "weights were trained with")
    if args.resolved:
        print(resolved_spec(Path(args.target), overrides).to_toml(), end="")
        return
    report = inspect_report(Path(args.target), tuple(args.input_size), tuple(args.rf_size) if args.rf_size else None,
                            measure=args.measure_rf, classes=args.classes, overrides=overrides)
    print(json.dumps(report, indent=2) if args.json else report_text(report))


def run_train(args: argparse.Namespace) -> None:
    from ctxseg.engine.distributed import rank
    from ctxseg.engine.train import train
    from ctxseg.metrics.report import metrics_table
    from ctxseg.spec import load_spec

    spec = load_spec(args.spec, _overrides(args))
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    metrics = train(spec, out, source=args.spec, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.quiet)
    if rank() == 0:  # under torchrun, the first process speaks for all
        print(metrics_table(metrics))
        print(f"run directory: {out} (model.safetensors, metrics.json, curves.png, predictions/)")


def run_eval(args: argparse.Namespace) -> None:
    from ctxseg.engine.distributed import rank
    from ctxseg.engine.eval_weights import evaluate_weights
    from ctxseg.metrics.report import metrics_table
    from ctxseg.spec import MetricRef, PassesRef
    from ctxseg.spec.convert import structure

    passes = structure(args.passes[-1], PassesRef, source="--passes") if args.passes else None
    metrics = [structure(table, MetricRef, source=f"--metric {table['name']}") for table in args.metric]
    results = evaluate_weights(args.weights, args.split, spec=args.spec, data_root=args.data_root, passes=passes,
                               metrics=metrics, test=_test_options(args), out=args.out, announce=not args.json,
                               progress=not args.quiet)
    if rank() == 0:  # under torchrun every process has the whole split's metrics; the first reports them
        print(json.dumps(results, indent=2) if args.json else metrics_table(results))


def _test_options(args: argparse.Namespace) -> dict:
    """The ``[test]`` keys given on the command line: by ``--set test.KEY=VALUE`` and by their own options."""
    from ctxseg.spec.override import apply_overrides

    overrides = _overrides(args)
    for override in overrides:
        if override.path[0] != "test" or len(override.path) > 2 or isinstance(override.path[-1], int):
            raise SpecError(f"--set {override.key}: ctxseg {args.command} runs the weights with the spec they were "
                            "trained with; --set changes only its [test] table here, as test.KEY (test.flip=true)")
    keys = ("mode", "crop", "stride", "batch", "scales", "flip", "precision", "backend")
    options = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    test = apply_overrides({}, overrides).get("test", {})
    if not isinstance(test, dict):
        raise SpecError(f"--set test: expected a table, such as {{flip = true}}, got {test!r}")
    if both := sorted(options.keys() & test.keys()):
        raise CtxsegError(f"--set test.{both[0]} and --{both[0]} both set it; give one")
    return {**test, **options}


def run_predict(args: argparse.Namespace) -> int:
    from ctxseg.engine.distributed import rank
    from ctxseg.engine.predict import predict

    done = predict(Path(args.weights), [Path(p) for p in args.images], Path(args.out), format=args.format,
                   recursive=args.recursive, test=_test_options(args), progress=not args.quiet)
    if rank() != 0:
        # under torchrun the first process reports the whole run and gives its exit status: a
        # failing status here would make torchrun stop the first one before it had reported
        return 0
    for error in done.failed:
        print(f"ctxseg: error: {error}", file=sys.stderr)
    print(f"wrote {len(done.written)} masks{' and overlays' if args.format == 'palette' else ''} "
          f"({args.format}) to {args.out}")
    if done.failed:
        print(f"ctxseg: {len(done.failed)} of {len(done.failed) + len(done.written)} images failed (reported above)"
              + ("; the others were written" if done.written else ""), file=sys.stderr)
        return 1
    return 0


def run_export(args: argparse.Namespace) -> None:
    from ctxseg.engine.export import export_onnx, verify_onnx

    if args.quantize:
        _quantize(args)
        return
    given = [option for option, value in [("--calibrate", args.calibrate), ("--spec", args.spec),
                                          ("--data-root", args.data_root)] if value is not None]
    if given:
        raise CtxsegError(f"{given[0]} is for --quantize int8 (the training images it calibrates on)")
    exported, inference = export_onnx(args.weights, args.out, opset=args.opset)
    shape = " x ".join(map(str, exported.shape))
    print(f"wrote {exported.path}: input image ({shape}), output scores, opset {exported.opset}")
    if not exported.dynamic:
        print(f"ctxseg: warning: exported at a fixed input size ({shape}): the exporter cannot trace this "
              f"model for every size ({exported.fixed_because})", file=sys.stderr)
    if args.verify:
        for check in verify_onnx(exported, inference):
            print(f"verify {'x'.join(map(str, check.shape))}: max abs difference {check.max_abs_diff:.3g}, "
                  f"argmax agreement {100 * check.argmax_agreement:.3f}%")


def _quantize(args: argparse.Namespace) -> None:
    """``ctxseg export --quantize int8 --calibrate N``: the int8 model, calibrated on the training split."""
    from ctxseg.engine.quantize import calibration_dataset, quantize_int8

    if args.calibrate is None:
        raise CtxsegError("--quantize int8 needs --calibrate N: how many training images to measure the "
                          "activations' ranges on")
    if args.verify:
        raise CtxsegError("--verify compares the fp32 export with PyTorch; check an int8 model with "
                          "ctxseg eval FILE.onnx, against the weights file's figures")
    dataset = calibration_dataset(args.weights, args.split, spec=args.spec, data_root=args.data_root)
    quantize_int8(args.weights, args.out, dataset, args.calibrate, progress=not args.quiet)
    print(f"wrote {args.out}: int8 (QDQ), calibrated on {args.calibrate} images of the {args.split} split; "
          f"run it with ctxseg predict|eval {args.out}")


def run_convert(args: argparse.Namespace) -> None:
    from ctxseg.engine.convert import convert
    from ctxseg.spec import load_spec

    spec = load_spec(args.spec) if args.spec else None
    kind, spec, classes = convert(args.source, args.to, spec=spec, classes=args.classes)
    backbone = spec.model.backbone
    heads = " + ".join(ref.name for ref in spec.model.context)
    print(f"wrote {args.to}: {kind} as {backbone.name} (depth {backbone.config.depth}) + {heads}, "
          f"{len(classes)} classes ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''})")
