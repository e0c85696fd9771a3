"""The Parquet leaderboard: one row per finished trial, readable by pandas, DuckDB, Polars or pyarrow.

Layout: ``<results>/leaderboard/<sweep_id>/<trial_id>.parquet``, one file (one row) per trial. One file per
trial, rather than one growing table, is what makes recording safe without locks:

* a row is written to a hidden temporary file in the same folder and ``os.replace``-d into place, so a reader
  never sees half a file and a crash can only leave a temporary (whose name starts with ``.``, which
  ``load`` ignores);
* a crash loses nothing already recorded, and two sweeps (or two processes of one sweep) writing the same
  results folder never touch the same file;
* one row per trial id: a sweep writes a trial's row once, when it ends (``has_row``), so a retried or
  resumed trial appears once; writing the same id again would replace the row atomically.

``results`` is a local folder, or a ``pyarrow.fs`` URI (``s3://bucket/prefix``, ``gs://...``,
``file:///...``); on object stores a row is PUT directly, since an object PUT is already atomic there.

Column types are fixed per column name, never guessed from one row alone, so that every file of every
sweep reads back as one table (``read_parquet('results/leaderboard/**/*.parquet', union_by_name=true)``).
Every column is documented in ``results/README.md``. This module imports neither TensorFlow nor Ray, so
``python -m runner leaderboard`` starts in well under a second.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import secrets
import sys
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runner import storage
from runner.errors import ConfigError

__all__ = [
    "IDENTITY_COLUMNS",
    "JSON_PARAMS",
    "SCHEMA_VERSION",
    "STATUSES",
    "TEXT_PARAMS",
    "add_leaderboard_command",
    "failed_row",
    "has_row",
    "load",
    "natural_mode",
    "row_from_result",
    "sweep_metric_value",
    "top",
    "write_row",
]

SCHEMA_VERSION = 1
STATUSES = ("completed", "stopped", "failed")
SPLITS = ("val", "test", "external_test")
# Ranking may only look at validation metrics: a column starting with one of these is a held-out test result.
TEST_PREFIXES = ("test_", "external_test_")

# Hyper-parameters whose values may be a number in one trial and a string in another (``frozen_layers``: 4, 0.5
# or "all"; ``weights``: "imagenet", "none", a path, or None). Their columns are always strings: a column
# typed from each row's value would be double in one file and string in the next, and a reader that unifies
# the files (pyarrow, DuckDB, Polars) would then fail or silently turn every value into text.
TEXT_PARAMS = ("frozen_layers", "weights")
# Hyper-parameters stored as JSON text whatever their value: structured options (``data``, ``test_data``,
# ``augment``: False or a dict of options) and keys that are a list in one model and a number in another
# (``filters``: 32 for ``baseline``, [32, 64, 128] for ``conv_autoencoder``; ``decoder_filters``).
JSON_PARAMS = ("data", "test_data", "augment", "filters", "decoder_filters")
# Hyper-parameters already present as identity columns, so not repeated as ``hp_task`` / ``hp_model``.
IDENTITY_PARAMS = ("task", "model")

IDENTITY_COLUMNS = ("schema_version", "sweep_id", "sweep_name", "trial_id", "status", "error", "task", "model")

_STRING, _INT, _FLOAT, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_TIMESTAMP = pa.timestamp("us", tz="UTC")

# Every non-hyper-parameter, non-metric column, in file order, with its one Arrow type.
CORE_TYPES: dict[str, pa.DataType] = {
    "schema_version": _INT, "sweep_id": _STRING, "sweep_name": _STRING, "trial_id": _STRING,
    "status": _STRING, "error": _STRING, "task": _STRING, "model": _STRING,
    "monitor": _STRING, "mode": _STRING, "sweep_metric": _STRING, "sweep_mode": _STRING, "warm_start": _STRING,
    "data_fingerprint": _STRING, "data_root": _STRING, "data_layout": _STRING, "data_classes": _STRING,
    "data_external_test": _STRING, "data_skipped": _INT, "n_train": _INT, "n_val": _INT, "n_test": _INT,
    "shortcut_warnings": _STRING,
    "epochs_run": _INT, "best_epoch": _INT, "stopped_early": _BOOL, "resumed_from_epoch": _INT,
    "train_seconds": _FLOAT,
    "eval_seconds": _FLOAT, "images_per_second": _FLOAT, "params_total": _INT, "params_trainable": _INT,
    "rss_mb": _FLOAT,
    "device": _STRING, "host": _STRING, "node_id": _STRING, "trial_dir": _STRING,
    "seed": _INT, "python_version": _STRING, "tensorflow_version": _STRING, "keras_version": _STRING,
    "ray_version": _STRING, "runner_version": _STRING, "versions_json": _STRING, "git_commit": _STRING,
    "started_at": _TIMESTAMP, "finished_at": _TIMESTAMP, "config_json": _STRING,
}
# result["versions"] key -> column
_VERSION_COLUMNS = {"python": "python_version", "tensorflow": "tensorflow_version", "keras": "keras_version",
                    "ray": "ray_version", "cxr-runner": "runner_version"}


# ------------------------------------------------------------------------------------------ values and types


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _to_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no NaN) so equal values give equal strings across trials."""
    return json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _plain_value(value: Any) -> Any:
    """A hyper-parameter or extra value as bool, float, str, JSON str or None (ints become floats so that
    ``dropout`` 0 and 0.3 share one column type)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    return _to_json(value)


def _hp_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in TEXT_PARAMS:
        return value if isinstance(value, str) else _to_json(value)
    if key in JSON_PARAMS:
        return _to_json(value)
    return _plain_value(value)


def _metric_value(value: Any) -> Any:
    """Scalars as float (None -> NaN); anything structured (a confusion matrix) as JSON text."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)) or _is_number(value):
        return float(value)
    if isinstance(value, str):
        return value
    return _to_json(value)


