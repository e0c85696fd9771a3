"""What verifying every input costs: this checkout against the code before the checks (``--before REV``).

Usage: ``python -m bench.input_checks [--before REV] [--rounds 3] [--n 150]``. The input checks (content
hashes, mask statistics, EXIF orientation, duplicate and split checks, file accounting) ride on the one decode
the cache build already does, so they should cost little. Two things are timed, each in a fresh process with
an empty cache, alternating between the two code versions round by round so machine load hits both alike:

- ``data_check``: ``python -m runner data check`` on the 1,200 real PNGs of ``../shared/data/kermany-subset``
  (listing, decode into the cache at 64 px, the checks, the shortcut model), wall time of the command;
- ``first_epoch``: ``bench.pipeline``'s ``cache_first`` (list, decode into the cache, one epoch) on synthetic
  full-size JPEGs at 224 px, as ``bench/pipeline.py`` measures it.

The figures are medians over the rounds. ``OMP_NUM_THREADS=1`` for both versions: the shortcut model's
threads otherwise spin against the decoder's on 2 cores and the same command swings 2.5-11 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench._results import Section, figure
from bench.pipeline import SHARED_KERMANY, write_full_size_jpegs

REPO = Path(__file__).resolve().parents[1]
#: The last commit before the input checks of the "trust no input" issue.
BEFORE = "8cdc6ff"


@contextmanager
def checkout(rev: str):
    """A detached worktree of ``rev``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bench-before-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)


def _environment(code: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code), "CXR_RUNNER_CACHE": str(cache), "OMP_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def time_data_check(code: Path) -> float:
    """Seconds for ``data check`` of the Kermany subset with the code in ``code``, from an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", "data", "check", str(SHARED_KERMANY), "--task", "pneumonia"],
                       cwd=code, env=_environment(code, Path(cache)), check=True, capture_output=True)
        return time.perf_counter() - start


def time_first_epoch(code: Path, jpegs: Path) -> float:
    """Seconds of ``bench.pipeline``'s ``cache_first`` (its own clock) with the code in ``code``."""
    with tempfile.TemporaryDirectory() as cache:
        output = subprocess.run([sys.executable, "-m", "bench.pipeline", "--child", "cache_first", "--data",
                                 str(jpegs), "--size", "224", "--cache-dir", cache], cwd=code,
                                env=_environment(code, Path(cache)), check=True, capture_output=True, text=True)
        return float(json.loads(output.stdout.strip().splitlines()[-1])["seconds"])


def _measure(versions: dict[str, Path], jpegs: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {name: {"data_check": [], "first_epoch": []} for name in versions}
    for _ in range(rounds):
        for name, code in versions.items():
            times[name]["data_check"].append(time_data_check(code))
            times[name]["first_epoch"].append(time_first_epoch(code, jpegs))
    return times


def _table(times: dict[str, dict[str, list[float]]], before: str) -> str:
    lines = ["| measurement | before (s, median) | after (s, median) | after / before | all runs before | "
             "all runs after |", "|---|---|---|---|---|---|"]
    for what in ("data_check", "first_epoch"):
        old, new = times[before][what], times["this checkout"][what]
        lines.append(f"| {what} | {statistics.median(old):.2f} | {statistics.median(new):.2f} | "
                     f"{statistics.median(new) / statistics.median(old):.3f}x | "
                     f"{', '.join(f'{t:.2f}' for t in old)} | {', '.join(f'{t:.2f}' for t in new)} |")
    return "\n".join(lines)


def section(before: str = BEFORE, rounds: int = 3, n: int = 150) -> Section:
    with checkout(before) as old, tempfile.TemporaryDirectory() as scratch:
        jpegs = write_full_size_jpegs(Path(scratch) / "jpegs", n)
        label = f"before ({before})"
        times = _measure({label: old, "this checkout": REPO}, jpegs, rounds)

    def ratio(what: str) -> float:
        return statistics.median(times["this checkout"][what]) / statistics.median(times[label][what])

    figures = {"input_checks_data_check_ratio": figure(ratio("data_check"), 1.5, "x", "lower"),
               "input_checks_first_epoch_ratio": figure(ratio("first_epoch"), None, "x", "lower")}
    labels = {"input_checks_data_check_ratio": "data check of 1,200 Kermany PNGs, with the checks / before them",
              "input_checks_first_epoch_ratio": f"first epoch (cache build) of {n} full-size JPEGs, with / before"}
    body = "\n\n".join([
        f"{rounds} rounds, alternating versions; `data_check`: 1,200 real PNGs at 64 px; `first_epoch`: {n} "
        "synthetic 1024-2048 px JPEGs at 224 px.", _table(times, label),
        "Reading: the checks read each file once (hash and decode from the same bytes) and compute mask "
        "statistics on arrays the decode already holds, so their cost is a small part of the decode."])
    return Section("Input checks", "bench/input_checks.py",
                   f"python -m bench.input_checks --before {before} --rounds {rounds} --n {n}", body, figures, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"the git revision to compare with (default {BEFORE})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=150, help="synthetic JPEGs for the first-epoch measurement")
    args = parser.parse_args()
    section(args.before, args.rounds, args.n).report()


if __name__ == "__main__":
    main()
