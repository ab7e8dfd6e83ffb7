"""Regenerate docs/measured.md's comparison tables on context scenes: every cell mean ± std over seeds.

    python examples/reproduce.py --table global-context      # one table
    python examples/reproduce.py --all --jobs 2              # all five, two runs at a time

Each row of a table is a spec; each spec is trained once per seed (``run.seed`` = 0, 1,
2, ...; the data stay the spec's) into ``runs/reproduce/<folder>_<spec>/seed<k>``. A
finished run of the same spec is reused, so an interrupted reproduction picks up where
it stopped and tables that share a spec train it once; an edited spec trains again.
The tables are printed and written to ``runs/reproduce/<table>.md`` in Markdown: mIoU,
the IoU of the context pairs (classes that look alike and only context tells apart) and
of each class that is not plain stuff, the table's own measures (GCN's boundary
accuracy), the pixels confused within each pair (both directions, summed over the
validation set, mean over seeds) and the training time per run (with ``--jobs`` above 1,
runs share the cores).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import attrs

from ctxseg.data.context_scenes import CONTEXT_PAIRS
from ctxseg.engine.train import train
from ctxseg.errors import CtxsegError
from ctxseg.files.atomic import atomic_path
from ctxseg.files.weights import read_weights
from ctxseg.spec import Spec, load_spec

EXAMPLES = Path(__file__).resolve().parent


class Table(NamedTuple):
    title: str
    claim: str
    rows: tuple[tuple[str, str], ...]  # (label, spec path relative to examples/)
    extra: tuple[str, ...] = ()  # metrics beside the confusion matrix's, e.g. boundary accuracy


TABLES = {
    "global-context": Table(
        "Global context (ParseNet, PSPNet) on a shallow head",
        "ParseNet's pool6 and PSPNet's pyramid beat the local FCN head on the context pairs; "
        "PSPNet's B1236 >= B1 (PSPNet Table 1)",
        (("FCN head (local)", "shallow/fcn_c2.toml"),
         ("ParseNet, global context", "shallow/parsenet_c2.toml"),
         ("PSPNet, bins 1", "shallow/pspnet_c2_b1.toml"),
         ("PSPNet, bins 1-2-3-6", "shallow/pspnet_c2.toml"))),
    "receptive-field": Table(
        "Dilated convolutions' context module (Yu & Koltun)",
        "the basic context module beats its front end alone; identity initialization beats "
        "random (Table 3)",
        (("front end", "dilation/context_scenes_baseline.toml"),
         ("+ basic module, identity init", "dilation/context_scenes_basic.toml"),
         ("+ basic module, random init", "dilation/context_scenes_basic_random.toml"))),
    "gcn": Table(
        "Large kernels and boundary refinement (GCN)",
        "GCN with a large k beats k = 3 and the 1 x 1 baseline (Table 1); BR improves the "
        "boundary accuracy (Table 5)",
        (("1 x 1 conv", "gcn/context_scenes_conv1x1.toml"),
         ("GCN k = 3", "gcn/context_scenes_k3.toml"),
         ("GCN k = 15", "gcn/context_scenes_k15.toml"),
         ("GCN k = 15 + BR", "gcn/context_scenes_k15_br.toml")),
        extra=("boundary_accuracy", "internal_accuracy")),
    "bootstrapping": Table(
        "Online bootstrapping (FCRN)",
        "bootstrapping over the K hardest pixels raises the small and rare classes' IoU over "
        "plain cross-entropy (Tables 4-6)",
        (("cross-entropy", "fcrn/context_scenes_ce.toml"),
         ("bootstrapping, K = 1024", "fcrn/context_scenes_bs1024.toml"))),
    "simulation": Table(
        "Simulated finer network (FCRN)",
        "the simulated 1/4-resolution network raises small-object IoU over 1/8 (Table 3)",
        (("1/8 (stride 8)", "fcrn/context_scenes_ce.toml"),
         ("simulated 1/4", "fcrn/context_scenes_ce_simulated.toml"))),
}
PAIR_CLASSES = tuple(c for pair in CONTEXT_PAIRS for c in pair)
SMALL_AND_RARE = ("bird", "kite")


def run_dir(out: Path, spec: str, seed: int) -> Path:
    path = Path(spec)
    return out / f"{path.parent.name}_{path.stem}" / f"seed{seed}"


def train_one(spec_path: Path, directory: Path, seed: int, threads: int) -> dict:
    """Train ``spec_path`` with ``run.seed = seed`` into ``directory``, unless a finished
    run of that very spec is there; return its final metrics and training time
    (``train_seconds``)."""
    spec = load_spec(spec_path)
    spec = attrs.evolve(spec, run=attrs.evolve(spec.run, seed=seed, threads=threads or spec.run.threads))
    if not _finished(directory, spec):
        train(spec, directory, source=str(spec_path), progress=False, overwrite=True)
    summary = json.loads((directory / "metrics.json").read_text())
    return {**summary["final"], "train_seconds": summary["train_seconds"]}


def _finished(directory: Path, spec: Spec) -> bool:
    """``directory`` holds a finished run of ``spec`` (threads aside): an edited spec trains again."""
    if not (directory / "metrics.json").is_file() or not (directory / "model.safetensors").is_file():
        return False
    return _comparable(read_weights(directory / "model.safetensors")[1].spec) == _comparable(spec.to_dict())


def _comparable(spec: dict) -> dict:
    table = json.loads(json.dumps(spec))
    table["run"]["threads"] = 0
    return table


def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` in percent; a seed whose value is undefined (NaN: a class neither in
    the labels nor predicted) is left out and the count of the rest shown."""
    defined = [scale * v for v in values if not math.isnan(v)]
    if not defined:
        return "–"
    std = statistics.stdev(defined) if len(defined) > 1 else 0.0
    text = f"{statistics.fmean(defined):.{digits}f} ± {std:.{digits}f}"
    return text if len(defined) == len(values) else f"{text} ({len(defined)} seeds)"