def _is_metric_column(name: str) -> bool:
    return name.startswith(tuple(f"{split}_" for split in SPLITS))


def _fixed_type(name: str) -> pa.DataType | None:
    """The Arrow type a column has by its name alone (core columns, text / JSON hyper-parameters, metrics), or
    None for a column typed by its values (other hyper-parameters, extras). Writing and reading both use it:
    a row that ``write_row`` accepts is one ``load`` reads."""
    if name in CORE_TYPES:
        return CORE_TYPES[name]
    if name.startswith("hp_") and name[3:] in TEXT_PARAMS + JSON_PARAMS:
        return _STRING
    if _is_metric_column(name):
        return _STRING if name.endswith("_confusion_matrix") else _FLOAT
    return None


def _column_type(name: str, value: Any) -> pa.DataType:
    """The one Arrow type of a column, decided by its name first and only then by the value."""
    fixed = _fixed_type(name)
    if fixed is not None:
        return fixed
    if _missing(value):
        return pa.null()  # unknown: null unifies with whatever type other files give this column
    if isinstance(value, (bool, np.bool_)):
        return _BOOL
    if _is_number(value):
        return _FLOAT
    if isinstance(value, datetime):
        return _TIMESTAMP
    return _STRING


def _timestamp(value: Any) -> datetime | None:
    """An ISO string or datetime as an aware UTC datetime (naive values are taken to be UTC already)."""
    if _missing(value) or value == "":
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _missing(value: Any) -> bool:
    """None, NaN, pandas NA or NaT (what a row edited through pandas may hold)."""
    return value is None or value is pd.NA or value is pd.NaT or (_is_number(value) and math.isnan(value))


