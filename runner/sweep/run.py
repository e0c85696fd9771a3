"""The sweep driver: Ray Tune + Optuna + ASHA over a search space, one leaderboard row per trial.

The driver alone writes the leaderboard (a Tune callback, as each trial ends), so rows land as trials
finish and a crash loses nothing finished. Resources are accounted for up front: the number of concurrent
trials never exceeds what the cluster can hold, so no trial waits on resources another one still holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback, CLIReporter

from runner import leaderboard, storage
from runner.errors import ConfigError, StorageError
from runner.paths import CACHE_ENV
from runner.privacy import patient_salt
from runner.sweep.console import LiveView, log_path, say
from runner.sweep.record import SweepRun, find_sweep
from runner.sweep.space import SweepSpec, define_by_run, grid_points, max_concurrent
from runner.sweep.stopping import SweepStopper, trial_end
from runner.sweep.study import (
    StoredOptunaSearch,
    StudyAwareLimiter,
    journal_storage,
    settle_stopped_study,
    study_file,
    tpe_sampler,
)
from runner.sweep.trainable import (
    ATTEMPT_KEY,
    NODE_KEY,
    RESULT_KEY,
    WORST,
    confirm_trial,
    error_line,
    ran_to_end,
    tune_trial,
)
from runner.sweep.warm import warm_column, warm_study

if TYPE_CHECKING:
    import pandas as pd

    from runner.confirm import ConfirmRun

#: Ray Train gives a worker group 60 s to start; a freed placement group can take longer to return its CPUs
#: on a busy 2-core machine, and waiting is right, failing is not.
WORKER_START_TIMEOUT_S = "600"
#: When ASHA stops a trial, a reused trial process must wait for the stopped trial's training thread, which
#: only notices at its next epoch report. Tune waits 2 s by default and then fails the *next* trial ("Could
#: not re-use actor"), after which Ray 2.60 can leave the sweep hanging with nothing running (seen with
#: vgg16 epochs of a few seconds). Waiting up to an hour covers any epoch.
STOPPED_THREAD_TIMEOUT_S = "3600"
#: Tune saves its experiment state (trials + Optuna study) at most every 10 s by default. A trial that
#: finishes and writes its leaderboard row inside that window would be unknown to a resume after a killed
#: driver and be sampled again; saving at every controller step closes the window. The state grows by
#: ~26 KB per trial (measured: 1.3 MB at 50 trials), so above STATE_EVERY_STEP_MAX_TRIALS Tune's own adaptive
#: period is kept (see docs/scaling.md).
STATE_EVERY_STEP_MAX_TRIALS = 500


def experiment_state_period(num_samples: int) -> str:
    return "0" if num_samples <= STATE_EVERY_STEP_MAX_TRIALS else "auto"


class LeaderboardWriter(Callback):
    """A Tune callback that records every trial once it ends: completed, stopped by ASHA, or failed after its
    retries.

    A trial's first row stands. A driver killed after a trial ended (row written) but before Tune saved that
    in its experiment state leaves the trial unfinished in the save, so ``--resume`` starts it again: the
    trainable sees the row and returns at once (``tune_trial``), and its second ending is not recorded, so a
    finished trial is never replaced by a rerun or a failure. Only a failed trial's row is ever replaced:
    by its next attempt, when ``--retry-failed`` runs it again."""

    def __init__(self, run: SweepRun, spec: SweepSpec) -> None:
        self.run = run
        self.spec = spec
        self._written: tuple[str, dict[str, Any] | None] = ("", None)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._record(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._record(trial, failed=True)

    def _row(self, trial, failed: bool) -> dict[str, Any]:
        last = trial.last_result or {}
        if failed:
            values = self.trial_values(trial)
            return leaderboard.failed_row(
                sweep_id=self.run.sweep_id, sweep_name=self.run.name, trial_id=self.row_id(trial),
                task=values.get("task", ""), model=values.get("model", ""), hyperparameters=values,
                error=error_line(trial), node_id=last.get(NODE_KEY))
        if not ran_to_end(last):
            return self._stopped_row(trial, last)
        result = json.loads(last[RESULT_KEY])
        return leaderboard.row_from_result(result, sweep_id=self.run.sweep_id, sweep_name=self.run.name,
                                           node_id=last.get(NODE_KEY), extra={"trial_dir": result.get("trial_dir")},
                                           **self._optimised(result["monitor"]))

    def row_id(self, trial) -> str:
        """The id of the trial's row and folder: Tune's trial id."""
        return trial.trial_id

    def trial_values(self, trial) -> dict[str, Any]:
        """The trial's config keys, which a failed or stopped row records (its ``result.json`` never came)."""
        return self.spec.trial_values(trial.config)

    def columns(self, trial) -> dict[str, Any]:
        """What every row of this run records beyond the trial's own result."""
        return {"warm_start": warm_column(self.spec)}

    def _optimised(self, monitor: str) -> dict[str, str]:
        """The row's ``sweep_metric`` / ``sweep_mode``: what Optuna and ASHA optimised for this trial (its
        task's ``monitor`` under ``metric: objective``), so ranking the sweep's rows uses the same metric."""
        metric = monitor if self.spec.metric == "objective" else self.spec.metric
        return {"sweep_metric": metric, "sweep_mode": self.spec.mode}

    def written_row(self, trial_id: str) -> dict[str, Any] | None:
        """The row just written for this trial, which ``--mlflow`` logs (its callback runs right after this
        one); None for a trial recorded before a resume."""
        written_for, row = self._written
        return row if written_for == trial_id else None

    def _record(self, trial, failed: bool) -> None:
        """Writes the ended trial's row, then empties its checkpoints: it is never resumed and its best model
        is in its trial folder, while its checkpoints (Tune's, and in Ray Train mode its Train run's) would
        keep a model and optimizer state per trial. Tune's checkpoint folder itself stays: Tune refuses to
        restart a trial whose checkpoint is gone, and a killed driver's save may still list this trial as
        running. A row that cannot be written (read-only or full disk) raises ``StorageError``, which stops
        the sweep. A new attempt of a failed trial (``--retry-failed``) replaces its row, atomically
        (``write_row``), carrying the failed attempts' errors (``attempt_columns``)."""
        row = None
        earlier = leaderboard.read_row(self.run.results, self.run.sweep_id, self.row_id(trial))
        if earlier is not None and not self._new_attempt(earlier, trial, failed):
            say(f"trial {self.row_id(trial)} had ended before the sweep was interrupted: its row stands")
        else:
            row = {**self._row(trial, failed), **self.columns(trial), **leaderboard.attempt_columns(earlier)}
            leaderboard.write_row(self.run.results, row)
        self._written = (trial.trial_id, row)
        if trial.checkpoint is not None:
            trial.checkpoint.filesystem.delete_dir_contents(trial.checkpoint.path, missing_dir_ok=True)
        storage.remove_folder(storage.join(self.run.train_storage, f"{trial.trial_id}-train"))

    @staticmethod
    def _new_attempt(earlier: dict[str, Any], trial, failed: bool) -> bool:
        """Whether this ending is a new attempt of a trial whose row says it failed: it failed again (Tune
        reports an error only for a run that happened), or its last report comes from a later attempt than the
        row's. A trial restarted only because a killed driver had not saved that it ended returns at once
        (``tune_trial``), its last report still the recorded attempt's: its row stands."""
        if earlier["status"] != "failed":
            return False
        return failed or (trial.last_result or {}).get(ATTEMPT_KEY, 1) > (earlier.get("attempts") or 1)

    def _stopped_row(self, trial, last: dict[str, Any]) -> dict[str, Any]:
        """A trial ASHA stopped: its last epoch's validation metrics, no test metrics (never evaluated)."""
        from runner.config import make_config
        from runner.tasks import TASKS

        config = make_config(self.trial_values(trial))
        task = TASKS.get(config.task)
        result = {"trial_id": self.row_id(trial), "task": config.task, "model": config.model,
                  "config": config.to_dict(), "hyperparameters": config.hyperparameters(),
                  "metrics": {"val": {k[4:]: v for k, v in last.items() if k.startswith("val_")}},
                  "monitor": task.monitor, "mode": task.mode, "epochs_run": last.get("epoch", 0),
                  "stopped_early": True, "train_seconds": last.get("time_total_s"), **_report_times(last)}
        return leaderboard.row_from_result(result, sweep_id=self.run.sweep_id, sweep_name=self.run.name,
                                           status="stopped", node_id=last.get(NODE_KEY),
                                           **self._optimised(task.monitor))


