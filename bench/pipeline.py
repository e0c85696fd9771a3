"""Input pipeline throughput: the notebooks' decode-every-epoch way against the HDF5 cache.

Usage: ``python -m bench.pipeline [--n 300] [--size 224] [--out DIR]``. Generates full-size JPEGs (1024-2048
px, like the public sets), then measures, each in a fresh process (so peak memory is its own):

- ``decode``: ``keras.utils.image_dataset_from_directory`` (decode + resize every epoch), an epoch;
- ``cache_first``: our pipeline's first epoch, which lists the files and builds the cache;
- ``cache_next``: a later trial: list the files, open the built cache, read the split, run an epoch;
- ``cache_epoch2``: epochs 2-101 within one trial (the steady state), read as Keras' ``fit(steps_per_epoch=...)``
  reads a trial's endless ``make_epochs``: one iterator for every epoch;
- ``memory``: numpy arrays already in memory through ``tf.data.Dataset.from_tensor_slices`` (the ceiling),
  epochs 2-101 too, repeated through one iterator the same way.

It also runs ``decode`` / ``cache_next`` on the real images in ``../shared/data/kermany-subset``, and
(``--formats`` alone) times ``load_image`` on one radiograph saved as every file type the cache reads: JPEG,
16-bit PNG, and 12-bit DICOM uncompressed, RLE Lossless and JPEG 2000 Lossless (with ``[dicom-compressed]``).
Figures go to ``bench/results.json``; ``python -m bench`` puts the section into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._results import Section, figure

BATCH = 32
STEADY_EPOCHS = 100  # epochs 2..101: one epoch of a few hundred cached images takes milliseconds
SHARED_KERMANY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany-subset"


def write_full_size_jpegs(out: Path, n: int, seed: int = 0) -> Path:
    """Demo radiographs upscaled to 1024-2048 px with film grain, saved as JPEG like the public sets."""
    from PIL import Image

    from runner.data.synthetic import render_chest

    rng = np.random.default_rng(seed)
    for i in range(n):
        label = ("normal", "pneumonia")[i % 2]
        small, _ = render_chest(rng, label, 256)
        side = int(rng.integers(1024, 2049))
        big = np.asarray(Image.fromarray(small).resize((side, int(side * rng.uniform(0.8, 1.0))),
                                                      Image.Resampling.BICUBIC), dtype=np.float32)
        big = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)
        (out / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(big).save(out / label / f"{i:04d}.jpeg", quality=90)
    return out


def _epoch(dataset) -> int:
    return sum(int(x.shape[0]) for x, _ in dataset)


def _steady(dataset, steps: int) -> tuple[int, float]:
    """Epochs 2 to ``STEADY_EPOCHS`` + 1 of an endless ``dataset`` of ``steps`` batches an epoch, as ``fit`` with
    ``steps_per_epoch`` reads it: one iterator for all epochs (a new iterator per epoch would time the
    pipeline's start-up, which no trial pays after its first epoch), the first epoch untimed."""
    batches = iter(dataset)
    for _ in range(steps):
        next(batches)
    start = time.perf_counter()
    count = sum(int(next(batches)[0].shape[0]) for _ in range(STEADY_EPOCHS * steps))
    return count, time.perf_counter() - start


def _decode(data: Path, size: int, cache_dir: Path) -> dict:
    import keras

    dataset = keras.utils.image_dataset_from_directory(data, image_size=(size, size), color_mode="grayscale",
                                                       batch_size=BATCH, shuffle=True, seed=0, verbose=False)
    start = time.perf_counter()
    count = _epoch(dataset)
    return {"images": count, "seconds": time.perf_counter() - start}


def _cached(data: Path, size: int, cache_dir: Path):
    """A trial's training batches from the cache (built if missing): endless, and the batches of one epoch."""
    from runner.data import load_dataset, prepare
    from runner.data.pipeline import make_epochs, steps_per_epoch

    dataset = load_dataset({"path": str(data), "split": {"train": 1.0, "val": 0.0, "test": 0.0}})
    cached = prepare(dataset, size, cache_dir=cache_dir, progress=False)
    labels = np.array([dataset.classes.index(label) for label in cached.labels("train")], np.float32)
    return make_epochs(cached.images("train"), labels, batch_size=BATCH, seed=0), steps_per_epoch(len(labels), BATCH)


def _cache_trial(data: Path, size: int, cache_dir: Path) -> dict:
    """A trial's first epoch: building the cache if it is missing (``cache_first``), else opening it."""
    start = time.perf_counter()
    batches, steps = _cached(data, size, cache_dir)
    count = _epoch(batches.take(steps))
    return {"images": count, "seconds": time.perf_counter() - start}


def _cache_epoch2(data: Path, size: int, cache_dir: Path) -> dict:
    count, seconds = _steady(*_cached(data, size, cache_dir))
    return {"images": count, "seconds": seconds}


def _memory(data: Path, size: int, cache_dir: Path) -> dict:
    import tensorflow as tf

    from runner.data.pipeline import steps_per_epoch

    n = sum(1 for _ in data.rglob("*.jpeg")) or sum(1 for _ in data.rglob("*.png"))
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    labels = np.zeros(n, np.float32)
    dataset = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(n, seed=0).batch(BATCH)
               .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
               .repeat().prefetch(tf.data.AUTOTUNE))
    count, seconds = _steady(dataset, steps_per_epoch(n, BATCH))  # the ceiling is the steady state, like cache_epoch2
    return {"images": count, "seconds": seconds}


