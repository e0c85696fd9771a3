"""The Parquet leaderboard: one row per finished trial, readable by pandas, DuckDB, Polars or pyarrow.

Layout: ``<results>/leaderboard/<sweep_id>/<trial_id>.parquet``, one file (one row) per trial. One file per
trial, rather than one growing table, is what makes recording safe without locks:

* a row is written to a hidden temporary file in the same folder and ``os.replace``-d into place, so a reader
  never sees half a file and a crash can only leave a temporary (whose name starts with ``.``, which
  ``load`` ignores);
* a crash loses nothing already recorded, and two sweeps (or two processes of one sweep) writing the same
  results folder never touch the same file;
* one row per trial id: a sweep writes a trial's row once, when it ends (``read_row``), so a resumed trial
  appears once; only a new attempt of a failed trial (``sweep --resume --retry-failed``) writes its id
  again, replacing the failed row atomically and keeping its error (``attempt_columns``).

``results`` is a local folder, or a ``pyarrow.fs`` URI (``s3://bucket/prefix``, ``gs://...``,
``file:///...``); on object stores a row is PUT directly, since an object PUT is already atomic there.

One job per module: ``schema`` (column types and order, what a row file must hold), ``values`` (a value in
its column's type), ``rows`` (a row from a trial's result), ``files`` (writing, finding and reading row
files), ``queries`` (``load``, ``top``), ``render`` and ``cli`` (the ``leaderboard`` command). Every column
is documented in ``results/README.md``. Reading imports neither TensorFlow nor Ray, so
``python -m runner leaderboard`` starts in well under a second; building a row reads the registered models'
parameter declarations (``schema.hyperparameter_kinds``), which the sweep driver and a trial have loaded.
"""

from __future__ import annotations

from runner.leaderboard.cli import add_leaderboard_command
from runner.leaderboard.files import read_row, write_row
from runner.leaderboard.queries import load, of_sweep, optimised, top
from runner.leaderboard.render import random_init_note, render_table, test_metric_of
from runner.leaderboard.rows import attempt_columns, failed_row, natural_mode, row_from_result, sweep_metric_value
from runner.leaderboard.schema import (
    CORE_TYPES,
    IDENTITY_COLUMNS,
    SCHEMA_VERSION,
    SPLITS,
    STATUSES,
    hyperparameter_kinds,
)

__all__ = [
    "CORE_TYPES",
    "IDENTITY_COLUMNS",
    "SCHEMA_VERSION",
    "SPLITS",
    "STATUSES",
    "add_leaderboard_command",
    "attempt_columns",
    "failed_row",
    "hyperparameter_kinds",
    "load",
    "natural_mode",
    "of_sweep",
    "optimised",
    "random_init_note",
    "read_row",
    "render_table",
    "row_from_result",
    "sweep_metric_value",
    "test_metric_of",
    "top",
    "write_row",
]
