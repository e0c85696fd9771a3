"""Soak: a sweep of many tiny trials in local mode, watched from outside for leaks.

Usage: ``python -m bench.soak [--trials 100] [--out DIR]``. Runs the sweep of ``bench.sweep_memory`` (baseline
CNN, 32 px, 1 epoch, 60 demo images per trial) through the real command and, every ``INTERVAL_S`` seconds,
samples the whole process tree (the driver, Ray's GCS and raylet, the reused trial processes): summed resident
memory and open file descriptors. Reports the peak memory, the memory and descriptor trend over the steady
part (from the end of the first ``WARM_UP`` trials to the last trial's end), per-trial growth of the trial
processes from the leaderboard's ``rss_mb``, and the wall time. Flat memory and descriptors mean no leak
across trials. ``run(trials, out)`` returns the figures for ``python -m bench``; ``main`` also records them.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench._proctree import TreeSample, sample
from bench._results import Section, figure, work_folder
from bench.sweep_memory import WARM_UP, slope, sweep_command, trace_from_rows

INTERVAL_S = 2.0


@dataclass(frozen=True)
class Sample(TreeSample):
    """A tree sample and when it was taken (seconds since the sweep started)."""

    seconds: float


class TreeSampler(threading.Thread):
    """Samples a process tree every ``INTERVAL_S`` until stopped; runs in the benchmark process, outside the
    tree it measures."""

    def __init__(self, pid: int, started: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.started = pid, started
        self.samples: list[Sample] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(INTERVAL_S):
            self.samples.append(Sample(**asdict(sample(self.pid)), seconds=time.monotonic() - self.started))

    def stop(self) -> list[Sample]:
        self._done.set()
        self.join()
        return self.samples


def _trial_ends(board: pd.DataFrame, started_wall: float) -> np.ndarray:
    """When each trial finished, in seconds since the sweep started (leaderboard ``finished_at``)."""
    finished = board["finished_at"].dropna().sort_values()
    return np.array([stamp.timestamp() - started_wall for stamp in finished])


def _steady(samples: list[Sample], ends: np.ndarray) -> list[Sample]:
    """Samples from the end of the warm-up trials to the last trial's end (all of them in a tiny run)."""
    start_s, end_s = ends[min(WARM_UP, len(ends)) - 1], ends[-1]
    steady = [s for s in samples if start_s <= s.seconds <= end_s]
    return steady if len(steady) >= 2 else samples


def _sampled_sweep(work: Path, trials: int) -> tuple[list[Sample], float, Path, float]:
    """Runs the sweep command while sampling it: (samples, wall seconds, results folder, wall-clock start)."""
    argv, env, results = sweep_command(work, trials)
    started_wall, started = time.time(), time.monotonic()
    with (work / "sweep.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(process.pid, started)
        sampler.start()
        returncode = process.wait()
    wall = time.monotonic() - started
    samples = sampler.stop()
    if returncode:
        raise RuntimeError(f"soak sweep failed ({returncode}): see {work / 'sweep.log'}")
    (work / "samples.csv").write_text("seconds,processes,rss_mb,fds\n" + "".join(
        f"{s.seconds:.1f},{s.processes},{s.rss_mb:.1f},{s.fds}\n" for s in samples))
    return samples, wall, results, started_wall


def run(trials: int, out: Path | None = None) -> dict[str, dict]:
    """Run the soak and return its figures (``{name: figure}``); ``out`` keeps the work folder."""
    from runner.leaderboard import load

    samples, wall, results, started_wall = _sampled_sweep(work_folder(out, "soak-"), trials)
    board = load(results)
    steady = _steady(samples, _trial_ends(board, started_wall))
    times = np.array([s.seconds for s in steady])
    rss = np.array([s.rss_mb for s in steady])
    fds = np.array([s.fds for s in steady], dtype=float)
    trace = trace_from_rows(board)
    return {
        "soak_trials": figure(trace.trials, trials, "trials", "higher"),
        "soak_wall_s": figure(wall, None, "s", "lower"),
        "soak_peak_rss_mb": figure(max(s.rss_mb for s in samples), None, "MiB", "lower"),
        "soak_steady_rss_start_mb": figure(float(np.median(rss[:5])), None, "MiB", "lower"),
        "soak_steady_rss_end_mb": figure(float(np.median(rss[-5:])), None, "MiB", "lower"),
        "soak_rss_growth_mb_per_hour": figure(slope(rss, times) * 3600, None, "MiB/h", "lower"),
        "soak_trial_rss_growth_mb_per_trial": figure(trace.slope_mb_per_trial, 2.0, "MiB/trial", "lower"),
        "soak_fds_start": figure(fds[0], None, "fds", "lower"),
        "soak_fds_end": figure(fds[-1], None, "fds", "lower"),
        "soak_fds_growth_per_hour": figure(slope(fds, times) * 3600, None, "fds/h", "lower"),
    }


def report(figures: dict[str, dict]) -> str:
    """The figures as a Markdown table row for BENCHMARKS.md."""
    v = {name: entry["value"] for name, entry in figures.items()}
    return "\n".join([
        "| trials | wall | peak RSS (whole tree) | steady RSS start -> end | RSS trend | trial-process growth "
        "| open fds start -> end | fd trend |",
        "|---|---|---|---|---|---|---|---|",
        f"| {v['soak_trials']:.0f} | {v['soak_wall_s']:.0f} s | {v['soak_peak_rss_mb']:.0f} MiB "
        f"| {v['soak_steady_rss_start_mb']:.0f} -> {v['soak_steady_rss_end_mb']:.0f} MiB "
        f"| {v['soak_rss_growth_mb_per_hour']:+.1f} MiB/h | {v['soak_trial_rss_growth_mb_per_trial']:+.2f} MiB/trial "
        f"| {v['soak_fds_start']:.0f} -> {v['soak_fds_end']:.0f} | {v['soak_fds_growth_per_hour']:+.1f}/h |",
    ])


READING = """The whole tree's memory is the sum of each process's resident memory (shared pages count more than
once), sampled every few seconds; the trend is a least-squares slope over the steady part, after the first
trials warm the reused trial processes up. Flat memory and descriptors mean nothing leaks from trial to
trial; `soak_trial_rss_growth_mb_per_trial` is the same measure as `tests/test_sweep_memory.py`."""


def section(trials: int, out: Path | None = None) -> Section:
    figures = run(trials, out)
    body = f"{trials} trials, local mode, samples every {INTERVAL_S:g} s.\n\n{report(figures)}\n\n{READING}"
    return Section("Soak", "bench/soak.py", f"python -m bench.soak --trials {trials}", body, figures,
                   {"soak_trial_rss_growth_mb_per_trial": "trial processes' memory growth per trial after warm-up",
                    "soak_trials": "trials recorded"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    section(args.trials, args.out).report()


if __name__ == "__main__":
    main()
