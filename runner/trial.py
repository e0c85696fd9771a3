"""One trial: train one model on one task's data and evaluate it, with no Ray involved.

``run_trial(config, out_dir)`` is the single function behind ``runner train``, every Ray Tune trial and the
benchmarks. It writes a trial directory: ``config.yaml`` (resolved), ``model.keras`` (best epoch),
``predictions.parquet`` (val, test and external-test scores per image, so any metric can be recomputed) and,
last, ``result.json``, whose presence marks the trial complete (schema in ``results/README.md``).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner import calibration, privacy
from runner import metrics as m
from runner.config import TrialConfig, save_config
from runner.data import CachedData, prepare
from runner.data.cache import refuse_seen_images
from runner.gpu import GpuSampler
from runner.tasks import TASKS, Split, Task

if TYPE_CHECKING:
    from runner.checkpoint import Checkpointing

RESULT_SCHEMA_VERSION = 1
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-learn", "h5py", "ray", "optuna", "pandas", "pyarrow",
             "cxr-runner")


@dataclass
class TrialResult:
    """What ``run_trial`` returns: the trial directory and the content of its ``result.json``."""

    trial_id: str
    directory: Path
    result: dict[str, Any]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.result["metrics"]


def new_trial_id(config: TrialConfig) -> str:
    return f"{config.task}-{config.model}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The runner's own commit, for provenance; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def setup_backend(config: TrialConfig) -> str:
    """Fresh Keras state, seeds, determinism on CPU, mixed precision on GPU; returns the device used."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    forget_custom_gradients()
    keras.utils.set_random_seed(config.seed)
    gpus = tf.config.list_physical_devices("GPU")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    if not gpus:
        tf.config.experimental.enable_op_determinism()
    return f"GPU x{len(gpus)}" if gpus else "CPU"


def use_threads(threads: int) -> int:
    """TensorFlow on ``threads`` threads per op and between ops; returns the intra-op threads in force. A
    process whose TensorFlow already started keeps the count its first trial set (TF cannot change it)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    return intra_op_threads()


def intra_op_threads() -> int:
    """The threads TensorFlow splits one op over. They set the order of its float32 sums, so a CPU trial is
    bit-identical only on as many (``runner rerun`` uses the recorded count). TF's 0 means one per CPU this
    process may run on."""
    import tensorflow as tf

    schedulable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return tf.config.threading.get_intra_op_parallelism_threads() or schedulable or 1


def forget_custom_gradients() -> None:
    """Drops the gradient functions earlier trials' ``tf.custom_gradient`` traces left in TensorFlow's
    process-wide registry. TF never removes them and each keeps its whole traced graph alive: about 6 MB per
    trial in a sweep's reused trial process (measured; ``tests/test_sweep_memory.py``). Called between
    trials, when no model of an earlier trial is left to need them. A private registry: skipped if absent."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if isinstance(registry, dict):
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]


def load_splits(config: TrialConfig, task: Task, printer: Callable[[str], None]) -> tuple[CachedData, dict]:
    dataset = task.load_data(config.data, cache_dir=_cache_dir(config))
    for warning in dataset.warnings:
        printer(f"warning: {warning}")
    cached = prepare(dataset, config.image_size, cache_dir=_cache_dir(config))
    skipped = len(dataset.problems) + len(cached.skipped)
    if skipped:
        printer(f"skipped {skipped} unusable files (run `python -m runner data check` for the list)")
    return cached, {s: _split(cached, s, task) for s in ("train", "val", "test")}


def _cache_dir(config: TrialConfig) -> Path | None:
    return Path(config.cache_dir) if config.cache_dir else None


def _split(cached: CachedData, name: str | None, task: Task) -> Split:
    records = cached.records(name)
    if not records:
        raise_empty(name or "external test", cached)
    masks = cached.masks(name) if task.needs_masks else None
    return Split(name or "external_test", records, cached.images(name), masks)


def raise_empty(name: str, cached: CachedData) -> None:
    from runner.errors import DataError

    raise DataError(f"{cached.dataset.root}: the {name} split has no usable images: add data or change split ratios")


