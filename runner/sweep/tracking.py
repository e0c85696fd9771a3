"""``--mlflow URI``: one MLflow run per trial, logged by the driver when the trial ends.

Why not Ray's ``MLflowLoggerCallback``: it logs Tune's sampled config (``baseline.filters``), not the
hyper-parameters the trial actually used (``weights: auto`` resolved, defaults filled), and its artifacts are
Tune's trial folder, not ours (model, plots, predictions). This callback logs what the leaderboard row says:
the same parameters, the same final metrics, the trial folder's plots and JSON files, and the per-epoch
validation metrics the trial reported (as ``epoch/<name>``, so ``val_f1`` is the leaderboard's value and
``epoch/val_f1`` its history). A trial is logged once, when its leaderboard row is written.

MLflow is optional (``pip install "cxr-runner[mlflow]"``); a run that cannot be logged (a tracking server
gone away) prints a warning and the sweep goes on: the leaderboard stays the record.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ray.tune import Callback

from runner import storage
from runner.errors import ConfigError
from runner.sweep.console import say

#: Files of a trial folder logged as artifacts: plots, result.json and friends, the resolved config.
ARTIFACT_PATTERNS = ("*.png", "*.json", "config.yaml")
#: MLflow's ``log_batch`` takes at most 1000 metrics a call.
METRICS_PER_BATCH = 1000
_RUN_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "failed": "FAILED"}


def open_experiment(uri: str, name: str) -> str:
    """The id of MLflow experiment ``name`` at ``uri`` (created if new), or a ConfigError saying what is wrong
    before any trial runs. A ``sqlite:///`` store keeps artifacts beside its database file (MLflow's default,
    ``./mlruns``, would depend on the folder the sweep was started from)."""
    client_class = _client_class()
    try:
        client = client_class(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    except Exception as error:  # MLflow raises its own, SQLAlchemy's or requests' errors
        raise ConfigError(f"--mlflow {uri}: {_first_line(error)}: use sqlite:///PATH/mlflow.db or a tracking "
                          "server http://HOST:PORT") from None


def _client_class():
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError('--mlflow needs MLflow: pip install "cxr-runner[mlflow]"') from None
    return MlflowClient


def _artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("mlartifacts").as_uri()
    return None


def _first_line(error: BaseException) -> str:
    """The error's first sentence: MLflow's messages run to a paragraph."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line.split(". ", 1)[0]


class MLflowLogger(Callback):
    """A Tune callback: per-epoch reports collected in memory, one MLflow run written when a trial ends.

    ``written_row(trial_id)`` gives the row the leaderboard writer just wrote (None when the trial was
    recorded before a resume), so MLflow and the leaderboard never disagree."""

    def __init__(self, uri: str, experiment: str, sweep_id: str,
                 written_row: Callable[[str], dict[str, Any] | None]) -> None:
        self.uri = uri
        self.experiment = experiment
        self.sweep_id = sweep_id
        self.written_row = written_row
        self._history: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self._experiment_id: str | None = None
        self._mlflow = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment (``tuner.pkl``); the client and the history are this
        process's."""
        return {**self.__dict__, "_history": {}, "_experiment_id": None, "_mlflow": None}

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._history[trial.trial_id] = []  # a retried trial starts its history again

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if "epoch" in result and "result_json" not in result:  # the final report repeats the best epoch
            epoch = {k: float(v) for k, v in result.items() if _is_epoch_metric(k, v)}
            self._history.setdefault(trial.trial_id, []).append((int(result["epoch"]), epoch))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._log(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._log(trial)

    def _log(self, trial) -> None:
        history = self._history.pop(trial.trial_id, [])
        row = self.written_row(trial.trial_id)
        if row is None:  # recorded before a resume: logged then, if the killed driver got that far
            return
        try:
            self.log_row(row, history)
        except Exception as error:  # the leaderboard is the record; MLflow trouble must not end the sweep
            say(f"warning: MLflow: trial {trial.trial_id} not logged to {self.uri}: {_first_line(error)}")

    def log_row(self, row: dict[str, Any], history: list[tuple[int, dict[str, float]]]) -> str:
        """One trial as one MLflow run; returns the run id."""
        from mlflow.entities import Metric, Param

        if self._mlflow is None:
            self._experiment_id = open_experiment(self.uri, self.experiment)
            self._mlflow = _client_class()(tracking_uri=self.uri)
        client = self._mlflow
        run = client.create_run(self._experiment_id, run_name=row["trial_id"], tags=_tags(row))
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in _final_metrics(row).items()]
        metrics += [Metric(f"epoch/{key}", value, now, step) for step, values in history
                    for key, value in values.items()]
        params = [Param(key, _param_text(value)) for key, value in _params(row).items()]
        for start in range(0, max(len(metrics), 1), METRICS_PER_BATCH):
            client.log_batch(run.info.run_id, metrics=metrics[start:start + METRICS_PER_BATCH],
                             params=params if start == 0 else [])
        for path in _artifacts(row.get("trial_dir")):
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id, status=_RUN_STATUS[row["status"]])
        return run.info.run_id


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_epoch_metric(key: str, value: Any) -> bool:
    return (key.startswith("val_") or key in ("loss", "objective")) and _is_number(value)


def _tags(row: dict[str, Any]) -> dict[str, str]:
    keys = ("sweep_id", "sweep_name", "trial_id", "status", "task", "model", "trial_dir", "node_id", "error")
    return {key: str(row[key]) for key in keys if row.get(key) is not None}


def _params(row: dict[str, Any]) -> dict[str, Any]:
    """The trial's hyper-parameters as the leaderboard has them (``hp_*`` without the prefix), task and model."""
    params = {key[3:]: value for key, value in row.items() if key.startswith("hp_") and _present(value)}
    return {"task": row["task"], "model": row["model"], **params}


def _param_text(value: Any) -> str:
    """``32``, not ``32.0``: numeric leaderboard columns are floats, the configs said integers."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _final_metrics(row: dict[str, Any]) -> dict[str, float]:
    """Every numeric metric column of the row (``val_*``, ``test_*``, ``external_test_*``) and the costs."""
    from runner.leaderboard import SPLITS

    keys = [k for k in row if k.startswith(tuple(f"{split}_" for split in SPLITS))]
    return {key: float(row[key]) for key in [*keys, "epochs_run", "train_seconds", "images_per_second"]
            if _is_number(row.get(key))}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _artifacts(trial_dir: str | None) -> Iterator[Path]:
    """The trial folder's plots and JSON files, when the folder is on this machine's file system (on an object
    store the run's ``trial_dir`` tag says where they are)."""
    if not trial_dir:
        return
    found, path = storage.filesystem(trial_dir)
    if found is not None or not Path(path).is_dir():
        return
    for pattern in ARTIFACT_PATTERNS:
        yield from sorted(Path(path).glob(pattern))
