"""Optuna parameter importances of a finished sweep, rebuilt from its leaderboard rows.

Each finished row (completed, or stopped by ASHA with its last validation metric) becomes an Optuna trial in
an in-memory study, with the distributions of the sweep's own search space (``SweepSpec``: ``space``,
``per_model`` / ``per_task`` under their ``owner.key`` names, as the sweep's searcher saw them), so the
importances are those Optuna itself would report for the sweep. No stored study is needed, so it works for
any sweep in any results folder, however it was run. Without the search-space file (moved, or a temporary
YAML) the distributions are inferred from the values the rows hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from runner.leaderboard import optimised
from runner.sweep.space import SweepSpec, define_by_run


def finished_rows(board: pd.DataFrame) -> pd.DataFrame:
    """Rows with a finite value of the metric their sweep optimised (``leaderboard.optimised``: the sweep's
    ``metric``, else the task's monitor), in column ``objective``."""
    if board.empty:
        return board.assign(objective=pd.Series(dtype=float))
    metrics = optimised(board)[0]
    values = [_objective(row, metrics[index]) for index, row in board.iterrows()]
    return board.assign(objective=values)[[v is not None for v in values]]


def _objective(row: pd.Series, metric: Any) -> float | None:
    if not isinstance(metric, str) or metric not in row.index or row["status"] == "failed":
        return None
    value = row[metric]
    return float(value) if value is not None and not pd.isna(value) and math.isfinite(float(value)) else None


def space_distributions(spec: SweepSpec) -> dict[str, Any]:
    """Optuna name -> distribution, exactly as the sweep's define-by-run function suggests them."""
    import optuna.distributions as d

    space = define_by_run(spec)
    found: dict[str, Any] = {"task": d.CategoricalDistribution(list(spec.tasks)),
                             "model": d.CategoricalDistribution(list(spec.models)), **space.space}
    for owner, block in (*space.per_model.items(), *space.per_task.items()):
        found.update({f"{owner}.{key}": distribution for key, distribution in block.items()})
    return found


def numeric_values(values: pd.Series) -> pd.Series | None:
    """The values as numbers, or None when any is not a number (booleans count as categories)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().all() and not pd.api.types.is_bool_dtype(values) else None


def direction(rows: pd.DataFrame) -> str:
    """``max`` or ``min``: the mode of the metric the rows' sweep optimised (rows of one task share it)."""
    modes = optimised(rows)[1].dropna()
    return modes.iloc[0] if len(modes) else "max"


def inferred_distributions(rows: pd.DataFrame) -> dict[str, Any]:
    """Distributions from the values themselves: numbers -> a float range, anything else -> categories."""
    import optuna.distributions as d

    found: dict[str, Any] = {}
    for column in [c for c in rows.columns if c.startswith("hp_") or c in ("task", "model")]:
        values = rows[column].dropna()
        if values.astype(str).nunique() < 2:
            continue
        name = column.removeprefix("hp_")
        numeric = numeric_values(values)
        if numeric is not None:
            found[name] = d.FloatDistribution(float(numeric.min()), float(numeric.max()))
        else:
            found[name] = d.CategoricalDistribution(sorted(values.astype(str).unique()))
    return found


def row_value(row: pd.Series, name: str) -> Any:
    """The row's value of Optuna parameter ``name`` (``owner.key`` only for rows of that owner), or None.
    Shared with the warm start (``runner.sweep.warm``), which rebuilds trials from rows the same way."""
    if name in ("task", "model"):
        return row[name]
    owner, _, key = name.rpartition(".")
    if owner and owner not in (row["model"], row["task"]):
        return None
    value = row.get(f"hp_{key}")
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _as_distribution_value(value: Any, distribution) -> Any:
    """A leaderboard cell (text for ``frozen_layers``, JSON for ``filters``...) as a value of the distribution,
    or None when it is not one (a fixed key overridden, a value outside the range)."""
    import optuna.distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        for choice in distribution.choices:
            if value == choice or str(value) == str(choice) or _json(value) == choice:
                return choice
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    number = round(number) if isinstance(distribution, d.IntDistribution) else number
    return number if distribution._contains(distribution.to_internal_repr(number)) else None  # range and step


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def parameter_importances(board: pd.DataFrame, spec: SweepSpec | None) -> dict[str, float]:
    """Optuna's importance (its default evaluator) of each parameter for the monitored validation metric, summing to 1.

    Only parameters every finished trial has are assessed (Optuna's rule), so a ``per_model`` key counts
    only in a sweep of one model. Raises ValueError when there is nothing to assess (fewer than two finished
    trials, or no parameter that varies)."""
    import optuna

    rows = finished_rows(board)
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} finished trial(s): importances need at least two")
    distributions = space_distributions(spec) if spec is not None else inferred_distributions(rows)
    distributions = {name: d for name, d in distributions.items() if not d.single()}  # nothing to learn from
    study = optuna.create_study(direction="maximize" if direction(rows) == "max" else "minimize")
    for _, row in rows.iterrows():
        params, used = trial_params(row, distributions)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=used, value=row["objective"]))
    return optuna.importance.get_param_importances(study)


def trial_params(row: pd.Series, distributions: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row's values of those distributions it has a value in, and their distributions (Optuna's
    ``create_trial`` arguments)."""
    params, used = {}, {}
    for name, distribution in distributions.items():
        raw = row_value(row, name)
        value = None if raw is None else _as_distribution_value(raw, distribution)
        if value is not None:
            params[name], used[name] = value, distribution
    return params, used