def build_model(config: TrialConfig, task: Task, jit: bool | str = "auto", strategy=None):
    """The model, compiled (inside ``strategy.scope()`` for data-parallel training). ``jit`` False on CPU:
    XLA compilation costs more than it saves in short trials."""
    if strategy is not None:
        with strategy.scope():
            return build_model(config, task, jit)
    import keras

    from runner.models import create_model

    units, activation = task.head()
    model = create_model(config.model, input_shape=(config.image_size, config.image_size, 1), num_outputs=units,
                         output_activation=activation, **config.model_params)
    optimizer = (keras.optimizers.Adam(config.learning_rate) if config.optimizer == "adam"
                 else keras.optimizers.SGD(config.learning_rate, momentum=config.momentum))
    model.compile(optimizer=optimizer, loss=task.loss(config.task_params), jit_compile=jit)
    # Its slot variables, created now rather than inside the first traced train step, where each one costs a
    # lifted initializer and a cond in the graph: ~0.8 s CPU less per small_cnn trial, the same values.
    model.optimizer.build(model.trainable_variables)
    return model


def _callbacks(config: TrialConfig, task: Task, model, splits: dict, extra: Sequence[Any],
               printer: Callable[[str], None], verbose: bool) -> list[Any]:
    import keras

    from runner.callbacks import EpochLine, ValidationMetrics

    def validation() -> dict[str, Any]:
        scores = task.predict(model, splits["val"], config.task_params, splits["train"])
        return task.evaluate(splits["val"], scores, config.task_params)

    chosen: list[Any] = [ValidationMetrics(validation)]
    if config.early_stopping:
        chosen.append(keras.callbacks.EarlyStopping(monitor=task.monitor, mode=task.mode,
                                                    patience=config.early_stopping, restore_best_weights=True))
    if config.reduce_lr:
        chosen.append(keras.callbacks.ReduceLROnPlateau(monitor=task.monitor, mode=task.mode,
                                                        patience=config.reduce_lr, factor=0.5))
    if verbose:
        chosen.append(EpochLine(config.epochs, task.monitor, printer))
    return chosen + list(extra)


def _datasets(config: TrialConfig, task: Task, splits: dict, replicas: int = 1, first_epoch: int = 0):
    """Training batches from ``first_epoch`` on (``make_epochs``: the order of each epoch is set by the seed
    and the epoch alone, whatever the strategy, so one trial trains on the same batches on one device or
    several), the steps per epoch, and Keras' validation batches. A global batch is split across
    ``replicas``, and Keras fails on a batch that does not split evenly (an ``AddN`` of unequal shapes,
    reproduced): ``batch_size`` must be a multiple of ``replicas`` (a ``ConfigError`` otherwise), and each
    epoch leaves out fewer than ``replicas`` images so that its last batch is one too (none when they divide
    the training images). Keras' own ``val_loss`` leaves out the same few validation images; the task's
    validation metrics (``ValidationMetrics``) use every image."""
    from runner.data.pipeline import AugmentConfig, make_dataset, make_epochs, steps_per_epoch

    images, targets, target = task.training_arrays(splits["train"], config.task_params)
    train = make_epochs(images, targets, target=target, batch_size=config.batch_size,
                        augment=AugmentConfig.from_options(config.augment), seed=config.seed,
                        first_epoch=first_epoch, multiple_of=replicas)
    steps = steps_per_epoch(len(images), config.batch_size, replicas)
    images, targets, target = task.training_arrays(splits["val"], config.task_params)
    val = (make_dataset(images, targets, target=target, batch_size=config.batch_size, multiple_of=replicas)
           if len(images) >= replicas else None)
    return train, steps, val


