"""A CSV manifest: ``path`` (or ``file``), ``label`` [, ``patient_id``] [, ``split``] [, ``source``], paths relative to
the CSV (a file name alone is looked for in ``image_root`` and, failing that, anywhere below it: NIH's
``images_001/images/`` ...). Column names, an image folder, a mask folder and row filters are options, so public
metadata files (e.g. covid-chestxray-dataset's ``metadata.csv``: ``filename``, ``finding``, ``patientid``, ``view``)
load as they are, with ``label_map`` turning their findings into our classes.

Multi-label manifests (several findings per image) come in two shapes, both read into one ``Record.label`` in the
data layer's multi-label spelling (``runner.data._records.findings_label``): a label cell listing findings, e.g.
NIH ChestX-ray14's ``Finding Labels`` ``Cardiomegaly|Effusion`` or ``No Finding`` (``label_separator``), or one
column per finding, CheXpert style, holding 1 (present), 0 or blank (absent) or -1 (uncertain: kept marked, for
the task's uncertain-label policy) (``label_columns``). Where each image has a row per reader (VinDr-CXR's
radiologists), ``reader_column`` names the reader, and a reader's several rows of one image (a row per box) are
united into one reading; how readings combine is the data option ``merge_rows`` (``runner.data._dataset``).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.data._records import (
    IMAGE_SUFFIXES,
    NO_FINDING,
    SPLIT_NAMES,
    SPLITS,
    DataAdapter,
    Listing,
    Problem,
    Record,
    findings_label,
    merge_findings,
)
from runner.data.adapters._common import (
    WINDOWS_ABSOLUTE,
    ImageFinder,
    account_files,
    is_csv,
    part_of_name,
    pick_column,
    read_csv_rows,
    read_list_lines,
    require_root,
    resolve_inside,
    with_slashes,
)
from runner.data.adapters._registry import register
from runner.data.images import DICOM_SUFFIXES
from runner.errors import DataError

#: A CheXpert label cell: present, absent (0 or blank: not mentioned in the report), or uncertain.
COLUMN_VALUES = {"1": "present", "1.0": "present", "0": "absent", "0.0": "absent", "": "absent",
                 "-1": "uncertain", "-1.0": "uncertain"}


def normalise_split(value: str, where: str) -> str | None:
    """Map the usual spellings of split names onto train / val / test; empty means 'not given'."""
    if not value:
        return None
    split = SPLIT_NAMES.get(value.strip().lower())
    if split is None:
        raise DataError(f"{where}: unknown split '{value}': use one of {', '.join(SPLITS)}")
    return split


def _keep_row(row: Mapping[str, str], filters: Mapping[str, Any]) -> bool:
    for column, allowed in filters.items():
        values = allowed if isinstance(allowed, list | tuple) else [allowed]
        if row.get(column, "") not in {str(v) for v in values}:
            return False
    return True


def _listed_findings(cell: str, separator: str, column: str, where: str) -> list[str]:
    """A label cell's findings: split on ``separator``, or, for a cell written as a Python list (PadChest's
    ``['pleural effusion', 'cardiomegaly']``), its items; split on ``,`` that cell would give names in quotes
    and brackets, which no ``label_map`` key matches, and a ``"*": null`` would drop every one unseen."""
    if not (cell.startswith("[") and cell.endswith("]")):
        return cell.split(separator)
    try:
        items = ast.literal_eval(cell)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        items = None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise DataError(f"{where}: {column} {cell[:80]!r} looks like a list but is not one of quoted names "
                        "(['a', 'b']): fix the cell, or list the findings with data.label_separator")
    return items


def _separated_labels(separator: str, column: str) -> Callable[[Mapping[str, str], str], str | None]:
    """Reads a label cell listing several findings (``Cardiomegaly|Effusion``, ``No Finding``); None for an
    empty one, which the row's reader skips by name (PadChest has rows without labels)."""
    def read(row: Mapping[str, str], where: str) -> str | None:
        findings = [NO_FINDING if name.casefold() == NO_FINDING.casefold() else name  # VinDr: "No finding"
                    for name in (part.strip() for part in _listed_findings(row[column], separator, column, where))
                    if name]
        return findings_label(findings) if findings else None

    return read


def _column_labels(columns: list[str]) -> Callable[[Mapping[str, str], str], str]:
    """Reads one column per finding (CheXpert): 1 present, 0 or blank absent, -1 uncertain."""
    def read(row: Mapping[str, str], where: str) -> str:
        for column in columns:
            if row[column] not in COLUMN_VALUES:
                raise DataError(f"{where}: column '{column}' holds {row[column]!r}: a label column holds 1 (present), "
                                "0 or blank (absent) or -1 (uncertain)")
        return findings_label([c for c in columns if COLUMN_VALUES[row[c]] == "present"],
                              [c for c in columns if COLUMN_VALUES[row[c]] == "uncertain"])

    return read


