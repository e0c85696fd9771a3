"""Lung segmentation on real masks: the shipped ``segmentation`` search space against the simple U-Net of the
notebook it replaces, on the 240 lung-mask pairs in ``../shared/data/lungseg``.

    python -m bench.segmentation_real [--size 128] [--trials 2] [--epochs 6] [--baseline-epochs 8] [--out DIR]

Both train from scratch (``weights: none``: no ImageNet download) on one patient-grouped split of the pairs
that nothing here tunes on but its validation part (``SPLIT``: 167 train, 37 val, 36 test images from 147
patients), and are judged by the test split's Dice at the task's 0.5 threshold.

- ``shipped``: the trials the shipped ``segmentation`` space as written (no ``cpu`` profile) runs with
  ``num_samples: 2``, ``weights: none``, ``epochs: 6`` at one image size, drawn by the sweep's own TPE
  sampler and seed (with 2 trials both are its random start-up trials, so no trial's result steers the
  other) and trained with ``run_trial``, the function every sweep trial calls; the trial with the best
  validation Dice is the sweep's winner, and its test Dice is the figure.
- ``baseline``: the notebook's model, built here in plain Keras as the notebook built it: ``VGG16(weights=None,
  include_top=False)`` on the [0, 1] image repeated to RGB (no ``preprocess_input``), cut at ``block4_pool``,
  then four (3x3 ReLU conv, 2x upsampling) blocks and a sigmoid 1x1 conv; binary cross-entropy, Adam at 1e-3,
  batch 32, 8 epochs on the same split arrays, scored by the runner's own ``segmentation_metrics`` at 0.5.

Compute is reported beside each (epochs and training seconds): the issue's comparison was 2 trials x 6 epochs
against 1 x 8. 10.3 minutes at 128 px on 2 idle CPU cores (2026-12-03; 40 minutes or more on a loaded
machine), so ``python -m bench`` runs it with ``--full`` only. Without ``../shared/data/lungseg`` (a clone without the
team's folder) it says so and records nothing measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench._results import Section, figure, work_folder

SHARED_LUNGSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "lungseg"
#: The held-out split: the runner's patient-grouped split, fixed by its seed.
SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 0}
REPORTED = ("dice", "iou", "pixel_precision", "pixel_recall")


def _data(root: Path) -> dict[str, Any]:
    return {"path": str(root), "split": SPLIT}


def shipped_trials(size: int, trials: int, epochs: int, root: Path) -> list[dict[str, Any]]:
    """The config values of the first ``trials`` trials the shipped ``segmentation`` space runs at ``size`` px
    from scratch, in the order its searcher proposes them."""
    import optuna

    from runner.sweep.assemble import build_sweep
    from runner.sweep.space import define_by_run
    from runner.sweep.study import tpe_sampler

    overrides = {"num_samples": trials, "data": _data(root),
                 "fixed": {"weights": "none", "epochs": epochs, "bootstrap": 0, "plots": False},
                 "space": {"image_size": {"type": "categorical", "choices": [size]}}}
    spec = build_sweep("segmentation", overrides, None, resolve_weights=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=tpe_sampler(spec.num_samples, spec.seed), direction="maximize")
    draw = define_by_run(spec)
    values = []
    for _ in range(trials):
        trial = study.ask()
        draw(trial)
        values.append(spec.trial_values(trial.params))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # unscored: the next draw stays a start-up one
    return values


def train(values: dict[str, Any], work: Path) -> dict[str, Any]:
    """One ``run_trial``: its validation and test metrics at the task's threshold and what it cost."""
    from runner.config import make_config
    from runner.trial import run_trial

    result = run_trial(make_config(values), work, verbose=False, printer=lambda _: None).result
    found = {split: {key: result["metrics"][split][key] for key in REPORTED} for split in ("val", "test")}
    return {**found, "epochs": result["epochs_run"], "seconds": result["train_seconds"],
            "values": {k: values[k] for k in ("learning_rate", "bce_weight", "dice_weight", "frozen_layers",
                                                  "skip_connections") if k in values}}