class ConfirmWriter(LeaderboardWriter):
    """``confirm``'s rows: each named by its run (``runner.confirm.run_id``), not by the Tune trial that ran
    it, with ``confirm_of``, the original trial it repeats."""

    def __init__(self, run: SweepRun, spec: SweepSpec, runs: Mapping[str, ConfirmRun]) -> None:
        super().__init__(run, spec)
        self.runs = dict(runs)

    def row_id(self, trial) -> str:
        return trial.config["run"]

    def trial_values(self, trial) -> dict[str, Any]:
        return dict(self.runs[self.row_id(trial)].values)

    def columns(self, trial) -> dict[str, Any]:
        return {"confirm_of": self.runs[self.row_id(trial)].confirm_of}


def _report_times(last: dict[str, Any]) -> dict[str, str]:
    """Start and end of a stopped trial from its last Tune report (``timestamp`` is when it was made), so
    stopped rows sort among the others by time."""
    if last.get("timestamp") is None:
        return {}
    end = float(last["timestamp"])
    start = end - float(last.get("time_total_s") or 0.0)
    return {"started_at": datetime.fromtimestamp(start, timezone.utc).isoformat(),
            "finished_at": datetime.fromtimestamp(end, timezone.utc).isoformat()}


def stop_ray() -> None:
    """Ray shut down once a command is done with it: it forwards workers' output for a while after the last
    trial, which belongs in the log (``SweepConsole``), not after the summary."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def init_ray(address: str | None, printer: Callable[[str], None]) -> None:
    """Join a cluster (``--address`` or ``RAY_ADDRESS``), or start Ray on this machine, dashboard on
    localhost only."""
    import ray

    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": WORKER_START_TIMEOUT_S,
           "TUNE_FUNCTION_THREAD_TIMEOUT_S": STOPPED_THREAD_TIMEOUT_S}
    if CACHE_ENV in os.environ:
        env[CACHE_ENV] = os.environ[CACHE_ENV]
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", WORKER_START_TIMEOUT_S)
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=os.cpu_count(), dashboard_host="127.0.0.1", include_dashboard=False,
                 runtime_env={"env_vars": env}, configure_logging=False)
        restrict_token_file()
    resources = ray.cluster_resources()
    printer(f"ray: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")


def restrict_token_file() -> None:
    """Ray 2.60 writes its auth token (``~/.ray/auth_token``) readable by every local user, who could then call
    this machine's Ray; only its owner needs it (Ray's processes run as the same user)."""
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file() and token.stat().st_uid == os.getuid():
        token.chmod(0o600)


#: What a trial process that only coordinates Ray Train workers reserves: memory, not a CPU. A fraction of a
#: CPU looks harmless but on a 2-core machine 0.01 + 2 workers x 1 CPU never fits, and the sweep would wait
#: forever; Tune refuses a trial that asks for nothing at all.
COORDINATOR_MEMORY = 256 * 2**20


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """Per trial: what the trial process holds. In local mode it trains, so it holds the CPUs/GPUs; with
    Ray Train workers it only coordinates (the workers hold theirs)."""
    if spec.resources.workers:
        return {"cpu": 0, "gpu": 0, "memory": COORDINATOR_MEMORY}
    return {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}


def check_gpu(spec: SweepSpec, available_gpus: float, cluster: bool, printer: Callable[[str], None]) -> None:
    """Checks a GPU request before any trial starts. On this machine a GPU-less Ray asked for GPUs would
    leave every trial pending forever: an error. A cluster may still grow GPU nodes (the autoscaler starts
    them for pending trials): a warning."""
    if spec.resources.gpu <= available_gpus:
        return
    message = f"resources.gpu={spec.resources.gpu:g} per trial but the cluster has {available_gpus:g} GPUs"
    if not cluster:
        raise ConfigError(f"{spec.source}: {message}: set resources.gpu=0 (--set resources.gpu=0) or add GPU "
                          "nodes")
    printer(f"warning: {message} now; trials wait until the autoscaler adds GPU nodes")


def _searcher(spec: SweepSpec, run: SweepRun):
    """Optuna over the sweep's study file (named after the sweep id), which ``optuna-dashboard`` opens. It
    optimises ``objective``, which each trial reports as the sweep's ``metric`` (``epoch_metrics``), in the
    sweep's ``mode``; ``searcher: optuna`` is TPE sized to the sweep's budget (``tpe_sampler``)."""
    import optuna

    samplers = {"random": lambda: optuna.samplers.RandomSampler(seed=spec.seed),
                "grid": lambda: optuna.samplers.GridSampler(grid_points(spec), seed=spec.seed),
                "optuna": lambda: tpe_sampler(spec.num_samples, spec.seed)}
    sampler = samplers[spec.searcher]()
    return StoredOptunaSearch(space=define_by_run(spec), metric="objective", mode=spec.mode, sampler=sampler,
                              study_name=run.sweep_id, storage=journal_storage(study_file(run)))


#: How often the trial table is printed while nothing ends (it is also printed when the sweep ends).
PROGRESS_EVERY_S = 30


def progress_reporter(spec: SweepSpec) -> CLIReporter:
    """Tune's trial table trimmed to what a user watches: status, the sampled parameters (short names), the
    epoch and the validation metric being optimised. Tune's default output engine prints a 20-line result
    box per finished trial and ignores a ``progress_reporter``; ``run_sweep`` selects the engine that uses it
    (``RAY_AIR_NEW_OUTPUT=0``). No metric is given, so Tune prints no "current best trial" line: that line
    looks up every parameter column in the best trial's config and raises on a conditional (``per_model``)
    parameter the best trial's model does not have, which ended ``sweep transfer`` mid-run; the table's
    rows leave such a cell empty, and the leaderboard printed at the end ranks the trials."""
    names = [*spec.space, *(f"{owner}.{key}" for block in (spec.per_model, spec.per_task)
                            for owner, params in block.items() for key in params)]
    shown = [name for name, values in (("task", spec.tasks), ("model", spec.models)) if len(values) > 1]
    return CLIReporter(parameter_columns={name: name.rsplit(".", 1)[-1] for name in [*shown, *names]},
                       metric_columns={"epoch": "epoch", "objective": spec.metric},
                       max_report_frequency=PROGRESS_EVERY_S)


def _scheduler(spec: SweepSpec, epochs: int):
    """ASHA on ``objective`` (the sweep's ``metric``, as for the searcher) in the sweep's ``mode``, or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", metric="objective", mode=spec.mode,
                         max_t=spec.scheduler.reports(epochs),
                         grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor)


