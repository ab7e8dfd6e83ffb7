"""precision = "auto": chosen by timing the model here, cached per machine, printed with the figures."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ctxseg.cli import main
from ctxseg.engine import autotune, distributed
from ctxseg.engine.autotune import MODES, ONNXRUNTIME, Mode, cache_file, candidates, fastest
from ctxseg.engine.inference import Inference
from ctxseg.engine.train import train
from ctxseg.spec import load_spec

KEY = {"cpu": "test CPU", "threads": 2}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _timer(seconds: dict[str, float]):
    """A ``time_one`` that reports fixed seconds per mode and counts its calls."""
    calls: list[str] = []

    def time_one(mode: Mode) -> float:
        calls.append(str(mode))
        return seconds[str(mode)]
    return time_one, calls


SECONDS = {"fp32, contiguous": 1.0, "fp32, channels_last": 0.8, "bf16, channels_last": 1.5, "bf16, contiguous": 2.5}


def test_the_fastest_mode_is_chosen_and_the_far_slower_ones_dropped():
    time_one, calls = _timer(SECONDS)
    choice = fastest(time_one, KEY, rounds=3)
    assert choice.mode == Mode("fp32", True) and choice.measured_now
    assert calls.count("fp32, channels_last") == 1 + 3          # warm-up and three rounds
    assert calls.count("bf16, contiguous") == 1 + 1             # > 2x the best after round one: dropped
    assert calls.count("bf16, channels_last") == 1 + 3          # within 2x: raced to the end
    assert choice.seconds == SECONDS                            # every mode's figure is reported


def test_plain_fp32_is_a_candidate_so_auto_is_never_slower_than_it():
    assert MODES[0] == Mode("fp32", False)
    time_one, _ = _timer({**SECONDS, "fp32, contiguous": 0.5})
    assert fastest(time_one, KEY).mode == Mode("fp32", False)


def test_the_time_spent_is_bounded_by_the_budget(monkeypatch):
    """Timed on a clock that each pass advances by 0.01 s: after the warm-up (4 passes), whole
    rounds of 4 run until more than the 0.05 s budget has gone, so 2 rounds of the 100 allowed."""
    now = [0.0]
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: now[0])

    calls = []

    def time_one(mode: Mode) -> float:
        calls.append(mode)
        now[0] += 0.01
        return 0.01
    fastest(time_one, KEY, budget=0.05, rounds=100)
    assert len(calls) == 4 + 2 * 4


def test_a_measurement_is_cached_per_key_and_read_back_without_timing():
    time_one, calls = _timer(SECONDS)
    fastest(time_one, KEY)
    measured = len(calls)
    again = fastest(time_one, KEY)
    assert len(calls) == measured and not again.measured_now and again.mode == Mode("fp32", True)
    assert "measured once, cached in" in again.describe("cpu")
    entry, = json.loads(cache_file().read_text()).values()
    assert entry["key"] == KEY and entry["mode"] == "fp32, channels_last"
    fastest(time_one, {**KEY, "threads": 1})  # another thread count is another machine
    assert len(calls) > measured


def test_a_measurement_among_other_candidates_is_not_reused():
    """A choice made among torch's modes says nothing about onnxruntime: with it a candidate, the race is run again."""
    time_one, calls = _timer({**SECONDS, str(ONNXRUNTIME): 0.5})
    fastest(time_one, KEY)
    measured = len(calls)
    choice = fastest(time_one, KEY, modes=(*MODES, ONNXRUNTIME))
    assert choice.measured_now and choice.mode == ONNXRUNTIME and str(ONNXRUNTIME) in calls[measured:]
    assert not fastest(time_one, KEY).measured_now  # each set of candidates keeps its own answer
    assert len(json.loads(cache_file().read_text())) == 2


@pytest.mark.parametrize(("precision", "backend", "installed", "expected"), [
    ("auto", "torch", True, MODES),
    ("bf16", "torch", True, (Mode("bf16", True),)),           # forced: inference's layout, nothing timed
    ("auto", "onnxruntime", True, (ONNXRUNTIME,)),
    ("fp32", "onnxruntime", True, (ONNXRUNTIME,)),
    ("bf16", "onnxruntime", True, ()),                        # onnxruntime runs fp32: an error, raised by Inference
    ("auto", "auto", True, (*MODES, ONNXRUNTIME)),
    ("fp32", "auto", True, (Mode("fp32", True), ONNXRUNTIME)),
    ("bf16", "auto", True, (Mode("bf16", True),)),
    ("auto", "auto", False, MODES),                           # auto races what is installed
])
def test_the_candidates_are_what_precision_and_backend_allow(precision, backend, installed, expected):
    assert candidates(precision, backend, onnxruntime=installed) == expected


