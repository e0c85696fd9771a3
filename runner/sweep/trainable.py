"""What runs inside one Ray Tune trial: a Ray Train job around ``run_trial``.

With ``resources.workers: 0`` (local mode, the default on one machine) the ``TensorflowTrainer`` runs the
training function in the trial's own process: no worker actor to start per trial, and with Tune reusing
trial actors TensorFlow is imported once per actor, not once per trial. Ray Train's callbacks do not fire in
local mode and ``ray.train.report`` raises inside Tune, so epochs are reported with ``ray.tune.report``.
With ``workers: 1`` the trial starts one Ray Train worker (placed by Ray Train, e.g. on a GPU node) that
reports with ``ray.train.report``; the ``TuneReportCallback`` forwards its reports to Tune. Several GPUs in
one trial train data-parallel with ``MirroredStrategy``; several workers per trial are refused when the
sweep loads (Keras 3 cannot train under MultiWorkerMirroredStrategy).

Every epoch reports ``objective`` (the sweep's ``metric``: by default each task's own validation metric, or
a named one such as ``val_loss``) and all ``val_*`` metrics, so Optuna and ASHA, which both optimise
``objective``, work on the numbers the leaderboard ranks by; the last report carries the whole
``result.json`` (``result_json``) for the driver, which alone writes the leaderboard.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner import storage
from runner.checkpoint import Checkpointing, TrainingState

if TYPE_CHECKING:
    from runner.sweep.record import SweepRun
    from runner.sweep.space import SweepSpec

RESULT_KEY = "result_json"
NODE_KEY = "node_id"
#: Which run of the trial a report comes from: 1, then 2 after one ``--retry-failed`` reran it (the
#: leaderboard's ``attempts``). The study and the leaderboard writer tell a retry's reports from the failed
#: attempt's last one by it.
ATTEMPT_KEY = "attempt"
#: What a trial reports but no sweep should optimise: counts, and the fixed 0.5 threshold.
NOT_OBJECTIVES = ("val_n", "val_n_positive", "val_n_with_mask", "val_threshold", "val_support_")
#: ``objective`` when the metric is undefined or diverged (NaN): the worst value, so neither Optuna nor ASHA
#: favours it. Scores are in [0, 1], so 0 (as before); a loss has no upper bound, so the largest float (Tune's
#: schedulers need finite numbers).
WORST = {"max": 0.0, "min": sys.float_info.max}


def ran_to_end(last_result: Mapping[str, Any] | None) -> bool:
    """Whether a trial's last report is its final one (it carries ``result_json``): a trial ASHA (or any Tune
    stopper) stopped ended on an epoch report, or before its first. The leaderboard writes a stopped row and
    the Optuna study a pruned trial for exactly these, so both read the same test."""
    return RESULT_KEY in (last_result or {})


def epoch_metrics(logs: Mapping[str, Any], metric: str, epoch: int, mode: str = "max") -> dict[str, Any]:
    """The per-epoch report: finite floats only (Tune's schedulers compare them), ``objective`` = ``metric``."""
    report = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}
    value = logs.get(metric)
    report["objective"] = float(value) if value is not None and math.isfinite(float(value)) else WORST[mode]
    report["epoch"] = epoch + 1
    return report


