"""``ROOT/images/*`` with ``ROOT/masks/*`` of the same file stem (masks in any binary encoding: see
``runner.data.masks``), for segmentation. The folders' names are options: Kaggle's Shenzhen + Montgomery lung
masks are ``CXR_png/`` and ``masks/``, with ``_mask`` after the Shenzhen masks' stems only (``mask_suffix``
is removed where a stem has it, so one suffix reads both).

An optional ``ROOT/manifest.csv`` (``file,label,patient_id[,...]``, files named as in ``images/``) adds patient
ids and labels; without one, the label is ``pneumothorax`` when the mask has any foreground, ``normal`` when
it is empty, which is what a stratified split of a segmentation set needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from runner.data._records import DataAdapter, Listing, Problem, Record
from runner.data.adapters._common import (
    IMAGE_KINDS,
    account_files,
    image_files,
    pick_column,
    read_csv_rows,
    require_root,
)
from runner.data.adapters._registry import register
from runner.errors import DataError

#: The manifest columns a record takes: two rows of one image that differ in one of them conflict.
USED_COLUMNS = ("label", "patient_id", "patientid", "source")


def _label_from_mask(mask: Path, positive: str, negative: str) -> str:
    try:
        with Image.open(mask) as image:
            return positive if image.convert("L").getbbox() else negative
    except OSError:
        return negative  # an unreadable mask is reported, with its file name, when the cache decodes it


def _manifest_by_file(root: Path) -> dict[str, dict[str, str]]:
    csv_path = root / "manifest.csv"
    if not csv_path.is_file():
        return {}
    rows = read_csv_rows(csv_path)
    if not rows:
        return {}
    file_column = pick_column(rows[0], None, ("file", "path", "filename"), "path", csv_path)
    by_file: dict[str, dict[str, str]] = {}
    line_of: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        name = Path(row[file_column]).name
        earlier = by_file.setdefault(name, row)
        line_of.setdefault(name, line)
        different = [k for k in USED_COLUMNS if earlier.get(k) != row.get(k)]
        if different:
            raise DataError(f"{csv_path}: {name} is listed twice with conflicting {different[0]} "
                            f"'{earlier.get(different[0])}' (line {line_of[name]}) and '{row.get(different[0])}' "
                            f"(line {line}): keep one row with the right one")
    return by_file


@register
class ImageMasks(DataAdapter):
    name = "image_masks"
    options: Mapping[str, Any] = {"mask_suffix": "", "positive_label": "pneumothorax", "negative_label": "normal",
                                  "mask_threshold": None, "image_folder": "images", "mask_folder": "masks"}

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir()

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        root = require_root(path, self.name)
        image_dir, mask_dir = root / options["image_folder"], root / options["mask_folder"]
        if not (image_dir.is_dir() and mask_dir.is_dir()):
            raise DataError(f"{root} needs {options['image_folder']}/ and {options['mask_folder']}/ folders for the "
                            "image_masks layout: name others with data.image_folder and data.mask_folder (Kaggle's "
                            "lung masks: CXR_png and masks)")
        masks = {p.stem.removesuffix(options["mask_suffix"]): p for p in image_files(mask_dir)}
        manifest = _manifest_by_file(root)
        records, problems = [], []
        images = image_files(image_dir)
        if not images:
            raise DataError(f"{image_dir} has no {IMAGE_KINDS}: add images")
        for image in images:
            mask = masks.pop(image.stem, None)
            if mask is None:
                problems.append(Problem(str(image), f"no mask for this image: add {options['mask_folder']}/"
                                                    f"{image.stem}{options['mask_suffix']}.png or remove the image"))
                continue
            row = manifest.get(image.name, {})
            label = row.get("label") or _label_from_mask(mask, options["positive_label"], options["negative_label"])
            records.append(Record(path=str(image.resolve()), label=label, mask_path=str(mask.resolve()),
                                  patient_id=row.get("patient_id") or row.get("patientid") or None,
                                  source=row.get("source") or None, where=str(image)))
        problems += [Problem(str(m), f"mask without an image: add the image to {options['image_folder']}/ or remove "
                                     "the mask") for m in masks.values()]
        used = [root / "manifest.csv", *(p.path for p in problems), *(r.path for r in records),
                *(r.mask_path for r in records if r.mask_path)]
        found, ignored = account_files(root, used, f"image outside {options['image_folder']}/ and "
                                                   f"{options['mask_folder']}/")
        return Listing(records=records, problems=problems, root=root, ignored=ignored, files_found=found)
