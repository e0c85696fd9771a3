"""Sweep overhead: what Ray Tune + Ray Train + the leaderboard cost on top of the trials themselves.

Usage: ``python -m bench.sweep_overhead [--trials 8] [--epochs 8] [--modes serial parallel] [--out DIR]``.

The same N trial configurations run twice, each side timed from process start to exit:

- (a) ``python -m runner sweep`` in local mode (Ray started by the command, FIFO, no early stopping);
- (b) a plain Python loop calling ``run_trial`` on the configurations (a) recorded, read back from its
  trial folders, so both sides train exactly the same trials.

Two ways of sharing this machine's cores, each a fair pair:

- ``serial``: one trial at a time with every core (``resources.cpu`` = all cores) against one loop whose
  TensorFlow uses every core;
- ``parallel``: one trial per core at once against one loop process per core, the configurations dealt out
  between them, TensorFlow on one thread each.

The decoded-image cache is built before either side runs, so neither pays for it. Peak memory is the
machine's used memory (``MemTotal - MemAvailable``) above what it was before the run, sampled every 0.2 s,
so Ray's own processes and its object store count. Figures go to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from bench._results import Section, figure, work_folder

IMAGE_SIZE = 128
DEMO_IMAGES = 240


def sweep_yaml(trials: int, epochs: int, cpu: int) -> dict:
    """FIFO and no early stopping: every trial runs its whole budget on both sides."""
    return {
        "description": "sweep overhead benchmark", "tasks": ["pneumonia"], "models": ["small_cnn"],
        "fixed": {"epochs": epochs, "early_stopping": 0, "image_size": IMAGE_SIZE, "batch_size": 16,
                  "data": {"n": DEMO_IMAGES}, "bootstrap": 200, "augment": False},
        "space": {"learning_rate": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
                  "dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        "num_samples": trials, "seed": 0, "searcher": "random", "scheduler": {"type": "fifo"},
        "resources": {"cpu": cpu, "gpu": 0, "workers": 0},
    }


def used_memory_mb() -> float:
    fields = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    return (fields["MemTotal"] - fields["MemAvailable"]) / 1024


def timed(commands: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Runs the commands at once; wall seconds until the last exits, and peak used memory above the start."""
    before = used_memory_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], used_memory_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    for command, process in zip(commands, processes, strict=True):
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, peak[0] - before


def warm_cache(env: dict[str, str]) -> None:
    """Decode the demo images at the benchmark's size once, outside both timings."""
    code = ("from runner.config import make_config; from runner.tasks import TASKS; from runner.trial import "
            f"load_splits; c = make_config({{'task': 'pneumonia', 'model': 'small_cnn', 'image_size': {IMAGE_SIZE},"
            f" 'data': {{'n': {DEMO_IMAGES}}}}}); load_splits(c, TASKS.get('pneumonia'), print)")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def trial_configs(results: Path) -> list[str]:
    from runner.leaderboard import load

    board = load(results)
    return [str(Path(trial_dir) / "config.yaml") for trial_dir in board.sort_values("started_at")["trial_dir"]]


def run_loop(configs: list[str], threads: int, out: Path) -> None:
    """Side (b): the single-trial function in a plain loop, TensorFlow on ``threads`` threads."""
    import tensorflow as tf

    from runner.config import load_config_file, resolve_config
    from runner.trial import run_trial

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    for path in configs:
        run_trial(resolve_config(load_config_file(Path(path))), out, verbose=False, printer=lambda _: None)


