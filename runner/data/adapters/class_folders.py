"""``ROOT/<class>/*.png`` or ``ROOT/{train,val,test}/<class>/*.png`` (the Kaggle chest-xray-pneumonia layout).

Split folders are matched case-folded, with the usual spellings (``Train``, ``valid``, ``validation``): a
Kaggle ``valid/`` folder read as a class named ``valid`` would silently train on the validation images.
A class folder holding no image but an ``images/`` folder is read from there: the COVID-19 Radiography
Database (Kaggle) keeps each class's radiographs in ``<class>/images/`` beside their lung masks in
``<class>/masks/`` (COVID-QU-Ex: ``lung masks/``), which a classifier does not read (each is listed as ignored,
with that reason).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.data._records import SPLIT_NAMES, DataAdapter, Listing, Record
from runner.data.adapters._common import (
    IMAGE_KINDS,
    account_files,
    image_files,
    is_csv,
    part_of_name,
    require_root,
)
from runner.data.adapters._registry import register
from runner.errors import DataError

UNUSED_IMAGE = "image outside the class folders (ROOT/<class>/ or ROOT/<split>/<class>/)"
UNUSED_MASK = "mask beside a class's images/ folder (class_folders reads the images only)"


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    """(split, folder) for every folder of ``root`` named like a split, whatever its case."""
    return [(SPLIT_NAMES[d.name.casefold()], d) for d in _class_dirs(root) if d.name.casefold() in SPLIT_NAMES]


def _class_images(class_dir: Path) -> list[Path]:
    """A class's images: those in its folder, or in its ``images/`` when only that holds them."""
    files = image_files(class_dir)
    inner = class_dir / "images"
    return files if files or not inner.is_dir() else image_files(inner)


def _records_of_class(class_dir: Path, split: str | None, pattern: str | None) -> list[Record]:
    files = _class_images(class_dir)
    if not files:
        inner = [d.name for d in _class_dirs(class_dir)]
        listed = f"{', '.join(inner[:4])}{', ...' if len(inner) > 4 else ''}"
        if _split_dirs(class_dir):  # Kaggle's download unpacks to archive/chest_xray/{train,test,val}/: one level up
            raise DataError(f"class folder {class_dir} has no {IMAGE_KINDS} of its own but split folders "
                            f"({listed}): it is the data set: pass {class_dir} as the data path")
        if inner:
            raise DataError(f"class folder {class_dir} has no {IMAGE_KINDS} of its own, only folders ({listed}), "
                            "which class_folders does not read: move the images into the class folder, or list "
                            "them in a manifest CSV (with a patient_id column where the folders are patients)")
        raise DataError(f"class folder {class_dir} has no {IMAGE_KINDS}: add images or remove the folder")
    return [Record(path=str(f.resolve()), label=class_dir.name, split=split,
                   patient_id=part_of_name(f.name, pattern), where=str(f)) for f in files]


def _no_class_folders(root: Path, split_dirs: list[tuple[str, Path]]) -> str:
    """Why ``root`` lists no image, with what the folder looks like instead: VinDr-CXR's download is
    ``annotations/*.csv`` beside ``train/`` and ``test/`` folders of images, with the labels in the CSVs."""
    message = f"{root} has no class folders: the class_folders layout is ROOT/<class>/*.png"
    tables = sorted(path for path in [*root.iterdir(), *root.glob("*/*")] if is_csv(path))
    if tables:
        named = ", ".join(str(t.relative_to(root)) for t in tables[:3]) + (", ..." if len(tables) > 3 else "")
        return (f"{message}; it holds CSV files ({named}): for labels in a CSV, pass the CSV as the data path, "
                "or write a data spec with layout: manifest (README: Data layouts)")
    loose = [folder for _, folder in split_dirs if image_files(folder)]
    if loose:
        return (f"{message} (or ROOT/<split>/<class>/*.png); {loose[0]} holds images but no class folders: sort "
                "them into one folder per class, or list them with their labels in a manifest CSV")
    return message


def _in_a_mask_folder(path: str, class_dirs: set[str]) -> bool:
    """A file in a mask folder beside a class's ``images/``: ``masks/`` (the COVID-19 Radiography Database) or
    ``lung masks/``, ``infection masks/`` (COVID-QU-Ex)."""
    folder = os.path.dirname(os.path.realpath(path))
    return os.path.dirname(folder) in class_dirs and "mask" in os.path.basename(folder).casefold()


@register
class ClassFolders(DataAdapter):
    name = "class_folders"
    options: Mapping[str, Any] = {"patient_regex": None}

    def detect(self, path: Path) -> bool:
        return path.is_dir() and bool(_class_dirs(path))

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        root = require_root(path, self.name)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder: the class_folders layout is ROOT/<class>/*.png")
        split_dirs = _split_dirs(root)
        pattern = options["patient_regex"]
        records: list[Record] = []
        if split_dirs:
            for split, split_dir in split_dirs:
                for class_dir in _class_dirs(split_dir):
                    records += _records_of_class(class_dir, split, pattern)
        else:
            for class_dir in _class_dirs(root):
                records += _records_of_class(class_dir, None, pattern)
        if not records:
            raise DataError(_no_class_folders(root, split_dirs))
        found, ignored = account_files(root, [r.path for r in records], UNUSED_IMAGE)
        classes = {str(Path(r.path).parent.parent) for r in records if Path(r.path).parent.name == "images"}
        ignored = [replace(i, reason=UNUSED_MASK) if _in_a_mask_folder(i.path, classes) else i for i in ignored]
        return Listing(records=records, problems=[], root=root, ignored=ignored, files_found=found)
