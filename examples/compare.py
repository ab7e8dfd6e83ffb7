"""Train several specs with the same budget and print one comparison table (Markdown).

    python examples/compare.py examples/fcn_resnet18.toml examples/pspnet/context_scenes_resnet18.toml

Each run goes to ``runs/compare/<folder>_<spec name>``; the table gives mIoU over all classes
and over the classes only context decides (boat, car on context scenes), the IoU of
each class, boundary/internal accuracy where a spec's [[metrics]] measure it (GCN's
``gcn.boundary``), training wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ctxseg.data.context_scenes import CONTEXT_CLASSES
from ctxseg.engine.train import train
from ctxseg.errors import CtxsegError
from ctxseg.spec import load_spec


def row(spec_path: Path, out: Path, quiet: bool) -> dict:
    started = time.perf_counter()
    metrics = train(load_spec(spec_path), out, source=str(spec_path), progress=not quiet)
    seconds = time.perf_counter() - started
    per_class = metrics["per_class_iou"]
    context = [per_class[c] for c in CONTEXT_CLASSES]
    return {"spec": str(spec_path), "mean_iou": metrics["mean_iou"], "context_iou": sum(context) / len(context),
            "per_class_iou": per_class, "seconds": seconds,
            **{k: metrics[k] for k in ("boundary_accuracy", "internal_accuracy") if k in metrics}}


def table(rows: list[dict]) -> str:
    classes = list(rows[0]["per_class_iou"])
    extra = [k for k in ("boundary_accuracy", "internal_accuracy") if k in rows[0]]
    head = ["spec", "mIoU", f"mIoU {'+'.join(CONTEXT_CLASSES)}", *classes,
            *(k.replace("_", " ") for k in extra), "wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"`{r['spec']}`", f"**{100 * r['mean_iou']:.1f}**", f"**{100 * r['context_iou']:.1f}**",
                 *(f"{100 * r['per_class_iou'][c]:.1f}" for c in classes),
                 *(f"{100 * r[k]:.1f}" for k in extra), f"{r['seconds'] / 60:.1f} min"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    rows = []
    try:
        for spec in args.specs:
            rows.append(row(spec, args.out / f"{spec.parent.name}_{spec.stem}", args.quiet))
    except CtxsegError as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 2
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "table.json").write_text(json.dumps(rows, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