def _trainable(spec: SweepSpec, run: SweepRun, retry_failed: bool = False):
    """The trial function with the sweep's typed spec and run (frozen dataclasses, not a dict of their
    fields); a restored sweep gets a new one, so ``retry_failed`` is chosen by each ``--resume``."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(tune_trial, spec=spec, run=run, retry_failed=retry_failed),
                               trial_resources(spec))


def _callbacks(run: SweepRun, spec: SweepSpec, printer: Callable[[str], None]) -> list[Callback]:
    """The leaderboard writer, then (``--mlflow``) the MLflow logger, which logs the same rows, then the live
    view (``runner.sweep.console``), which shows them. The MLflow experiment is checked here, before any
    trial runs. A restored sweep gets the callbacks (and the progress
    reporter) it was started with from Tune's ``tuner.pkl``."""
    writer = LeaderboardWriter(run, spec)
    view = LiveView(spec, log_path(run), writer)
    if not run.mlflow:
        return [writer, view]
    from runner.sweep.tracking import MLflowLogger, open_experiment

    open_experiment(run.mlflow, run.name)
    printer(f"mlflow: one run per trial in experiment '{run.name}' at {run.mlflow}")
    return [writer, MLflowLogger(run.mlflow, run.name, run.sweep_id, writer.written_row), view]


