"""Text rendering of ranked rows: plain aligned columns (no table library), the few columns that explain a
ranking, and the test metric beside the validation one it goes with."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from runner.leaderboard.schema import is_metric_column


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else ".." + text[-(width - 2):]


def _cell(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column == "trial_id":
        return _short(str(value), 24)
    if isinstance(value, float):
        if is_metric_column(column):
            return f"{value:.4f}"
        return f"{value:.1f}" if column.endswith("_seconds") else f"{value:g}"
    return _short(str(value), 28)


def random_init_note(board: pd.DataFrame) -> str | None:
    """One line when trials trained backbones from random initialisation (``weights`` none: no ImageNet
    weights, e.g. ``weights: auto`` offline), so their scores are not read as transfer learning; None when
    every backbone started from ImageNet or a weights file, or no row has a backbone."""
    if "hp_weights" not in board or board.empty:
        return None
    random = board[board["hp_weights"].astype(str).str.lower() == "none"]
    if random.empty:
        return None
    models = ", ".join(sorted(set(random["model"].astype(str))))
    frozen = sorted(set(random["hp_frozen_layers"].dropna().astype(str))) if "hp_frozen_layers" in random else []
    return (f"note: {len(random)} of {len(board)} trials ({models}) trained randomly initialised backbones "
            f"(weights none: no ImageNet weights loaded), frozen_layers {', '.join(frozen) or '-'}: learnt from "
            "scratch, not transfer learning")


def _holds_structures(values: pd.Series) -> bool:
    """Whether a column holds JSON lists or mappings (``hp_data``, ``hp_augment``, ``hp_filters``): long, and
    rarely what a sweep searches. Told by the values, as a reader has no model declarations to ask."""
    return any(isinstance(value, str) and value.startswith(("[", "{")) for value in values)


def _varying_hyperparameters(ranked: pd.DataFrame, limit: int = 5) -> list[str]:
    """hp_ columns with different values among the shown rows (missing values aside): the ones that can explain
    the ranking. Scalars before lists and mappings."""
    varying = [c for c in ranked.columns if c.startswith("hp_") and ranked[c].dropna().astype(str).nunique() > 1]
    return sorted(varying, key=lambda c: _holds_structures(ranked[c]))[:limit]


def test_metric_of(monitor: Any) -> str | None:
    """The test column that goes with a validation metric (``val_f1`` -> ``test_f1``): shown, never ranked by."""
    return f"test_{monitor[4:]}" if isinstance(monitor, str) and monitor.startswith("val_") else None


def render_table(ranked: pd.DataFrame, total: int | None = None) -> str:
    """Plain aligned columns (no table library): rank, sweep, trial, status, task, model, the ranking metric,
    its test counterpart, the hyper-parameters that vary, training time."""
    by, mode = ranked.attrs.get("by"), ranked.attrs.get("mode")
    test_metric = test_metric_of(by)
    columns = ["rank", "sweep_name", "trial_id", "status", "task", "model", by]
    columns += [test_metric] if test_metric in ranked else []
    columns += [*_varying_hyperparameters(ranked), "train_seconds"]
    columns = [c for c in dict.fromkeys(columns) if c in ranked]
    cells = [[_cell(c, v) for c, v in zip(columns, values, strict=True)]
             for values in ranked[columns].itertuples(index=False, name=None)]
    right = [pd.api.types.is_numeric_dtype(ranked[c]) and not pd.api.types.is_bool_dtype(ranked[c]) for c in columns]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(columns, widths, right, strict=True))]
    lines += ["  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True))
              for row in cells]
    note = f"ranked by {by} ({mode})" if by else "no validation metric recorded: trials in the order they finished"
    if test_metric in ranked:
        note += f"; {test_metric} is shown, never used to rank"
    if total is not None:
        note += f"; {len(ranked)} of {total} trials"
    return "\n".join([*(line.rstrip() for line in lines), note])
