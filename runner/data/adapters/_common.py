"""Helpers shared by the layout adapters."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runner.data._records import IMAGE_SUFFIXES, Problem
from runner.errors import DataError


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def read_csv_rows(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a CSV with header names stripped (SIIM's header is ``ImageId, EncodedPixels``)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            if reader.fieldnames is None:
                raise DataError(f"{csv_path} is empty: a manifest needs a header row and one row per image")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path} is not a UTF-8 text CSV ({error.reason}): save it as CSV UTF-8") from None
    return rows


def pick_column(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                csv_path: Path, required: bool = True) -> str | None:
    """The column to read ``what`` from: the one configured, else the first candidate present."""
    columns = list(columns)
    if wanted:
        if wanted not in columns:
            raise DataError(f"{csv_path} has no column '{wanted}' for {what}: its columns are {', '.join(columns)}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    if required:
        raise DataError(
            f"{csv_path} has no {what} column (looked for {', '.join(candidates)}): "
            f"set {what.replace(' ', '_')}_column to one of {', '.join(columns)}"
        )
    return None


def resolve_inside(root: Path, relative: str, allow_outside: bool, where: str) -> tuple[Path | None, Problem | None]:
    """``root/relative``, or a Problem when the file is missing. A path that escapes ``root`` (``..``, an
    absolute path, a symlink out) is an error naming ``where`` (the list file and line) unless the user allowed
    it: a manifest is data, often from someone else, and must not point the runner at ``/etc/passwd``.
    """
    candidate = (root / relative).resolve()
    if not allow_outside and not candidate.is_relative_to(root.resolve()):
        raise DataError(f"{where}: path '{relative}' escapes the data root {root}: fix the path, or set "
                        "allow_outside_root: true if files outside it are intended")
    if not candidate.is_file():
        return None, Problem(str(candidate), f"({where}) file listed in the data set does not exist: fix the path "
                                             "or remove its row")
    return candidate, None


def patient_from_name(path: Path, pattern: str | None) -> str | None:
    """A patient id taken from a file name with the user's regex (first group, or the whole match)."""
    if not pattern:
        return None
    match = re.search(pattern, path.name)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


def require_root(path: Path | None, layout: str) -> Path:
    if path is None:
        raise DataError(f"layout '{layout}' needs a path: pass --data PATH")
    if not path.exists():
        raise DataError(f"data path {path} does not exist: check the path (relative paths are from the current "
                        "directory)")
    return path


def option_columns(options: Mapping[str, Any]) -> dict[str, str | None]:
    return {key: options.get(key) for key in options if key.endswith("_column")}