def notebook_model(size: int):
    """The seed notebook's U-Net-less segmenter: VGG16 to ``block4_pool`` on [0, 1] pixels, then conv +
    upsampling back to the input size."""
    import keras

    inputs = keras.Input((size, size, 1))
    rgb = keras.layers.Concatenate()([inputs, inputs, inputs])
    encoder = keras.applications.VGG16(weights=None, include_top=False, input_tensor=rgb)
    x = encoder.get_layer("block4_pool").output
    for filters in (256, 128, 64, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.UpSampling2D(2)(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def train_baseline(size: int, epochs: int, root: Path) -> dict[str, Any]:
    """The notebook baseline on the split ``run_trial`` reads (same images, masks and cache)."""
    import time

    import keras
    import numpy as np

    from runner import metrics
    from runner.config import make_config
    from runner.tasks import TASKS
    from runner.trial import load_splits, setup_backend

    config = make_config({"task": "pneumothorax", "model": "vgg16_unet", "image_size": size, "data": _data(root)})
    setup_backend(config)
    _, splits = load_splits(config, TASKS.get("pneumothorax"), lambda _: None)
    x = {name: split.images.astype(np.float32) / 255.0 for name, split in splits.items()}
    y = {name: (split.masks > 127).astype(np.float32) for name, split in splits.items()}
    model = notebook_model(size)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    start = time.perf_counter()
    model.fit(x["train"], y["train"], batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    found = {name: {key: metrics.segmentation_metrics(y[name], model.predict(x[name], verbose=0))[key]
                    for key in REPORTED} for name in ("val", "test")}
    return {**found, "epochs": epochs, "seconds": seconds,
            "values": {"learning_rate": 1e-3, "loss": "BCE", "skip_connections": False}}


def _row(name: str, run: dict[str, Any]) -> str:
    test = run["test"]
    chosen = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in run["values"].items())
    return (f"| {name} | {chosen} | {run['val']['dice']:.3f} | {test['dice']:.3f} | {test['iou']:.3f} | "
            f"{test['pixel_precision']:.3f} | {test['pixel_recall']:.3f} | {run['epochs']} | {run['seconds']:.0f} |")


def section(size: int, trials: int, epochs: int, baseline_epochs: int, work: Path,
            root: Path = SHARED_LUNGSEG) -> Section:
    command = (f"python -m bench.segmentation_real --size {size} --trials {trials} --epochs {epochs} "
               f"--baseline-epochs {baseline_epochs}")
    names = ("segmentation_real_shipped_test_dice", "segmentation_real_baseline_test_dice",
             "segmentation_real_shipped_minus_baseline_dice")
    if not root.is_dir():
        figures = {names[0]: figure(None, None, "", "higher"), names[1]: figure(None, None, "", "higher"),
                   names[2]: figure(None, 0.0, "", "higher")}
        return Section("Lung segmentation on real masks", "bench/segmentation_real.py", command,
                       f"Not measured: {root} is absent (the team's real images; ../shared/data/README.md).",
                       figures)
    shipped = [train(values, work / f"shipped-{i}") for i, values in enumerate(shipped_trials(size, trials, epochs,
                                                                                                root))]
    best = max(range(len(shipped)), key=lambda i: shipped[i]["val"]["dice"])
    baseline = train_baseline(size, baseline_epochs, root)
    lines = ["| run | configuration | val Dice | test Dice | test IoU | pixel precision | pixel recall | epochs | "
             "train s |", "|---|---|---|---|---|---|---|---|---|",
             *(_row(f"shipped trial {i + 1}{' (winner by val)' if i == best else ''}", run)
               for i, run in enumerate(shipped)),
             _row("baseline", baseline)]
    winner = shipped[best]["test"]["dice"]
    figures = {names[0]: figure(winner, None, "", "higher"),
               names[1]: figure(baseline["test"]["dice"], None, "", "higher"),
               names[2]: figure(winner - baseline["test"]["dice"], 0.0, "", "higher"),
               "segmentation_real_shipped_pixel_precision": figure(shipped[best]["test"]["pixel_precision"], None,
                                                                   "", "higher"),
               "segmentation_real_shipped_pixel_recall": figure(shipped[best]["test"]["pixel_recall"], None, "",
                                                                "higher"),
               "segmentation_real_shipped_train_s": figure(sum(r["seconds"] for r in shipped), None, "s", "lower"),
               "segmentation_real_baseline_train_s": figure(baseline["seconds"], None, "s", "lower")}
    labels = {names[2]: f"test Dice of the shipped space's winner ({trials} x {epochs} epochs) minus the "
                        f"baseline's ({baseline_epochs} epochs), {size} px, real lung masks"}
    body = "\n".join([f"{size} px, weights none, split {SPLIT} (patient-grouped; test = 36 images never used "
                      "to choose anything).", "", *lines, "", READING])
    return Section("Lung segmentation on real masks", "bench/segmentation_real.py", command, body, figures, labels)


READING = """Reading: the likely cause was the search space. The issue-16 sweep's space searched `frozen_layers` over
`[0, 0.5, all]`, and with `weights: none` (or `auto` offline) two of those three choices freeze a randomly
initialised encoder: its features were never trained, and the decoder reads them as they came. Controlled
runs on this split at 64 px, each changing one factor of the first trial that sweep drew (learning rate
1.25e-4, 0.42 x BCE + 1.47 x Dice, `frozen_layers: 0`; val / test Dice at 0.5): as drawn 0.825 / 0.871
(pixel precision 0.92, recall 0.83); its second trial, blocks 1-2 of the random encoder frozen (learning rate
7.5e-5, 0.79 x BCE + 1.29 x Dice: not a one-factor change), 0.768 / 0.820, precision 0.75, recall 0.90
(val 0.68 / 0.90): the over-segmentation the issue saw; the same trial as drawn but with only
`frozen_layers` changed: `0.5` 0.817 / 0.867 (precision 0.88, recall 0.86: a small cost), `all` (the whole
random encoder frozen) 0.757 / 0.806, precision 0.74, recall 0.88 (val 0.68 / 0.87): over-segmenting again;
BCE only 0.810 / 0.867; learning rate 1e-3 0.775 / 0.821; VGG's input scaled from +-128 to about +-1
0.735 / 0.778 (the VGG pre-processing starts a from-scratch U-Net at sigmoid ~1 on 91-100% of pixels, but that start
trains away, and faster than from +-1). A threshold tuned on validation moved test Dice by +0.004 (as drawn)
to +0.03 (learning rate 1e-3): a patch on a poorly trained trial, not the cause. The shipped space now fixes
`frozen_layers: 0`; both of its trials train the whole encoder. The notebook baseline here is far below
the issue's 0.884 (measured on other patients), at 64 px (0.771) and at 128 px (0.757) alike, and
over-segments at 128 px (pixel precision 0.67, recall 0.88): in 8 epochs of 6 batches it is undertrained, so
the margin says more about the baseline's training than about its ceiling. At 128 px even the shipped space's
weaker trial (6 epochs, fewer than the baseline's 8) is ahead of it (0.826 against 0.757)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--baseline-epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, help="keep the trial folders here (default: temporary)")
    args = parser.parse_args(argv)
    section(args.size, args.trials, args.epochs, args.baseline_epochs,
            work_folder(args.out, "segmentation-real-")).report()


if __name__ == "__main__":
    main()
