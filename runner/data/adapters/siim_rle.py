"""SIIM-ACR pneumothorax style: a CSV of ``ImageId, EncodedPixels`` (run-length-encoded masks, ``-1`` = no
mask, several rows per image = several regions) beside a folder of images named ``<ImageId>.png`` or, as the
SIIM-ACR original ships them, ``<ImageId>.dcm`` anywhere below it (``dicom-images-train/<study>/<series>/``).

The RLE strings are kept on the records and decoded by the cache, which knows each image's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.data._records import IMAGE_SUFFIXES, DataAdapter, Listing, Problem, Record
from runner.data.adapters._common import ImageFinder, account_files, read_csv_rows, require_root, resolve_inside
from runner.data.adapters._registry import register
from runner.data.images import DICOM_SUFFIXES
from runner.data.masks import RLE_FORMATS, is_empty_rle
from runner.errors import DataError


def _is_rle_csv(path: Path) -> bool:
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return False
    with open(path, encoding="utf-8-sig") as handle:
        header = [c.strip() for c in handle.readline().split(",")]
    return "ImageId" in header and "EncodedPixels" in header


def _runs_by_image(csv_path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """ImageId -> its regions' RLE strings. Several rows are several regions, but a row repeated word for
    word is one region listed twice: it is dropped with a counted warning, not drawn twice."""
    runs: dict[str, list[str]] = {}
    first_line: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for line, row in enumerate(read_csv_rows(csv_path), start=2):
        key = (row["ImageId"], row["EncodedPixels"])
        if key in first_line:
            repeats.append((line, first_line[key]))
            continue
        first_line[key] = line
        runs.setdefault(row["ImageId"], [])
        if not is_empty_rle(row["EncodedPixels"]):
            runs[row["ImageId"]].append(row["EncodedPixels"])
    warnings = []
    if repeats:
        line, first = repeats[0]
        warnings.append(f"{len(repeats)} duplicate rows removed (first: {csv_path.name} line {line} repeats line "
                        f"{first})")
    return runs, warnings


@register
class SiimRle(DataAdapter):
    name = "siim_rle"
    options: Mapping[str, Any] = {"image_root": "", "image_suffix": None, "rle_format": "relative",
                                  "positive_label": "pneumothorax", "negative_label": "normal"}

    def detect(self, path: Path) -> bool:
        return _is_rle_csv(path)

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        csv_path = require_root(path, self.name)
        if not _is_rle_csv(csv_path):
            raise DataError(f"{csv_path} is not a CSV with ImageId and EncodedPixels columns")
        if options["rle_format"] not in RLE_FORMATS:
            raise DataError(f"rle_format '{options['rle_format']}' is unknown: use one of {', '.join(RLE_FORMATS)}")
        runs, warnings = _runs_by_image(csv_path)
        image_root = csv_path.parent / options["image_root"]
        suffix = options["image_suffix"]
        finder = ImageFinder(image_root, (suffix,) if suffix else (*IMAGE_SUFFIXES, *DICOM_SUFFIXES, ""), "ImageId")
        records, problems = [], []
        for image_id, encoded in runs.items():
            where = f"{csv_path}, ImageId {image_id}"
            found = finder.find(image_id, where)
            if isinstance(found, Problem):
                problems.append(found)
                continue
            image, problem = resolve_inside(image_root, found, bool(options["allow_outside_root"]), where)
            if problem is not None:
                problems.append(problem)
                continue
            label = options["positive_label"] if encoded else options["negative_label"]
            records.append(Record(path=str(image), label=label,
                                  mask_rle=f"{options['rle_format']}:{'|'.join(encoded)}", where=where))
        used = [csv_path, *(p.path for p in problems), *(r.path for r in records)]
        found, ignored = account_files(csv_path.parent, used, f"image not listed in {csv_path.name}")
        return Listing(records=records, problems=problems, root=csv_path.parent, ignored=ignored,
                       files_found=found, warnings=warnings + finder.warnings())
