"""The ``ctxseg`` command line. Sub-commands import torch only when they run."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import traceback
import warnings
from pathlib import Path

from ctxseg import __version__
from ctxseg.errors import CtxsegError, PluginError

__all__ = ["main"]


def _plugins(args: argparse.Namespace) -> None:
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


def _inspect(args: argparse.Namespace) -> None:
    from ctxseg.model.report import inspect_report, report_text, resolved_spec

    if args.resolved:
        print(resolved_spec(Path(args.target)).to_toml(), end="")
        return
    report = inspect_report(Path(args.target), tuple(args.input_size), tuple(args.rf_size) if args.rf_size else None,
                            measure=args.measure_rf, classes=args.classes)
    print(json.dumps(report, indent=2) if args.json else report_text(report))


def _train(args: argparse.Namespace) -> None:
    from ctxseg.engine.distributed import rank
    from ctxseg.engine.train import train
    from ctxseg.metrics.report import metrics_table
    from ctxseg.spec import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    metrics = train(spec, out, source=args.spec, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.quiet)
    if rank() == 0:  # under torchrun, the first process speaks for all
        print(metrics_table(metrics))
        print(f"run directory: {out} (model.safetensors, metrics.json, curves.png, predictions/)")


def _eval(args: argparse.Namespace) -> None:
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
    """The ``[test]`` keys given on the command line."""
    keys = ("mode", "crop", "stride", "batch", "scales", "flip", "precision", "backend")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _add_test_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("test protocol", "override the weights' [test] table (see docs/spec.md)")
    g.add_argument("--mode", choices=["whole", "slide"], help="score whole images, or by sliding windows")
    g.add_argument("--crop", type=int, metavar="PX", help="sliding window side")
    g.add_argument("--stride", type=int, metavar="PX", help="pixels between windows (default: 2/3 of --crop)")
    g.add_argument("--batch", type=int, metavar="N", help="images or windows per forward pass")
    g.add_argument("--scales", type=float, nargs="+", metavar="S", help="average the views at these scales")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, help="also average the mirrored views")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto (default): the fastest here, measured once on this model and cached")
    g.add_argument("--backend", choices=["torch", "onnxruntime", "auto"],
                   help="torch (default), onnxruntime (the weights exported to ONNX once, cached, run on the CPU; "
                        "needs ctxseg[export]), or auto: the faster, measured as --precision auto is")


def _predict(args: argparse.Namespace) -> int:
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


def _export(args: argparse.Namespace) -> None:
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


def _convert(args: argparse.Namespace) -> None:
    from ctxseg.engine.convert import convert
    from ctxseg.spec import load_spec

    spec = load_spec(args.spec) if args.spec else None
    kind, spec, classes = convert(args.source, args.to, spec=spec, classes=args.classes)
    backbone = spec.model.backbone
    heads = " + ".join(ref.name for ref in spec.model.context)
    print(f"wrote {args.to}: {kind} as {backbone.name} (depth {backbone.config.depth}) + {heads}, "
          f"{len(classes)} classes ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''})")


def _bounded(low: int, high: int, why: str):
    """An argparse type: an integer in ``[low, high]``; outside, a usage error that says why."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}] ({why}), got {value}")
        return value
    return parse


_SIZE = _bounded(1, 4096, "pixels; larger inputs need tens of GB to measure")


