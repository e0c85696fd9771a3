"""The sweep's Optuna study, kept in a journal file so ``optuna-dashboard`` opens it and ``--resume`` continues it.

Why a journal file: it is one append-only file (a killed driver leaves at worst a torn last line, which Optuna
skips), Optuna locks it for concurrent writers (safe on NFS), it needs no database server, and
``optuna-dashboard <file>.optuna.log`` reads it directly.

Why a subclass of Ray's ``OptunaSearch``: Tune pickles the searcher into its experiment state at every
scheduler step and restores that pickle on ``--resume``. The journal storage pickles as its file path and
replays the file when unpickled, so the restored searcher sees every trial the killed driver wrote, including
one it *asked* for after the last save: a trial that Tune never learnt about. Left alone such a trial would
stay RUNNING in the study forever while Tune asked for a new one; ``suggest`` hands it to the next Tune trial
instead (its parameters were already drawn, so Optuna returns them), so the study holds exactly one trial per
Tune trial. The restored sampler's random state is as old as the pickle, so it would draw that trial's
parameters once more for the next new trial: ``restore`` reseeds it.

Why a retried trial is a new study trial: ``--retry-failed`` reruns a failed Tune trial under its own id, but
its Optuna trial is FAIL, and Optuna never changes a finished trial's state. The new attempt's first report
(it carries ``attempt``) opens a new study trial with the failed one's parameters and distributions, the
same ``trial_id`` attribute, ``attempt`` and ``retry_of`` (the failed trial's number); from then on it is
that Tune trial's study trial and learns its value as any other does. The FAIL trial stays, as Optuna keeps
every attempt; a study has at most one finished non-FAIL trial per ``trial_id``.

Why trials stopped by ASHA are PRUNED: Tune tells the searcher a stopped trial has "completed" with the value of
its last epoch, which TPE would rank against finished trials' final values as if the trial had run to the end.
Optuna's own pruners record such a trial as PRUNED with its per-epoch (intermediate) values, and TPE ranks
pruned trials by how far they got, then by their value at that step; ``on_trial_complete`` records them so.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from runner import storage
from runner.paths import default_cache_dir
from runner.sweep.record import SweepRun
from runner.sweep.space import startup_trials

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)
STUDY_SUFFIX = ".optuna.log"
#: The Tune trial id on each Optuna trial: the leaderboard's ``trial_id``, so a dashboard trial and a row join.
TRIAL_ID_ATTR = "trial_id"
#: On the study trial of a retried trial's new attempt: the attempt (2, 3...: the row's ``attempts``) and
#: the number of the study trial that failed before it.
ATTEMPT_ATTR = "attempt"
RETRY_OF_ATTR = "retry_of"


def study_file(run: SweepRun) -> Path:
    """``<results>/sweeps/<sweep_id>.optuna.log`` when the results are on a local disk or a shared mount. Results
    on an object store (``s3://``, ``gs://``) cannot hold a file Optuna appends to under a lock, so the study
    stays on the driver's disk, in the cache folder (``$CXR_RUNNER_CACHE/optuna``): resume from that machine."""
    found, path = storage.filesystem(run.results)
    if found is None:
        return Path(path) / "sweeps" / f"{run.sweep_id}{STUDY_SUFFIX}"
    return default_cache_dir() / "optuna" / f"{run.sweep_id}{STUDY_SUFFIX}"


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def load_study(path: Path, study_name: str) -> optuna.Study:
    """The study as a user (or a test) reads it: ``load_study(path, sweep_id).trials_dataframe()``."""
    import optuna

    return optuna.load_study(study_name=study_name, storage=journal_storage(path))


def tpe_sampler(num_samples: int, seed: int) -> optuna.samplers.TPESampler:
    """``searcher: optuna``. Multivariate TPE models the parameters jointly (learning rate and batch size
    interact); ``group=True`` models each set of parameters that occur together separately, which our
    conditional spaces need (``per_model`` / ``per_task`` keys such as ``vgg16.frozen_layers`` exist only in
    some trials; without it multivariate TPE falls back to independent sampling for them). The constant liar
    counts running trials as bad ones, so trials proposed while others run do not all draw the same region.
    ``group`` is experimental in Optuna 5 and says so on every construction: that one warning is silenced."""
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Argument ``group`` is an experimental feature",
                                category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(n_startup_trials=startup_trials(num_samples), multivariate=True,
                                          group=True, constant_liar=True, seed=seed)


def settle_stopped_study(path: Path, study_name: str, ended: Mapping[str, tuple[str, float]]) -> int:
    """Ends the study's RUNNING trials once a ``stop:`` rule ended the sweep, and returns how many. Tune's
    experiment-wide stop terminates the running trials without telling the searcher, so their Optuna trials
    would stay RUNNING for good (and TPE would treat them as running forever). ``ended`` maps each trial with a
    leaderboard row to its status and objective, and the study follows the row: a trial that ran to its end
    (its final report came in beside the one that stopped the sweep) is COMPLETE with the row's objective; one
    stopped mid-run, like an ASHA-stopped one, is pruned with the values it reported; a failed one, or one
    without a row (created but never started), failed, as Optuna's own ``fail_stale_trials`` records trials
    that never ended."""
    import optuna

    State = optuna.trial.TrialState
    study = load_study(path, study_name)
    running = study.get_trials(deepcopy=False, states=(State.RUNNING,))
    for trial in running:
        status, value = ended.get(trial.user_attrs.get(TRIAL_ID_ATTR), ("failed", None))
        if status == "completed":
            study.tell(trial.number, value, state=State.COMPLETE)
        else:
            study.tell(trial.number, state=State.PRUNED if status == "stopped" else State.FAIL)
    return len(running)


class StoredOptunaSearch(OptunaSearch):
    """``OptunaSearch`` over a study in storage that may hold trials the restored searcher never saw."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self._ot_trials:
            unclaimed = self._unclaimed_trial()
            if unclaimed is not None:
                self._ot_trials[trial_id] = unclaimed
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(TRIAL_ID_ATTR, trial_id)
        return params

    def holds(self, trial_id: str) -> bool:
        """Whether the study has a trial for this Tune trial (one it proposed, or restored)."""
        return trial_id in self._ot_trials

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._follow_attempt(trial_id, result)
        super().on_trial_result(trial_id, result)

    def _follow_attempt(self, trial_id: str, result: dict[str, Any] | None) -> None:
        """Opens the study trial of a retried trial's new attempt (see the module docstring) when ``result``
        comes from a later attempt than the trial's study trial, which failed."""
        import optuna

        from runner.sweep.trainable import ATTEMPT_KEY  # imports Keras: not at module level, for ``load_study``

        attempt = (result or {}).get(ATTEMPT_KEY)
        trial = self._ot_trials.get(trial_id)
        if attempt is None or trial is None:
            return
        stored = self._stored(trial)
        if stored.state != optuna.trial.TrialState.FAIL or attempt <= stored.user_attrs.get(ATTEMPT_ATTR, 1):
            return
        template = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, params=stored.params, distributions=stored.distributions,
            user_attrs={**stored.user_attrs, ATTEMPT_ATTR: attempt, RETRY_OF_ATTR: stored.number})
        study = self._ot_study
        self._ot_trials[trial_id] = optuna.Trial(study, study._storage.create_new_trial(study._study_id, template))
        self._completed_trials.discard(trial_id)

    def finished_in_study(self, trial_id: str) -> bool:
        """Whether the study, which is written as each trial ends, already holds this trial's result (COMPLETE,
        PRUNED or FAIL)."""
        trial = self._ot_trials.get(trial_id)
        return trial is not None and self._stored(trial).state.is_finished()

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """A trial that ran to the end is COMPLETE with its final value, a failed one FAIL (as Ray records
        them); one stopped early (ASHA) is PRUNED with its per-epoch values. A trial already finished in the
        study ended before a killed driver saved that; ``--resume`` restarted it and it ended again at once
        (see ``LeaderboardWriter``). Its state and value stand."""
        from runner.sweep.trainable import ran_to_end  # imports Keras: not at module level, for ``load_study``

        self._follow_attempt(trial_id, result)
        if self.finished_in_study(trial_id):
            self._completed_trials.add(trial_id)
            return
        if error or ran_to_end(result):
            super().on_trial_complete(trial_id, result, error)
            return
        self._tell_pruned(trial_id, result or {})

    def _tell_pruned(self, trial_id: str, last: dict[str, Any]) -> None:
        """Tune gives the searcher every epoch's ``objective`` except the one on which the scheduler stopped
        the trial (``on_trial_result`` is skipped for it), so that one is reported here before the trial is
        told PRUNED; Optuna then takes the last reported value as the pruned trial's value. Like Ray's own
        ``tell``, a sampler's complaint is logged, not raised: ``GridSampler`` calls ``study.stop()`` after the
        grid's last point, which raises outside ``study.optimize``, and Optuna has stored the state by then."""
        import optuna
        from ray.tune.result import TRAINING_ITERATION

        trial = self._ot_trials[trial_id]
        step = last.get(TRAINING_ITERATION)
        if self.metric in last and step is not None and step not in self._stored(trial).intermediate_values:
            trial.report(last[self.metric], step)
        try:
            self._ot_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except RuntimeError as error:
            logger.warning(error)
        self._completed_trials.add(trial_id)

    def _stored(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
        """The trial as the study's storage holds it now (a trial object restored from Tune's save caches an
        older copy)."""
        return self._ot_study._storage.get_trial(trial._trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._ot_study.sampler.reseed_rng()

    def _unclaimed_trial(self) -> optuna.Trial | None:
        """A RUNNING trial of the study that no Tune trial holds: asked for by a driver killed before Tune
        saved its state."""
        import optuna

        claimed = {trial._trial_id for trial in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen._trial_id not in claimed:
                return optuna.Trial(self._ot_study, frozen._trial_id)
        return None


class StudyAwareLimiter(ConcurrencyLimiter):
    """Tune's ``ConcurrencyLimiter`` that trusts the study over its own saved state. A driver killed just after
    a trial ends can leave a save in which the limiter still counts that finished trial as live: on resume
    Tune never completes it again, the limiter stays full and the sweep waits forever with nothing running
    (seen in the driver-kill test). Before each suggestion, trials the study has finished are released."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """A trial the limiter no longer counts as live is one ``--retry-failed`` reran (it stopped counting
        it when its first attempt failed): the study is still told, so it learns the retried value."""
        if trial_id not in self.live_trials and self.searcher.holds(trial_id):
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for finished in [live for live in self.live_trials if self.searcher.finished_in_study(live)]:
            self.live_trials.discard(finished)
            self.num_unfinished_live_trials = max(0, self.num_unfinished_live_trials - 1)
        return super().suggest(trial_id)
