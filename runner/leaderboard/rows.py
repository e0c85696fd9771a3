"""Row building: one leaderboard row (a plain dict whose values already have their column's type) from a
trial's ``result.json`` content, or from what is known of a trial that kept failing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from runner.leaderboard.schema import (
    CORE_TYPES,
    IDENTITY_PARAMS,
    JSON,
    SCHEMA_VERSION,
    SPLITS,
    STATUSES,
    TEXT,
    hyperparameter_kinds,
    is_metric_column,
    ordered,
)
from runner.leaderboard.values import float_or_nan, int_or_none, metric_value, plain_value, timestamp, to_json

# result["versions"] key -> column
_VERSION_COLUMNS = {"python": "python_version", "tensorflow": "tensorflow_version", "keras": "keras_version",
                    "ray": "ray_version", "cxr-runner": "runner_version"}


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


def _empty_row() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CORE_TYPES)
    row["schema_version"] = SCHEMA_VERSION
    row["stopped_early"] = False
    return row


def _add_extra(row: dict[str, Any], extra: Mapping[str, Any] | None) -> None:
    """Extra provenance columns (``trial_dir``, Ray's own ids...). Only ``trial_dir`` may fill a core column:
    silently overwriting a metric or an identity column would make the row lie."""
    for key, value in (extra or {}).items():
        if key == "trial_dir":
            row[key] = None if value is None else str(value)
        elif key in row or key.startswith("hp_") or is_metric_column(key):
            raise ValueError(f"extra column {key!r} would overwrite a leaderboard column; rename it")
        else:
            row[key] = plain_value(value)


def _hp_value(kind: str | None, value: Any) -> Any:
    if value is None:
        return None
    if kind == TEXT:
        return value if isinstance(value, str) else to_json(value)
    if kind == JSON:
        return to_json(value)
    return plain_value(value)


def _hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    kinds = hyperparameter_kinds()
    return {f"hp_{key}": _hp_value(kinds.get(key), value) for key, value in hyperparameters.items()
            if key not in IDENTITY_PARAMS}


#: Words of a metric's name (split at ``_``) that make lower better: a loss, a calibration error (ECE, Brier).
LOWER_IS_BETTER = ("loss", "ece", "brier")


def natural_mode(metric: str) -> str:
    """``min`` for a loss or a calibration error (``val_loss``, ``val_ece``, ``val_brier_calibrated``), ``max``
    for every other validation metric (scores: F1, AUC, Dice...). Whole words, so a class named ``fleece`` does
    not turn its F1 upside down."""
    return "min" if set(metric.split("_")) & set(LOWER_IS_BETTER) else "max"


def sweep_metric_value(result: Mapping[str, Any], metric: str) -> Any:
    """A finished trial's value of the validation metric its sweep optimised: the final evaluation's value,
    or, for what only Keras logs each epoch (``val_loss``), the history's value at the kept epoch. The
    trial's last report to Optuna and its leaderboard row both take it from here, so they agree."""
    final = (result.get("metrics") or {}).get("val") or {}
    key = metric.removeprefix("val_")
    if key in final:
        return final[key]
    history = (result.get("history") or {}).get(metric) or []
    best = result.get("best_epoch")
    return history[best - 1] if isinstance(best, int) and 0 < best <= len(history) else None


def row_from_result(result: dict, *, sweep_id: str, sweep_name: str, status: str = "completed",
                    node_id: str | None = None, error: str | None = None,
                    extra: dict | None = None, sweep_metric: str | None = None,
                    sweep_mode: str | None = None) -> dict:
    """One leaderboard row from a trial's ``result.json`` content (``run_trial(...).result``).

    ``status`` is ``completed``, ``stopped`` (ended early by the scheduler, e.g. ASHA: still a finished trial
    with metrics, so it is ranked like any other) or ``failed``. ``sweep_metric`` / ``sweep_mode``: what the
    sweep's searcher and scheduler optimised (a ``val_*`` column, recorded even when only Keras logged it,
    such as ``val_loss``), which ranking then uses. The row is a plain dict whose values already have their
    column's type; ``write_row`` stores it.
    """
    check_status(status)
    row = _empty_row()
    data = result.get("data") or {}
    counts = data.get("counts") or {}
    versions = result.get("versions") or {}
    parameters = result.get("parameters") or {}
    gpu = result.get("gpu") or {}
    row.update({
        "sweep_id": str(sweep_id), "sweep_name": str(sweep_name), "trial_id": str(result["trial_id"]),
        "status": status, "error": error, "task": result.get("task"), "model": result.get("model"),
        "monitor": result.get("monitor"), "mode": result.get("mode"),
        "sweep_metric": sweep_metric, "sweep_mode": sweep_mode,
        "data_fingerprint": data.get("fingerprint"), "data_root": data.get("root"), "data_layout": data.get("layout"),
        "data_classes": to_json(data["classes"]) if data.get("classes") is not None else None,
        "data_external_test": data.get("external_test"), "data_skipped": int_or_none(data.get("skipped")),
        "n_train": int_or_none(counts.get("train")), "n_val": int_or_none(counts.get("val")),
        "n_test": int_or_none(counts.get("test")),
        "shortcut_warnings": to_json(list(data.get("shortcut_warnings") or [])),
        "epochs_run": int_or_none(result.get("epochs_run")), "best_epoch": int_or_none(result.get("best_epoch")),
        "stopped_early": bool(result.get("stopped_early")) or status == "stopped",
        "resumed_from_epoch": int_or_none(result.get("resumed_from_epoch")),
        "train_seconds": float_or_nan(result.get("train_seconds")),
        "eval_seconds": float_or_nan(result.get("eval_seconds")),
        "images_per_second": float_or_nan(result.get("images_per_second")),
        "params_total": int_or_none(parameters.get("total")),
        "params_trainable": int_or_none(parameters.get("trainable")),
        "rss_mb": float_or_nan(result.get("rss_mb")),
        **{f"gpu_{key}": float_or_nan(gpu.get(key)) for key in ("util_mean", "util_peak", "memory_peak_mb")},
        "device": result.get("device"), "host": result.get("host"), "node_id": node_id,
        "seed": int_or_none(result.get("seed")),
        **{column: versions.get(key) for key, column in _VERSION_COLUMNS.items()},
        "versions_json": to_json(versions) if versions else None, "git_commit": result.get("git_commit"),
        "started_at": timestamp(result.get("started_at")), "finished_at": timestamp(result.get("finished_at")),
        "config_json": to_json(result["config"]) if result.get("config") is not None else None,
    })
    row.update(_hyperparameters(result.get("hyperparameters") or {}))
    for split in SPLITS:
        for key, value in ((result.get("metrics") or {}).get(split) or {}).items():
            row[f"{split}_{key}"] = metric_value(value)
    if sweep_metric is not None and sweep_metric not in row:
        row[sweep_metric] = metric_value(sweep_metric_value(result, sweep_metric))
    _add_extra(row, extra)
    return {column: row[column] for column in ordered(row)}


def attempt_columns(earlier: Mapping[str, Any] | None) -> dict[str, Any]:
    """A sweep row's ``attempts`` (how many times the trial ran) and ``attempt_errors`` (JSON list of the
    earlier attempts' errors, oldest first). ``earlier`` is the trial's current row when a new attempt
    replaces it (``sweep --resume --retry-failed`` reran a failed trial): the replaced row's error is kept
    here, so the one current row per trial id still says what went wrong before."""
    if earlier is None:
        return {"attempts": 1, "attempt_errors": to_json([])}
    errors = [*json.loads(earlier.get("attempt_errors") or "[]"), earlier.get("error")]
    return {"attempts": (int_or_none(earlier.get("attempts")) or 1) + 1, "attempt_errors": to_json(errors)}


def failed_row(*, sweep_id: str, sweep_name: str, trial_id: str, task: str, model: str,
               hyperparameters: Mapping[str, Any], error: str, node_id: str | None = None,
               started_at: datetime | str | None = None, finished_at: datetime | str | None = None) -> dict:
    """The row of a trial that kept failing (no result.json): recorded, never dropped, so a sweep whose best
    configurations crash shows it, and the hyper-parameters that crash can be queried.

    Metrics are absent (NaN when read with other rows); ``finished_at`` defaults to now so the newest record of
    a retried trial wins in ``load``.
    """
    row = _empty_row()
    row.update({"sweep_id": str(sweep_id), "sweep_name": str(sweep_name), "trial_id": str(trial_id),
                "status": "failed", "error": str(error), "task": task, "model": model, "node_id": node_id,
                "started_at": timestamp(started_at),
                "finished_at": timestamp(finished_at) or datetime.now(timezone.utc)})
    row.update(_hyperparameters(hyperparameters))
    return {column: row[column] for column in ordered(row)}
