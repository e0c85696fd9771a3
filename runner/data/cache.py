"""Decode every image once per (files, image size, channels) into an HDF5 file; every later trial and epoch
reads that file, never the JPEGs.

Safe under concurrency and crashes: the builder holds a file lock (a second process waits, then reuses the
finished file), writes to a temporary name and renames it into place, so a killed build leaves no half cache
that a trial could read. Images that cannot be decoded are recorded as invalid with their error and skipped
(counted) by every reader, or fail the build under ``strict``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from runner.data._dataset import DataSet
from runner.data._records import Problem, Record
from runner.data.images import ImageError, load_image, load_mask
from runner.data.masks import decode_rle
from runner.errors import DataError

CACHE_VERSION = 2  # 2: images shrunk before conversion (bounded memory), 100 MP limit
WRITE_BLOCK = 64
#: Builds at least this large show a progress bar even when stderr is not a terminal (a Ray trial's log):
#: one line at the end, which says where the minutes went. Smaller builds take seconds and stay quiet there.
PROGRESS_MIN_IMAGES = 200


def default_cache_dir() -> Path:
    """``$CXR_RUNNER_CACHE`` or ``~/.cache/cxr-runner``."""
    return Path(os.environ.get("CXR_RUNNER_CACHE", Path.home() / ".cache" / "cxr-runner")).expanduser()


def pixels_key(records: Sequence[Record], image_size: int, channels: int) -> str:
    """What decides the cached pixels: files (path, size, mtime), masks, size and channels — not labels or
    splits, so re-splitting or relabelling reuses the decoded images."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{image_size}:{channels}\n".encode())
    for record in sorted(records, key=lambda r: r.path):
        stat = os.stat(record.path)
        digest.update(f"{record.path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{record.mask_path or ''}\t"
                      f"{record.mask_rle or ''}\n".encode())
        if record.mask_path:
            mask_stat = os.stat(record.mask_path)
            digest.update(f"{mask_stat.st_size}\t{mask_stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class _Decoded:
    image: np.ndarray | None
    mask: np.ndarray | None
    width: int
    height: int
    file_type: str
    error: str


def _decode(record: Record, size: int, channels: int, with_masks: bool) -> _Decoded:
    try:
        image, info = load_image(record.path, size, channels)
        mask = None
        if record.mask_path:
            mask = load_mask(record.mask_path, size, info, record.path)
        elif record.mask_rle is not None:
            rle_format, _, encoded = record.mask_rle.partition(":")
            full = decode_rle(encoded, info.width, info.height, rle_format)
            mask = _resize_mask(full, size)
        elif with_masks:
            raise ImageError(f"{record.path}: no mask for this image: add one or remove the image")
        return _Decoded(image, mask, info.width, info.height, info.file_type, "")
    except DataError as error:
        return _Decoded(None, None, 0, 0, "", str(error))
    except OSError as error:
        return _Decoded(None, None, 0, 0, "", f"{record.path}: cannot read ({error}): check the file")


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    resized = Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8).reshape(size, size, 1)


def _create_datasets(h5: h5py.File, n: int, size: int, channels: int, with_masks: bool) -> None:
    h5.create_dataset("images", (n, size, size, channels), dtype=np.uint8, chunks=(1, size, size, channels))
    if with_masks:
        h5.create_dataset("masks", (n, size, size, 1), dtype=np.uint8, chunks=(1, size, size, 1))
    h5.create_dataset("valid", (n,), dtype=bool)
    h5.create_dataset("width", (n,), dtype=np.int32)
    h5.create_dataset("height", (n,), dtype=np.int32)
    h5.create_dataset("mean", (n,), dtype=np.float32)
    h5.create_dataset("std", (n,), dtype=np.float32)
    text = h5py.string_dtype()
    h5.create_dataset("file_type", (n,), dtype=text)
    h5.create_dataset("error", (n,), dtype=text)


def _write_block(h5: h5py.File, start: int, block: list[_Decoded], size: int, channels: int) -> None:
    stop = start + len(block)
    blank = np.zeros((size, size, channels), np.uint8)
    images = np.stack([d.image if d.image is not None else blank for d in block])
    h5["images"][start:stop] = images
    if "masks" in h5:
        empty = np.zeros((size, size, 1), np.uint8)
        h5["masks"][start:stop] = np.stack([d.mask if d.mask is not None else empty for d in block])
    h5["valid"][start:stop] = [d.image is not None for d in block]
    h5["width"][start:stop] = [d.width for d in block]
    h5["height"][start:stop] = [d.height for d in block]
    h5["mean"][start:stop] = images.reshape(len(block), -1).mean(axis=1)
    h5["std"][start:stop] = images.reshape(len(block), -1).std(axis=1)
    h5["file_type"][start:stop] = [d.file_type for d in block]
    h5["error"][start:stop] = [d.error for d in block]


def _blocks(items: Iterator[_Decoded], size: int) -> Iterator[list[_Decoded]]:
    block: list[_Decoded] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _progress_bar(total: int, size: int, progress: bool | None) -> tqdm:
    """The build's progress bar: shown when asked, or (``progress=None``) in a terminal or for a sizeable build.
    In a terminal it clears itself when done; in a log it leaves its last state as one line."""
    terminal = sys.stderr.isatty()
    show = progress if progress is not None else terminal or total >= PROGRESS_MIN_IMAGES
    return tqdm(total=total, desc=f"caching {size}px images", unit="img", disable=not show, mininterval=1.0,
                leave=not terminal, file=sys.stderr)