METHODS = {"decode": _decode, "cache_first": _cache_trial, "cache_next": _cache_trial, "cache_epoch2": _cache_epoch2,
           "memory": _memory}


def _run_one(method: str, data: Path, size: int, cache_dir: Path) -> dict:
    """One method in a fresh process: its own peak memory, no warm caches from the others."""
    command = [sys.executable, "-m", "bench.pipeline", "--child", method, "--data", str(data), "--size", str(size),
               "--cache-dir", str(cache_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["images_per_s"] = result["images"] / result["seconds"]
    return result


def _child(method: str, data: Path, size: int, cache_dir: Path) -> None:
    import keras  # noqa: F401  imports are not what is measured: every method pays them before its clock starts

    import runner.data.pipeline  # noqa: F401

    result = METHODS[method](data, size, cache_dir)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _measure(data: Path, size: int, methods: list[str]) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as cache_dir:
        return {m: _run_one(m, data, size, Path(cache_dir)) for m in methods}


def _table(title: str, results: dict[str, dict]) -> str:
    lines = [f"**{title}**", "", "| method | images | seconds | images/s | peak RSS MiB |", "|---|---|---|---|---|"]
    for method, r in results.items():
        lines.append(f"| {method} | {r['images']} | {r['seconds']:.2f} | {r['images_per_s']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


READING = """Reading: on full-size JPEGs the cache pays for itself in the first epoch (JPEG DCT-domain downscaling in
Pillow's `draft` mode decodes faster than TensorFlow's full decode), and later epochs run at or above the
in-memory pipeline: batches are gathered by index from one uint8 tensor inside `tf.data`, where the in-memory
pipeline shuffles whole images through a buffer. Both are read as `fit(steps_per_epoch=...)` reads a trial's
batches, one iterator for every epoch (until 2026-12-03 the benchmark began a new iterator each epoch and so
timed the pipeline's start-up, which put `make_epochs` at 0.50x of the ceiling that day). On the small PNGs
of the shared subset decoding is already cheap: there the first trial is slower than decoding once (listing,
fingerprint, HDF5 write) and the cache wins from the second epoch on. Each method runs in a fresh process after
importing TensorFlow (imports are not timed); images/s are for reading, resizing, batching and casting to
float32, no model."""


FORMATS_N, FORMATS_SIDE = 24, 2048  # 2048 px: a typical digital radiograph


def _dicom_dataset(stored: np.ndarray):
    """A DX DICOM of 12-bit stored values with a window, as a detector writes it."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("bench.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = stored.astype(np.uint16).tobytes()
    return dataset


def write_formats(out: Path, n: int, side: int) -> dict[str, list[Path]]:
    """``n`` radiographs of ``side`` px in each file type; a compressed DICOM type whose encoder plugin is
    missing is left out."""
    from PIL import Image
    from pydicom.uid import JPEG2000Lossless, RLELossless

    from runner.data.synthetic import render_chest

    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {kind: [] for kind in ("jpeg", "png16", "dicom", "dicom_rle", "dicom_j2k")}
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small, _ = render_chest(rng, ("normal", "pneumonia")[i % 2], 256)
        big = np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
        stored = np.clip(big * 16 + rng.normal(0, 40, big.shape), 0, 4095).astype(np.uint16)
        Image.fromarray((stored // 16).astype(np.uint8)).save(out / f"{i}.jpeg", quality=90)
        Image.fromarray(stored).save(out / f"{i}.png")
        files["jpeg"].append(out / f"{i}.jpeg")
        files["png16"].append(out / f"{i}.png")
        for kind, syntax in (("dicom", None), ("dicom_rle", RLELossless), ("dicom_j2k", JPEG2000Lossless)):
            dataset = _dicom_dataset(stored)
            try:
                if syntax is not None:
                    dataset.compress(syntax)
            except (RuntimeError, NotImplementedError):
                continue  # no encoder plugin here: this type is not measured
            dataset.save_as(out / f"{i}-{kind}.dcm", enforce_file_format=True)
            files[kind].append(out / f"{i}-{kind}.dcm")
    return {kind: paths for kind, paths in files.items() if paths}


def decode_formats(size: int, n: int = FORMATS_N, side: int = FORMATS_SIDE) -> dict[str, dict]:
    """``load_image`` (read, decode, window, shrink to ``size``) per file type, one thread."""
    from runner.data.images import load_image

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, paths in write_formats(Path(scratch), n, side).items():
            load_image(str(paths[0]), size)  # imports (pydicom, a plugin) are not what is measured
            start = time.perf_counter()
            for path in paths:
                load_image(str(path), size)
            seconds = time.perf_counter() - start
            results[kind] = {"images": len(paths), "seconds": seconds, "images_per_s": len(paths) / seconds,
                             "mib_per_file": sum(p.stat().st_size for p in paths) / len(paths) / 2**20}
    return results


def _formats_table(results: dict[str, dict], size: int, side: int = FORMATS_SIDE) -> str:
    lines = [f"**Decoding one {side} px radiograph to {size} px, by file type** (`load_image`, one thread)",
             "", "| file type | images | MiB per file | images/s |", "|---|---|---|---|"]
    lines += [f"| {kind} | {r['images']} | {r['mib_per_file']:.1f} | {r['images_per_s']:.1f} |"
              for kind, r in results.items()]
    return "\n".join(lines)


def _formats_figures(results: dict[str, dict]) -> dict[str, dict]:
    return {f"pipeline_decode_{kind}_images_per_s": figure(r["images_per_s"], None, "images/s", "higher")
            for kind, r in results.items()}


def formats_section(size: int) -> Section:
    results = decode_formats(size)
    return Section("Input pipeline: decoding by file type", "bench/pipeline.py",
                   f"python -m bench.pipeline --formats --size {size}", _formats_table(results, size),
                   _formats_figures(results))


def section(n: int, size: int, out: Path | None = None) -> Section:
    """Generates the JPEGs (or reuses ``out``), measures every method, and returns the BENCHMARKS.md part."""
    with tempfile.TemporaryDirectory() as scratch:
        data = out or Path(scratch) / "jpegs"
        if not data.is_dir():
            write_full_size_jpegs(data, n)
        synthetic = _measure(data, size, list(METHODS))
    real = _measure(SHARED_KERMANY, size, ["decode", "cache_first", "cache_next", "memory"]) \
        if SHARED_KERMANY.is_dir() else {}
    steady = synthetic["cache_epoch2"]["images_per_s"]
    figures = {
        "pipeline_vs_decode_ratio": figure(steady / synthetic["decode"]["images_per_s"], 10, "x", "higher"),
        "pipeline_vs_memory_ratio": figure(steady / synthetic["memory"]["images_per_s"], 0.8, "x", "higher"),
        "pipeline_next_trial_vs_decode_ratio": figure(
            synthetic["cache_next"]["images_per_s"] / synthetic["decode"]["images_per_s"], None, "x", "higher"),
        "pipeline_cache_epoch2_images_per_s": figure(steady, None, "images/s", "higher"),
        "pipeline_decode_images_per_s": figure(synthetic["decode"]["images_per_s"], None, "images/s", "higher"),
        "pipeline_peak_rss_mib": figure(max(r["peak_rss_mib"] for r in synthetic.values()), None, "MiB", "lower"),
    }
    labels = {"pipeline_vs_decode_ratio": "epochs 2+ vs decode every epoch, full-size JPEGs",
              "pipeline_vs_memory_ratio": "epochs 2+ vs the in-memory ceiling",
              "pipeline_next_trial_vs_decode_ratio": "a later trial's whole first epoch vs one decode epoch"}
    formats = decode_formats(size)
    figures.update(_formats_figures(formats))
    tables = [_table(f"{n} synthetic JPEGs, 1024-2048 px, to {size} px", synthetic)]
    if real:
        tables.append(_table(f"{SHARED_KERMANY.name}: 1200 real PNGs (224 px), to {size} px", real))
    tables.append(_formats_table(formats, size))
    return Section("Input pipeline", "bench/pipeline.py", f"python -m bench.pipeline --n {n} --size {size}",
                   "\n\n".join([*tables, READING]), figures, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path, help="folder for the generated JPEGs, reused when it exists "
                                                 "(default: a temporary folder)")
    parser.add_argument("--formats", action="store_true", help="only the decode speed per file type (JPEG, "
                                                                   "16-bit PNG, DICOM)")
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.data, args.size, args.cache_dir)
        return
    (formats_section(args.size) if args.formats else section(args.n, args.size, args.out)).report()


if __name__ == "__main__":
    main()