def _label_reader(options: Mapping[str, Any], columns: list[str], csv_path: Path
                  ) -> Callable[[Mapping[str, str], str], str | None]:
    """How this manifest's rows give their label: one class per ``label`` cell (the default), several findings
    in one cell (``label_separator``), or one column per finding (``label_columns``)."""
    per_finding = options["label_columns"]
    if per_finding:
        for name in per_finding:
            pick_column(columns, name, (), "label_columns", csv_path)
        return _column_labels(per_finding)
    label = pick_column(columns, options["label_column"], ("label",), "label", csv_path)
    if options["label_separator"] is not None:
        return _separated_labels(options["label_separator"], label)
    return lambda row, where: row[label]


def _check_filter_columns(filters: Mapping[str, Any], columns: list[str], csv_path: Path) -> None:
    for column in filters:
        if column not in columns:
            raise DataError(f"{csv_path} has no column '{column}' to filter on: its columns are {', '.join(columns)}")


def _read_split_files(files: Mapping[str, str], root: Path) -> dict[str, str]:
    """Image name -> split, from files listing each split's images one per line (NIH ChestX-ray14's
    ``train_val_list.txt`` and ``test_list.txt``, beside its CSV). A name in two lists is one error: that
    image would be evaluated on what it was trained on."""
    split_of: dict[str, str] = {}
    for name, listed in files.items():
        split = normalise_split(name, "data.split_files")
        path = root / listed
        if not path.exists():
            raise DataError(f"data.split_files: {split} list {path} does not exist: check the path (relative to "
                            f"{root})")
        for line in read_list_lines(path, f"data.split_files: {split} list"):
            image = line.strip()
            if image and split_of.setdefault(image, split) != split:
                raise DataError(f"{image} is listed in both the {split_of[image]} and the {split} split_files: one "
                                "image in two splits leaks it into its own evaluation; keep it in one list")
    return split_of


def _listed_split(split_of: Mapping[str, str], listed: str) -> str | None:
    """A row's split from the split files, by the name the row gives (or its file name)."""
    return split_of.get(listed) or split_of.get(Path(listed).name)


def _check_every_row_listed(records: list[Record], files: Mapping[str, str]) -> None:
    missing = [r for r in records if r.split is None]
    if missing:
        raise DataError(f"{missing[0].where}: {Path(missing[0].path).name} is in none of the split_files "
                        f"({', '.join(files.values())}; {len(missing)} such rows): list every image in one of "
                        "them, or filter those rows out")


def _check_paths_from_the_folder_above(rows: list[dict[str, str]], column: str, image_root: Path, csv_path: Path
                                       ) -> None:
    """CheXpert's ``train.csv`` lies in ``CheXpert-v1.0-small/`` and lists ``CheXpert-v1.0-small/train/...``:
    relative to the folder above it. When no listed file was found, but the first listed path is there, the
    ``image_root`` that reads them is one line, not a missing-file problem per row."""
    listed = next((row[column] for row in rows if row[column] and Path(row[column]).name != row[column]), None)
    above = image_root.parent
    if listed is not None and (above / listed).is_file():
        raise DataError(f"{csv_path}: no listed file is under {image_root}, but the first is under {above} "
                        f"({listed}): set data.image_root: {os.path.relpath(above, csv_path.parent)}")


def _one_record_per_reader(records: list[Record], readers: list[str | None]) -> list[Record]:
    """A reader's rows of one image united into one record holding all their findings (VinDr-CXR's box file has a
    row per finding and reader), so each reader is one vote for ``data.merge_rows``. Rows that differ in more
    than their findings (a split, a patient) stay apart, for the duplicate check to report."""
    united: dict[tuple[str | None, Record], list[str]] = {}
    for record, reader in zip(records, readers, strict=True):
        united.setdefault((reader, replace(record, label="")), []).append(record.label)
    return [replace(record, label=merge_findings(labels, "any")) for (_, record), labels in united.items()]


