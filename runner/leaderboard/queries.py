"""Queries: every recorded trial as one DataFrame (``load``), and the best trials by a validation metric
(``top``), never by a test metric."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa

from runner.errors import ConfigError
from runner.leaderboard.files import read_rows
from runner.leaderboard.rows import natural_mode
from runner.leaderboard.schema import (
    BOOL,
    CORE_TYPES,
    IDENTITY_COLUMNS,
    LATER_COLUMNS,
    STRING,
    TEST_PREFIXES,
    ordered,
)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table from many one-row tables: missing columns become nulls, null-typed columns take the type
    other files give them. A column with genuinely different types in different files (written by an older
    runner, or by hand) is read as text, with a warning, instead of failing the whole leaderboard."""
    by_schema: dict[pa.Schema, list[pa.Table]] = {}  # rows of one task share a schema: join those cheaply first
    for table in tables:
        by_schema.setdefault(table.schema, []).append(table)
    tables = [pa.concat_tables(group) for group in by_schema.values()]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    seen: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if field.type != pa.null():
                seen.setdefault(field.name, set()).add(field.type)
    mixed = sorted(name for name, types in seen.items() if len(types) > 1)
    warnings.warn(f"leaderboard columns with different types in different files, read as text: {', '.join(mixed)}",
                  stacklevel=3)
    fixed = []
    for table in tables:
        for name in mixed:
            if name in table.column_names:
                index = table.column_names.index(name)
                table = table.set_column(index, name, table.column(name).cast(STRING))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


def _with_later_columns(table: pa.Table) -> pa.Table:
    """The table with every column added since the first files (``LATER_COLUMNS``), null where no file holds
    it: a results folder written before ``confirm_of`` existed reads as one whose rows are all ordinary."""
    for name in LATER_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(pa.field(name, CORE_TYPES[name]), pa.nulls(len(table), CORE_TYPES[name]))
    return table


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Integers as nullable ``Int64`` (a failed row has no epoch count, and a float epoch count would be
    odd), booleans as numpy ``bool`` unless some are missing (then nullable ``boolean``)."""
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if field.type == BOOL:
            column = table.column(field.name)
            frame[field.name] = frame[field.name].astype("boolean" if column.null_count else bool)
    return frame


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="Int64" if column == "schema_version" else "str")
                         for column in IDENTITY_COLUMNS})


def load(results: str | os.PathLike[str] = "results", task: str | None = None,
         sweep: str | None = None) -> pd.DataFrame:
    """Every recorded trial as a DataFrame, one row per (sweep_id, trial_id), sorted by sweep then finish time.

    ``sweep`` matches a sweep name or a sweep id. A missing results folder gives an empty frame with the
    identity columns (nothing has run yet is not an error). A file that is not a leaderboard row (unreadable,
    truncated, another tool's Parquet, a column edited into the wrong type) is skipped with a warning naming
    it and why.
    Should the same trial be recorded twice (files copied between folders), the latest ``finished_at`` wins.
    """
    tables = read_rows(results)
    if not tables:
        return _empty_frame()
    frame = _to_pandas(_with_later_columns(_concat(tables)))
    frame = frame[ordered(frame.columns)]
    if "finished_at" in frame:
        frame = frame.sort_values("finished_at", na_position="first", kind="mergesort")
    frame = frame.drop_duplicates(["sweep_id", "trial_id"], keep="last")
    if task is not None:
        frame = frame[frame["task"] == task]
    if sweep is not None:
        frame = of_sweep(frame, sweep)
    order = [c for c in ("sweep_name", "sweep_id", "finished_at", "trial_id") if c in frame]
    return frame.sort_values(order, na_position="last", kind="mergesort").reset_index(drop=True)


def of_sweep(frame: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """The rows of ``load``'s frame whose sweep name or id is ``sweep`` (``load(sweep=...)``), for a caller that
    needs several sweeps' rows from one read (each read warns again about every file it skips)."""
    return frame[(frame["sweep_name"] == sweep) | (frame["sweep_id"] == sweep)].reset_index(drop=True)


# -------------------------------------------------------------------------------------------- ranking


def _numeric_columns(df: pd.DataFrame, prefix: str = "") -> list[str]:
    return [c for c in df.columns if c.startswith(prefix) and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])]


