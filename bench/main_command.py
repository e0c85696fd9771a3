"""The main command as a new user runs it: ``python -m runner sweep transfer`` in an empty folder, the demo data
written and cached by the command itself, timed from outside (wall seconds of the whole process), and whether
each trial learnt: its validation metric against the best a one-class model gets on the same validation images
(scikit-learn on the labels of the validation split the trials recorded, not the runner's metric code).

    python -m bench.main_command   # 3-6 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench._results import Section, figure, work_folder

#: Issue 17's goal for the command on the demo data, offline, on 2 cores.
GOAL_S = 180.0


def one_class_level(labels: np.ndarray, metric: str, positive: str) -> float:
    """The best ``metric`` (``val_f1`` of the ``positive`` class, or ``val_f1_macro``) any constant prediction
    gets on ``labels``."""
    from sklearn.metrics import f1_score

    classes = np.unique(labels)
    if metric.endswith("_macro"):
        return max(f1_score(labels, np.full_like(labels, c), average="macro", labels=classes, zero_division=0)
                   for c in classes)
    return max(f1_score(labels, np.full_like(labels, c), pos_label=positive, zero_division=0) for c in classes)


def run_command(work: Path) -> tuple[float, Path]:
    """Runs the command in ``work`` with its own cache; returns its wall seconds and its results folder."""
    results = work / "results"
    env = {**os.environ, "CXR_RUNNER_CACHE": str(work / "cache")}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    with open(work / "output.txt", "w") as output:
        subprocess.run([sys.executable, "-m", "runner", "sweep", "transfer", "--results", str(results)], cwd=work,
                       env=env, stdout=output, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start, results


def validation_labels(board, cache: Path) -> dict[str, np.ndarray]:
    """Each task's validation labels, listed by the runner from the data spec its trials recorded (every
    row has one, a trial ASHA stopped too; the trials of a task share one validation split), checked
    against the rows' ``n_val``."""
    import json

    from runner.tasks import TASKS

    labels = {}
    for task, rows in board.groupby("task"):
        spec = json.loads(rows["config_json"].iloc[0])["data"]
        records = TASKS.get(task).load_data(spec, cache_dir=cache).split("val")
        counts = set(rows["n_val"].dropna().astype(int))
        if counts and counts != {len(records)}:
            raise RuntimeError(f"task {task}: {len(records)} validation images listed, rows say {sorted(counts)}")
        labels[task] = np.array([r.label for r in records])
    return labels


def trial_lines(results: Path, cache: Path) -> tuple[list[str], int]:
    """One table line per trial, and how many trials ended above their one-class level."""
    from runner import leaderboard
    from runner.tasks import TASKS

    board = leaderboard.load(results).sort_values(["task", "model", "trial_id"])
    labels = validation_labels(board, cache)
    lines, learnt = [], 0
    for row in board.itertuples():
        level = one_class_level(labels[row.task], row.sweep_metric, TASKS.get(row.task).classes[-1])
        value = getattr(row, row.sweep_metric)
        above = bool(value > level + 1e-9)
        learnt += above
        lines.append(f"| {row.task} | {row.model} | {row.status} | {row.epochs_run} | {row.sweep_metric} "
                     f"{value:.4f} | {level:.4f} | {'yes' if above else 'no'} |")
    return lines, learnt


def section(work: Path) -> Section:
    seconds, results = run_command(work)
    lines, learnt = trial_lines(results, work / "cache")
    table = ["| task | model | status | epochs | validation metric | one-class level | learnt |",
             "|---|---|---|---|---|---|---|", *lines]
    body = "\n".join([
        f"Offline (`weights: auto` is `none`: random backbones), the `cpu` profile; the whole process took "
        f"{seconds:.1f} s against the {GOAL_S:.0f} s goal; {learnt} of {len(lines)} trials ended above the "
        "one-class level of their validation images. Why the goal is missed, earlier runs of the command and how "
        "the profile was chosen: `docs/cpu-profile.md`.", "", *table])
    figures = {"main_command_wall_s": figure(seconds, GOAL_S, "s", "lower"),
               "main_command_trials_learnt": figure(learnt, None, "trials", "higher"),
               "main_command_trials": figure(len(lines), None, "trials", "higher")}
    labels = {"main_command_wall_s": "python -m runner sweep transfer in an empty folder, offline, 2 cores",
              "main_command_trials_learnt": "trials above the one-class level of their validation images"}
    return Section("The main command", "bench/main_command.py", "python -m bench.main_command", body, figures,
                   labels)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: temporary)")
    args = parser.parse_args(argv)
    section(work_folder(args.out, "main-command-")).report()


if __name__ == "__main__":
    main()