def final_metrics(result: Mapping[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """The last report, after evaluation: the final validation metrics, and ``objective`` = the value the
    leaderboard row records for ``metric`` (``leaderboard.sweep_metric_value``), which Optuna is told."""
    from runner.leaderboard import sweep_metric_value

    flat = {f"val_{k}": v for k, v in result["metrics"]["val"].items()}
    return epoch_metrics({**flat, metric: sweep_metric_value(result, metric)}, metric,
                         result["epochs_run"] - 1, mode)  # the last epoch trained, 0-based as Keras counts


def reported_metrics(task_name: str) -> list[str]:
    """The validation metrics every trial of the task reports each epoch, the ones a sweep may optimise:
    Keras's ``val_loss`` and the task's own validation metrics (``ValidationMetrics``), found by evaluating
    the task on a six-image made-up validation split, so the list cannot drift from what the task computes."""
    from runner.data import Record
    from runner.tasks import TASKS, Split

    task = TASKS.get(task_name)
    labels = [task.classes[i % len(task.classes)] for i in range(6)]
    rng = np.random.default_rng(0)
    shape = (len(labels), 8, 8, 1)
    masks = (rng.random(shape) > 0.7).astype(np.uint8) * 255 if task.needs_masks else None
    split = Split("val", [Record(f"{i}.png", label) for i, label in enumerate(labels)], np.zeros(shape, np.uint8),
                  masks)
    found = task.evaluate(split, task.random_scores(split, rng), task.bind_params({}))
    names = ["val_loss", *(f"val_{key}" for key, value in found.items()
                           if value is None or (isinstance(value, int | float) and not isinstance(value, bool)))]
    return [name for name in names if not name.startswith(NOT_OBJECTIVES)]


def report(metrics: dict[str, Any], via_tune: bool, checkpoint: Path | None = None) -> None:
    """Every report names the Ray node that trained (the leaderboard's ``node_id``; node IPs are not unique
    when several nodes share a machine) and the process training (``train_pid``: what to watch, or kill to
    test recovery). ``checkpoint``: a folder Ray copies into its storage before this returns."""
    import ray

    metrics = {**metrics, NODE_KEY: ray.get_runtime_context().get_node_id(), "train_pid": os.getpid()}
    if via_tune:
        import ray.tune

        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(checkpoint) if checkpoint else None)
    else:
        import ray.train

        ray.train.report(metrics,
                         checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)


@contextmanager
def restored_state(via_tune: bool) -> Iterator[TrainingState | None]:
    """The state of this trial's last checkpoint, when Ray restarts it after a failure: Tune's checkpoint in
    local mode; in Ray Train mode the Train run's (a rerun with the same run name and storage finds it).
    Copied to local disk, since Ray may delete its copy once a newer one is reported."""
    import ray.train
    import ray.tune

    from runner.checkpoint import STATE_FILE, load_state

    checkpoint = ray.tune.get_checkpoint() if via_tune else ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="cxr-resume-"))
    try:
        checkpoint.to_directory(str(folder))
        # a failed trial's checkpoint was emptied when it ended (``LeaderboardWriter``): its retry starts at 0
        yield load_state(folder) if (folder / STATE_FILE).is_file() else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one trial's training, in the trial process (local mode) or on
    its one Ray Train worker."""
    import tensorflow as tf

    from runner.config import make_config
    from runner.privacy import patient_salt
    from runner.tasks import TASKS
    from runner.trial import run_trial, use_threads

    use_threads(loop_config["threads"])  # as many as the CPUs Ray gave this trial: concurrent ones never fight
    config = make_config(loop_config["values"])
    via_tune = loop_config["workers"] == 0
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else None  # a multi-GPU trial: data parallel
    shared = loop_config["out_dir"]
    out_dir = Path(tempfile.mkdtemp(prefix="cxr-trial-")) if storage.is_uri(shared) else Path(shared)
    metric = loop_config["metric"]
    metric = TASKS.get(config.task).monitor if metric == "objective" else metric
    mode = loop_config["mode"]
    attempt = {ATTEMPT_KEY: loop_config["attempt"]}

    def publish(checkpoint: Path | None, epoch: int, logs: dict[str, Any]) -> None:
        report({**epoch_metrics(logs, metric, epoch, mode), **attempt}, via_tune, checkpoint)

    try:
        with restored_state(via_tune) as resume:
            result = run_trial(config, out_dir, trial_id=loop_config["trial_id"], verbose=False, strategy=strategy,
                               checkpointing=Checkpointing(publish, resume, loop_config["checkpoint_every"]),
                               patient_salt=patient_salt(loop_config["results"]))
        trial_dir = str(result.directory)
        if storage.is_uri(shared):  # built on local disk, uploaded whole to the shared results
            trial_dir = storage.join(shared, result.trial_id)
            storage.upload_folder(result.directory, trial_dir)
    finally:
        if storage.is_uri(shared):
            shutil.rmtree(out_dir, ignore_errors=True)
    final = {**final_metrics(result.result, metric, mode), **attempt}
    final[RESULT_KEY] = json.dumps({**result.result, "trial_dir": trial_dir})
    report(final, via_tune)


def tune_trial(params: dict[str, Any], spec: SweepSpec, run: SweepRun, retry_failed: bool = False) -> None:
    """The Tune trainable: sampled ``params`` (namespaced conditional ones included) plus the sweep's fixed
    keys, recorded under Tune's trial id, with ``retry_failed`` (``--resume --retry-failed``) a failed one
    runs again as its next attempt."""
    import ray.tune

    train_in_ray(spec.trial_values(params), ray.tune.get_context().get_trial_id(), spec, run, retry_failed)


def train_in_ray(values: dict[str, Any], row_id: str, spec: SweepSpec, run: SweepRun,
                 retry_failed: bool = False) -> None:
    """One trial's config ``values``, trained as a Ray Train job on the sweep's resources and recorded as
    ``row_id`` (its trial folder and leaderboard row). A sweep's trials and ``confirm``'s runs both train here,
    so a confirmation run trains exactly as a sweep trial does. A run with a leaderboard row has ended: Tune
    restarts one only when a driver was killed before saving that it ended, and then its row stands; or, with
    ``retry_failed``, when its row says ``failed``: then it runs again as its next attempt."""
    import ray.train
    import ray.tune
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from runner import leaderboard

    earlier = leaderboard.read_row(run.results, run.sweep_id, row_id)
    if earlier is not None and not (retry_failed and earlier["status"] == "failed"):
        return
    resources = spec.resources
    loop_config = {"values": values, "workers": resources.workers,
                   "threads": max(1, int(resources.cpu)), "trial_id": row_id,
                   "out_dir": run.trials_dir, "results": run.results, "checkpoint_every": spec.checkpoint_every,
                   "metric": spec.metric, "mode": spec.mode,
                   "attempt": leaderboard.attempt_columns(earlier)["attempts"]}
    workers = resources.workers
    scaling = ray.train.ScalingConfig(num_workers=workers, use_gpu=resources.gpu > 0,
                                      resources_per_worker={"CPU": resources.cpu, "GPU": resources.gpu}
                                      if workers else None)
    # named after Tune's trial id (unique within the experiment, kept by a restore), which the driver's
    # LeaderboardWriter empties when the trial ends
    run_config = ray.train.RunConfig(name=f"{ray.tune.get_context().get_trial_id()}-train",
                                     storage_path=run.train_storage,
                                     checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
                                     callbacks=[TuneReportCallback()] if workers else None)
    TensorflowTrainer(train_loop, train_loop_config=loop_config, scaling_config=scaling,
                      run_config=run_config).fit()


def confirm_trial(params: dict[str, Any], runs: Mapping[str, Mapping[str, Any]], spec: SweepSpec,
                  run: SweepRun) -> None:
    """``confirm``'s trainable: Tune's grid names the run (``params["run"]``), ``runs`` holds its config keys
    by run id; it trains and is recorded under that id, so it keeps its row whichever Tune trial ran it."""
    train_in_ray(dict(runs[params["run"]]), params["run"], spec, run)


def error_line(trial) -> str:
    """The exception line of a failed trial's traceback (``ConfigError: unknown key ...``), the part a user
    acts on; the whole traceback stays in the trial's Tune folder."""
    lines = [line.strip() for line in _error_text(trial).splitlines() if line.strip()]
    return re.sub(r"^[\w.]+\.(\w+):", r"\1:", lines[-1]) if lines else f"trial {trial.trial_id} failed"


def _error_text(trial) -> str:
    """Tune writes a trial's error file on the driver's disk and copies it to storage in the background;
    ``get_error`` reads storage, which does not have a first failure yet when the trial fails for good."""
    local = trial.error_file
    if local and Path(local).is_file():
        return Path(local).read_text(errors="replace")
    return str(trial.get_error() or "")
