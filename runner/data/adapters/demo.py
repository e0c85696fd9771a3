"""The embedded demo data set: synthetic chest X-rays written once into the cache directory as real files,
then read through the same adapters as user data (``manifest`` for classes, ``image_masks`` for masks), so the
demo exercises the code paths real data takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from runner.data._records import DataAdapter, Listing
from runner.data.adapters._registry import ADAPTERS, register
from runner.data.synthetic import write_demo

DEMO_VERSION = 1


def materialise_demo(cache_dir: Path, *, n: int, seed: int, size: int, classes: tuple[str, ...],
                     masks: bool) -> Path:
    """The folder holding this demo variant, generated on first use.

    Generation happens in a temporary folder renamed into place under a lock, so concurrent trials share one
    copy and a killed run never leaves a half-written demo set behind.
    """
    key = json.dumps({"v": DEMO_VERSION, "n": n, "seed": seed, "size": size, "classes": classes, "masks": masks},
                     sort_keys=True)
    folder = cache_dir / "demo" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "manifest.csv").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "manifest.csv").is_file():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        try:
            write_demo(staging, n=n, seed=seed, size=size, classes=classes, masks=masks)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


@register
class Demo(DataAdapter):
    name = "demo"
    options: Mapping[str, Any] = {"n": 600, "seed": 0, "size": 128, "masks": False}

    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        classes = tuple(options["classes"] or ("normal", "pneumonia"))
        folder = materialise_demo(cache_dir, n=int(options["n"]), seed=int(options["seed"]),
                                  size=int(options["size"]), classes=classes, masks=bool(options["masks"]))
        layout = "image_masks" if options["masks"] else "manifest"
        adapter = ADAPTERS.get(layout)()
        return adapter.list_records(folder, {**adapter.options, **options}, cache_dir)