def _stopping(run: SweepRun, spec: SweepSpec, callbacks: list[Callback]) -> dict[str, Any]:
    """``RunConfig``'s ``callbacks`` and ``stop``: with ``stop:`` in the space, one ``SweepStopper`` is both
    Tune's stopper and the last callback (it reads the row the leaderboard writer has just written)."""
    if not spec.stop.active:
        return {"callbacks": callbacks}
    stopper = SweepStopper(spec.stop, spec.mode, run, callbacks)
    return {"callbacks": [*callbacks, stopper], "stop": stopper}


def storage_failure(error: BaseException | None) -> StorageError | None:
    """A leaderboard row that could not be written, inside the ``TuneError`` Tune raises for an exception in
    a callback (Tune keeps it as the context of its own): the driver shows that one line, not Tune's
    traceback."""
    while error is not None:
        if isinstance(error, StorageError):
            return error
        error = error.__cause__ or error.__context__
    return None


def retry_line(board) -> str:
    """What ``--retry-failed`` is about to rerun, said once before the trials start."""
    failed = board[board["status"] == "failed"] if len(board) else board
    if not len(failed):
        return "retry: no failed trials to run again"
    return f"retry: running {len(failed)} failed trial(s) again: {', '.join(failed['trial_id'])}"


@dataclass(frozen=True)
class SweepOutcome:
    rows: int
    interrupted: bool
    stopped: str | None = None  # why ``stop:`` ended the sweep early


