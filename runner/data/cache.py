"""Decode every image once per (files, image size, channels) into an HDF5 file; every later trial and epoch
reads that file, never the JPEGs.

Safe under concurrency and crashes: the builder holds a file lock (a second process waits, then reuses the
finished file), writes to a temporary name and renames it into place, so a killed build leaves no half cache
that a trial could read. Images that cannot be decoded are recorded as invalid with their error and skipped
(counted) by every reader, or fail the build under ``strict``.

The one decode also records what ``data check`` and ``prepare`` verify without a second read: each file's
content hash (its bytes are read once, hashed, and decoded from memory), and each mask's encoding and
foreground fraction. ``prepare`` refuses byte-identical images in two splits (a test image seen in training)
and a class, or a split's class, left with no decodable image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from runner import storage
from runner.data._dataset import DataSet
from runner.data._records import Problem, Record, label_parts
from runner.data.images import ImageError, ImageInfo, load_image, load_mask
from runner.data.masks import MaskRead, decode_rle, parse_threshold
from runner.errors import DataError
from runner.paths import default_cache_dir

#: 2: images shrunk before conversion (bounded memory), 100 MP limit; 3: EXIF orientation, masks in any
#: encoding, content hash and mask encoding/fraction per image
CACHE_VERSION = 3
WRITE_BLOCK = 64
#: Files up to this size are read once into memory, hashed and decoded from there (radiographs are 0.1-30 MB)
IN_MEMORY_BYTES = 64 * 2**20
#: Builds at least this large show a progress bar even when stderr is not a terminal (a Ray trial's log):
#: one line at the end, which says where the minutes went. Smaller builds take seconds and stay quiet there.
PROGRESS_MIN_IMAGES = 200
#: While a build runs, ``<cache file>.progress`` says how far it is, rewritten (atomically) at most once per
#: ``PROGRESS_EVERY_S``: a sweep's live view is drawn by the driver, not by the trial process that builds,
#: and reads it (``builds_in_progress``). A killed build's file stops changing and is ignored after
#: ``PROGRESS_STALE_S``, then removed by the next build.
PROGRESS_SUFFIX = ".progress"
PROGRESS_EVERY_S = 1.0
PROGRESS_STALE_S = 120.0


def pixels_key(records: Sequence[Record], image_size: int, channels: int, mask_threshold: float | None = None) -> str:
    """What decides the cached pixels: files (path, size, mtime), masks and their threshold, size and channels —
    not labels or splits, so re-splitting or relabelling reuses the decoded images. A DICOM record adds its
    pixel-relevant tags, and the set the decoder plugins for its compressed transfer syntaxes: a file cached as
    'plugin missing' is decoded again once the plugin is installed."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{image_size}:{channels}:{mask_threshold}\n".encode())
    syntaxes = [r.dicom.transfer_syntax for r in records if r.dicom]
    if syntaxes:
        from runner.data.dicom import decoder_plugins  # pydicom only for a data set of DICOM files

        digest.update(f"decoders {decoder_plugins(syntaxes)}\n".encode())
    for record in sorted(records, key=lambda r: r.path):
        stat = os.stat(record.path)
        dicom = f"\t{record.dicom.pixel_tags}" if record.dicom else ""  # other files' keys stay as they were
        digest.update(f"{record.path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{record.mask_path or ''}\t"
                      f"{record.mask_rle or ''}{dicom}\n".encode())
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
    content_hash: str = ""
    mask_read: MaskRead | None = None


def _read_and_hash(path: str) -> tuple[bytes | None, str]:
    """The file's bytes (decoded from memory: one read serves hash and decode) and their hash. A file above
    ``IN_MEMORY_BYTES`` is hashed in chunks and decoded from disk instead, so eight workers never hold eight
    huge files at once."""
    if os.stat(path).st_size <= IN_MEMORY_BYTES:
        data = Path(path).read_bytes()
        return data, hashlib.blake2b(data, digest_size=16).hexdigest()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return None, digest.hexdigest()


def _decode(record: Record, size: int, channels: int, with_masks: bool, mask_threshold: float | None) -> _Decoded:
    try:
        data, content_hash = _read_and_hash(record.path)
        image, info = load_image(record.path, size, channels, data=data)
        mask, read = _decode_mask(record, size, info, with_masks, mask_threshold)
        return _Decoded(image, mask, info.width, info.height, info.file_type, "", content_hash, read)
    except DataError as error:
        return _Decoded(None, None, 0, 0, "", str(error))
    except OSError as error:
        return _Decoded(None, None, 0, 0, "", f"{record.path}: cannot read ({error}): check the file")


