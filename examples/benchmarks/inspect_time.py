"""Wall time of ``ctxseg inspect`` on every example spec, each in a fresh process.

    python examples/benchmarks/inspect_time.py [--rounds 3] [SPEC ...]

What a user waits for when checking a spec: interpreter start, imports, building the
model, its build-time dry forward and the report. Rounds are interleaved over the specs
and over ``python -c "import torch"``, the floor no command that builds a model goes
under; each figure is the median of the rounds. Prints one Markdown row per spec,
slowest first, then how many answered within 3 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).parents[1]
TARGET_S = 3.0


def specs() -> list[Path]:
    """Every example spec, as tests/test_examples.py builds them (no recipes, no third-party examples)."""
    return sorted(p for p in EXAMPLES.rglob("*.toml") if "thirdparty" not in p.parts and "base" not in p.parts)


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("specs", nargs="*", type=Path)
    args = parser.parse_args()
    commands = {"`import torch`": [sys.executable, "-c", "import torch"]}
    for path in args.specs or specs():
        commands[f"`{path.relative_to(EXAMPLES) if path.is_relative_to(EXAMPLES) else path}`"] = [
            str(Path(sys.executable).with_name("ctxseg")), "inspect", str(path), "--classes", "21"]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            times[name].append(seconds(command))
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    print("| spec | seconds (median) |\n|---|---|")
    for name, median in sorted(medians.items(), key=lambda item: -item[1]):
        print(f"| {name} | {median:.2f} |")
    inspected = [median for name, median in medians.items() if name != "`import torch`"]
    print(f"\n{sum(m <= TARGET_S for m in inspected)} of {len(inspected)} specs within {TARGET_S:.0f} s; "
          f"median {statistics.median(inspected):.2f} s, slowest {max(inspected):.2f} s; "
          f"`import torch` alone {medians['`import torch`']:.2f} s")


if __name__ == "__main__":
    main()
