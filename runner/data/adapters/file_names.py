"""``ROOT/*.png`` with each image's label in its file name, found by ``label_regex`` (its first group, or the
whole match): the Shenzhen and Montgomery tuberculosis sets name their images ``CHNCXR_0001_0.png`` and
``MCUCXR_0001_0.png``, ``_0`` normal and ``_1`` tuberculosis. Only the folder's own images are read, never
its sub-folders: Montgomery keeps lung masks of the same names in ``ManualMask/``, which read as images would
be radiographs with labels. Never detected: a folder of images says nothing about where its labels are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.data._records import DataAdapter, Ignored, Listing, Record
from runner.data.adapters._common import (
    IMAGE_KINDS,
    account_files,
    image_files,
    part_of_name,
    require_root,
)
from runner.data.adapters._registry import register
from runner.errors import ConfigError, DataError


def _no_images(root: Path) -> str:
    """Why ``root`` lists nothing, naming its sub-folders that hold images (Shenzhen's ``CXR_png/``)."""
    holding = [(folder, len(image_files(folder))) for folder in sorted(root.iterdir())
               if folder.is_dir() and not folder.name.startswith(".")]
    holding = [(folder, count) for folder, count in holding if count]
    if holding:
        folder, count = holding[0]
        return (f"{root} has no {IMAGE_KINDS} of its own (file_names reads a folder's own images, not its "
                f"sub-folders'): {folder.name}/ holds {count}: pass {folder} as the data path")
    return f"{root} has no {IMAGE_KINDS}: the file_names layout is ROOT/*.png, the label in each name"


@register
class FileNames(DataAdapter):
    name = "file_names"
    options: Mapping[str, Any] = {"label_regex": None, "patient_regex": None}

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        root = require_root(path, self.name)
        pattern = options["label_regex"]
        if not pattern:
            raise ConfigError("layout file_names reads each label from its file name: set data.label_regex, e.g. "
                              r"'_(\d)\.png$' for Shenzhen's CHNCXR_0001_0.png (and label_map: {0: normal, ...})")
        if not root.is_dir():
            raise DataError(f"{root} is not a folder: the file_names layout is ROOT/*.png, the label in each name")
        files = image_files(root)
        if not files:
            raise DataError(_no_images(root))
        records, unmatched = [], []
        for file in files:
            label = part_of_name(file.name, pattern)
            if label:
                records.append(Record(path=str(file.resolve()), label=label, where=str(file),
                                      patient_id=part_of_name(file.name, options["patient_regex"])))
            else:
                unmatched.append(file)
        if not records:
            raise DataError(f"no file name in {root} matches data.label_regex '{pattern}' (first: {files[0].name}): "
                            "fix the pattern")
        found, ignored = account_files(root, [r.path for r in records], "image in a sub-folder (file_names reads "
                                       "the folder's own images)")
        reason = f"file name does not match data.label_regex '{pattern}'"
        unmatched_paths = {os.path.realpath(file) for file in unmatched}
        ignored = [Ignored(i.path, reason) if os.path.realpath(i.path) in unmatched_paths else i for i in ignored]
        return Listing(records=records, problems=[], root=root, ignored=ignored, files_found=found)
