"""Memory across a long sweep: do reused trial processes grow from trial to trial?

Usage: ``python -m bench.sweep_memory [--trials 50] [--out DIR]``. Runs a sweep of many tiny trials
(baseline CNN, 32 px, 1 epoch, 60 demo images) in local mode; Tune reuses each trial process, so every
leaderboard row's ``rss_mb`` (the process's resident memory at the trial's end) traces one process over
many trials. Reports the resident memory after the first few trials, after the last few, and the growth per
trial (a least-squares slope over the trials after warm-up). ``tests/test_sweep_memory.py`` runs the same
sweep and fails on unbounded growth; this script writes the figures to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench._results import figure, machine, record, work_folder

WARM_UP = 5  # the first trials of a process build caches and trace graphs: growth there is expected


def memory_sweep_yaml(trials: int) -> dict:
    return {
        "description": "many tiny trials: memory across reused trial processes",
        "tasks": ["pneumonia"], "models": ["baseline"],
        "fixed": {"epochs": 1, "image_size": 32, "batch_size": 16, "bootstrap": 20, "early_stopping": 0,
                  "data": {"n": 60}},
        "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                  "filters": {"type": "categorical", "choices": [4, 8, 16]}},
        "num_samples": trials, "seed": 0, "searcher": "random", "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0, "workers": 0},
    }


@dataclass(frozen=True)
class MemoryTrace:
    trials: int
    first_mb: float
    last_mb: float
    slope_mb_per_trial: float


def sweep_command(work: Path, trials: int) -> tuple[list[str], dict[str, str], Path]:
    """The memory sweep as a ``python -m runner sweep`` command line, its environment and results folder."""
    spec = work / "memory.yaml"
    spec.write_text(yaml.safe_dump(memory_sweep_yaml(trials)))
    results = work / "results"
    env = {**os.environ, "CXR_RUNNER_CACHE": os.environ.get("CXR_RUNNER_CACHE", str(work / "cache"))}
    return [sys.executable, "-m", "runner", "sweep", str(spec), "--results", str(results)], env, results


def slope(values: np.ndarray, positions: np.ndarray | None = None) -> float:
    """Least-squares growth per step (or per unit of ``positions``); 0 with fewer than two values."""
    if len(values) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(values)) if positions is None else positions, values, 1)[0])


def trace_from_rows(board: pd.DataFrame) -> MemoryTrace:
    """The leaderboard's ``rss_mb`` column in the order trials finished."""
    board = board.sort_values("finished_at")
    rss = board["rss_mb"].to_numpy(dtype=float)
    return MemoryTrace(trials=len(board), first_mb=float(np.median(rss[:WARM_UP])),
                       last_mb=float(np.median(rss[-WARM_UP:])), slope_mb_per_trial=slope(rss[WARM_UP:]))


def run_memory_sweep(work: Path, trials: int) -> MemoryTrace:
    """The sweep through the real command, then the trace of its rows."""
    argv, env, results = sweep_command(work, trials)
    run = subprocess.run(argv, capture_output=True, text=True, env=env)
    if run.returncode:
        raise RuntimeError(f"memory sweep failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    from runner.leaderboard import load

    return trace_from_rows(load(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args()
    work = work_folder(args.out, "sweep-memory-")
    trace = run_memory_sweep(work, args.trials)
    print(f"\n{machine()}; {trace.trials} trials, 2 reused trial processes\n")
    print("| trials | RSS after first 5 (median MiB) | RSS at last 5 (median MiB) | growth per trial after warm-up |")
    print("|---|---|---|---|")
    print(f"| {trace.trials} | {trace.first_mb:.0f} | {trace.last_mb:.0f} | {trace.slope_mb_per_trial:+.2f} MiB |")
    record({"sweep_memory_growth_mb_per_trial": figure(trace.slope_mb_per_trial, 2.0, "MiB/trial", "lower"),
            "sweep_trial_rss_mb_last": figure(trace.last_mb, None, "MiB", "lower")})


if __name__ == "__main__":
    main()