@dataclass(frozen=True)
class _Join:
    """One ``join`` entry: another CSV's rows by their ``key`` values. MIMIC-CXR-JPG lists its images in
    ``mimic-cxr-2.0.0-split.csv.gz`` but labels studies in ``mimic-cxr-2.0.0-chexpert.csv.gz`` and keeps the
    view in ``mimic-cxr-2.0.0-metadata.csv.gz``: each image row takes its study's labels and its view."""

    csv_path: Path
    key: tuple[str, ...]
    rows: Mapping[tuple[str, ...], tuple[int, dict[str, str]]]
    loose: Mapping[tuple[str, ...], tuple[int, tuple[str, ...]]]

    def near_miss(self, key: tuple[str, ...]) -> str:
        """Where the joined CSV writes this key another way (``10000032.0`` for ``10000032``: a column that
        pandas saved as floats; `` 7`` or ``007`` for ``7``), as a hint for the problem. The join itself
        stays exact: ``007`` and ``7`` may well be two patients."""
        found = self.loose.get(_loose_key(key))
        if found is None:
            return ""
        line, written = found
        return (f"; line {line} there has {_key_text(self.key, written)}: write the key the same way in both files "
                "(a column saved as floats gives 10000032.0 for 10000032)")


def _loose_key(values: tuple[str, ...]) -> tuple[str, ...]:
    """A key as a person would read it: spaces and case ignored, numbers by their value."""
    def loose(value: str) -> str:
        value = value.strip().casefold()
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else repr(number)
    return tuple(loose(value) for value in values)


def _read_joins(entries: list[Mapping[str, Any]], root: Path, delimiter: str, columns: list[str]
                ) -> tuple[list[_Join], list[str]]:
    """The ``join`` CSVs (relative to the manifest's folder), and the columns a joined row has. A key naming
    two rows of a joined CSV is one error: which row an image takes would be the file's order."""
    joins, columns = [], list(columns)
    for entry in entries:
        path = root / entry["csv"]
        if not path.is_file():
            raise DataError(f"data.join: {path} does not exist: check the path (relative to {root})")
        rows = read_csv_rows(path, delimiter)
        if not rows:
            raise DataError(f"data.join: {path} has a header but no rows")
        for name in entry["key"]:
            for where, names in (("the manifest" if len(joins) == 0 else "the rows joined so far", columns),
                                 (str(path), list(rows[0]))):
                if name not in names:
                    raise DataError(f"data.join: {where} has no column '{name}' to join on: its columns are "
                                    f"{', '.join(names)}")
        by_key: dict[tuple[str, ...], tuple[int, dict[str, str]]] = {}
        for line, row in enumerate(rows, start=2):
            key = tuple(row[name] for name in entry["key"])
            if key in by_key:
                raise DataError(f"{path}:{line} has the {_key_text(entry['key'], key)} of line {by_key[key][0]}: "
                                "join on columns that name one row of it")
            by_key[key] = (line, row)
        loose = {_loose_key(key): (line, key) for key, (line, _) in reversed(by_key.items())}
        joins.append(_Join(path, tuple(entry["key"]), by_key, loose))
        columns += [name for name in rows[0] if name not in columns]
    return joins, columns


def _key_text(columns: tuple[str, ...] | list[str], values: tuple[str, ...]) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(columns, values, strict=True))


def _joined(row: dict[str, str], joins: list[_Join], where: str) -> tuple[dict[str, str], Problem | None]:
    """A manifest row with the columns of its rows in the ``join`` CSVs. No row to join, or a shared column
    whose values disagree (an image filed under another patient), is a problem: the row is skipped, named."""
    for join in joins:
        key = tuple(row[name] for name in join.key)
        found = join.rows.get(key)
        if found is None:
            hint = join.near_miss(key)
            return row, Problem(where, f"no row in {join.csv_path.name} with {_key_text(join.key, key)}" + (
                hint or ": add it, or filter the row out"))
        line, other = found
        clash = next((name for name, value in other.items() if row.get(name, value) != value), None)
        if clash is not None:
            return row, Problem(where, f"{clash} is {row[clash]!r} here but {other[clash]!r} in "
                                       f"{join.csv_path.name}:{line}: the two files disagree; fix one")
        row = {**row, **other}
    return row, None