def _decode_mask(record: Record, size: int, info: ImageInfo, with_masks: bool, mask_threshold: float | None,
                 ) -> tuple[np.ndarray | None, MaskRead | None]:
    if record.mask_path:
        return load_mask(record.mask_path, size, info, record.path, mask_threshold)
    if record.mask_rle is not None:
        rle_format, _, encoded = record.mask_rle.partition(":")
        full = decode_rle(encoded, info.width, info.height, rle_format)
        return _resize_mask(full, size), MaskRead(f"{rle_format} RLE", float(np.count_nonzero(full)) / full.size)
    if with_masks:
        raise ImageError(f"{record.path}: no mask for this image: add one or remove the image")
    return None, None


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
    h5.create_dataset("content_hash", (n,), dtype=text)
    h5.create_dataset("mask_encoding", (n,), dtype=text)
    h5.create_dataset("mask_fraction", (n,), dtype=np.float32)


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
    h5["content_hash"][start:stop] = [d.content_hash for d in block]
    h5["mask_encoding"][start:stop] = [d.mask_read.encoding if d.mask_read else "" for d in block]
    h5["mask_fraction"][start:stop] = [d.mask_read.fraction if d.mask_read else np.nan for d in block]


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


@dataclass(frozen=True)
class BuildProgress:
    """How far one running cache build is: ``done`` of ``total`` images decoded, at ``image_size`` px."""

    image_size: int
    done: int
    total: int


