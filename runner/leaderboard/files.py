"""Where rows live: ``<results>/leaderboard/<sweep_id>/<trial_id>.parquet``, one file per trial, on local disk
(temporary file, fsync, atomic rename) or behind a ``pyarrow.fs`` URI (one PUT, atomic already); finding
and reading the row files back, skipping, with a warning, any file that is not a row."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from runner import storage
from runner.leaderboard.rows import check_status
from runner.leaderboard.schema import FLOAT, INT, TIMESTAMP, check_table, column_type, ordered
from runner.leaderboard.values import int_or_none, missing, timestamp

# One row per file: statistics, dictionaries and compression buy nothing, and leaving them (and the embedded
# Arrow schema, redundant with these plain types) out makes files ~3x smaller and faster to read back.
_WRITE_OPTIONS: dict[str, Any] = {"write_statistics": False, "use_dictionary": False, "compression": "none",
                                  "store_schema": False}


def _file_name(identifier: str, what: str) -> str:
    """``identifier`` as one safe, reversible path component (``%``-quoted); never hidden (a leading ``.``
    would make ``load`` take the row for a temporary)."""
    if not identifier:
        raise ValueError(f"a leaderboard row needs a non-empty {what}")
    name = quote(identifier, safe="-_.=+@,")
    return "%2E" + name[1:] if name.startswith(".") else name


def _row_parts(sweep_id: str, trial_id: str) -> tuple[str, str]:
    return _file_name(sweep_id, "sweep_id"), f"{_file_name(trial_id, 'trial_id')}.parquet"


def row_table(row: Mapping[str, Any]) -> pa.Table:
    """One row as the one-row Arrow table its file holds, each column in its one type."""
    arrays, fields = [], []
    for name in ordered(row):
        value = row[name]
        kind = column_type(name, value)
        if missing(value):
            # stored as null, NaN included: SQL engines treat NaN as a number larger than any other (DuckDB's
            # max() would pick it, "IS NOT NULL" would keep it), while pandas reads null back as NaN anyway
            value = None
        elif kind == TIMESTAMP:
            value = timestamp(value)
        elif kind == INT:
            value = int_or_none(value)
        elif kind == FLOAT and value is not None:
            value = float(value)
        try:
            arrays.append(pa.array([value], type=kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as problem:
            raise ValueError(f"leaderboard column {name!r}: {value!r} is not a {kind}: {problem}") from None
        fields.append(pa.field(name, kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


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
    (``read_row``), and again only when ``--retry-failed`` reruns a failed one.
    """
    for key in ("sweep_id", "trial_id", "status"):
        if key not in row:
            raise ValueError(f"a leaderboard row needs {key!r}")
    check_status(row["status"])
    relative = _row_parts(str(row["sweep_id"]), str(row["trial_id"]))
    table = row_table(row)
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


def read_row(results: str | os.PathLike[str], sweep_id: str, trial_id: str) -> dict[str, Any] | None:
    """The trial's current row as a dict, or None when it has none (or its file is not a row): what a new
    attempt of the trial (``--retry-failed``) replaces and carries the earlier errors of."""
    filesystem, base = storage.filesystem(results)
    table = _read(filesystem, "/".join([base, "leaderboard", *_row_parts(sweep_id, trial_id)]))
    return None if isinstance(table, str) else table.to_pylist()[0]


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
    return check_table(table)


def read_rows(results: str | os.PathLike[str]) -> list[pa.Table]:
    """Every row file's table (none for a missing results folder). A file that is not a row is skipped with
    one warning naming it and why, attributed to the caller of the caller (``load``'s)."""
    filesystem, base = storage.filesystem(results)
    files = _row_files(filesystem, base)
    if not files:
        return []
    if filesystem is None:  # local reads are CPU-bound call overhead (~1.5 ms a file): threads only add contention
        tables = [_read(None, path) for path in files]
    else:  # object-store reads wait on the network: overlap them
        with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
            tables = list(pool.map(lambda path: _read(filesystem, path), files))
    for path, table in zip(files, tables, strict=True):
        if isinstance(table, str):  # once per file: the message names it, and Python shows each message once
            warnings.warn(f"skipping leaderboard file {path}: {table}; move it out of the leaderboard folder",
                          stacklevel=3)
    return [table for table in tables if not isinstance(table, str)]