def fit(config: TrialConfig, task: Task, model, splits: dict, extra_callbacks: Sequence[Any],
        printer: Callable[[str], None], verbose: bool, checkpointing: Checkpointing | None = None
        ) -> dict[str, Any]:
    """Train with early stopping on the task's validation metric; returns history and timing. With
    ``checkpointing``, each epoch is checkpointed and training continues from ``checkpointing.resume``."""
    from runner.callbacks import EpochCheckpoint

    strategy = getattr(model, "distribute_strategy", None)
    resume = checkpointing.resume if checkpointing else None
    initial_epoch = resume.epoch if resume else 0
    train, steps, val = _datasets(config, task, splits, strategy.num_replicas_in_sync if strategy else 1,
                                  initial_epoch)
    class_weight = task.class_weights(splits["train"]) if config.task_params.get("class_weights") else None
    callbacks = _callbacks(config, task, model, splits, extra_callbacks, printer, verbose)
    if checkpointing:
        callbacks.append(EpochCheckpoint(checkpointing, callbacks, config.epochs))
    start = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=config.epochs, steps_per_epoch=steps,
                        class_weight=class_weight, callbacks=callbacks, shuffle=False, verbose=0,
                        initial_epoch=initial_epoch)
    seconds = time.perf_counter() - start
    whole = _joined(resume.history if resume else {}, history.history)
    epochs_run = len(whole.get("loss", []))
    monitored = whole.get(task.monitor, [])
    finite = [v if v is not None and np.isfinite(v) else -np.inf for v in monitored]
    best = int(np.argmax(finite) if task.mode == "max" else np.argmin(finite)) + 1 if monitored else epochs_run
    trained_images = len(task.training_arrays(splits["train"], config.task_params)[0]) * len(history.epoch)
    return {"history": {k: [_json_float(v) for v in values] for k, values in whole.items()},
            "epochs_run": epochs_run, "best_epoch": best, "stopped_early": epochs_run < config.epochs,
            "train_seconds": seconds + (resume.train_seconds if resume else 0.0),
            "images_per_second": trained_images / seconds if seconds else None,
            "resumed_from_epoch": resume.epoch if resume else None}


def _joined(earlier: dict[str, list], later: dict[str, list]) -> dict[str, list]:
    """The history of the epochs trained before a resume followed by those trained after it."""
    return {k: list(earlier.get(k, [])) + list(later.get(k, [])) for k in dict.fromkeys([*earlier, *later])}


def _json_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass
class Evaluation:
    """What ``evaluate`` found: ``metrics`` per split, the per-image prediction ``rows``, and ``calibration``
    (``result.json``'s, ``None`` for a kind without class probabilities)."""

    metrics: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    calibration: dict[str, Any] | None


def evaluate(config: TrialConfig, task: Task, model, splits: dict, external: Split | None) -> Evaluation:
    """Validation and test (and external test) metrics of the restored best model, the task's bootstrapped
    test metrics with confidence intervals, the per-image prediction rows, and, for a kind whose scores are
    class probabilities, their calibration: reliability tables per split and, with ``calibrate:
    temperature``, the temperature fitted on validation alone (the validation metric ``temperature``) with
    every split's ECE and Brier score after scaling (``*_calibrated``; ``runner.calibration`` says why no
    other metric changes)."""
    params = config.task_params
    val = splits["val"]
    val_scores = task.predict(model, val, params, splits["train"])
    temperature = (calibration.fit_temperature(task.calibration_targets(val), val_scores)
                   if config.calibrate == "temperature" else None)
    found = Evaluation({}, [], None if not task.calibrated else {
        "method": config.calibrate, "bins": m.ECE_BINS, "reliability": {}})
    val_metrics = task.evaluate(val, val_scores, params)
    if temperature is not None:
        val_metrics["temperature"] = temperature  # fitted here: the leaderboard's val_temperature
    add_split(found, config, task, val, val_scores, val_metrics, temperature)
    for split in [splits["test"]] + ([external] if external is not None else []):
        scores = task.predict(model, split, params, splits["train"])
        add_split(found, config, task, split, scores, task.evaluate(split, scores, params, val=(val, val_scores)),
                   temperature)
    return found


def add_split(found: Evaluation, config: TrialConfig, task: Task, split: Split, scores: np.ndarray,
              metrics: dict[str, Any], temperature: float | None) -> None:
    """One split's metrics (test splits with their intervals; the ``_calibrated`` ECE and Brier score after
    temperature scaling, with theirs), prediction rows and reliability tables into ``found``: for a trial's
    own splits, and for ``runner evaluate``'s external data sets, which are evaluated the same way."""
    scaled = calibration.scaled(scores, temperature) if temperature is not None else None
    if found.calibration is not None:
        targets = task.calibration_targets(split)
        found.calibration["reliability"][split.name] = {
            "before": m.reliability_bins(targets, scores),
            "after": m.reliability_bins(targets, scaled) if scaled is not None else None}
        if scaled is not None:
            metrics = {**metrics, **{f"{key}_calibrated": value
                                     for key, value in m.calibration_metrics(targets, scaled).items()}}
    if config.bootstrap and split.name != "val":
        inputs = task.bootstrap_inputs(split, scores, config.task_params)
        if scaled is not None:
            after = task.bootstrap_inputs(split, scaled, config.task_params)
            inputs.update({f"{key}_calibrated": after[key] for key in m.CALIBRATION_KEYS})
        metrics = m.with_confidence_intervals(metrics, {
            key: m.bootstrap_ci(fn, *arrays, n_resamples=config.bootstrap, seed=config.seed)
            for key, (fn, arrays) in inputs.items()})
    found.metrics[split.name] = metrics
    found.rows += _prediction_rows(task, split, scores, scaled)


