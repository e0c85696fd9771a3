"""``python -m runner evaluate SWEEP_ID --data SPEC``: recorded trials' models on other data sets, without
retraining (external validation: does the model hold on another hospital's images?).

Each chosen trial (``--trials best``, the default: the best by validation of each task and model; ``all``; or
trial ids) is evaluated on each data set as the trial evaluated its own external test set (``runner.trial``):
its ``model.keras`` predicts every usable image of the set, used whole, at the trial's image size; the task's
metrics come with their bootstrap intervals, threshold metrics at 0.5 and at the trial's validation-tuned
threshold (tuned again from the validation rows of its ``predictions.parquet``, so no validation image is
needed), calibration with the trial's validation-fitted temperature when it scaled. Nothing is fitted on the
external set.

Each (trial, data set) is one row of the evaluations data set, ``<results>/evaluations/<sweep_id>/
<trial_id>--<data fingerprint>.parquet``: evaluating the same trial on the same data again replaces its row
(idempotent), other data makes another. Columns: identity and data (``EVALUATION_TYPES``), then the metrics as
``eval_<metric>`` (float; ``eval_confusion_matrix`` JSON). ``load_evaluations`` reads a sweep's rows; DuckDB
reads every sweep's with ``read_parquet('results/evaluations/**/*.parquet', union_by_name=true)``; both join
the leaderboard by ``trial_id``.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runner import storage
from runner.errors import ConfigError, CxrError

if TYPE_CHECKING:
    from runner.config import TrialConfig
    from runner.data import CachedData
    from runner.tasks import Task

__all__ = ["EVALUATION_TYPES", "add_evaluate_command", "choose_trials", "evaluate_trial", "load_evaluations",
           "write_evaluation"]

METRIC_PREFIX = "eval_"
EVALUATION_TYPES: dict[str, pa.DataType] = {
    "sweep_id": pa.string(), "trial_id": pa.string(), "task": pa.string(), "model": pa.string(),
    "data_root": pa.string(), "data_layout": pa.string(), "data_fingerprint": pa.string(),
    "data_classes": pa.string(), "n_images": pa.int64(), "data_skipped": pa.int64(),
    "temperature": pa.float64(), "evaluated_at": pa.timestamp("us", tz="UTC"),
}
"""The columns before the metrics, with their one type. ``temperature``: the trial's, applied to the
``eval_*_calibrated`` figures (null when the trial did not scale)."""


# --------------------------------------------------------------------------------------------------- CLI


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    command = commands.add_parser(
        "evaluate", help="evaluate a sweep's recorded models on other data sets (no retraining)",
        description="Loads recorded trials' models and evaluates each on each --data set: the task's metrics "
                    "with 95% CIs, at 0.5 and at the trial's validation-tuned threshold, and calibration. Rows go "
                    "to <results>/evaluations/<sweep_id>/, one per trial and data fingerprint.")
    command.add_argument("sweep_id", help="the sweep id (python -m runner leaderboard shows them)")
    command.add_argument("--trials", nargs="+", default=["best"], metavar="best|all|ID",
                         help="best (default: the best by validation of each task and model), all, or trial ids")
    command.add_argument("--data", action="append", required=True, metavar="SPEC",
                         help="a data folder, CSV, data-spec YAML or demo; repeat for several data sets")
    storage.add_results_argument(command)
    command.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from runner.config import normalise_data
    from runner.leaderboard import load

    board = load(args.results, sweep=args.sweep_id)
    chosen = choose_trials(board, args.sweep_id, args.results, args.trials)
    for spec in args.data:
        rows = []
        for _, trial in chosen.iterrows():
            found = evaluate_trial(trial.to_dict(), normalise_data(spec))
            write_evaluation(args.results, found)
            rows.append((trial, found))
        print(f"\n{rows[0][1]['data_root']} (data {rows[0][1]['data_fingerprint'][:12]}, "
              f"{rows[0][1]['n_images']} images)")
        print(render_comparison(rows))
    print(f"\nrows in {storage.join(args.results, 'evaluations', quote(args.sweep_id, safe=''))}")
    return 0


def choose_trials(board: pd.DataFrame, sweep_id: str, results: str, trials: Sequence[str]) -> pd.DataFrame:
    """The completed trials to evaluate: ``best`` of each task and model by the sweep's validation metric
    (``leaderboard.top``), ``all``, or the ones named; a name the sweep lacks is an error listing some."""
    from runner.leaderboard import top

    if board.empty:
        raise ConfigError(f"no sweep '{sweep_id}' in {storage.join(results, 'leaderboard')}: check the id and "
                          "--results (python -m runner leaderboard lists the sweeps)")
    done = board[(board["status"] == "completed") & board["trial_dir"].notna()]
    if done.empty:
        raise ConfigError(f"sweep '{sweep_id}' has no completed trial with a trial folder to evaluate")
    if list(trials) == ["best"]:
        return pd.concat([top(rows, n=1) for _, rows in done.groupby(["task", "model"], sort=True)],
                         ignore_index=True)
    if list(trials) == ["all"]:
        return done.reset_index(drop=True)
    unknown = [trial for trial in trials if trial not in set(done["trial_id"])]
    if unknown:
        raise ConfigError(f"sweep '{sweep_id}' has no completed trial '{unknown[0]}': its completed trials include "
                          f"{', '.join(done['trial_id'].head(5))} (or use --trials best / all)")
    return done[done["trial_id"].isin(trials)].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- evaluating


def evaluate_trial(row: dict[str, Any], spec: Any, printer: Callable[[str], None] = print) -> dict[str, Any]:
    """One leaderboard row's trial evaluated on the data set ``spec``: the evaluation row (not yet written)."""
    from runner.data import Record
    from runner.data.cache import refuse_seen_images
    from runner.rerun import config_of
    from runner.tasks import TASKS, Split
    from runner.trial import Evaluation, add_split, load_whole, setup_backend

    config = config_of(row)
    task = TASKS.get(config.task)
    folder = str(row["trial_dir"])
    recorded = storage.read_bytes(storage.join(folder, "predictions.parquet"))
    if recorded is None:
        raise ConfigError(f"{folder}/predictions.parquet is not readable: the trial's validation predictions tune "
                          "its threshold; evaluate where its trial folder is")
    val_rows = pd.read_parquet(io.BytesIO(recorded)).query("split == 'val'")
    val = Split("val", [Record(str(f), str(label)) for f, label in zip(val_rows["file"], val_rows["label"],
                                                                          strict=True)],
                np.zeros((len(val_rows), 0), np.uint8))
    val_scores = task.recorded_scores(val_rows)
    setup_backend(config)
    cached, split = load_whole(config, task, spec)
    own, own_splits = _own_data(config, task, printer)
    if own is not None:
        refuse_seen_images(cached, own)
    # a score read against the training images (anomaly ``score: latent``) needs them; no other does
    train = own_splits["train"] if task.model_features(config.task_params) else None
    scores = task.predict(_load_model(folder), split, config.task_params, train)
    temperature = row.get("val_temperature")
    temperature = None if temperature is None or pd.isna(temperature) else float(temperature)
    found = Evaluation({}, [], {"reliability": {}} if task.calibrated else None)  # reliability tables: not kept
    add_split(found, config, task, split, scores,
              task.evaluate(split, scores, config.task_params, val=None if val_scores is None else (val, val_scores)),
              temperature)
    dataset = cached.dataset
    return {"sweep_id": str(row["sweep_id"]), "trial_id": str(row["trial_id"]), "task": config.task,
            "model": config.model, "data_root": str(dataset.root), "data_layout": dataset.spec.layout,
            "data_fingerprint": dataset.fingerprint, "data_classes": json.dumps(list(dataset.classes)),
            "n_images": len(split.records), "data_skipped": len(dataset.problems) + len(cached.skipped),
            "temperature": temperature, "evaluated_at": datetime.now(timezone.utc),
            **{f"{METRIC_PREFIX}{key}": value for key, value in found.metrics[split.name].items()}}