class _NewTable(argparse.Action):
    """``--metric NAME``: appends a component table ``{"name": NAME}``."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), {"name": value}])


class _TableKey(argparse.Action):
    """``--metric-arg KEY=VALUE``: a parameter of the last table, its value read as TOML
    (``7``, ``true``, ``[1, 2]``) or else taken as a string."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        tables = getattr(namespace, self.dest)
        key, eq, text = value.partition("=")
        if not tables or not eq or not key.strip():
            parser.error(f"{option_string} {value}: expected KEY=VALUE after a --{self.dest} NAME")
        try:
            tables[-1][key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            tables[-1][key.strip()] = text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctxseg", description="Compose, train and ship context-aware segmentation models.")
    p.add_argument("--version", action="version", version=f"ctxseg {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="on an error, also print the traceback that led to it (for a plugin's author)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("plugins", help="list every registered component and its plugin")
    s.add_argument("--json", action="store_true")
    s.add_argument("--strict-plugins", action="store_true",
                   help="fail if any plugin fails to load or two register the same name")
    s.add_argument("--check", nargs="*", metavar="NAME",
                   help="run ctxseg.testing's contract on every installed component (or those NAMEs: components "
                        "or plugin distributions) with its example; print component, plugin, version, "
                        "ok or what failed")
    s.set_defaults(run=_plugins)

    s = sub.add_parser("inspect", help="parameters, output stride, receptive field, output shape; or the resolved spec")
    s.add_argument("target", metavar="SPEC_OR_WEIGHTS")
    s.add_argument("--json", action="store_true")
    s.add_argument("--resolved", action="store_true",
                   help="print only the spec after `extends` with every default filled in, as TOML that `train` accepts")
    s.add_argument("--input-size", nargs=2, type=_SIZE, default=[512, 512], metavar=("H", "W"))
    s.add_argument("--rf-size", nargs=2, type=_SIZE, metavar=("H", "W"),
                   help="input size for the receptive field (default: --input-size)")
    s.add_argument("--measure-rf", action="store_true",
                   help="measure the receptive field from gradients instead of composing it from the components' "
                        "declarations (slow: a float64 pass at full size; needed where a component declares none)")
    s.add_argument("--classes", type=_bounded(1, 255, "8-bit masks hold at most 255 classes"),
                   help="number of classes (default: the spec's dataset)")
    s.set_defaults(run=_inspect)

    s = sub.add_parser("train", help="train a spec's model and evaluate it")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--out", metavar="DIR", help="run directory (default: runs/<spec name>)")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.safetensors (must exist)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run already in DIR (without it, a DIR holding a run is refused)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(run=_train)

    s = sub.add_parser("eval", help="evaluate weights on a dataset split")
    s.add_argument("weights", metavar="WEIGHTS", help="a weights file, or an ONNX file of ctxseg export")
    s.add_argument("--spec", help="take the [data] table from this spec instead of the weights file")
    s.add_argument("--data-root", metavar="DIR",
                   help="the dataset's folder (replaces the root in the weights file or --spec); needed when "
                        "the weights file's root does not exist here")
    s.add_argument("--split", default="val")
    s.add_argument("--metric", action=_NewTable, default=[], metavar="NAME",
                   help="also report a registered metric, e.g. gcn.boundary (GCN's boundary/internal accuracy); "
                        "repeatable; the spec's [[metrics]] are always reported")
    s.add_argument("--metric-arg", action=_TableKey, dest="metric", metavar="KEY=VALUE",
                   help="a parameter of the --metric before it, e.g. width=7 (a TOML value)")
    s.add_argument("--passes", action=_NewTable, default=[], metavar="NAME",
                   help="run the model another way than its spec's [run.passes], e.g. base.single, or "
                        "fcrn.simulated (FCRN's finer network by four shifted passes)")
    s.add_argument("--passes-arg", action=_TableKey, dest="passes", metavar="KEY=VALUE",
                   help="a parameter of --passes, e.g. layer=backbone.layer2 (a TOML value)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--out", metavar="FILE", help="also write the metrics as JSON")
    s.add_argument("--quiet", action="store_true")
    _add_test_options(s)
    s.set_defaults(run=_eval)

    s = sub.add_parser("predict", help="label images with a weights file")
    s.add_argument("weights", metavar="WEIGHTS", help="a weights file, or an ONNX file of ctxseg export")
    s.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files and folders (their images, sorted; masks keep the path inside the folder)")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--recursive", action="store_true", help="also read the images in sub-folders of a folder")
    s.add_argument("--format", default="palette", metavar="FORMAT",
                   help="palette (class colours, plus overlays; default), or a benchmark's own format that "
                        "the weights' dataset offers: voc (VOC palette PNGs), cityscapes (labelId PNGs), "
                        "ade20k (label PNGs, 1-150)")
    s.add_argument("--quiet", action="store_true")
    _add_test_options(s)
    s.set_defaults(run=_predict)

    s = sub.add_parser("export", help="export a weights file's inference graph (ONNX)")
    s.add_argument("weights", metavar="WEIGHTS")
    s.add_argument("--format", choices=["onnx"], default="onnx")
    s.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    s.add_argument("--opset", type=_bounded(18, 23, "the opsets PyTorch's dynamo exporter writes"),
                   help="ONNX opset (default: 20, the exporter's)")
    s.add_argument("--verify", action="store_true",
                   help="run the file with onnxruntime on two input sizes and compare with PyTorch")
    q = s.add_argument_group("int8", "ONNX Runtime static quantization, calibrated on the training split")
    q.add_argument("--quantize", choices=["int8"],
                   help="write the int8 model (QDQ, weights per channel) instead of the fp32 one")
    q.add_argument("--calibrate", type=_bounded(1, 1_000_000, "images of the training split"), metavar="N",
                   help="with --quantize: measure activation ranges on N training images, spread over the split")
    q.add_argument("--spec", help="take the [data] table from this spec instead of the weights file")
    q.add_argument("--data-root", metavar="DIR", help="the dataset's folder (replaces the root in the weights "
                                                      "file or --spec); needed when that root does not exist here")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_export, split="train")

    s = sub.add_parser("convert", help="import a torchvision or MMSegmentation checkpoint as a ctxseg weights file")
    s.add_argument("source", metavar="SOURCE",
                   help="a .pth (read without unpickling code) or .safetensors state dict: torchvision's "
                        "fcn/deeplabv3_resnet50/101, MMSegmentation's PSPNet or FCN (ResNetV1c-D8)")
    s.add_argument("--to", required=True, metavar="WEIGHTS", help="the .safetensors file to write")
    s.add_argument("--spec", help="the spec of the model to load it into (default: inferred from its keys)")
    s.add_argument("--classes", nargs="+", metavar="NAME",
                   help="class names (default: the checkpoint's; VOC's 21 for torchvision's)")
    s.set_defaults(run=_convert)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ctxseg: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        code = args.run(args)
    except CtxsegError as error:
        if args.debug:
            traceback.print_exception(error)
        print(f"ctxseg: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a fault of the machine met outside ctxseg's readers and writers (a file gone)
        if error.filename is None:
            raise
        if args.debug:
            traceback.print_exception(error)
        print(f"ctxseg: error: {error.filename}: {(error.strerror or str(error)).lower()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # its arguments, if any, name the file it cut short and what is intact
        print("; ".join(["ctxseg: interrupted", *map(str, interrupt.args)]), file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