def _int_or_none(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _ordered(columns: Iterable[str]) -> list[str]:
    """Canonical column order: identity, hyper-parameters, val/test/external-test metrics, the other core
    columns, then extras; the same in every file and in ``load``'s frame."""
    columns = list(dict.fromkeys(columns))
    identity = [c for c in IDENTITY_COLUMNS if c in columns]
    rest = [c for c in CORE_TYPES if c in columns and c not in IDENTITY_COLUMNS]
    hps = sorted(c for c in columns if c.startswith("hp_"))
    # "external_test_f1" does not start with "test_", so each metric lands in exactly one split
    metrics = [c for split in SPLITS for c in columns if c.startswith(f"{split}_") and c not in CORE_TYPES]
    taken = {*identity, *rest, *hps, *metrics}
    return identity + hps + metrics + rest + [c for c in columns if c not in taken]


# ------------------------------------------------------------------------------------------------- rows


def _empty_row() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CORE_TYPES)
    row["schema_version"] = SCHEMA_VERSION
    row["stopped_early"] = False
    return row


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


def _add_extra(row: dict[str, Any], extra: Mapping[str, Any] | None) -> None:
    """Extra provenance columns (``trial_dir``, Ray's own ids...). Only ``trial_dir`` may fill a core column:
    silently overwriting a metric or an identity column would make the row lie."""
    for key, value in (extra or {}).items():
        if key == "trial_dir":
            row[key] = None if value is None else str(value)
        elif key in row or key.startswith("hp_") or _is_metric_column(key):
            raise ValueError(f"extra column {key!r} would overwrite a leaderboard column; rename it")
        else:
            row[key] = _plain_value(value)


def _hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    return {f"hp_{key}": _hp_value(key, value) for key, value in hyperparameters.items()
            if key not in IDENTITY_PARAMS}


def natural_mode(metric: str) -> str:
    """``min`` for a loss, ``max`` for every other validation metric (scores: F1, AUC, Dice...)."""
    return "min" if "loss" in metric else "max"


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
    _check_status(status)
    row = _empty_row()
    data = result.get("data") or {}
    counts = data.get("counts") or {}
    versions = result.get("versions") or {}
    parameters = result.get("parameters") or {}
    row.update({
        "sweep_id": str(sweep_id), "sweep_name": str(sweep_name), "trial_id": str(result["trial_id"]),
        "status": status, "error": error, "task": result.get("task"), "model": result.get("model"),
        "monitor": result.get("monitor"), "mode": result.get("mode"),
        "sweep_metric": sweep_metric, "sweep_mode": sweep_mode,
        "data_fingerprint": data.get("fingerprint"), "data_root": data.get("root"), "data_layout": data.get("layout"),
        "data_classes": _to_json(data["classes"]) if data.get("classes") is not None else None,
        "data_external_test": data.get("external_test"), "data_skipped": _int_or_none(data.get("skipped")),
        "n_train": _int_or_none(counts.get("train")), "n_val": _int_or_none(counts.get("val")),
        "n_test": _int_or_none(counts.get("test")),
        "shortcut_warnings": _to_json(list(data.get("shortcut_warnings") or [])),
        "epochs_run": _int_or_none(result.get("epochs_run")), "best_epoch": _int_or_none(result.get("best_epoch")),
        "stopped_early": bool(result.get("stopped_early")) or status == "stopped",
        "resumed_from_epoch": _int_or_none(result.get("resumed_from_epoch")),
        "train_seconds": _float(result.get("train_seconds")), "eval_seconds": _float(result.get("eval_seconds")),
        "images_per_second": _float(result.get("images_per_second")),
        "params_total": _int_or_none(parameters.get("total")),
        "params_trainable": _int_or_none(parameters.get("trainable")),
        "rss_mb": _float(result.get("rss_mb")),
        "device": result.get("device"), "host": result.get("host"), "node_id": node_id,
        "seed": _int_or_none(result.get("seed")),
        **{column: versions.get(key) for key, column in _VERSION_COLUMNS.items()},
        "versions_json": _to_json(versions) if versions else None, "git_commit": result.get("git_commit"),
        "started_at": _timestamp(result.get("started_at")), "finished_at": _timestamp(result.get("finished_at")),
        "config_json": _to_json(result["config"]) if result.get("config") is not None else None,
    })
    row.update(_hyperparameters(result.get("hyperparameters") or {}))
    for split in SPLITS:
        for key, value in ((result.get("metrics") or {}).get(split) or {}).items():
            row[f"{split}_{key}"] = _metric_value(value)
    if sweep_metric is not None and sweep_metric not in row:
        row[sweep_metric] = _metric_value(sweep_metric_value(result, sweep_metric))
    _add_extra(row, extra)
    return {column: row[column] for column in _ordered(row)}


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
                "started_at": _timestamp(started_at),
                "finished_at": _timestamp(finished_at) or datetime.now(timezone.utc)})
    row.update(_hyperparameters(hyperparameters))
    return {column: row[column] for column in _ordered(row)}