@register
class Manifest(DataAdapter):
    name = "manifest"
    options: Mapping[str, Any] = {
        "path_column": None, "label_column": None, "patient_column": None, "split_column": None,
        "source_column": None, "mask_column": None, "image_root": "", "mask_root": None, "filters": {},
        "delimiter": ",", "label_separator": None, "label_columns": None, "reader_column": None,
        "patient_regex": None, "split_files": None, "join": None,
    }

    def detect(self, path: Path) -> bool:
        return is_csv(path) or (path / "manifest.csv").is_file()

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        csv_path = require_root(path, self.name)
        if csv_path.is_dir():
            csv_path = csv_path / "manifest.csv"
            if not csv_path.is_file():
                raise DataError(f"{path} has no manifest.csv: pass the CSV file itself as the data path")
        rows = read_csv_rows(csv_path, options["delimiter"])
        if not rows:
            raise DataError(f"{csv_path} has a header but no rows: add one row per image")
        root = csv_path.parent
        joins, columns = _read_joins(options["join"] or [], root, options["delimiter"], list(rows[0]))
        path_column = pick_column(columns, options["path_column"], ("path", "file", "filename"), "path", csv_path)
        read_label = _label_reader(options, columns, csv_path)
        col = {
            "path": path_column,
            "patient": pick_column(columns, options["patient_column"], ("patient_id", "patientid"), "patient",
                                   csv_path, required=False),
            "split": pick_column(columns, options["split_column"], ("split",), "split", csv_path, required=False),
            "source": pick_column(columns, options["source_column"], ("source",), "source", csv_path,
                                  required=False),
            "mask": pick_column(columns, options["mask_column"], (), "mask", csv_path, required=False),
            "reader": pick_column(columns, options["reader_column"], (), "reader", csv_path, required=False),
        }
        _check_filter_columns(options["filters"], columns, csv_path)
        image_root = root / options["image_root"]
        mask_root = root / options["mask_root"] if options["mask_root"] else None
        allow_outside = bool(options["allow_outside_root"])
        finder = ImageFinder(image_root, ("", *IMAGE_SUFFIXES, *DICOM_SUFFIXES), col["path"])  # RSNA: patientId
        split_of = _read_split_files(options["split_files"], root) if options["split_files"] else None
        records, readers, problems = [], [], []
        for line, row in enumerate(rows, start=2):
            where = f"{csv_path}:{line}"
            row, problem = _joined(row, joins, where)
            if problem is not None:
                problems.append(problem)
                continue
            if not _keep_row(row, options["filters"]):
                continue
            empty = next((col[key] for key in ("path", "reader") if col[key] and not row[col[key]]), None)
            if empty is not None:  # a blank reader would make one more reader of every blank row of an image
                problems.append(Problem(where, f"empty {empty}: fill it in or remove the row"))
                continue
            listed = with_slashes(image_root, row[col["path"]])  # images\a.png from a list written on Windows
            # a file name alone (NIH's Image Index) may lie in any folder below, and one without a suffix (RSNA's
            # patientId) names <patientId>.dcm
            if Path(listed).name == listed and not WINDOWS_ABSOLUTE.match(listed):
                listed = finder.find(listed, where)
                if isinstance(listed, Problem):
                    problems.append(listed)
                    continue
            label = read_label(row, where)
            if label is None:
                problems.append(Problem(where, f"empty {options['label_column'] or 'label'}: list the findings, or "
                                               f"write '{NO_FINDING}' for none"))
                continue
            image, problem = resolve_inside(image_root, listed, allow_outside, where)
            mask = None
            if problem is None and (mask_root is not None or col["mask"]):
                relative = row[col["mask"]] if col["mask"] else Path(row[col["path"]]).name
                mask, problem = resolve_inside(mask_root or root, relative, allow_outside, where)
            if problem is not None:
                problems.append(problem)
                continue
            records.append(Record(
                path=str(image), label=label,
                patient_id=(row[col["patient"]] or None if col["patient"]
                            else part_of_name(row[col["path"]], options["patient_regex"])),
                split=(normalise_split(row[col["split"]], where) if col["split"]
                       else _listed_split(split_of, row[col["path"]]) if split_of is not None else None),
                source=row[col["source"]] or None if col["source"] else None,
                mask_path=str(mask) if mask else None, where=where,
            ))
            readers.append(row[col["reader"]] if col["reader"] else None)
        warnings = finder.warnings()
        if col["reader"]:
            rows_read, records = len(records), _one_record_per_reader(records, readers)
            if rows_read > len(records):
                warnings.append(f"{rows_read} rows united into {len(records)} readings (one per image and "
                                f"{col['reader']})")
        if not records and not problems:
            raise DataError(f"{csv_path}: no row passes the filters {dict(options['filters'])}: check the values")
        if split_of is not None:
            _check_every_row_listed(records, options["split_files"])
        if not records:
            _check_paths_from_the_folder_above(rows, col["path"], image_root, csv_path)
        used = [csv_path, *(root / listed for listed in (options["split_files"] or {}).values()),
                *(join.csv_path for join in joins),
                *(p.path for p in problems), *(r.path for r in records),
                *(r.mask_path for r in records if r.mask_path)]
        found, ignored = account_files(root, used, f"image not listed in {csv_path.name} (or filtered out)",
                                       also=[image_root, *([mask_root] if mask_root else [])])
        return Listing(records=records, problems=problems, root=root, ignored=ignored, files_found=found,
                       warnings=warnings)
