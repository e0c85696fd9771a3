"""What the per-epoch checkpoint of a sweep trial costs: write (weights with optimizer state, history, callback
state) plus the copy Ray makes into its storage on report, the folder's size, the restore a retried trial
does, and for scale one training epoch of 256 images on the same model.

    python -m bench.checkpoint_cost [--models baseline small_cnn vgg16]   # ~7 min on 2 CPU cores with all three
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._results import Section, figure

MODELS = (("baseline", 32, {}), ("small_cnn", 128, {}), ("vgg16", 128, {"weights": "none"}))
IMAGES = 256


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def measure(model_name: str, size: int, params: dict) -> dict[str, float]:
    import keras

    from runner.callbacks import EpochCheckpoint
    from runner.checkpoint import Checkpointing, load_state
    from runner.config import make_config
    from runner.tasks import TASKS
    from runner.trial import build_model, setup_backend

    config = make_config({"task": "pneumonia", "model": model_name, "image_size": size, **params})
    task = TASKS.get("pneumonia")
    setup_backend(config)
    model = build_model(config, task, jit=False)
    rng = np.random.default_rng(0)
    x = rng.random((IMAGES, size, size, 1), dtype=np.float32)
    y = rng.integers(0, 2, (IMAGES, 1)).astype(np.float32)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # builds the optimizer, as a trial's first epoch does
    start = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    epoch = time.perf_counter() - start
    stop = keras.callbacks.EarlyStopping(monitor="val_f1", mode="max", restore_best_weights=True)
    stop.on_train_begin()
    stop.best_weights = model.get_weights()
    callback = EpochCheckpoint(Checkpointing(lambda *_: None), [stop], epochs=10)
    callback.set_model(model)
    work = Path(tempfile.mkdtemp(prefix="checkpoint-cost-"))
    try:
        (work / "written").mkdir()
        start = time.perf_counter()
        callback.write(work / "written", 3)
        shutil.copytree(work / "written", work / "stored")  # what ray.tune.report does with a local storage
        write = time.perf_counter() - start
        start = time.perf_counter()
        load_state(work / "stored").restore_weights(build_model(config, task, jit=False))
        restore = time.perf_counter() - start
        return {"write": write, "restore": restore, "mb": _folder_mb(work / "stored"), "epoch": epoch}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def section(models: list[tuple[str, int, dict]]) -> Section:
    lines = ["| model | px | checkpoint write + copy s | size MiB | restore s | one epoch of 256 images s | "
             "write / epoch |", "|---|---|---|---|---|---|---|"]
    figures = {}
    for name, size, params in models:
        found = measure(name, size, params)
        lines.append(f"| {name} | {size} | {found['write']:.2f} | {found['mb']:.1f} | {found['restore']:.2f} | "
                     f"{found['epoch']:.2f} | {found['write'] / found['epoch']:.1%} |")
        key = f"checkpoint_{name}_{size}px"
        figures[f"{key}_write_s"] = figure(found["write"], None, "s", "lower")
        figures[f"{key}_mib"] = figure(found["mb"], None, "MiB", "lower")
        figures[f"{key}_restore_s"] = figure(found["restore"], None, "s", "lower")
        figures[f"{key}_epoch_{IMAGES}_images_s"] = figure(found["epoch"], None, "s", "lower")
    body = "\n".join([*lines, "", "Every trial checkpoints each epoch by default (`checkpoint_every` in the search "
                      "space; 0 = never): on a short GPU epoch the write is a larger share than on these CPU epochs."])
    names = " ".join(name for name, _, _ in models)
    return Section("Checkpoint cost", "bench/checkpoint_cost.py", f"python -m bench.checkpoint_cost --models {names}",
                   body, figures)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=[name for name, _, _ in MODELS],
                        default=[name for name, _, _ in MODELS])
    args = parser.parse_args(argv)
    section([m for m in MODELS if m[0] in args.models]).report()


if __name__ == "__main__":
    main()