def test_a_damaged_cache_is_measured_again(tmp_path):
    cache_file().parent.mkdir(parents=True)
    cache_file().write_text("{not json")
    time_one, calls = _timer(SECONDS)
    assert fastest(time_one, KEY).measured_now and calls
    assert json.loads(cache_file().read_text())  # and rewritten whole


def test_the_machine_key_holds_what_speed_depends_on(monkeypatch):
    key = autotune.machine(torch.device("cpu"))
    assert {"cpu", "flags", "isa", "onednn_max_isa", "threads", "torch", "arch"} <= key.keys()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert autotune.machine(torch.device("cpu"))["onednn_max_isa"] == "SSE41"


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_spec_text):
    path = tmp_path_factory.mktemp("autotune") / "tiny.toml"
    path.write_text(tiny_spec_text.replace("steps = 4", "steps = 1").replace("eval_every = 2", "eval_every = 0"))
    train(load_spec(path), path.parent / "run", progress=False)
    return path.parent / "run" / "model.safetensors"


@pytest.mark.parametrize("winner", [Mode("bf16", True), Mode("fp32", False)])
def test_inference_runs_in_the_mode_the_timing_chose(weights, monkeypatch, winner):
    """Every candidate ran the model's own forward in its mode; the chosen one reaches every conv."""
    timed = []

    def fake_timing(time_one, key, **kwargs):
        def recorded(mode: Mode) -> float:
            time_one(mode)
            timed.append(mode)
            return 0.1 if mode == winner else 1.0
        return real_fastest(recorded, key, **kwargs)
    real_fastest = autotune.fastest
    monkeypatch.setattr(autotune, "fastest", fake_timing)
    inference, _ = Inference.from_weights(weights)
    seen = []
    hook = nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: seen.append((inputs[0].is_contiguous(memory_format=torch.channels_last),
                                                    output.dtype)) if isinstance(module, nn.Conv2d) else None)
    try:
        inference.predict(torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8))
        assert set(timed) == set(MODES)
        seen.clear()
        inference.predict(torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8))
    finally:
        hook.remove()
    dtype = torch.bfloat16 if winner.precision == "bf16" else torch.float32
    assert seen and all(last == winner.channels_last and out == dtype for last, out in seen)
    assert inference.runtime.precision == winner.precision
    assert inference.describe().endswith(f"auto: {winner} on cpu (0.1 s; " + inference.describe().split("(0.1 s; ")[1])


def test_eval_prints_the_choice_with_its_figures_and_a_forced_precision_measures_nothing(weights, capsys, tmp_path):
    assert main(["eval", str(weights), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "auto: " in printed and "measured now, cached in " + str(cache_file()) in printed
    assert main(["eval", str(weights), "--quiet"]) == 0
    assert "measured once, cached in" in capsys.readouterr().out
    cache_file().unlink()
    assert main(["eval", str(weights), "--quiet", "--precision", "fp32", "--out", str(tmp_path / "m.json")]) == 0
    assert not cache_file().exists() and "fp32 on cpu" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "m.json").read_text())["inference"]
    assert (recorded["precision"], recorded["channels_last"]) == ("fp32", True)


def _prepare_in_group(rank: int, port: int, weights: str, chosen: list) -> None:
    """One torchrun-like process: measures (as rank 0 would, fast) and records the mode it runs in."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    measured = []

    def own_answer(time_one, key, **kwargs):  # each process would answer differently if asked
        measured.append(rank)
        return autotune.Choice(MODES[rank], {str(MODES[rank]): 1.0}, cache_file(), measured_now=True)
    autotune.fastest = own_answer
    inference, _ = Inference.from_weights(weights)
    with distributed.session(inference.runtime.device):
        inference.prepare((40, 48))
    chosen.append((rank, measured, str(inference.choice.mode), inference.runtime.channels_last))


def test_under_torchrun_every_process_runs_as_the_first_measured(weights):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with mp.Manager() as manager:
        chosen = manager.list()
        mp.spawn(_prepare_in_group, args=(port, str(weights), chosen), nprocs=2)
        assert sorted(chosen) == [(0, [0], str(MODES[0]), False), (1, [], str(MODES[0]), False)]
