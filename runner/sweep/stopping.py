"""A sweep that knows when to stop: ``stop:`` in the search space (``patience``, ``target``, ``time_budget_s``).

``StopRule`` decides, from the ended trials in the order they ended, whether the sweep has done its job:

* ``patience``: that many ended trials in a row brought no improvement of more than ``min_delta`` in the
  objective (strictly more, as Keras's ``EarlyStopping`` counts, so an equal score is no improvement). Only a
  ``completed`` trial can improve: its final objective is the one the leaderboard ranks. A trial ASHA stopped
  ended without improving (it counts toward patience) and its value is a lower rung's, never an improvement;
  a failed trial counts the same way.
* ``target``: a completed trial's objective reached the target (``>=`` when ``mode`` is max, ``<=`` for min).
* ``time_budget_s``: wall time since the sweep first started (``started_at`` in its sweep record). A resumed
  sweep keeps that start, so the time before an interruption counts, and so does the time it lay stopped.

The rule is fed leaderboard rows, never pickled state: at every start, resume included, it is rebuilt from
the sweep's rows (the truth about which trials ended and how), then fed each row as the trial ends.

``SweepStopper`` applies the rule in Tune, as the experiment's ``Stopper`` and a ``Callback`` at once (one
object, so both roles share the rule; on ``--resume`` Tune restores the two roles as two copies, and the
stopper copy defers to the callback Tune set up). When the rule says stop, the trials still running are
stopped, not waited for (a time budget is a budget): each gets a ``stopped`` row from its last report, as an
ASHA-stopped trial does, and ``stop_all`` then ends the experiment, so Tune starts no further trial (pending
ones are dropped unstarted). Tune's ``stop_all`` path terminates live trials without calling any callback
(``TuneController._stop_experiment_if_needed``), so the stopper writes those rows itself, through the same
leaderboard writer, before Tune terminates them and saves its state. The reason is written to the sweep
record, so ``--resume`` says the sweep is done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.stopper import Stopper

from runner.sweep.console import say
from runner.sweep.record import SweepRun, find_sweep

if TYPE_CHECKING:
    from runner.sweep.space import Stop


@dataclass(frozen=True)
class TrialEnd:
    """What the rule needs of one ended trial: its status and its objective (None when it has none)."""

    trial_id: str
    status: str
    value: float | None


@dataclass(frozen=True)
class Reason:
    """Why a sweep stopped early: the ``stop`` key that fired and the sentence the summary prints."""

    rule: str
    text: str


def trial_end(row: Mapping[str, Any]) -> TrialEnd:
    """A leaderboard row as the rule sees it: the value of the column the sweep optimised (``sweep_metric``,
    the trial's ``objective``), or None for a failed trial or a NaN score."""
    metric = row.get("sweep_metric")
    value = row.get(metric) if isinstance(metric, str) else None
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    return TrialEnd(str(row["trial_id"]), str(row["status"]), number if math.isfinite(number) else None)


def ended_in_order(rows: Iterable[Mapping[str, Any]]) -> list[TrialEnd]:
    """Rows in the order their trials ended (``finished_at``; a row without one last), as the rule saw them."""
    def key(row: Mapping[str, Any]) -> tuple[bool, float, str]:
        finished = row.get("finished_at")
        stamp = finished.timestamp() if isinstance(finished, datetime) and finished == finished else math.inf
        return stamp == math.inf, stamp, str(row["trial_id"])

    return [trial_end(row) for row in sorted(rows, key=key)]


class StopRule:
    """The stopping decision over a sequence of ended trials; ``reason`` is set once and never cleared."""

    def __init__(self, stop: Stop, mode: str, started_at: float, clock: Callable[[], float] = time.time) -> None:
        self.stop = stop
        self.mode = mode
        self.started_at = started_at
        self.clock = clock
        self.best: TrialEnd | None = None
        self.without_improvement = 0
        self.reason: Reason | None = None

    def record(self, end: TrialEnd) -> Reason | None:
        """Counts one ended trial; returns the reason to stop, if the sweep should stop now."""
        if self.reason is not None:
            return self.reason
        counts = end.status == "completed" and end.value is not None
        if counts and self._improves(end.value):
            self.best, self.without_improvement = end, 0
        else:
            self.without_improvement += 1
        if counts and self.stop.target is not None and self._reaches(end.value, self.stop.target):
            self.reason = Reason("target", f"target {self.stop.target:g} reached by trial {end.trial_id} "
                                           f"({end.value:.4g})")
        elif self.stop.patience is not None and self.without_improvement >= self.stop.patience:
            self.reason = Reason("patience", self._patience_text())
        return self.reason

    def check_clock(self) -> Reason | None:
        """The reason to stop (the time budget's, once ``time_budget_s`` has passed since the sweep started)."""
        budget = self.stop.time_budget_s
        if self.reason is None and budget is not None and self.clock() - self.started_at >= budget:
            self.reason = Reason("time_budget_s", f"time budget {budget:g} s used")
        return self.reason

    def _improves(self, value: float) -> bool:
        if self.best is None or self.best.value is None:
            return True
        delta = self.stop.min_delta
        return value - delta > self.best.value if self.mode == "max" else value + delta < self.best.value

    def _reaches(self, value: float, target: float) -> bool:
        return value >= target if self.mode == "max" else value <= target

    def _patience_text(self) -> str:
        by = f" of more than {self.stop.min_delta:g}" if self.stop.min_delta else ""
        best = (f"best {self.best.value:.4g}, trial {self.best.trial_id}" if self.best and self.best.value is not None
                else "no trial completed")
        return f"no improvement{by} in the last {self.without_improvement} trials ({best})"


def started_at(run: SweepRun) -> float:
    """The sweep's first start (its record's ``started_at``) in epoch seconds."""
    moment = datetime.fromisoformat(run.started_at) if run.started_at else datetime.now(timezone.utc)
    return moment.timestamp()


#: The stopper set up as a callback of the sweep now running in this driver, by sweep id. Tune saves its
#: controller's stopper in the experiment state at every step and, on ``--resume``, restores that copy
#: apart from the callback it unpickles from ``tuner.pkl``; the copy's ``stop_all`` asks this one.
_SET_UP: dict[str, SweepStopper] = {}


class SweepStopper(Callback, Stopper):
    """``stop:`` in Tune: fed each ended trial's row, stops the whole experiment when the rule says so.

    ``recorders`` are the callbacks that record an ended trial, the leaderboard writer first (its
    ``written_row`` is the row the rule reads; the others, e.g. MLflow, log the same row)."""

    def __init__(self, stop: Stop, mode: str, run: SweepRun, recorders: Sequence[Callback],
                 clock: Callable[[], float] = time.time) -> None:
        self.stop = stop
        self.mode = mode
        self.run = run
        self.recorders = list(recorders)
        self.clock = clock
        self.rule = StopRule(stop, mode, started_at(run), clock)
        self._trials: list[Trial] = []
        self._iteration = 0
        self._stopped = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trials": []}  # Tune's live trial list is the controller's, not ours to save

    def setup(self, **info: Any) -> None:
        """The rule rebuilt from the sweep's record (its start) and leaderboard rows (the trials that ended),
        at every start of the experiment, ``--resume`` included."""
        from runner import leaderboard

        record = find_sweep(self.run.results, self.run.name, self.run.sweep_id)
        self.rule = StopRule(self.stop, self.mode, started_at(record), self.clock)
        board = leaderboard.load(record.results, sweep=record.sweep_id)
        for end in ended_in_order(board.to_dict("records")):
            self.rule.record(end)
        _SET_UP[self.run.sweep_id] = self

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._iteration, self._trials = iteration, trials

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._ended(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._ended(trials, trial)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # trials are stopped all at once (``stop_all``), never one by one

    def stop_all(self) -> bool:
        """Tune asks at every step. The time budget is checked here; a reason found while rebuilding the rule
        (a driver killed between a trial's row and the stop) stops the resumed sweep here."""
        deciding = _SET_UP.get(self.run.sweep_id, self)
        if deciding is not self:
            return deciding.stop_all()  # the copy restored from Tune's experiment state
        reason = self.rule.check_clock()
        if reason is not None and not self._stopped:
            self._stop_live(self._trials, reason, ended=None)
        return reason is not None

    def _ended(self, trials: list[Trial], trial: Trial) -> None:
        row = self.recorders[0].written_row(trial.trial_id)
        if row is None or self._stopped:
            return  # recorded before a resume (the rule was rebuilt with it), or after the stop
        reason = self.rule.record(trial_end(row))
        if reason is not None:
            self._stop_live(trials, reason, ended=trial)

    def _stop_live(self, trials: list[Trial], reason: Reason, ended: Trial | None) -> None:
        """Writes a ``stopped`` row for each live trial that has started (its last report's metrics, as for
        an ASHA stop; none when it had not reported an epoch yet), then the reason into the sweep record.
        Rows first: a driver killed in between resumes, rebuilds the rule from the rows, and stops again
        with the same reason."""
        say(f"stopping the sweep early: {reason.text}")
        for trial in trials:
            if trial is not ended and _started(trial):
                for recorder in self.recorders:
                    recorder.on_trial_complete(iteration=self._iteration, trials=trials, trial=trial)
        record_stop(self.run, reason)
        self._stopped = True


def _started(trial: Trial) -> bool:
    """A live trial Tune has started (RUNNING), or one restored by ``--resume`` that had reported an epoch
    (``objective``) before the interruption; a pending trial that never ran is dropped without a row.
    (``has_reported_at_least_once`` cannot tell: reading ``Trial.last_result`` puts a ``trial_id`` into the
    very dict it tests.)"""
    if trial.status in (Trial.TERMINATED, Trial.ERROR):
        return False
    return trial.status == Trial.RUNNING or "objective" in trial.last_result


def record_stop(run: SweepRun, reason: Reason) -> None:
    """The reason in the sweep record (``stopped``), which ``--resume`` reads to refuse more trials."""
    record = find_sweep(run.results, run.name, run.sweep_id)
    replace(record, stopped={"rule": reason.rule, "reason": reason.text}).save()