def _build(path: Path, records: Sequence[Record], size: int, channels: int, progress: bool | None,
           workers: int) -> None:
    with_masks = any(r.mask_path or r.mask_rle is not None for r in records)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(staging, "w") as h5, ThreadPoolExecutor(workers) as pool:
            _create_datasets(h5, len(records), size, channels, with_masks)
            h5.create_dataset("path", data=[r.path for r in records], dtype=h5py.string_dtype())
            h5.attrs.update(version=CACHE_VERSION, image_size=size, channels=channels,
                            builder=f"{socket.gethostname()}:{os.getpid()}")
            decoded = pool.map(lambda r: _decode(r, size, channels, with_masks), records)
            bar = _progress_bar(len(records), size, progress)
            for number, block in enumerate(_blocks(decoded, WRITE_BLOCK)):
                _write_block(h5, number * WRITE_BLOCK, block, size, channels)
                bar.update(len(block))
            bar.close()
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _remove_stale_staging(path: Path) -> None:
    """Leftovers of builds that were killed; only called while holding the lock, so none is in use."""
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        leftover.unlink(missing_ok=True)


def build_cache(records: Sequence[Record], image_size: int, channels: int = 1, cache_dir: Path | None = None,
                progress: bool | None = None, workers: int | None = None) -> Path:
    """The cache file for these records, decoding them first unless another run already did; ``progress``:
    True/False shows or hides the progress bar, None decides (see ``_progress_bar``)."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    folder = (cache_dir or default_cache_dir()) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: r.path)
    path = folder / f"{pixels_key(ordered, image_size, channels)}-{image_size}px-{channels}ch.h5"
    if path.exists():
        return path
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            _remove_stale_staging(path)
            _build(path, ordered, image_size, channels, progress, workers or min(8, (os.cpu_count() or 1) + 1))
    return path


class CachedData:
    """A data set's splits as decoded arrays, read from its cache file.

    Only valid images are served; ``skipped`` lists the others with their error.
    """

    def __init__(self, dataset: DataSet, path: Path) -> None:
        self.dataset = dataset
        self.path = path
        with h5py.File(path, "r") as h5:
            self.image_size = int(h5.attrs["image_size"])
            self.channels = int(h5.attrs["channels"])
            self.has_masks = "masks" in h5
            position = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(h5["path"][:])}
            self._valid = h5["valid"][:]
            errors = h5["error"].asstr()[:]
        self._index = np.array([position[r.path] for r in dataset.records], dtype=np.int64)
        self.skipped = [Problem(r.path, errors[i]) for r, i in zip(dataset.records, self._index, strict=True)
                        if not self._valid[i]]

    def _rows(self, split: str | None) -> tuple[list[Record], np.ndarray]:
        """Valid records of one split (None: of all splits, e.g. an external test set) and their rows."""
        pairs = [(r, i) for r, i in zip(self.dataset.records, self._index, strict=True)
                 if (split is None or r.split == split) and self._valid[i]]
        return [p[0] for p in pairs], np.array([p[1] for p in pairs], dtype=np.int64)

    def records(self, split: str | None) -> list[Record]:
        return self._rows(split)[0]

    def labels(self, split: str | None) -> list[str]:
        return [r.label for r in self.records(split)]

    def _read(self, name: str, split: str | None) -> np.ndarray:
        _, rows = self._rows(split)
        order = np.argsort(rows)
        with h5py.File(self.path, "r") as h5:
            data = h5[name][np.sort(rows)] if rows.size else h5[name][:0]
        result = np.empty_like(data)
        result[order] = data
        return result

    def images(self, split: str | None) -> np.ndarray:
        """(n, size, size, channels) uint8 in the order of ``records(split)``."""
        return self._read("images", split)

    def masks(self, split: str | None) -> np.ndarray:
        if not self.has_masks:
            raise DataError(f"{self.dataset.root}: this data set has no masks: use an image_masks or siim_rle layout")
        return self._read("masks", split)

    def valid_records(self) -> list[Record]:
        """Every decodable record, in ``dataset.records`` order (the order of ``metadata()``)."""
        return [r for r, i in zip(self.dataset.records, self._index, strict=True) if self._valid[i]]

    def metadata(self) -> dict[str, np.ndarray]:
        """Per valid record (in ``dataset.records`` order): original width/height, file type, mean/std intensity."""
        keep = self._index[self._valid[self._index]]
        with h5py.File(self.path, "r") as h5:
            return {"width": h5["width"][:][keep], "height": h5["height"][:][keep],
                    "file_type": h5["file_type"].asstr()[:][keep], "mean": h5["mean"][:][keep],
                    "std": h5["std"][:][keep]}


def prepare(dataset: DataSet, image_size: int, channels: int = 1, cache_dir: Path | None = None,
            strict: bool | None = None, progress: bool | None = None) -> CachedData:
    """Decode (once) and open a data set at one image size. Undecodable images are skipped with a count, or
    raise under ``strict`` (default: the data spec's ``strict`` option)."""
    path = build_cache(dataset.records, image_size, channels, cache_dir, progress)
    cached = CachedData(dataset, path)
    strict = bool(dataset.spec.options.get("strict")) if strict is None else strict
    if strict and cached.skipped:
        raise DataError(f"{cached.skipped[0]} ({len(cached.skipped)} unreadable images in all)")
    return cached
