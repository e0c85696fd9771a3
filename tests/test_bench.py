"""The benchmark harness itself: figures judged against targets, the HPO cost accounting, the sweeps the HPO
benchmark runs, and the GPU benchmark on a machine without a GPU. The measurements are never asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import hpo_efficiency as hpo
from bench._results import Section, figure, passed


def test_figures_are_judged_against_their_targets() -> None:
    assert passed(figure(0.2, 1 / 3, "x", "lower")) == "yes"
    assert passed(figure(0.5, 1 / 3, "x", "lower")) == "no"
    assert passed(figure(0.95, 0.9, "x", "higher")) == "yes"
    assert passed(figure(12.0, None, "ms", "lower")) == "-"
    assert passed(figure(None, 0.9, "x", "higher")) == "not measured"


def test_benchmarks_md_lists_every_target_with_its_verdict() -> None:
    from bench.__main__ import render

    sections = [Section("One", "bench/one.py", "python -m bench.one", "a table",
                        {"fast_ratio": figure(0.2, 1 / 3, "x", "lower"), "free": figure(3.0, None, "s", "lower")},
                        {"fast_ratio": "fast over slow"}),
                Section("Two", "bench/two.py", "python -m bench.two", "another",
                        {"gpu_ratio": figure(None, 0.9, "x", "higher"), "slow_ratio": figure(2.0, 1.25, "x", "lower")})]
    text = render(sections, "python -m bench", 9.5)
    targets = text.split("## Targets", 1)[1].split("## One", 1)[0]
    assert "`fast_ratio` (fast over slow) | 0.2x | <= 0.3333x | yes |" in targets
    assert "`gpu_ratio` (Two) | not measured | >= 0.9x | not measured |" in targets
    assert "`slow_ratio` (Two) | 2x | <= 1.25x | no |" in targets
    assert "free" not in targets  # no target: listed in its section only
    assert "Command: `python -m bench.two`" in text and "in 9.5 minutes" in text


def test_hpo_cost_counts_compute_until_the_first_near_best_trial() -> None:
    grid = hpo.Trace(compute=[90, 90, 90, 90], scores=[0.5, 0.7, 0.9, 0.6], aucs=[0.6, 0.7, 0.9, 0.6])
    asha = hpo.Trace(compute=[90, 10, 30, 10], scores=[0.6, 0.4, 0.895, 0.3], aucs=[0.6, 0.5, 0.85, 0.5])
    random = hpo.Trace(compute=[10, 10], scores=[0.2, 0.3], aucs=[0.5, 0.5])
    cost = hpo.costs({"grid": grid, "optuna_asha": asha, "random_asha": random})
    assert cost == {"grid": (270, True), "optuna_asha": (130, True), "random_asha": (20, False)}
    assert hpo.learned({"grid": grid, "optuna_asha": asha})
    flat = hpo.Trace(compute=[10], scores=[0.66], aucs=[0.52])
    assert not hpo.learned({"grid": flat, "optuna_asha": flat}), "chance-level sweeps are left out of the ratio"


@pytest.mark.parametrize("family", sorted(hpo.FAMILIES))
@pytest.mark.parametrize("strategy", hpo.STRATEGIES)
def test_hpo_benchmark_sweeps_are_valid_search_spaces(family: str, strategy: str) -> None:
    from runner.sweep.space import parse_spec

    spec = parse_spec(hpo.sweep_yaml(family, strategy, seed=1, trials=9, epochs=9), "hpo", "hpo")
    assert spec.num_samples == 9 and spec.searcher == {"grid": "grid", "optuna_asha": "optuna",
                                                       "random_asha": "random"}[strategy]
    assert spec.scheduler.type == ("fifo" if strategy == "grid" else "asha")


def test_gpu_benchmark_without_a_gpu_says_so_and_exits_0() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.gpu_throughput"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no GPU visible to TensorFlow: GPU throughput not measured" in run.stdout
    assert "| `gpu_pipeline_vs_memory_ratio` (lowest pipeline / in-memory images/s over all configurations) | " \
           "not measured | >= 0.9x | not measured |" in run.stdout


def test_gpu_benchmark_measures_both_inputs_on_the_cpu_when_allowed() -> None:
    from bench import gpu_throughput

    section = gpu_throughput.section(["baseline"], [8], steps=2, images=40, allow_cpu=True, size=32)
    rows = [line for line in section.body.splitlines() if line.startswith("| baseline | 32 |")]
    assert [row.split(" | ")[2] for row in rows] == ["float32", "mixed"]
    for row in rows:
        pipeline, memory = (float(cell.replace(",", "")) for cell in row.split(" | ")[4:6])
        assert pipeline > 0 and memory > 0
    assert section.figures["gpu_pipeline_vs_memory_ratio"]["value"] is None, "CPU figures are never GPU figures"
