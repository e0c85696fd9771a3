"""One text file per split (``train.txt``, ``val.txt``, ``test.txt``), each line ``relative/path label``; the
column order is an option, so COVIDx-style lists (``patient_id path label source``) load too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.data._records import SPLITS, DataAdapter, Listing, Problem, Record
from runner.data.adapters._common import account_files, read_list_lines, require_root, resolve_inside
from runner.data.adapters._registry import register
from runner.errors import DataError

KNOWN_COLUMNS = ("path", "label", "patient_id", "source", "ignore")


def _list_files(root: Path) -> dict[str, Path]:
    return {s: root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()}


def _parse_columns(spec: str) -> list[str]:
    columns = spec.split()
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown or "path" not in columns or "label" not in columns:
        raise DataError(f"columns '{spec}' must name path and label, from: {', '.join(KNOWN_COLUMNS)}")
    return columns


@register
class SplitLists(DataAdapter):
    name = "split_lists"
    options: Mapping[str, Any] = {"columns": "path label", "image_root": "", "split_subfolders": False}

    def detect(self, path: Path) -> bool:
        return path.is_dir() and bool(_list_files(path))

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        root = require_root(path, self.name)
        lists = _list_files(root)
        if not lists:
            raise DataError(f"{root} has none of train.txt, val.txt, test.txt: the split_lists layout needs them")
        columns = _parse_columns(options["columns"])
        allow_outside = bool(options["allow_outside_root"])
        records, problems = [], []
        for split, list_file in lists.items():
            image_root = root / options["image_root"] / (split if options["split_subfolders"] else "")
            for number, line in enumerate(read_list_lines(list_file, "split list"), start=1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                where = f"{list_file}:{number}"
                fields = line.split()
                if len(fields) != len(columns):
                    problems.append(Problem(where, f"expected {len(columns)} fields ({' '.join(columns)}), got "
                                                   f"{len(fields)}: fix the line or set the columns option"))
                    continue
                row = dict(zip(columns, fields, strict=True))
                image, problem = resolve_inside(image_root, row["path"], allow_outside, where)
                if problem is not None:
                    problems.append(problem)
                    continue
                records.append(Record(path=str(image), label=row["label"], split=split,
                                      patient_id=row.get("patient_id"), source=row.get("source"), where=where))
        used = [*lists.values(), *(p.path for p in problems), *(r.path for r in records)]
        found, ignored = account_files(root, used, "image not listed in train.txt, val.txt or test.txt")
        return Listing(records=records, problems=problems, root=root, ignored=ignored, files_found=found)
