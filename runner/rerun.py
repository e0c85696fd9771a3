"""``python -m runner rerun SWEEP_ID TRIAL_ID``: retrain one recorded trial from its leaderboard row and show
how its metrics and predictions compare with the recorded ones.

A row carries the whole resolved config (``config_json``) and the data fingerprint, which is all a rerun
needs; the recorded trial folder adds its ``predictions.parquet`` and the TensorFlow intra-op thread count it
ran on (``result.json``). On CPU, with the same data, library versions and thread count (which this command
sets), training is deterministic (seeded, TensorFlow op determinism) and a rerun is bit-identical. On another
thread count TensorFlow adds float32 sums in another order and scores differ in their last digits (about
1e-7): metrics computed from ranks then often still agree, so the command compares every prediction too and
calls a rerun identical only when metrics and predictions all are.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import storage
from runner.errors import ConfigError
from runner.privacy import patient_salt

if TYPE_CHECKING:
    import pandas as pd

METRIC_PREFIXES = ("val_", "test_", "external_test_")


def add_rerun_command(commands: argparse._SubParsersAction) -> None:
    """Add ``rerun`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    rerun = commands.add_parser(
        "rerun", help="retrain a recorded trial and compare its metrics with the recorded ones",
        description="Reads the trial's leaderboard row (its resolved config), trains it again with run_trial "
                    "and prints every metric: recorded, rerun, difference, then whether every prediction is equal. "
                    "On CPU, on the recorded thread count, a rerun is bit-identical.")
    rerun.add_argument("sweep_id", help="the sweep id (python -m runner leaderboard shows it)")
    rerun.add_argument("trial_id", help="the trial id")
    storage.add_results_argument(rerun)
    rerun.add_argument("--out", type=Path, help="folder for the rerun's trial directory "
                                                "(default <results>/reruns/<sweep_id>)")
    rerun.set_defaults(handler=_rerun)


def sweep_rows(results: str, sweep_id: str) -> pd.DataFrame:
    """The sweep's leaderboard rows (by id); a ConfigError naming the folder when it has none."""
    from runner.leaderboard import load

    board = load(results)
    sweep = board[board["sweep_id"] == sweep_id] if len(board) else board
    if sweep.empty:
        raise ConfigError(f"no sweep '{sweep_id}' in {storage.join(results, 'leaderboard')}: check the id and "
                          "--results (python -m runner leaderboard lists the sweeps)")
    return sweep


def find_row(results: str, sweep_id: str, trial_id: str) -> dict[str, Any]:
    """The trial's leaderboard row, if it can be rerun; else a ConfigError saying why and what to do."""
    sweep = sweep_rows(results, sweep_id)
    rows = sweep[sweep["trial_id"] == trial_id]
    if rows.empty:
        known = ", ".join(sweep["trial_id"].head(5))
        raise ConfigError(f"sweep '{sweep_id}' has no trial '{trial_id}': its trials include {known}")
    row = rows.iloc[0].to_dict()
    if row["status"] == "failed":
        raise ConfigError(f"trial '{trial_id}' failed ({row['error']}): it has no metrics to compare; fix the cause "
                          "and run the sweep again")
    if row["status"] == "stopped":
        raise ConfigError(f"trial '{trial_id}' was stopped early by the scheduler after {row['epochs_run']} "
                          "epoch(s): its metrics are not a full trial's; rerun a completed trial")
    if not row.get("config_json"):
        raise ConfigError(f"trial '{trial_id}' has no recorded config (config_json): it cannot be rerun")
    return row


def config_of(row: dict[str, Any]):
    """The trial's config, rebuilt (and validated) from the row's ``config_json``."""
    from runner.config import make_config

    return make_config(json.loads(row["config_json"]))


def _same(recorded: Any, rerun: Any) -> bool:
    if isinstance(recorded, float) and isinstance(rerun, float) and math.isnan(recorded) and math.isnan(rerun):
        return True
    return recorded == rerun


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def compare_metrics(recorded: dict[str, Any], rerun: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(metric, recorded, rerun, rerun - recorded) for every metric column either row has."""
    names = sorted(k for k in {*recorded, *rerun} if k.startswith(METRIC_PREFIXES)
                   and not (_missing(recorded.get(k)) and _missing(rerun.get(k))))
    table = []
    for name in names:
        old, new = recorded.get(name), rerun.get(name)
        numeric = isinstance(old, int | float) and isinstance(new, int | float)
        table.append((name, old, new, 0 if _same(old, new) else new - old if numeric else None))
    return table


def render(table: list[tuple[str, Any, Any, Any]]) -> str:
    cells = [("metric", "recorded", "rerun", "difference")] + [
        (name, _cell(old), _cell(new), _cell(diff)) for name, old, new, diff in table]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)


def _cell(value: Any) -> str:
    if _missing(value):
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class RecordedTrial:
    """What the recorded trial folder adds to its row: the intra-op threads it ran on and its predictions
    (None when the folder, or an older trial's key, is not there)."""

    folder: str
    threads: int | None
    predictions: pd.DataFrame | None


def read_recorded_trial(folder: str) -> RecordedTrial:
    import pandas as pd

    result = storage.read_text(storage.join(folder, "result.json"))
    predictions = storage.read_bytes(storage.join(folder, "predictions.parquet"))
    return RecordedTrial(folder, json.loads(result).get("intra_op_threads") if result else None,
                         pd.read_parquet(io.BytesIO(predictions)) if predictions is not None else None)


def match_threads(recorded: int | None) -> str | None:
    """Runs this process's TensorFlow on the trial's intra-op thread count; a note when it cannot."""
    from runner.trial import intra_op_threads, use_threads

    if recorded is None:
        return (f"note: the trial's thread count is not recorded; this rerun runs TensorFlow on "
                f"{intra_op_threads()} threads: on another count scores differ in their last digits")
    running = use_threads(recorded)
    if running != recorded:
        return (f"note: TensorFlow in this process already runs on {running} threads, the trial ran on {recorded}: "
                "scores may differ in their last digits (run the rerun in a fresh process)")
    return None


@dataclass(frozen=True)
class PredictionDifference:
    """How a rerun's predictions compare with the recorded ones, value by value and exactly."""

    rows: int
    differing: int
    largest: float | None  # the largest absolute difference of a value; None when other images were scored

    @property
    def same_images(self) -> bool:
        return self.largest is not None


def compare_predictions(recorded: pd.DataFrame, rerun: pd.DataFrame) -> PredictionDifference:
    """Rows whose values differ at all (NaN equals NaN). Both files must list the same images, splits and
    labels in the same order; else every row counts as differing."""
    import numpy as np

    numeric = recorded.select_dtypes("number").columns
    others = recorded.columns.difference(numeric)
    if list(recorded.columns) != list(rerun.columns) or not recorded[others].equals(rerun[others]):
        return PredictionDifference(len(rerun), len(rerun), None)
    old, new = recorded[numeric].to_numpy(float), rerun[numeric].to_numpy(float)
    differs = ~((old == new) | (np.isnan(old) & np.isnan(new)))
    largest = float(np.nanmax(np.abs(new - old)[differs])) if differs.any() else 0.0
    return PredictionDifference(len(rerun), int(differs.any(axis=1).sum()), largest)


def verdict(table: list[tuple[str, Any, Any, Any]], predictions: PredictionDifference | None, folder: str) -> str:
    """The last word: ``identical`` only when every metric and every prediction is equal."""
    differing = sum(diff != 0 for *_, diff in table)
    metrics = (f"all {len(table)} metrics equal" if not differing
               else f"{differing} of {len(table)} metrics differ")
    if predictions is None:
        return f"{metrics}; predictions not compared ({folder}/predictions.parquet is not readable)"
    if not predictions.same_images:
        return f"{metrics}; the rerun predicted other images than the recorded trial (split, file or label differ)"
    if not differing and not predictions.differing:
        return f"identical: {metrics} and all {predictions.rows} predictions equal"
    if not predictions.differing:
        return f"{metrics}; all {predictions.rows} predictions equal"
    return (f"{metrics}; {predictions.differing} of {predictions.rows} predictions differ (largest difference "
            f"{predictions.largest:.3g})")


def _rerun(args: argparse.Namespace) -> int:
    import pandas as pd

    from runner.leaderboard import row_from_result
    from runner.trial import run_trial

    row = find_row(args.results, args.sweep_id, args.trial_id)
    if args.out is None and storage.is_uri(args.results):
        raise ConfigError(f"results are at {args.results}: pass --out DIR for the rerun's trial directory")
    out = args.out or Path(args.results) / "reruns" / args.sweep_id
    config = config_of(row)
    recorded = read_recorded_trial(str(row["trial_dir"]))
    note = match_threads(recorded.threads)
    if note:
        print(note)
    trial_id = f"{args.trial_id}-rerun-{datetime.now():%Y%m%d-%H%M%S}"
    result = run_trial(config, out, trial_id=trial_id, verbose=False, patient_salt=patient_salt(args.results))
    rerun_row = row_from_result(result.result, sweep_id=args.sweep_id, sweep_name=str(row["sweep_name"]))
    table = compare_metrics(row, rerun_row)
    print(render(table))
    if rerun_row["data_fingerprint"] != row["data_fingerprint"]:
        print("note: the data changed since the trial ran (another data fingerprint): differences may come from it")
    predictions = None if recorded.predictions is None else compare_predictions(
        recorded.predictions, pd.read_parquet(result.directory / "predictions.parquet"))
    print(verdict(table, predictions, recorded.folder))
    print(f"rerun trial directory: {result.directory}")
    return 0