def _prediction_rows(task: Task, split: Split, scores: np.ndarray, scaled: np.ndarray | None = None
                     ) -> list[dict[str, Any]]:
    """One row per image: its file, patient and label, the kind's prediction columns and, after temperature
    scaling, each score column again with the scaled probabilities (``calibrated_score``,
    ``calibrated_score_<class>``)."""
    columns = task.prediction_columns(split, scores)
    if scaled is not None:
        columns.update({f"calibrated_{key}": values for key, values in task.prediction_columns(split, scaled).items()
                        if key.startswith("score")})
    rows = []
    for index, record in enumerate(split.records):
        row = {"split": split.name, "file": record.path, "patient_id": record.patient_id, "label": record.label}
        row.update({key: _scalar(values[index]) for key, values in columns.items()})
        rows.append(row)
    return rows


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def load_external(config: TrialConfig, task: Task, own: CachedData) -> Split | None:
    """The ``test_data`` set, every usable image of it, at the trial's image size; refused where it holds an
    image of ``own``'s train or val split (``refuse_seen_images``)."""
    if not config.test_data:
        return None
    cached, split = load_whole(config, task, config.test_data)
    refuse_seen_images(cached, own)
    return split


def load_whole(config: TrialConfig, task: Task, spec: Any) -> tuple[CachedData, Split]:
    """A data set used whole as an external test set (``test_data``, or ``runner evaluate --data``), at the
    trial's image size, and its one split, ``external_test``."""
    dataset = task.load_data(spec, whole=True, cache_dir=_cache_dir(config))
    cached = prepare(dataset, config.image_size, cache_dir=_cache_dir(config), whole=True)
    return cached, _split(cached, None, task)