def _start_ray(spec: SweepSpec, address: str | None, printer: Callable[[str], None], trials: int) -> None:
    """Ray joined or started, Tune's state saved as often as ``trials`` allows, the GPU request checked, and
    the trial table printed by the output engine that honours a ``progress_reporter``."""
    import ray

    init_ray(address, printer)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", experiment_state_period(trials))
    check_gpu(spec, ray.cluster_resources().get("GPU", 0), cluster=bool(address or os.environ.get("RAY_ADDRESS")),
              printer=printer)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def _fit(tuner):
    """``tuner.fit()``; a leaderboard row that could not be written is raised as its own one line."""
    try:
        return tuner.fit()
    except Exception as error:
        failure = storage_failure(error)
        if failure is None:
            raise
        raise failure from None


def run_sweep(spec: SweepSpec, run: SweepRun, *, address: str | None = None, resume: bool = False,
              retry_failed: bool = False, printer: Callable[[str], None] = print) -> SweepOutcome:
    """Run (or resume) a sweep. Ctrl-C does not raise: Tune catches it, saves its state one last time and
    returns, so the outcome says whether every trial ended (completed, stopped or failed). ``retry_failed``
    (with ``resume``): the trials that ended ``failed`` run again, same configuration and trial id (Tune
    resumes its errored trials); without it a resume leaves them failed."""
    import ray
    from ray import tune

    _start_ray(spec, address, printer, spec.num_samples)
    run = run if run.started_at else replace(run, started_at=datetime.now(timezone.utc).isoformat())
    run.save()
    patient_salt(run.results)  # made here, before trials start at once: an object store cannot make it atomically
    trainable = _trainable(spec, run, retry_failed)
    path = storage.join(run.storage, run.sweep_id)
    if resume and tune.Tuner.can_restore(path):
        if retry_failed:
            printer(retry_line(leaderboard.load(run.results, sweep=run.sweep_id)))
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=retry_failed)
    else:
        epochs = int(spec.fixed.get("epochs", 10))
        search = _searcher(spec, run)
        warm_study(search._ot_study, spec, run.results, printer)  # before the study proposes anything
        searcher = StudyAwareLimiter(search, max_concurrent(spec, ray.cluster_resources()))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec, epochs),
                                        num_samples=spec.num_samples, reuse_actors=True),
            run_config=tune.RunConfig(name=run.sweep_id, storage_path=run.storage,
                                      **_stopping(run, spec, _callbacks(run, spec, printer)),
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      progress_reporter=progress_reporter(spec), verbose=1),
        )
    printer(f"sweep {run.sweep_id}: {spec.num_samples} trials of {', '.join(spec.models)} on "
            f"{', '.join(spec.tasks)}; leaderboard in {run.results}/leaderboard/{run.sweep_id}")
    printer(f"optuna study: optuna-dashboard {study_file(run)}")
    sys.stdout.flush()
    grid = _fit(tuner)
    ended = grid.num_terminated + grid.num_errors
    stopped = find_sweep(run.results, run.name, run.sweep_id).stopped
    board = leaderboard.load(run.results, sweep=run.sweep_id)
    if stopped:
        settle_stopped_study(study_file(run), run.sweep_id, row_ends(board, spec.mode))
    return SweepOutcome(rows=len(board),
                        interrupted=ended < spec.num_samples and not stopped,
                        stopped=stopped["reason"] if stopped else None)