# -------------------------------------------------------------------------------------------- storage


def _file_name(identifier: str, what: str) -> str:
    """``identifier`` as one safe, reversible path component (``%``-quoted); never hidden (a leading ``.``
    would make ``load`` take the row for a temporary)."""
    if not identifier:
        raise ValueError(f"a leaderboard row needs a non-empty {what}")
    name = quote(identifier, safe="-_.=+@,")
    return "%2E" + name[1:] if name.startswith(".") else name


def _row_table(row: Mapping[str, Any]) -> pa.Table:
    arrays, fields = [], []
    for name in _ordered(row):
        value = row[name]
        kind = _column_type(name, value)
        if _missing(value):
            # stored as null, NaN included: SQL engines treat NaN as a number larger than any other (DuckDB's
            # max() would pick it, "IS NOT NULL" would keep it), while pandas reads null back as NaN anyway
            value = None
        elif kind == _TIMESTAMP:
            value = _timestamp(value)
        elif kind == _INT:
            value = _int_or_none(value)
        elif kind == _FLOAT and value is not None:
            value = float(value)
        try:
            arrays.append(pa.array([value], type=kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as problem:
            raise ValueError(f"leaderboard column {name!r}: {value!r} is not a {kind}: {problem}") from None
        fields.append(pa.field(name, kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# One row per file: statistics, dictionaries and compression buy nothing, and leaving them (and the embedded
# Arrow schema, redundant with these plain types) out makes files ~3x smaller and faster to read back.
_WRITE_OPTIONS: dict[str, Any] = {"write_statistics": False, "use_dictionary": False, "compression": "none",
                                  "store_schema": False}


def _write_local(path: Path, table: pa.Table) -> None:
    """Temporary file in the same folder (same file system, so the rename is atomic), flushed to disk, then
    renamed over the target. Unique temporary names let two writers of one trial race safely: the last
    rename wins and neither sees the other's partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(staging, "xb") as handle:
            pq.write_table(table, handle, **_WRITE_OPTIONS)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX); best effort
        try:
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(folder)
        except OSError:
            pass
        finally:
            os.close(folder)


def write_row(results: str | os.PathLike[str], row: Mapping[str, Any]) -> str:
    """Record one row as ``<results>/leaderboard/<sweep_id>/<trial_id>.parquet``; returns the file written.

    Writing the same (sweep, trial) again replaces the row, atomically; a sweep writes each trial once
    (``has_row``).
    """
    for key in ("sweep_id", "trial_id", "status"):
        if key not in row:
            raise ValueError(f"a leaderboard row needs {key!r}")
    _check_status(row["status"])
    relative = _row_parts(str(row["sweep_id"]), str(row["trial_id"]))
    table = _row_table(row)
    filesystem, base = storage.filesystem(results)
    if filesystem is None:
        path = Path(base, "leaderboard", *relative)
        try:
            _write_local(path, table)
        except OSError as error:
            raise storage.write_error(path, error) from None
        return str(path)
    folder = f"{base}/leaderboard/{relative[0]}"
    filesystem.create_dir(folder, recursive=True)
    path = f"{folder}/{relative[1]}"
    with filesystem.open_output_stream(path) as stream:  # an object PUT is atomic: no temporary needed
        pq.write_table(table, stream, **_WRITE_OPTIONS)
    return path


def _row_parts(sweep_id: str, trial_id: str) -> tuple[str, str]:
    return _file_name(sweep_id, "sweep_id"), f"{_file_name(trial_id, 'trial_id')}.parquet"


def has_row(results: str | os.PathLike[str], sweep_id: str, trial_id: str) -> bool:
    """Whether the trial already ended: its row is written once, when it does."""
    return storage.is_file(storage.join(os.fspath(results), "leaderboard", *_row_parts(sweep_id, trial_id)))


def _row_files(filesystem: Any, base: str) -> list[str]:
    """Every ``*.parquet`` under ``<base>/leaderboard``, hidden names (temporaries) excluded."""
    if filesystem is None:
        root = Path(base, "leaderboard")
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*.parquet")
                      if not p.name.startswith(".") and p.is_file())
    from pyarrow import fs as pafs

    selector = pafs.FileSelector(f"{base}/leaderboard", recursive=True, allow_not_found=True)
    return sorted(info.path for info in filesystem.get_file_info(selector)
                  if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
                  and not info.base_name.startswith("."))


def _read(filesystem: Any, path: str) -> pa.Table | str:
    """One row file, or why it is not a leaderboard row. Locally ``ParquetFile`` without pre-buffering or
    threads: for a one-row file of ~200 columns that is about twice as fast as ``pq.read_table``, whose
    per-call set-up dominates."""
    try:
        if filesystem is None:
            table = pq.ParquetFile(path, pre_buffer=False).read(use_threads=False)
        else:
            table = pq.read_table(path, filesystem=filesystem)
    except Exception as problem:  # any unreadable file: a reader must not be stopped by one bad file
        return f"unreadable ({problem})"
    return _as_row_table(table)


def _same_kind(expected: pa.DataType, found: pa.DataType) -> bool:
    """Whether a column read as ``found`` holds what ``expected`` holds, so casting loses nothing: pandas
    writes text as ``large_string``, an all-missing column as null, an integer where a float is expected."""
    if found == expected or pa.types.is_null(found):
        return True
    if expected == _STRING:
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if expected == _FLOAT:
        return pa.types.is_floating(found) or pa.types.is_integer(found)
    if expected == _INT:
        return pa.types.is_integer(found)
    return expected == _TIMESTAMP and pa.types.is_timestamp(found)


def _as_row_table(table: pa.Table) -> pa.Table | str:
    """The table with every fixed-type column in its one type, or why it is not leaderboard rows: another
    tool's Parquet file (no identity columns), or a row edited by hand into a wrong type or without an id.
    Such a file would otherwise show up as a trial of NaNs, or turn a metric into text for every row."""
    missing = [column for column in IDENTITY_COLUMNS if column not in table.column_names]
    if missing:
        return f"not a leaderboard row: no column {', '.join(missing)}"
    for index, field in enumerate(table.schema):
        expected = _fixed_type(field.name)
        if expected is None or field.type == expected:
            continue
        if not _same_kind(expected, field.type):
            return f"column {field.name!r} is {field.type}, not {expected}"
        table = table.set_column(index, field.name, table.column(index).cast(expected))
    for column in ("sweep_id", "trial_id", "status"):
        if table.column(column).null_count:
            return f"a row has no {column}"
    statuses = set(table.column("status").to_pylist()) - set(STATUSES)
    if statuses:
        return f"status {sorted(statuses)[0]!r} is not one of {', '.join(STATUSES)}"
    versions = set(table.column("schema_version").to_pylist())
    if versions - {SCHEMA_VERSION}:
        return f"schema_version {sorted(versions, key=str)[-1]} is not {SCHEMA_VERSION} (written by another runner)"
    return table


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
                table = table.set_column(index, name, table.column(name).cast(_STRING))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Integers as nullable ``Int64`` (a failed row has no epoch count, and a float epoch count would be
    odd), booleans as numpy ``bool`` unless some are missing (then nullable ``boolean``)."""
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if field.type == _BOOL:
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
    filesystem, base = storage.filesystem(results)
    files = _row_files(filesystem, base)
    if not files:
        return _empty_frame()
    if filesystem is None:  # local reads are CPU-bound call overhead (~1.5 ms a file): threads only add contention
        tables = [_read(None, path) for path in files]
    else:  # object-store reads wait on the network: overlap them
        with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
            tables = list(pool.map(lambda path: _read(filesystem, path), files))
    for path, table in zip(files, tables, strict=True):
        if isinstance(table, str):  # once per file: the message names it, and Python shows each message once
            warnings.warn(f"skipping leaderboard file {path}: {table}; move it out of the leaderboard folder",
                          stacklevel=2)
    tables = [table for table in tables if not isinstance(table, str)]
    if not tables:
        return _empty_frame()
    frame = _to_pandas(_concat(tables))
    frame = frame[_ordered(frame.columns)]
    if "finished_at" in frame:
        frame = frame.sort_values("finished_at", na_position="first", kind="mergesort")
    frame = frame.drop_duplicates(["sweep_id", "trial_id"], keep="last")
    if task is not None:
        frame = frame[frame["task"] == task]
    if sweep is not None:
        frame = frame[(frame["sweep_name"] == sweep) | (frame["sweep_id"] == sweep)]
    order = [c for c in ("sweep_name", "sweep_id", "finished_at", "trial_id") if c in frame]
    return frame.sort_values(order, na_position="last", kind="mergesort").reset_index(drop=True)


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


# ------------------------------------------------------------------------------------------------ CLI


def add_leaderboard_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leaderboard`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    board = commands.add_parser(
        "leaderboard", help="rank recorded trials by a validation metric",
        description="Reads RESULTS/leaderboard/<sweep_id>/<trial_id>.parquet (one row per trial) and prints the "
                    "best trials by a validation metric, with the matching test metric beside it (never used to "
                    "rank). Columns are documented in results/README.md.")
    storage.add_results_argument(board, help="results folder or URI such as s3://bucket/prefix (default "
                                             "$CXR_RUNNER_RESULTS or results)")
    board.add_argument("--task", help="only trials of this task")
    board.add_argument("--sweep", help="only trials of this sweep (name or id)")
    board.add_argument("--by", metavar="METRIC",
                       help="validation column to rank by, e.g. val_f1 (default: the metric the sweep optimised)")
    board.add_argument("--mode", choices=("max", "min"), help="higher or lower is better (default: the sweep's)")
    board.add_argument("--top", type=int, default=10, metavar="N", help="rows to show (default 10)")
    board.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (compact), or csv / json with every column")
    board.set_defaults(handler=_leaderboard)


def _leaderboard(args: argparse.Namespace) -> int:
    df = load(args.results, task=args.task, sweep=args.sweep)
    if df.empty:
        filters = ", ".join(f"{key}={value}" for key, value in (("task", args.task), ("sweep", args.sweep)) if value)
        print(f"no trials in {args.results}" + (f" ({filters})" if filters else ""))
        return 0
    ranked = top(df, by=args.by, n=args.top, mode=args.mode)
    if args.format == "csv":
        ranked.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(ranked.to_json(orient="records", date_format="iso", indent=2))
    else:
        print(render_table(ranked, total=len(df)))
    return 0


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else ".." + text[-(width - 2):]


def _cell(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column == "trial_id":
        return _short(str(value), 24)
    if isinstance(value, float):
        if _is_metric_column(column):
            return f"{value:.4f}"
        return f"{value:.1f}" if column.endswith("_seconds") else f"{value:g}"
    return _short(str(value), 28)


def _varying_hyperparameters(ranked: pd.DataFrame, limit: int = 5) -> list[str]:
    """hp_ columns with different values among the shown rows (missing values aside): the ones that can explain
    the ranking. Scalars before JSON ones (long, and rarely what a sweep searches)."""
    varying = [c for c in ranked.columns if c.startswith("hp_") and ranked[c].dropna().astype(str).nunique() > 1]
    return sorted(varying, key=lambda c: c[3:] in JSON_PARAMS)[:limit]


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