def parameter_counts(model) -> dict[str, int]:
    import keras

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    del keras
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def resident_mb() -> float | None:
    """This process's resident memory now: in a sweep, trial actors are reused, so the figure across a
    sweep's rows shows whether memory grows from trial to trial."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    write(staging)
    os.replace(staging, path)


def _shortcut_warnings(cached: CachedData) -> list[str]:
    from runner.data.check import shortcut_warnings

    return shortcut_warnings(cached)


def _tensorboard(config: TrialConfig, directory: Path) -> list[Any]:
    """Per-epoch scalars (losses, every validation metric) as TensorBoard event files in
    ``<trial>/tensorboard``, so ``tensorboard --logdir results/trials`` shows every trial. Kept cheap: no
    graph, no weight histograms, no profiling. Off with ``plots: false``."""
    if not config.plots:
        return []
    import keras

    return [keras.callbacks.TensorBoard(str(directory / "tensorboard"), histogram_freq=0, write_graph=False,
                                        write_images=False, write_steps_per_second=False, update_freq="epoch",
                                        profile_batch=0)]


def _draw_plots(config: TrialConfig, task: Task, directory: Path, result: dict[str, Any],
                rows: list[dict[str, Any]], test: Split, model, printer: Callable[[str], None]) -> dict[str, Any]:
    """The per-trial PNGs (``runner.plots``), and what ``result.json`` records of them. A plotting error
    must not throw away a trained, evaluated trial, nor pass unseen: it is printed as a warning and stored
    as ``plot_error``; ``plots`` lists the files that were written."""
    if not config.plots:
        return {"plots": [], "plot_error": None, "plot_seconds": 0.0}
    import pandas as pd

    from runner.plots import write_trial_plots

    start = time.perf_counter()
    try:
        names, error = write_trial_plots(directory, task, result, pd.DataFrame(rows), test, model), None
    except Exception as failure:  # any plotting bug: keep the trial, report the bug
        names, error = sorted(path.name for path in directory.glob("*.png")), f"{type(failure).__name__}: {failure}"
        printer(f"warning: plotting failed (the trial's results are kept): {error}")
    return {"plots": names, "plot_error": error, "plot_seconds": time.perf_counter() - start}


def run_trial(config: TrialConfig, out_dir: Path, *, trial_id: str | None = None,
              callbacks: Sequence[Any] = (), verbose: bool = True,
              printer: Callable[[str], None] = print, strategy=None,
              checkpointing: Checkpointing | None = None, patient_salt: str | None = None) -> TrialResult:
    """Train and evaluate one configuration; write and return its results. ``strategy``: a
    ``tf.distribute`` strategy to train data-parallel under (a sweep's trial on several GPUs:
    ``MirroredStrategy``), on global batches of ``batch_size`` in the same order as on one device
    (``_datasets``), so it ends with the one-device trial's scores up to float rounding, except where the
    model computes per replica: BatchNormalization normalises each replica's share of a batch (a densenet121
    trial's scores 7e-3 apart on two replicas, measured), dropout and augmentation draw other random numbers
    (``make_epochs``); ``checkpointing``: per-epoch
    checkpoints and the state to resume from, when a scheduler may restart the trial; ``patient_salt``: the
    results folder's (``runner.privacy``), by default that of the folder above ``out_dir`` (``results`` for
    ``results/trials``)."""
    import pandas as pd

    task = TASKS.get(config.task)
    trial_id = trial_id or new_trial_id(config)
    directory = Path(out_dir) / trial_id
    directory.mkdir(parents=True, exist_ok=True)
    save_config(config, directory / "config.yaml")
    started = datetime.now(timezone.utc)
    device = setup_backend(config)
    cached, splits = load_splits(config, task, printer)
    external = load_external(config, task, cached)
    model = build_model(config, task, jit="auto" if device.startswith("GPU") else False, strategy=strategy)
    if checkpointing and checkpointing.resume:
        checkpointing.resume.restore_weights(model)
    with GpuSampler() as gpu:  # nvidia-smi in a background thread while the model trains; nothing on CPU
        training = fit(config, task, model, splits, [*callbacks, *_tensorboard(config, directory)], printer,
                       verbose, checkpointing)
    eval_start = time.perf_counter()
    evaluation = evaluate(config, task, model, splits, external)
    rows = evaluation.rows
    model.save(directory / "model.keras")
    salt = patient_salt or privacy.patient_salt(Path(out_dir).resolve().parent)
    _write_atomic(directory / "predictions.parquet",
                  lambda p: pd.DataFrame(privacy.hash_patient_ids(rows, salt)).to_parquet(p, index=False))
    result = {
        "schema_version": RESULT_SCHEMA_VERSION, "trial_id": trial_id, "task": config.task, "model": config.model,
        "config": config.to_dict(), "hyperparameters": config.hyperparameters(),
        "data": {"root": str(cached.dataset.root), "layout": cached.dataset.spec.layout,
                 "fingerprint": cached.dataset.fingerprint, "classes": list(cached.dataset.classes),
                 "counts": {name: len(split.records) for name, split in splits.items()},
                 "skipped": len(cached.dataset.problems) + len(cached.skipped),
                 "shortcut_warnings": _shortcut_warnings(cached),
                 "external_test": str(external.records[0].path) if external is not None else None},
        "metrics": evaluation.metrics, "calibration": evaluation.calibration, "monitor": task.monitor,
        "mode": task.mode,
        "history": training.pop("history"), **training,
        "eval_seconds": time.perf_counter() - eval_start,
        "parameters": parameter_counts(model), "rss_mb": resident_mb(), "gpu": gpu.summary(), "seed": config.seed,
        "device": device,
        "intra_op_threads": intra_op_threads(), "host": socket.gethostname(), "versions": library_versions(),
        "git_commit": git_commit(),
        "started_at": started.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
    }
    result.update(_draw_plots(config, task, directory, result, rows, splits["test"], model, printer))
    _write_atomic(directory / "result.json",
                  lambda p: p.write_text(json.dumps(result, indent=2, allow_nan=False, default=_scalar)))
    return TrialResult(trial_id, directory, result)