def row_ends(board: pd.DataFrame, mode: str) -> dict[str, tuple[str, float]]:
    """Each recorded trial's status and the objective its final report gives Optuna (``final_metrics``: the
    row's value of the sweep's metric as the stop rule reads it, ``trial_end``; the worst value where that is
    undefined)."""
    ends = map(trial_end, board.to_dict("records"))
    return {end.trial_id: (end.status, WORST[mode] if end.value is None else end.value) for end in ends}


def run_confirm(spec: SweepSpec, run: SweepRun, runs: Mapping[str, ConfirmRun], *, address: str | None = None,
                printer: Callable[[str], None] = print) -> bool:
    """Train ``confirm``'s ``runs`` (``runner.confirm``) as a Ray Tune grid, one trial per run without a row
    yet, on the original sweep's resources, concurrency and retries (``spec``), FIFO: there is nothing to
    search or stop early. ``run`` is the confirmation's sweep (its id, results and Tune storage); no sweep
    record is written for it (``confirm`` rebuilds everything from the original sweep).

    The Tune experiment is named by the set of runs, so the same command given again after an interruption
    restores it and continues its unfinished runs from their checkpoints, as ``sweep --resume`` does; another
    ``--top`` / ``--seeds`` is another experiment. Returns whether every run has its row (False: interrupted)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    _start_ray(spec, address, printer, len(runs))
    patient_salt(run.results)
    values = {run_id: dict(each.values) for run_id, each in runs.items()}
    trainable = tune.with_resources(tune.with_parameters(confirm_trial, runs=values, spec=spec, run=run),
                                    trial_resources(spec))
    digest = hashlib.sha256("\n".join(sorted(runs)).encode()).hexdigest()[:8]
    experiment = f"{run.sweep_id}-{digest}"
    path = storage.join(run.storage, experiment)
    if tune.Tuner.can_restore(path):
        printer(f"resuming {experiment}")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True)
    else:
        missing = sorted(run_id for run_id in runs if leaderboard.read_row(run.results, run.sweep_id, run_id) is None)
        writer = ConfirmWriter(run, spec, runs)
        reporter = CLIReporter(parameter_columns={"run": "run"},
                               metric_columns={"epoch": "epoch", "objective": spec.metric},
                               max_report_frequency=PROGRESS_EVERY_S)
        tuner = tune.Tuner(
            trainable, param_space={"run": tune.grid_search(missing)},
            tune_config=tune.TuneConfig(scheduler=FIFOScheduler(), reuse_actors=True,
                                        max_concurrent_trials=max_concurrent(spec, ray.cluster_resources())),
            run_config=tune.RunConfig(name=experiment, storage_path=run.storage,
                                      callbacks=[writer, LiveView(spec, log_path(run), writer, len(missing))],
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      progress_reporter=reporter, verbose=1))
    printer(f"confirmation runs in {run.results}/leaderboard/{run.sweep_id}")
    sys.stdout.flush()
    grid = _fit(tuner)
    unrecorded = [run_id for run_id in runs if leaderboard.read_row(run.results, run.sweep_id, run_id) is None]
    if unrecorded and grid.num_terminated + grid.num_errors == len(grid):
        raise ConfigError(f"{len(unrecorded)} confirmation run(s) have no row although their Tune experiment "
                          f"ended ({unrecorded[0]}, ...: rows removed by hand?): delete {path} to train them again")
    return not unrecorded