def measure(mode: str, trials: int, epochs: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    cores = os.cpu_count() or 1
    cpu, processes = (cores, 1) if mode == "serial" else (1, cores)
    spec = work / f"{mode}.yaml"
    spec.write_text(yaml.safe_dump(sweep_yaml(trials, epochs, cpu)))
    results = work / f"{mode}-sweep"
    sweep_s, sweep_mb = timed([[sys.executable, "-m", "runner", "sweep", str(spec), "--results", str(results)]], env)
    configs = trial_configs(results)
    if len(configs) != trials:
        raise SystemExit(f"the sweep recorded {len(configs)} trials, not {trials}")
    dealt = [configs[i::processes] for i in range(processes)]
    loops = []
    for index, share in enumerate(dealt):
        listing = work / f"{mode}-loop-{index}.json"
        listing.write_text(json.dumps(share))
        loops.append([sys.executable, "-m", "bench.sweep_overhead", "--loop", str(listing),
                      "--threads", str(cpu), "--out", str(work / f"{mode}-loop")])
    loop_s, loop_mb = timed(loops, env)
    return {"sweep_s": sweep_s, "loop_s": loop_s, "ratio": sweep_s / loop_s, "sweep_mb": sweep_mb,
            "loop_mb": loop_mb, "per_trial_s": loop_s * processes / trials, "concurrent": processes}


READING = """Both sides are timed from process start to exit, so Ray's start-up, TensorFlow imports and
leaderboard writes count; the decoded-image cache is built before either runs. Peak memory is the machine's
used memory above the idle level (Ray's processes and object store included). What keeps the overhead low:
local mode (no Ray Train worker to start per trial), reused trial processes (TensorFlow imported once per
process), a driver that does not import TensorFlow (within one hour on this machine: 1.67 from the
commit before that change, d090b64, and 1.26 after it) and the shared HDF5 cache. Short trials make the
ratio worse: Ray's start-up is paid once per sweep."""


def section(trials: int, epochs: int, modes: list[str], work: Path) -> Section:
    env = {**os.environ, "CXR_RUNNER_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    warm_cache(env)
    found = {mode: measure(mode, trials, epochs, work, env) for mode in modes}
    lines = [f"The same {trials} configurations (small_cnn, {IMAGE_SIZE} px, {DEMO_IMAGES} demo images, {epochs} "
             "epochs; the sweep samples them, the loop reads them back from the sweep's trial folders) run (a) as "
             "`python -m runner sweep` in local mode, FIFO, and (b) as a plain Python loop calling `run_trial`.", "",
             "| mode | trials at once | plain loop s | sweep s | ratio | s per trial (loop) | peak MiB loop | "
             "peak MiB sweep |", "|---|---|---|---|---|---|---|---|"]
    for mode, row in found.items():
        lines.append(f"| {mode} | {row['concurrent']} | {row['loop_s']:.1f} | {row['sweep_s']:.1f} | "
                     f"{row['ratio']:.2f} | {row['per_trial_s']:.1f} | {row['loop_mb']:.0f} | {row['sweep_mb']:.0f} |")
    headline = found.get("parallel") or next(iter(found.values()))
    figures = {"sweep_overhead_ratio": figure(headline["ratio"], 1.25, "x", "lower")}
    figures.update({f"sweep_overhead_ratio_{mode}": figure(row["ratio"], 1.25, "x", "lower")
                    for mode, row in found.items()})
    figures.update({f"sweep_peak_memory_mb_{mode}": figure(row["sweep_mb"], None, "MiB", "lower")
                    for mode, row in found.items()})
    labels = {"sweep_overhead_ratio": "sweep wall time / plain run_trial loop, parallel mode when measured"}
    return Section("Sweep overhead", "bench/sweep_overhead.py",
                   f"python -m bench.sweep_overhead --trials {trials} --epochs {epochs} --modes {' '.join(modes)}",
                   "\n".join([*lines, "", READING]), figures, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--modes", nargs="+", choices=["serial", "parallel"], default=["serial", "parallel"])
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    parser.add_argument("--loop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        run_loop(json.loads(args.loop.read_text()), args.threads, args.out)
        return
    section(args.trials, args.epochs, args.modes, work_folder(args.out, "sweep-overhead-")).report()


if __name__ == "__main__":
    main()
