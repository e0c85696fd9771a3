"""``python -m runner confirm SWEEP_ID --top K --seeds S``: is the sweep's winner the best configuration, or
the luckiest seed?

A sweep trains each configuration once, and picking the best of many single runs picks the luckiest too: the
winner's own validation value is biased upwards. ``confirm`` takes each task's top K completed trials (ranked
as the leaderboard ranks them: by the metric the sweep optimised, in its mode), trains each again with S new
seeds as a Ray sweep on the original sweep's resources, and compares the configurations by their mean over
those new runs. The original run is left out of every statistic for that reason: it was chosen for its value.

Where the runs live: the confirmation is a sweep of its own, ``<sweep_id>-confirm`` (``confirm_sweep_id``), one
leaderboard row per run, named ``<original trial id>-seed<seed>`` and carrying ``confirm_of`` (the original trial
id). Run ``i`` (0-based) of a trial whose seed was ``s`` uses seed ``s + 1 + i`` (``new_seed``; from 0 again past
``MAX_SEED``): fixed by the original seed and the index, never the original seed, distinct within a configuration.
So a run is the same run whenever the command is given: running it again trains only the runs without a row (none,
once all are recorded), a larger ``--top`` or ``--seeds`` adds only the new runs, and an interrupted confirmation
resumes its Ray Tune experiment, unfinished runs from their last checkpoint, as ``sweep --resume`` does.

Statistics, per configuration over its completed new runs: the mean, the sample standard deviation
(``ddof=1``) and a two-sided 95% Student-t interval of the mean, ``mean +- t(0.975, n-1) * sd / sqrt(n)``
(``spread``): it assumes seed-to-seed variation roughly normal, and with few seeds it is wide, as it should
be; with one run there is no sd and no interval. The test and external-test counterparts of the metric are
summarised the same way when the rows hold them (shown, never used to choose).

Reading and summarising imports neither TensorFlow nor Ray (the HTML report's "confirmation" section uses
``summarise``); running the confirmation imports them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from runner import leaderboard, storage
from runner.config import MAX_SEED
from runner.errors import ConfigError
from runner.leaderboard.schema import SPLITS
from runner.rerun import config_of, sweep_rows

if TYPE_CHECKING:
    from runner.sweep.record import SweepRun

#: The confidence level of the interval of each configuration's mean.
CONFIDENCE = 0.95


def add_confirm_command(commands: argparse._SubParsersAction) -> None:
    """Add ``confirm`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    confirm = commands.add_parser(
        "confirm", help="retrain a sweep's top configurations with new seeds: is the winner real?",
        description="Retrains each task's top K completed trials (by the metric the sweep optimised) with S new "
                    "seeds as a Ray sweep on the sweep's resources, one leaderboard row per run (sweep "
                    "<SWEEP_ID>-confirm, column confirm_of), then prints per configuration the mean, sd and 95% "
                    "t-interval of its validation metric over the new runs (test / external test beside it), the "
                    "winner by mean and whether the single-run winner kept its rank. Running it again trains only "
                    "the runs without a row.")
    confirm.add_argument("sweep_id", help="the sweep id (python -m runner leaderboard shows it)")
    confirm.add_argument("--top", type=int, default=3, metavar="K", help="configurations per task (default 3)")
    confirm.add_argument("--seeds", type=int, default=3, metavar="S", help="new seeds per configuration (default 3)")
    storage.add_results_argument(confirm)
    confirm.add_argument("--address", help="Ray cluster address ('auto' to join the running cluster)")
    confirm.add_argument("--verbose", action="store_true",
                         help="also show Ray's, TensorFlow's and the runs' own output (otherwise in the log)")
    confirm.set_defaults(handler=_confirm)


# ------------------------------------------------------------------------------------------------ plan


def confirm_sweep_id(sweep_id: str) -> str:
    """The sweep id of a sweep's confirmation runs: one per sweep, so the runs of every ``confirm`` given for it
    gather in one place, and the sweep's own leaderboard (``--sweep SWEEP_ID``, its report's ranking, ``stop:``
    rules, warm starts) holds only what its search ran."""
    return f"{sweep_id}-confirm"


def new_seed(original: int, index: int) -> int:
    """The seed of confirmation run ``index`` (0-based) of a trial trained with seed ``original``: fixed by the
    two, never the original one, and distinct for distinct indices. Neighbouring seeds give unrelated random
    streams (NumPy and TensorFlow hash the seed), so nothing is gained by scattering them."""
    if index < 0:
        raise ValueError(f"a run index is at least 0, not {index}")
    return (original + 1 + index) % (MAX_SEED + 1)  # past the largest seed a trial takes, from 0 again


def run_id(trial_id: str, seed: int) -> str:
    """A confirmation run's row and folder name: the original trial and the run's seed."""
    return f"{trial_id}-seed{seed}"


@dataclass(frozen=True)
class ConfirmRun:
    """One confirmation run: the original trial it repeats, its new seed, and the config keys it trains with
    (the original's, seed replaced)."""

    run_id: str
    confirm_of: str
    seed: int
    values: Mapping[str, Any]


def best_rows(board: pd.DataFrame, top_k: int, sweep_id: str) -> pd.DataFrame:
    """Each task's ``top_k`` (at least 1) best completed trials of a sweep's rows, ranked as the leaderboard
    ranks them (``leaderboard.top``: the metric the sweep optimised, in its mode), with their ``rank``. Stopped
    trials are left out (their metrics are a partly trained model's), and so are completed ones without a value."""
    completed = board[board["status"] == "completed"]
    if completed.empty:
        counts = ", ".join(f"{count} {status}" for status, count in board["status"].value_counts().items())
        raise ConfigError(f"sweep '{sweep_id}' has no completed trial to confirm ({counts}): resume or rerun the "
                          "sweep first (python -m runner sweep NAME --resume SWEEP_ID)")
    chosen = []
    for _, rows in completed.groupby("task", sort=True):
        ranked = leaderboard.top(rows, n=len(rows))
        ranked = ranked[ranked[ranked.attrs["by"]].notna()]
        chosen.append(ranked.head(top_k))
    return pd.concat(chosen, ignore_index=True)


def plan_runs(chosen: pd.DataFrame, seeds: int) -> dict[str, ConfirmRun]:
    """The ``seeds`` (at least 1) runs of each chosen trial, by run id, each with the trial's recorded config
    (rebuilt and validated as ``rerun`` does) and its new seed."""
    runs = {}
    for row in chosen.to_dict("records"):
        if not row.get("config_json"):
            raise ConfigError(f"trial '{row['trial_id']}' has no recorded config (config_json): it cannot be "
                              "retrained")
        values = config_of(row).hyperparameters()
        for index in range(seeds):
            seed = new_seed(int(values["seed"]), index)
            run = ConfirmRun(run_id(str(row["trial_id"]), seed), str(row["trial_id"]), seed, {**values, "seed": seed})
            runs[run.run_id] = run
    return runs


# ----------------------------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Spread:
    """One configuration's values over its runs: how many, mean, sample sd and the t-interval of the mean
    (NaN where undefined: no runs, or one run's sd and interval)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def spread(values: Sequence[float], confidence: float = CONFIDENCE) -> Spread:
    """Mean, sd (``ddof=1``) and the two-sided Student-t interval ``mean +- t((1 + confidence) / 2, n - 1) *
    sd / sqrt(n)`` of the finite ``values``."""
    from scipy import stats

    finite = np.asarray([value for value in values if value is not None and math.isfinite(value)], dtype=float)
    n = len(finite)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(finite.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    sd = float(finite.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Spread(n, mean, sd, mean - half, mean + half)


def _counterparts(metric: str, rows: pd.DataFrame) -> list[str]:
    """The ranking metric and its test / external-test columns (``val_f1``: ``test_f1``,
    ``external_test_f1``), those the runs hold values of."""
    key = metric.removeprefix("val_")
    columns = [metric] + [f"{split}_{key}" for split in SPLITS if split != "val"]
    return [c for c in columns if c == metric or (c in rows and rows[c].notna().any())]


@dataclass(frozen=True)
class TaskSummary:
    """One task's confirmation: per confirmed configuration (rows of ``table``, in single-run rank order) its
    single-run rank and value and a ``Spread`` per metric column (``columns``)."""

    task: str
    metric: str
    mode: str
    columns: tuple[str, ...]
    table: pd.DataFrame

    @property
    def winner(self) -> pd.Series:
        """The configuration with the best mean (ties: the better single run)."""
        return self.table.sort_values(["rank_by_mean", "rank"], kind="mergesort").iloc[0]

    @property
    def single_run_winner(self) -> pd.Series:
        return self.table.iloc[0]

    def verdict(self) -> str:
        """The winner by mean and whether the best single run kept its rank, in words."""
        winner, first = self.winner, self.single_run_winner
        mean = first[f"{self.metric}_mean"]
        said = (f"winner by mean: {winner['trial_id']} ({winner['model']}), {self.metric} "
                f"{_number(winner[f'{self.metric}_mean'])} over {winner['runs']} run(s); ")
        if pd.isna(mean):
            return said + f"the single-run winner {first['trial_id']} has no completed confirmation run"
        if first["rank_by_mean"] == 1:
            return said + f"the single-run winner {first['trial_id']} kept its rank (best by mean too)"
        return said + (f"the single-run winner {first['trial_id']} did not keep its rank: "
                       f"{_ordinal(int(first['rank_by_mean']))} of {len(self.table)} by mean")


def summarise(sweep_board: pd.DataFrame, confirm_board: pd.DataFrame) -> list[TaskSummary]:
    """Per task, each original trial that has confirmation rows in ``confirm_board``: its rank among the
    sweep's completed trials (single run), its single-run value, the runs recorded (completed, failed) and the
    ``Spread`` of each metric column over the completed runs; then its rank by mean among the confirmed."""
    if confirm_board.empty or "confirm_of" not in confirm_board:
        return []
    completed_runs = confirm_board[confirm_board["status"] == "completed"]
    summaries = []
    originals = sweep_board[sweep_board["status"] == "completed"]
    for task, rows in originals.groupby("task", sort=True):
        ranked = leaderboard.top(rows, n=len(rows))
        confirmed = ranked[ranked["trial_id"].isin(confirm_board["confirm_of"])]
        if confirmed.empty:
            continue
        metric, mode = ranked.attrs["by"], ranked.attrs["mode"]
        runs_of = {trial: completed_runs[completed_runs["confirm_of"] == trial]
                   for trial in confirmed["trial_id"]}
        columns = tuple(_counterparts(metric, completed_runs))
        records = []
        for original in confirmed.to_dict("records"):
            runs = runs_of[original["trial_id"]]
            all_runs = confirm_board[confirm_board["confirm_of"] == original["trial_id"]]
            record = {"rank": int(original["rank"]), "trial_id": original["trial_id"], "model": original["model"],
                      "single_run": original[metric], "runs": len(runs),
                      "failed": int((all_runs["status"] == "failed").sum())}
            for column in columns:
                found = spread(runs[column].tolist() if column in runs else [])
                record.update({f"{column}_{field}": getattr(found, field) for field in ("mean", "sd", "low", "high")})
            records.append(record)
        table = pd.DataFrame.from_records(records)
        table["rank_by_mean"] = table[f"{metric}_mean"].rank(ascending=mode == "min", method="min",
                                                             na_option="bottom").astype(int)
        summaries.append(TaskSummary(str(task), metric, mode, columns, table))
    return summaries


# ----------------------------------------------------------------------------------------------- render


def _number(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4f}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _interval(low: float, high: float) -> str:
    return "-" if pd.isna(low) else f"[{low:.4f}, {high:.4f}]"


def render(summary: TaskSummary) -> str:
    """One task's table (single-run rank, rank by mean, trial, model, single-run value, runs, then per metric
    column ``mean ± sd`` and its interval) and its verdict."""
    level = f"{CONFIDENCE:.0%}"
    header = ["rank", "by mean", "trial", "model", "single run", "runs"]
    for column in summary.columns:
        header += [f"{column} mean ± sd", f"{level} CI"]
    cells = [header]
    for record in summary.table.to_dict("records"):
        line = [str(record["rank"]), str(record["rank_by_mean"]), str(record["trial_id"]), str(record["model"]),
                _number(record["single_run"]),
                f"{record['runs']}" + (f" ({record['failed']} failed)" if record["failed"] else "")]
        for column in summary.columns:
            mean, sd = record[f"{column}_mean"], record[f"{column}_sd"]
            line += [f"{_number(mean)} ± {_number(sd)}", _interval(record[f"{column}_low"], record[f"{column}_high"])]
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    title = (f"{summary.task}: {summary.metric} ({summary.mode}) over each configuration's new seeds (the "
             f"original run left out: it was chosen for its value); {level} CI: Student-t interval of the mean")
    return "\n".join([title, *lines, summary.verdict()])


# ------------------------------------------------------------------------------------------------ command


def _train(original: SweepRun, confirm: SweepRun, runs: dict[str, ConfirmRun], address: str | None,
           printer: Callable[[str], None]) -> bool:
    """The runs trained as ``original``'s trials are, on its resources, concurrency and retries (the sweep's
    own layers, as its ``--resume`` rebuilds them). Returns whether every run has its row."""
    from runner.sweep.assemble import build_sweep
    from runner.sweep.run import run_confirm, stop_ray

    with original.start_directory(printer):
        original.check_space_unchanged()
        spec = build_sweep(original.source, original.overrides, original.profile, original.quick,
                           resolve_weights=False, printer=printer)
    try:
        return run_confirm(spec, confirm, runs, address=address, printer=printer)
    except KeyboardInterrupt:
        return False
    finally:
        stop_ray()


def _confirm(args: argparse.Namespace) -> int:
    """Plans, trains and summarises behind the sweep's console: the live view (or one plain line per run
    event) on the terminal, and everything Ray, Tune and TensorFlow print (from TensorFlow's import on, which
    reading a trial's configuration does: the model registry) in ``<results>/sweeps/<id>-confirm.log``."""
    from runner.sweep.console import SweepConsole, log_path
    from runner.sweep.record import find_sweep

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, not {args.top}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {args.seeds}")
    results = storage.resolve(args.results)
    board = sweep_rows(results, args.sweep_id)
    chosen = best_rows(board, args.top, args.sweep_id)
    original = find_sweep(results, "", args.sweep_id)
    confirm = replace(original, sweep_id=confirm_sweep_id(args.sweep_id), name=f"{original.name}-confirm",
                      results=results, mlflow=None, started_at=None, stopped=None)
    with SweepConsole(log_path(confirm), verbose=args.verbose) as console:
        runs = plan_runs(chosen, args.seeds)
        missing = [run for run in runs if leaderboard.read_row(results, confirm.sweep_id, run) is None]
        trained = True
        if missing:
            if not args.verbose:
                console.line(f"log: {console.log} (Ray's, TensorFlow's and the runs' own output; --verbose shows it)")
            console.line(f"confirming {args.sweep_id}: {len(runs) // args.seeds} configuration(s) x {args.seeds} "
                         f"new seed(s), {len(missing)} run(s) to train ({len(runs) - len(missing)} recorded already)")
            trained = _train(original, confirm, runs, args.address, console.line)
    if not trained:
        print(f"interrupted: finished runs are in the leaderboard; resume with python -m runner confirm "
              f"{args.sweep_id} --top {args.top} --seeds {args.seeds} --results {results}")
        return 130
    if not missing:
        print(f"all {len(runs)} confirmation runs of {args.sweep_id} (top {args.top} x {args.seeds} seeds) are "
              "recorded already")
    recorded = leaderboard.load(results, sweep=confirm.sweep_id)
    summaries = summarise(board, recorded[recorded["trial_id"].isin(runs)])
    print("\n\n".join(render(summary) for summary in summaries))
    print(f"python -m runner leaderboard --sweep {confirm.sweep_id} --results {results}")
    return 0
