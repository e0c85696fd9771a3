"""What runs inside one Ray Tune trial: a Ray Train job around ``run_trial``.

With ``resources.workers: 0`` (local mode, the default on one machine) the ``TensorflowTrainer`` runs the
training function in the trial's own process: no worker actor to start per trial, and with Tune reusing
trial actors TensorFlow is imported once per actor, not once per trial. Ray Train's callbacks do not fire in
local mode and ``ray.train.report`` raises inside Tune, so epochs are reported with ``ray.tune.report``.
With ``workers: 1`` the trial starts one Ray Train worker (placed by Ray Train, e.g. on a GPU node) that
reports with ``ray.train.report``; the ``TuneReportCallback`` forwards its reports to Tune. Several GPUs in
one trial train data-parallel with ``MirroredStrategy``; several workers per trial are refused when the
sweep loads (Keras 3 cannot train under MultiWorkerMirroredStrategy).

Every epoch reports ``objective`` (the task's validation metric) and all ``val_*`` metrics, so ASHA stops
poor trials on the numbers the leaderboard ranks by; the last report carries the whole ``result.json``
(``result_json``) for the driver, which alone writes the leaderboard.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner import storage
from runner.checkpoint import Checkpointing, TrainingState

RESULT_KEY = "result_json"
NODE_KEY = "node_id"


def epoch_metrics(logs: Mapping[str, Any], monitor: str, epoch: int) -> dict[str, Any]:
    """The per-epoch report: finite floats only (Tune's schedulers compare them)."""
    report = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}
    value = logs.get(monitor)
    report["objective"] = float(value) if value is not None and math.isfinite(float(value)) else 0.0
    report["epoch"] = epoch + 1
    return report


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

    from runner.checkpoint import load_state

    checkpoint = ray.tune.get_checkpoint() if via_tune else ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="cxr-resume-"))
    try:
        checkpoint.to_directory(str(folder))
        yield load_state(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one trial's training, in the trial process (local mode) or on
    its one Ray Train worker."""
    import tensorflow as tf

    from runner.config import make_config
    from runner.task import TASKS
    from runner.trial import run_trial

    use_threads(tf, loop_config["threads"])
    config = make_config(loop_config["values"])
    via_tune = loop_config["workers"] == 0
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else None  # a multi-GPU trial: data parallel
    shared = loop_config["out_dir"]
    out_dir = Path(tempfile.mkdtemp(prefix="cxr-trial-")) if storage.is_uri(shared) else Path(shared)
    monitor = TASKS.get(config.task).monitor

    def publish(checkpoint: Path | None, epoch: int, logs: dict[str, Any]) -> None:
        report(epoch_metrics(logs, monitor, epoch), via_tune, checkpoint)

    try:
        with restored_state(via_tune) as resume:
            result = run_trial(config, out_dir, trial_id=loop_config["trial_id"], verbose=False, strategy=strategy,
                               checkpointing=Checkpointing(publish, resume, loop_config["checkpoint_every"]))
        trial_dir = str(result.directory)
        if storage.is_uri(shared):  # built on local disk, uploaded whole to the shared results
            trial_dir = storage.join(shared, result.trial_id)
            storage.upload_folder(result.directory, trial_dir)
    finally:
        if storage.is_uri(shared):
            shutil.rmtree(out_dir, ignore_errors=True)
    final = epoch_metrics({**_flat_val(result.result), monitor: _monitored(result.result, monitor)}, monitor,
                          result.result["epochs_run"] - 1)  # the last epoch trained, 0-based as Keras counts
    final[RESULT_KEY] = json.dumps({**result.result, "trial_dir": trial_dir})
    report(final, via_tune)


def use_threads(tf, threads: int) -> None:
    """TensorFlow on as many threads as the CPUs Ray gave this trial (else every concurrent trial would
    spawn a thread per core and they would fight)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # a reused process: TensorFlow was configured by its first trial


def _flat_val(result: dict[str, Any]) -> dict[str, Any]:
    return {f"val_{k}": v for k, v in result["metrics"]["val"].items()}


def _monitored(result: dict[str, Any], monitor: str) -> Any:
    return result["metrics"]["val"].get(monitor.removeprefix("val_"))


def tune_trial(params: dict[str, Any], sweep: dict[str, Any]) -> None:
    """The Tune trainable: sampled ``params`` (namespaced conditional ones included) plus the sweep's fixed
    keys, run as a Ray Train job."""
    import ray.train
    import ray.tune
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from runner import leaderboard

    context = ray.tune.get_context()
    if leaderboard.has_row(sweep["results"], sweep["sweep_id"], context.get_trial_id()):
        return  # it ended before a killed driver saved that, and ``--resume`` restarted it: its row stands
    loop_config = {"values": sweep["spec"].trial_values(params), "workers": sweep["workers"],
                   "threads": max(1, int(sweep["cpu"])), "trial_id": context.get_trial_id(),
                   "out_dir": sweep["trials_dir"], "checkpoint_every": sweep["checkpoint_every"]}
    workers = sweep["workers"]
    scaling = ray.train.ScalingConfig(num_workers=workers, use_gpu=sweep["gpu"] > 0,
                                      resources_per_worker={"CPU": sweep["cpu"], "GPU": sweep["gpu"]}
                                      if workers else None)
    run_config = ray.train.RunConfig(name=f"{context.get_trial_id()}-train", storage_path=sweep["train_storage"],
                                     checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
                                     callbacks=[TuneReportCallback()] if workers else None)
    TensorflowTrainer(train_loop, train_loop_config=loop_config, scaling_config=scaling,
                      run_config=run_config).fit()