class _ProgressFile:
    """The build's ``<cache file>.progress``, for readers in other processes (``builds_in_progress``)."""

    def __init__(self, path: Path, total: int, size: int) -> None:
        self.path = path.with_name(path.name + PROGRESS_SUFFIX)
        self.total, self.size = total, size
        self._written = -math.inf

    def update(self, done: int) -> None:
        if time.monotonic() - self._written < PROGRESS_EVERY_S and done < self.total:
            return
        storage.write_text(str(self.path), json.dumps({"image_size": self.size, "done": done, "total": self.total}))
        self._written = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def builds_in_progress(cache_dir: Path | None = None) -> list[BuildProgress]:
    """The cache builds running now in ``cache_dir`` (default: the runner's cache), by their progress files;
    a file unchanged for ``PROGRESS_STALE_S`` is a killed build's and is left out."""
    found = []
    for path in sorted(((cache_dir or default_cache_dir()) / "images").glob(f"*{PROGRESS_SUFFIX}")):
        try:
            if time.time() - path.stat().st_mtime > PROGRESS_STALE_S:
                continue
            found.append(BuildProgress(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):  # removed, or replaced, while being read
            continue
    return found


def _build(path: Path, records: Sequence[Record], size: int, channels: int, progress: bool | None,
           workers: int, mask_threshold: float | None) -> None:
    with_masks = any(r.mask_path or r.mask_rle is not None for r in records)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    shared = _ProgressFile(path, len(records), size)
    try:
        with h5py.File(staging, "w") as h5, ThreadPoolExecutor(workers) as pool:
            _create_datasets(h5, len(records), size, channels, with_masks)
            h5.create_dataset("path", data=[r.path for r in records], dtype=h5py.string_dtype())
            h5.attrs.update(version=CACHE_VERSION, image_size=size, channels=channels,
                            builder=f"{socket.gethostname()}:{os.getpid()}")
            decoded = pool.map(lambda r: _decode(r, size, channels, with_masks, mask_threshold), records)
            bar = _progress_bar(len(records), size, progress)
            shared.update(0)
            for number, block in enumerate(_blocks(decoded, WRITE_BLOCK)):
                _write_block(h5, number * WRITE_BLOCK, block, size, channels)
                bar.update(len(block))
                shared.update(number * WRITE_BLOCK + len(block))
            bar.close()
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
        shared.remove()


def _remove_stale_staging(path: Path) -> None:
    """Leftovers of builds that were killed (half files, progress files); only called while holding the lock,
    so none is in use."""
    for leftover in [*path.parent.glob(f".{path.name}.tmp-*"), path.with_name(path.name + PROGRESS_SUFFIX)]:
        leftover.unlink(missing_ok=True)


def build_cache(records: Sequence[Record], image_size: int, channels: int = 1, cache_dir: Path | None = None,
                progress: bool | None = None, workers: int | None = None, mask_threshold: float | None = None,
                ) -> Path:
    """The cache file for these records, decoding them first unless another run already did; ``progress``:
    True/False shows or hides the progress bar, None decides (see ``_progress_bar``); ``mask_threshold``: see
    ``runner.data.masks``."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    folder = (cache_dir or default_cache_dir()) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: r.path)
    path = folder / f"{pixels_key(ordered, image_size, channels, mask_threshold)}-{image_size}px-{channels}ch.h5"
    if path.exists():
        return path
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            _remove_stale_staging(path)
            _build(path, ordered, image_size, channels, progress, workers or min(8, (os.cpu_count() or 1) + 1),
                   mask_threshold)
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

    def columns(self, *names: str) -> dict[str, np.ndarray]:
        """Per valid record (in ``dataset.records`` order), the named per-image columns of the cache file."""
        keep = self._index[self._valid[self._index]]
        with h5py.File(self.path, "r") as h5:
            return {name: (h5[name].asstr()[:] if h5[name].dtype.kind == "O" else h5[name][:])[keep]
                    for name in names}

    def metadata(self) -> dict[str, np.ndarray]:
        """Per valid record: original (oriented) width/height, file type, mean/std intensity."""
        return self.columns("width", "height", "file_type", "mean", "std")

    def byte_identical(self) -> list[list[Record]]:
        """Groups of valid records whose files hold the same bytes under different paths (largest first)."""
        groups: dict[str, dict[str, Record]] = defaultdict(dict)
        for record, digest in zip(self.valid_records(), self.columns("content_hash")["content_hash"], strict=True):
            groups[digest].setdefault(record.path, record)
        found = [sorted(group.values(), key=lambda r: r.path) for group in groups.values() if len(group) > 1]
        return sorted(found, key=lambda group: (-len(group), group[0].path))


#: The splits of a trial's own data that an external test set must not share an image with: what it trained
#: on, and what tuned its threshold, calibration and early stopping.
SEEN_SPLITS = ("train", "val")


def refuse_seen_images(external: CachedData, own: CachedData) -> None:
    """An external test set (``test_data``, ``runner evaluate --data``) holding a byte-identical copy of an
    image the model trained or was tuned on measures memory, not generalisation, and inflates exactly the
    figure a reviewer trusts most: one error naming the first pair and the count."""
    seen: dict[str, Record] = {}
    for record, digest in zip(own.valid_records(), own.columns("content_hash")["content_hash"], strict=True):
        if record.split in SEEN_SPLITS:
            seen.setdefault(digest, record)
    shared = [(record, seen[digest]) for record, digest in
              zip(external.valid_records(), external.columns("content_hash")["content_hash"], strict=True)
              if digest in seen]
    if shared:
        ours, theirs = shared[0]
        raise DataError(f"external test set {external.dataset.root}: {len(shared)} of its images are byte-identical "
                        f"to images of the trial's own {' or '.join(SEEN_SPLITS)} split (first: {ours.path} = "
                        f"{theirs.path}, {theirs.split}): evaluate on images the model never saw; remove them")


def _undecoded_class_errors(dataset: DataSet, cached: CachedData) -> list[str]:
    """A class of ``dataset.classes`` none of whose images decoded (a whole class lost), or a split need
    (``DataSet.split_needs``: what the task trains or measures on) that the listing met and decoding lost.
    Needs the listing did not meet were refused by ``load_dataset``."""
    valid = cached.valid_records()
    errors = {problem.path: problem for problem in cached.skipped}
    found = []
    for name in dataset.classes:
        listed = [r for r in dataset.records if name in label_parts(r.label)]
        if listed and not any(name in label_parts(r.label) for r in valid):
            found.append(f"{dataset.root}: class '{name}' has no usable image: none of its {len(listed)} images "
                         f"could be decoded (first: {errors[listed[0].path]}); replace them, or drop the class with "
                         "data.classes")
    for split, needs in dataset.split_needs.items():
        for need in needs:
            listed = [r for r in dataset.records if r.split == split and need.met_by({r.label})]
            if listed and not any(r.split == split and need.met_by({r.label}) for r in valid):
                found.append(f"{dataset.root}: split '{split}' has no usable {need.describe()}: none of its "
                             f"{len(listed)} could be decoded (first: {errors[listed[0].path]}); replace them, or "
                             "re-split (data.split) so every split keeps one")
    return found


def _refuse_leaks(cached: CachedData) -> None:
    crossing = [group for group in cached.byte_identical() if len({r.split for r in group}) > 1]
    if not crossing:
        return
    first = crossing[0]
    a, b = first[0], next(r for r in first if r.split != first[0].split)
    raise DataError(f"{a.path} ({a.split}) and {b.path} ({b.split}) are byte-identical: the same image in two splits "
                    f"leaks it into evaluation (images with a copy in another split: {len(crossing)}): remove one "
                    "copy, or give both the same patient_id so the split keeps them together")


def prepare(dataset: DataSet, image_size: int, channels: int = 1, cache_dir: Path | None = None,
            strict: bool | None = None, progress: bool | None = None, *, whole: bool = False) -> CachedData:
    """Decode (once) and open a data set at one image size. Undecodable images are skipped with a count, or
    raise under ``strict`` (default: the data spec's ``strict`` option). Raises when a class lost every image
    to decoding, when a split lost every image its task needs of a class (``DataSet.split_needs``), and when
    byte-identical images sit in two splits, unless the set is used ``whole`` (an external test set: its
    splits mean nothing there)."""
    threshold = parse_threshold(dataset.spec.options.get("mask_threshold"))
    path = build_cache(dataset.records, image_size, channels, cache_dir, progress, mask_threshold=threshold)
    cached = CachedData(dataset, path)
    strict = bool(dataset.spec.options.get("strict")) if strict is None else strict
    if strict and cached.skipped:
        raise DataError(f"{cached.skipped[0]} ({len(cached.skipped)} unreadable images in all)")
    lost = _undecoded_class_errors(dataset, cached)
    if lost:
        raise DataError(lost[0])
    if not whole:
        _refuse_leaks(cached)
    return cached