def _own_data(config: TrialConfig, task: Task, printer: Callable[[str], None]) -> tuple[CachedData | None, dict]:
    """The trial's own data (from its cache, when still there), to refuse an evaluation set holding its train or
    val images; where it cannot be read (the trial ran on another machine), said in a line and skipped, unless
    the task's scores need the training images. Its listing's warnings and skipped files are not printed: the
    trial said them when it trained, and here they would read as the evaluation set's."""
    from runner.trial import load_splits

    try:
        return load_splits(config, task, lambda _line: None)
    except CxrError as error:
        if task.model_features(config.task_params):
            raise
        printer(f"note: the trial's own data cannot be read here ({error}): not checked for images shared with "
                "the evaluation set")
        return None, {}


def _load_model(folder: str):
    """The trial's ``model.keras``, uncompiled, from its folder or a URI's."""
    from runner.models import load_model

    location = storage.join(folder, "model.keras")
    if not storage.is_uri(location):
        return load_model(location)
    data = storage.read_bytes(location)
    if data is None:
        raise ConfigError(f"{location} is not readable: evaluate where the trial's folder is")
    with tempfile.TemporaryDirectory(prefix="cxr-evaluate-") as staging:
        path = Path(staging) / "model.keras"
        path.write_bytes(data)
        return load_model(path)