def optimised(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row, the metric and mode its sweep optimised (``sweep_metric`` / ``sweep_mode``), or, for rows
    that do not record them (one-off runs, rows from before those columns), the task's ``monitor`` / ``mode``."""
    missing = pd.Series(None, index=df.index, dtype=object)
    metric, mode = df.get("sweep_metric", missing), df.get("sweep_mode", missing)
    return metric.fillna(df.get("monitor", missing)), mode.fillna(df.get("mode", missing))


def _default_metric(df: pd.DataFrame) -> str:
    monitors = sorted(optimised(df)[0].dropna().unique())
    if len(monitors) == 1:
        return str(monitors[0])
    choices = ", ".join(_numeric_columns(df, "val_")) or "none recorded yet"
    if not monitors:
        raise ConfigError(f"no trial records the metric it was optimised for: pass --by (validation metrics: "
                          f"{choices})")
    raise ConfigError(f"trials optimise different metrics ({', '.join(map(str, monitors))}): pass --by METRIC, "
                      f"or --task to rank one task")


def _check_metric(df: pd.DataFrame, by: str) -> None:
    if by.startswith(TEST_PREFIXES):
        raise ConfigError(f"cannot rank by '{by}': ranking uses validation metrics only (val_*); test metrics are "
                          f"shown beside them, never used to choose, or they stop being an unbiased estimate")
    if by not in _numeric_columns(df):
        choices = ", ".join(_numeric_columns(df, "val_")) or "none recorded yet"
        raise ConfigError(f"unknown metric '{by}': choose --by from the validation metrics: {choices}")


def _default_mode(df: pd.DataFrame, by: str) -> str:
    metrics, modes = optimised(df)
    modes = sorted(modes[metrics == by].dropna().unique())
    if len(modes) > 1:
        raise ConfigError(f"trials disagree whether '{by}' is maximised or minimised: pass --mode max or min")
    if modes:
        return str(modes[0])
    return natural_mode(by)  # not what any trial optimised: losses go down, scores go up


def top(df: pd.DataFrame, by: str | None = None, n: int = 10, mode: str | None = None) -> pd.DataFrame:
    """The ``n`` best rows by the validation metric ``by``, with a ``rank`` column first; NaN (failed trials)
    last. ``by`` defaults to the metric the rows' sweep optimised (``sweep_metric``, else the task's ``monitor``)
    and ``mode`` to its mode. Test metrics are refused: choosing by test would make the test estimate optimistic.
    """
    if n < 1:
        raise ConfigError(f"--top must be at least 1, not {n}")
    if mode is not None and mode not in ("max", "min"):
        raise ConfigError(f"mode must be max or min, not {mode!r}")
    if df.empty:
        ranked = df.head(0).copy()
        ranked.insert(0, "rank", pd.Series(dtype="int64"))
        return ranked
    if by is None and not _numeric_columns(df, "val_") and optimised(df)[0].isna().all():
        ranked = df.head(n).reset_index(drop=True)  # every trial failed: nothing to rank, show them as recorded
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1, dtype="int64"))
        ranked.attrs.update(by=None, mode=None)
        return ranked
    if by is None:
        by = _default_metric(df)
    _check_metric(df, by)
    mode = mode or _default_mode(df, by)
    ranked = df.sort_values(by, ascending=mode == "min", na_position="last", kind="mergesort").head(n)
    ranked = ranked.reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1, dtype="int64"))
    ranked.attrs.update(by=by, mode=mode)
    return ranked
