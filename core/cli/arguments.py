"""The ``ctxseg`` command line's arguments: one sub-parser per command, each naming the
function of :mod:`ctxseg.cli.commands` that runs it."""

from __future__ import annotations

import argparse

from ctxseg import __version__
from ctxseg.cli import commands

__all__ = ["parser"]


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
        from ctxseg.spec.override import toml_value  # the spec's types: imported when an option needs them

        tables[-1][key.strip()] = toml_value(text)


def _add_set(s: argparse.ArgumentParser | argparse._ArgumentGroup, example: str, what: str) -> None:
    """``--set KEY=VALUE``, repeatable: a value of the spec changed (see docs/spec.md)."""
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"change one key of {what}, e.g. {example}: KEY a dotted path with [index] into arrays, "
                        "VALUE in TOML (a bare word is a string); repeatable")


def _add_test_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("test protocol", "override the weights' [test] table (see docs/spec.md)")
    _add_set(g, "test.flip=true", "the [test] table (the rest of the spec is the weights' own, as trained)")
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
    s.set_defaults(run=commands.run_plugins)

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
    _add_set(s, "model.context[0].bins=[1,2,3,6]", "the spec, after `extends` (not of a weights file's)")
    s.set_defaults(run=commands.run_inspect)

    s = sub.add_parser("train", help="train a spec's model and evaluate it")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--out", metavar="DIR", help="run directory (default: runs/<spec name>)")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.safetensors (must exist)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run already in DIR (without it, a DIR holding a run is refused)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_set(s, "run.steps=100", "the spec, after `extends`, for this run (recorded in its resolved spec)")
    s.set_defaults(run=commands.run_train)

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
    s.set_defaults(run=commands.run_eval)

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
    s.set_defaults(run=commands.run_predict)

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
    s.set_defaults(run=commands.run_export, split="train")

    s = sub.add_parser("convert", help="import a torchvision or MMSegmentation checkpoint as a ctxseg weights file")
    s.add_argument("source", metavar="SOURCE",
                   help="a .pth (read without unpickling code) or .safetensors state dict: torchvision's "
                        "fcn/deeplabv3_resnet50/101, MMSegmentation's PSPNet or FCN (ResNetV1c-D8)")
    s.add_argument("--to", required=True, metavar="WEIGHTS", help="the .safetensors file to write")
    s.add_argument("--spec", help="the spec of the model to load it into (default: inferred from its keys)")
    s.add_argument("--classes", nargs="+", metavar="NAME",
                   help="class names (default: the checkpoint's; VOC's 21 for torchvision's)")
    s.set_defaults(run=commands.run_convert)
    return p
