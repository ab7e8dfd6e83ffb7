"""``precision = "auto"`` and ``backend = "auto"``: the fastest way to run a model on this machine, found by timing it.

Whether bf16 autocast or channels_last makes a network faster depends on the CPU, the
library build and the input size, and no CPU flag tells which: on a CPU with AMX, bf16 ran
FCN-ResNet50 3.3x faster than fp32; on one with AVX-512 BF16 but no AMX, 1.6x slower; there
ONNX Runtime ran it 1.3x faster than torch. So the candidate modes are timed on the model's
own forward pass at the input size, and the answer is cached in the user's cache folder
under everything it depends on: the CPU's model and flags (or the GPU's name), the
instruction set torch dispatches to, torch's version, the architecture, the thread count,
the model's layout, the input size and the candidates raced.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from ctxseg.files.atomic import atomic_path
from ctxseg.files.cache import cache_folder

__all__ = ["MODES", "ONNXRUNTIME", "Choice", "Mode", "cache_file", "candidates", "fastest", "machine"]


@attrs.frozen
class Mode:
    """One way to run a forward pass: the backend, and in torch autocast precision and memory format."""

    precision: str
    channels_last: bool
    backend: str = "torch"

    def __str__(self) -> str:
        if self.backend != "torch":
            return f"{self.backend}, {self.precision}"
        return f"{self.precision}, {'channels_last' if self.channels_last else 'contiguous'}"


MODES = (Mode("fp32", False), Mode("fp32", True), Mode("bf16", True), Mode("bf16", False))
"""torch's candidates, plain fp32 first: what a user of plain PyTorch runs, so "auto" is never slower."""

ONNXRUNTIME = Mode("fp32", False, "onnxruntime")
"""The model exported to ONNX and run by ONNX Runtime on the CPU, in fp32."""


def candidates(precision: str, backend: str, *, onnxruntime: bool) -> tuple[Mode, ...]:
    """The modes the ``[test]`` table's ``precision`` and ``backend`` allow, ONNX Runtime's only
    where it can run (``onnxruntime``); one mode is run without timing. A forced precision
    runs torch channels_last (inference's layout); ONNX Runtime runs fp32 only."""
    in_torch = MODES if precision == "auto" else (Mode(precision, True),)
    in_onnxruntime = (ONNXRUNTIME,) if onnxruntime and precision in ("auto", "fp32") else ()
    return {"torch": in_torch, "onnxruntime": in_onnxruntime, "auto": in_torch + in_onnxruntime}[backend]


PRUNE = 2.0
"""A mode slower than this many times the fastest after the first timed round is not timed again."""


@attrs.frozen
class Choice:
    """The mode chosen, the median seconds per forward pass of every mode timed, and where it is cached."""

    mode: Mode
    seconds: dict[str, float]
    cache: Path
    measured_now: bool

    def describe(self, device: str) -> str:
        """``auto: fp32, channels_last on cpu (0.98 s; bf16, channels_last 1.7 s; ...; measured once, cached in ...)``."""
        others = "; ".join(f"{name} {s:.3g} s" for name, s in sorted(self.seconds.items(), key=lambda kv: kv[1])
                           if name != str(self.mode))
        when = "measured now" if self.measured_now else "measured once"
        return (f"auto: {self.mode} on {device} ({self.seconds[str(self.mode)]:.3g} s"
                f"{'; ' + others if others else ''}; {when}, cached in {self.cache})")


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/ctxseg/autotune.json``, by default ``~/.cache/ctxseg/autotune.json``."""
    return cache_folder() / "autotune.json"


def machine(device: torch.device) -> dict[str, Any]:
    """What a measured speed depends on besides the model and the input."""
    if device.type == "cuda":
        hardware = {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    else:
        hardware = {"cpu": _cpu_model(), "flags": _cpu_flags_digest(),
                    "isa": torch.backends.cpu.get_cpu_capability(),
                    "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
                    "threads": torch.get_num_threads()}
    return {**hardware, "torch": torch.__version__, "arch": platform.machine()}


def fastest(time_one: Callable[[Mode], float], key: Mapping[str, Any], *, modes: Sequence[Mode] = MODES,
            budget: float = 2.0, rounds: int = 5) -> Choice:
    """The mode of ``modes`` whose forward pass ``time_one(mode)`` (seconds for one pass) is fastest.

    Read from the cache where ``key`` was measured before among the same modes; else each mode runs once to warm
    up (kernel selection, allocation), then rounds of one pass per mode, interleaved so that
    drift in the machine's speed hits all alike, until ``budget`` seconds have been spent on
    the timed rounds (at least one round, at most ``rounds``); modes :data:`PRUNE` times
    slower than the best after the first round drop out. The median decides.
    """
    path = cache_file()
    raced = [str(mode) for mode in modes]
    digest = hashlib.sha256(json.dumps([key, raced], sort_keys=True).encode()).hexdigest()[:20]
    cached = _read(path).get(digest)
    if cached is not None and cached.get("key") == key and cached.get("modes") == raced:
        mode = next((m for m in modes if str(m) == cached["mode"]), None)
        if mode is not None:
            return Choice(mode, cached["seconds"], path, measured_now=False)
    for mode in modes:
        time_one(mode)
    times: dict[Mode, list[float]] = {mode: [] for mode in modes}
    racing = list(modes)
    started = time.perf_counter()
    for done in range(rounds):
        for mode in racing:
            times[mode].append(time_one(mode))
        if done == 0:
            best = min(times[mode][0] for mode in racing)
            racing = [mode for mode in racing if times[mode][0] <= PRUNE * best]
        if time.perf_counter() - started > budget:
            break
    seconds = {str(mode): statistics.median(t) for mode, t in times.items()}
    mode = min(racing, key=lambda m: seconds[str(m)])
    _write(path, digest, {"key": dict(key), "modes": raced, "mode": str(mode), "seconds": seconds})
    return Choice(mode, seconds, path, measured_now=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: measure again
        return {}
    return entries if isinstance(entries, dict) else {}


def _write(path: Path, digest: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the cache; a cache that cannot be written costs a measurement next time, no more."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({**_read(path), digest: entry}, indent=1))
    except OSError:
        pass


def _cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith(("model name", "Hardware", "CPU part")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags_digest() -> str:
    flags = next((line.split(":", 1)[1] for line in _cpuinfo() if line.startswith(("flags", "Features"))), "")
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