def pair_iou(metrics: dict) -> float:
    return statistics.fmean(metrics["per_class_iou"][c] for c in PAIR_CLASSES)


def confused(metrics: dict, a: str, b: str) -> int:
    """Pixels of ``a`` labelled ``b`` plus pixels of ``b`` labelled ``a``."""
    names = list(metrics["per_class_iou"])
    i, j = names.index(a), names.index(b)
    return metrics["confusion"][i][j] + metrics["confusion"][j][i]


def markdown(name: str, table: Table, results: dict[str, list[dict]], seeds: int) -> str:
    head = ["run", "mIoU", "pairs IoU", *PAIR_CLASSES, *SMALL_AND_RARE,
            *(k.replace("_", " ") for k in table.extra),
            *(f"{a}↔{b} px" for a, b in CONTEXT_PAIRS), "min/run"]
    lines = [f"### {table.title}", "",
             f"Claim: {table.claim}. Mean ± std over {seeds} seeds; "
             f"`python examples/reproduce.py --table {name}`.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, spec in table.rows:
        runs = results[spec]
        cells = [f"{label} (`{spec}`)", f"**{cell([r['mean_iou'] for r in runs])}**",
                 f"**{cell([pair_iou(r) for r in runs])}**",
                 *(cell([r["per_class_iou"][c] for r in runs]) for c in (*PAIR_CLASSES, *SMALL_AND_RARE)),
                 *(cell([r[k] for r in runs]) for k in table.extra),
                 *(f"{statistics.fmean(confused(r, a, b) for r in runs):.0f}" for a, b in CONTEXT_PAIRS),
                 f"{statistics.fmean(r['train_seconds'] for r in runs) / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run(jobs: dict, workers: int) -> Iterator[tuple[tuple[str, int], dict]]:
    """``(key, metrics)`` of every job as it finishes: in this process, or ``workers`` at a time."""
    if workers == 1:
        for key, job in jobs.items():
            yield key, train_one(*job)
        return
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(train_one, *job): key for key, job in jobs.items()}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", choices=list(TABLES), action="append", help="a table to regenerate (repeatable)")
    which.add_argument("--all", action="store_true", help="every table")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per spec (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each on cores/jobs threads")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds: at least 2, for a standard deviation")
    names = list(TABLES) if args.all else list(dict.fromkeys(args.table))
    specs = list(dict.fromkeys(spec for n in names for _, spec in TABLES[n].rows))
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    jobs = {(spec, seed): (EXAMPLES / spec, run_dir(args.out, spec, seed), seed, threads)
            for spec in specs for seed in range(args.seeds)}
    results: dict[str, list[dict]] = {spec: [] for spec in specs}  # seeds in completion order
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for spec in specs:  # every spec is read before the first run starts
            load_spec(EXAMPLES / spec)
        for done, (key, metrics) in enumerate(_run(jobs, args.jobs), 1):
            spec, seed = key
            results[spec].append(metrics)
            print(f"[{done}/{len(jobs)}] {spec} seed {seed}: mIoU {100 * metrics['mean_iou']:.1f}",
                  file=sys.stderr, flush=True)
    except CtxsegError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    texts = []
    for name in names:
        text = markdown(name, TABLES[name], results, args.seeds)
        with atomic_path(args.out / f"{name}.md") as tmp:
            tmp.write_text(text + "\n")
        texts.append(text)
    print("\n\n".join(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
