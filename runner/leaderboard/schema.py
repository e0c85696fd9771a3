"""Column types and order: one Arrow type per column name, never guessed from one row alone, so that every
file of every sweep reads back as one table (``read_parquet('results/leaderboard/**/*.parquet',
union_by_name=true)``).

* Core columns (``CORE_TYPES``) and metrics (``val_*``, ``test_*``, ``external_test_*``: float, the
  confusion matrix JSON) are typed by their name alone. That is all a reader checks (``check_table``),
  so reading needs no model, task or TensorFlow.
* A hyper-parameter column (``hp_<key>``) is typed by what the parameter is declared to hold
  (``hyperparameter_kinds``): the annotations of ``TrialConfig``'s fields and of every registered model's
  parameters. A parameter that can hold a list or a mapping is JSON text, one that can hold a string is
  text, and the others (numbers, bools) take their value's type, ints as floats. A new model's parameter
  gets its column type from its own signature; nothing here names a parameter.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from runner.leaderboard.values import is_number, missing

SCHEMA_VERSION = 1
STATUSES = ("completed", "stopped", "failed")
SPLITS = ("val", "test", "external_test")
# Ranking may only look at validation metrics: a column starting with one of these is a held-out test result.
TEST_PREFIXES = ("test_", "external_test_")
# Hyper-parameters already present as identity columns, so not repeated as ``hp_task`` / ``hp_model``.
IDENTITY_PARAMS = ("task", "model")

IDENTITY_COLUMNS = ("schema_version", "sweep_id", "sweep_name", "trial_id", "status", "error", "task", "model")

STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
TIMESTAMP = pa.timestamp("us", tz="UTC")

# Every non-hyper-parameter, non-metric column, in file order, with its one Arrow type.
CORE_TYPES: dict[str, pa.DataType] = {
    "schema_version": INT, "sweep_id": STRING, "sweep_name": STRING, "trial_id": STRING,
    "status": STRING, "error": STRING, "task": STRING, "model": STRING,
    "monitor": STRING, "mode": STRING, "sweep_metric": STRING, "sweep_mode": STRING, "warm_start": STRING,
    "confirm_of": STRING,
    "data_fingerprint": STRING, "data_root": STRING, "data_layout": STRING, "data_classes": STRING,
    "data_external_test": STRING, "data_skipped": INT, "n_train": INT, "n_val": INT, "n_test": INT,
    "shortcut_warnings": STRING,
    "epochs_run": INT, "best_epoch": INT, "stopped_early": BOOL, "resumed_from_epoch": INT,
    "attempts": INT, "attempt_errors": STRING,
    "train_seconds": FLOAT,
    "eval_seconds": FLOAT, "images_per_second": FLOAT, "params_total": INT, "params_trainable": INT,
    "rss_mb": FLOAT, "gpu_util_mean": FLOAT, "gpu_util_peak": FLOAT, "gpu_memory_peak_mb": FLOAT,
    "device": STRING, "host": STRING, "node_id": STRING, "trial_dir": STRING,
    "seed": INT, "python_version": STRING, "tensorflow_version": STRING, "keras_version": STRING,
    "ray_version": STRING, "runner_version": STRING, "versions_json": STRING, "git_commit": STRING,
    "started_at": TIMESTAMP, "finished_at": TIMESTAMP, "config_json": STRING,
}

#: Core columns added after the first schema-version-1 files were written. A row file from before one of them
#: lacks it; ``load`` gives it as null (its one type) so every frame has every column, and since an added
#: nullable column changes nothing an older reader relies on, ``SCHEMA_VERSION`` stays: older runners read
#: the new files too (as an extra column).
LATER_COLUMNS = ("confirm_of",)

# hyper-parameter kinds (``hyperparameter_kinds``); a parameter of neither kind is typed by its value
JSON = "json"  # stored as JSON text whatever the value: False, {"rotation": 0.1}, 32, [32, 64, 128]
TEXT = "text"  # stored as text: a string as it is, anything else as JSON (4 -> "4", 0.5 -> "0.5")


# ------------------------------------------------------------------------------ hyper-parameter kinds


def hyperparameter_kinds() -> dict[str, str]:
    """``JSON`` or ``TEXT`` for every declared hyper-parameter whose column is text whatever its value, by key.

    A column is shared by every trial that has the key, so a model parameter's kind comes from every model
    declaring it: ``filters`` is an int in ``baseline`` and a list in ``conv_autoencoder``, so JSON in both,
    or the column would be double in one file and string in the next. Reading the models' declarations
    imports their builders, TensorFlow with them: row building asks, where the models are loaded anyway
    (the sweep driver checks them, a trial builds one); readers take the types the files have.
    """
    kinds = {**_model_kinds(_model_names()), **_config_kinds()}  # a training key is never a model's
    return {key: kind for key, kind in kinds.items() if kind is not None}


def hyperparameter_kind(key: str) -> str | None:
    """The kind of one hyper-parameter (None: typed by value). A training key's comes from ``TrialConfig``
    alone, so ``write_row`` storing a row whose ``hp_test_data`` is missing needs no model (and no
    TensorFlow): it asks only for a missing value, whose type the value cannot tell."""
    config = _config_kinds()
    return config[key] if key in config else _model_kinds(_model_names()).get(key)


def _model_names() -> tuple[str, ...]:
    from runner.models import MODELS

    return tuple(MODELS.names())


@functools.cache
def _config_kinds() -> dict[str, str | None]:
    from runner.config import TRAINING_KEYS, TrialConfig

    fields = typing.get_type_hints(TrialConfig)
    return {key: _column_kind([fields[key]]) for key in TRAINING_KEYS if key not in IDENTITY_PARAMS}


@functools.cache
def _model_kinds(models: tuple[str, ...]) -> dict[str, str | None]:
    """The kinds for one set of registered models, by name: a name is registered once, so a model
    registered later makes a new set."""
    from runner.models import MODELS

    declared: dict[str, list[Any]] = {}
    for name in models:
        for key, kind in MODELS.get(name).parameter_types().items():
            declared.setdefault(key, []).append(kind)
    return {key: _column_kind(declarations) for key, declarations in declared.items()}


def _column_kind(declarations: Iterable[Any]) -> str | None:
    """``JSON`` when any declared type can hold a list or a mapping (``Any`` can), else ``TEXT`` when any can
    hold a string (``int | float | str``, ``str | None``), else None: numbers and bools, typed by value."""
    members = [member for declared in declarations for member in _members(declared)]
    if any(_holds_structure(member) for member in members):
        return JSON
    if any(isinstance(member, type) and issubclass(member, (str, os.PathLike)) for member in members):
        return TEXT
    return None


def _members(declared: Any) -> list[Any]:
    """The plain types a declared type admits: ``int | str`` -> [int, str], ``Sequence[int]`` -> [Sequence],
    ``Literal["a", 1]`` -> [str, int]."""
    origin = typing.get_origin(declared)
    if origin in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(declared) for member in _members(arg)]
    if origin is typing.Literal:
        return [type(value) for value in typing.get_args(declared)]
    return [origin or declared]


def _holds_structure(member: Any) -> bool:
    if member is Any or member is object:
        return True
    return isinstance(member, type) and issubclass(member, Collection) and not issubclass(member, (str, bytes))


# ------------------------------------------------------------------------------------------ column types


def is_metric_column(name: str) -> bool:
    return name.startswith(tuple(f"{split}_" for split in SPLITS))


def fixed_type(name: str) -> pa.DataType | None:
    """The Arrow type a column has by its name alone (core columns, metrics), or None for a hyper-parameter
    or extra column. Writing and reading both use it: a row that ``write_row`` accepts is one ``load`` reads."""
    if name in CORE_TYPES:
        return CORE_TYPES[name]
    if is_metric_column(name):
        return STRING if name.endswith("_confusion_matrix") else FLOAT
    return None


def column_type(name: str, value: Any) -> pa.DataType:
    """The one Arrow type of a column, decided by its name first and only then by the value. Row building
    has already stored a text or JSON hyper-parameter as a string, so only a missing one needs its kind."""
    fixed = fixed_type(name)
    if fixed is not None:
        return fixed
    if missing(value):
        if name.startswith("hp_") and hyperparameter_kind(name[3:]) is not None:
            return STRING  # hp_test_data is a string column even in a row without test data
        return pa.null()  # unknown: null unifies with whatever type other files give this column
    if isinstance(value, (bool, np.bool_)):
        return BOOL
    if is_number(value):
        return FLOAT
    if isinstance(value, datetime):
        return TIMESTAMP
    return STRING


def ordered(columns: Iterable[str]) -> list[str]:
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


# ------------------------------------------------------------------------------------------- checking


def _same_kind(expected: pa.DataType, found: pa.DataType) -> bool:
    """Whether a column read as ``found`` holds what ``expected`` holds, so casting loses nothing: pandas
    writes text as ``large_string``, an all-missing column as null, an integer where a float is expected."""
    if found == expected or pa.types.is_null(found):
        return True
    if expected == STRING:
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if expected == FLOAT:
        return pa.types.is_floating(found) or pa.types.is_integer(found)
    if expected == INT:
        return pa.types.is_integer(found)
    return expected == TIMESTAMP and pa.types.is_timestamp(found)


def check_table(table: pa.Table) -> pa.Table | str:
    """The table with every fixed-type column in its one type, or why it is not leaderboard rows: another
    tool's Parquet file (no identity columns), or a row edited by hand into a wrong type or without an id.
    Such a file would otherwise show up as a trial of NaNs, or turn a metric into text for every row."""
    missing_columns = [column for column in IDENTITY_COLUMNS if column not in table.column_names]
    if missing_columns:
        return f"not a leaderboard row: no column {', '.join(missing_columns)}"
    for index, field in enumerate(table.schema):
        expected = fixed_type(field.name)
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