# ------------------------------------------------------------------------------------------------ rows


def evaluation_location(results: str, row: dict[str, Any]) -> str:
    """``<results>/evaluations/<sweep_id>/<trial_id>--<data fingerprint>.parquet``."""
    return storage.join(results, "evaluations", quote(row["sweep_id"], safe=""),
                        f"{quote(row['trial_id'], safe='')}--{row['data_fingerprint']}.parquet")


def write_evaluation(results: str, row: dict[str, Any]) -> str:
    """Writes one evaluation row (replacing that trial's row for that data); returns its location."""
    from runner.leaderboard.values import metric_value

    arrays, fields = [], []
    for name, value in row.items():
        if name in EVALUATION_TYPES:
            kind = EVALUATION_TYPES[name]
        else:
            kind = pa.string() if name.endswith("confusion_matrix") else pa.float64()
            value = metric_value(value)
            value = None if isinstance(value, float) and np.isnan(value) else value
        arrays.append(pa.array([value], type=kind))
        fields.append(pa.field(name, kind))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), buffer)
    location = evaluation_location(results, row)
    storage.write_bytes(location, buffer.getvalue())
    return location


def load_evaluations(results: str, sweep_id: str) -> pd.DataFrame:
    """A sweep's evaluation rows, oldest first (empty when it has none)."""
    folder = storage.join(results, "evaluations", quote(sweep_id, safe=""))
    frames = [pd.read_parquet(io.BytesIO(data)) for location, _ in storage.list_files(folder, ".parquet")
              if not Path(location).name.startswith(".") and (data := storage.read_bytes(location)) is not None]
    if not frames:
        return pd.DataFrame(columns=list(EVALUATION_TYPES))
    return pd.concat(frames, ignore_index=True).sort_values("evaluated_at", kind="mergesort", ignore_index=True)


# ------------------------------------------------------------------------------------------- comparing


def comparison(trial: pd.Series | dict[str, Any], found: pd.Series | dict[str, Any]) -> list[Any]:
    """One line of the internal-test vs external comparison: trial, task, model, the task's own metric, its
    value on the trial's test split and on the external set (with its 95% interval), the difference, and both
    ECEs (a classifier's; else missing)."""
    key = str(trial["monitor"]).removeprefix("val_")

    def number(source: Any, column: str) -> float | None:
        value = source.get(column)
        return None if value is None or pd.isna(value) else float(value)

    internal, external = number(trial, f"test_{key}"), number(found, f"{METRIC_PREFIX}{key}")
    low, high = number(found, f"{METRIC_PREFIX}{key}_ci_low"), number(found, f"{METRIC_PREFIX}{key}_ci_high")
    return [trial["trial_id"], trial["task"], trial["model"], key, internal, external,
            f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else None,
            None if internal is None or external is None else external - internal,
            number(trial, "test_ece"), number(found, f"{METRIC_PREFIX}ece")]


COMPARISON_HEADER = ("trial", "task", "model", "metric", "internal test", "external", "external 95% CI",
                     "external - internal", "test ECE", "external ECE")


def render_comparison(rows: Sequence[tuple[Any, Any]]) -> str:
    """The printed table of one data set: a line per trial (``comparison``)."""
    cells = [COMPARISON_HEADER] + [tuple(_cell(v) for v in comparison(trial, found)) for trial, found in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COMPARISON_HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
