"""Warm start: a new sweep's Optuna study begins with what earlier sweeps learnt.

TPE draws its first trials at random until the study holds enough finished ones; a sweep that starts from the
finished trials of earlier sweeps of (about) the same space proposes from its model at once. The earlier
trials come from their leaderboards (``<results>/leaderboard/<sweep_id>``), not their studies, so any sweep
in the results folder can warm a new one, however it was run, and its rows are rebuilt into Optuna trials by
the same mapping the parameter importances use (``runner.sweep.importance``: ``hp_*`` columns, ``task``,
``model``, ``owner.key`` for ``per_model`` / ``per_task`` parameters), with the new space's distributions.

A completed row becomes a COMPLETE trial, a row ASHA stopped a PRUNED one whose one intermediate value is its
value at the epoch it stopped (what Optuna's own pruners leave), so TPE ranks it as stopped early. A trial's
value is the row's value of the metric the *new* study optimises (the task's monitor under ``metric:
objective``): the same as the earlier sweep's objective when the two optimise the same metric, and never a
number on another metric's scale or direction. A row whose values do not fit the new space (a model or task
not in it, a value outside a range, a parameter it searches that the row has no value of) is skipped; a
parameter the earlier sweep varied that the new space does not search is dropped from every trial. Both are
reported in the one line the sweep prints when it starts.

The added trials are only in the study: Tune never sees them, so they are not among the sweep's
``num_samples`` trials and get no leaderboard row. Each carries the earlier row it came from (user attribute
``warm_start_from``); adding is skipped for any already in the study, so a sweep restarted over its study
(a driver killed before Tune first saved its state) never adds them twice. Re-runs (``enqueue``) are Optuna
WAITING trials, which ``study.ask()`` hands out before it samples anything, so they are the first
``enqueue`` Tune trials.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from runner import leaderboard
from runner.errors import ConfigError
from runner.sweep.importance import finished_rows, inferred_distributions, row_value, space_distributions, trial_params
from runner.sweep.space import define_by_run

if TYPE_CHECKING:
    import optuna

    from runner.sweep.space import SweepSpec

#: User attribute of an added trial: ``<sweep_id>/<trial_id>`` of the row it was rebuilt from.
FROM_ATTR = "warm_start_from"
#: User attribute of a re-run (enqueued) configuration: the same, for the row whose configuration it re-runs.
RERUN_ATTR = "warm_start_rerun"


@dataclass
class WarmPlan:
    """What a warm start gives a study: trials to add, configurations to re-run, and what did not fit."""

    sweeps: tuple[str, ...]
    trials: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    reruns: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    dropped_params: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``warm start: N trials from ID (M dropped: why), K enqueued``."""
        reasons = "; ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        dropped = f"{sum(self.skipped.values())} dropped" + (f": {reasons}" if reasons else "")
        if self.dropped_params:
            dropped += f"; not searched here, so left out: {', '.join(self.dropped_params)}"
        return (f"warm start: {len(self.trials)} trials from {', '.join(self.sweeps)} ({dropped}), "
                f"{len(self.reruns)} enqueued")


def warm_column(spec: SweepSpec) -> str | None:
    """The leaderboard's ``warm_start`` value for this sweep's rows: the sweep ids that warmed its study,
    comma-joined, or None."""
    return ",".join(spec.warm_start.sweeps) or None


def earlier_rows(results: str, sweeps: tuple[str, ...]) -> pd.DataFrame:
    """The named sweeps' leaderboard rows. A sweep id with no rows in ``results`` is an error saying how to
    find the ids, raised before Ray starts (``runner.cli``) and again when the study is warmed."""
    board = leaderboard.load(results)
    known = set(board["sweep_id"])
    for sweep in sweeps:
        if sweep not in known:
            names = sorted(board.loc[board["sweep_name"] == sweep, "sweep_id"].unique())
            hint = f" ('{sweep}' is a sweep name: give one of its ids, e.g. {names[-1]})" if names else ""
            raise ConfigError(f"warm_start: no sweep '{sweep}' in {results}/leaderboard{hint}: the sweep_id column "
                              f"of python -m runner leaderboard --results {results} --format csv lists the ids")
    return board[board["sweep_id"].isin(sweeps)]


def plan(spec: SweepSpec, results: str) -> WarmPlan:
    """The warm start of a new sweep of ``spec`` from its ``warm_start`` sweeps in ``results``."""
    found = WarmPlan(sweeps=spec.warm_start.sweeps)
    if not spec.warm_start.sweeps:
        return found
    rows = earlier_rows(results, spec.warm_start.sweeps)
    metric = _metric(rows, spec)
    scored = finished_rows(rows.assign(sweep_metric=metric, sweep_mode=spec.mode))
    for index in rows.index.difference(scored.index):
        if rows.at[index, "status"] != "failed":  # a failed trial teaches TPE nothing: not counted
            found.skipped[f"no value of {metric[index]}"] += 1
    distributions, space = space_distributions(spec), define_by_run(spec)
    for _, row in scored.iterrows():
        fitted = _fit(row, spec, distributions, space)
        if isinstance(fitted, str):
            found.skipped[fitted] += 1
        else:
            found.trials.append(fitted)
    found.dropped_params = _dropped_params(rows, spec)
    found.reruns = _best(found.trials, spec, min(spec.warm_start.enqueue, spec.num_samples))
    return found


def warm_study(study: optuna.Study, spec: SweepSpec, results: str, printer) -> WarmPlan | None:
    """Adds the warm start's trials and re-runs to a new sweep's study, before it proposes anything, leaving
    out any already there (a restarted sweep); prints the one line that says what was given. None when the
    sweep has no ``warm_start``."""
    if not spec.warm_start.sweeps:
        return None
    found = plan(spec, results)
    present = {attr: {trial.user_attrs.get(attr) for trial in study.get_trials(deepcopy=False)}
               for attr in (FROM_ATTR, RERUN_ATTR)}
    study.add_trials([trial for trial in found.trials if trial.user_attrs[FROM_ATTR] not in present[FROM_ATTR]])
    for trial in found.reruns:
        if trial.user_attrs[FROM_ATTR] not in present[RERUN_ATTR]:
            study.enqueue_trial(trial.params, user_attrs={RERUN_ATTR: trial.user_attrs[FROM_ATTR]})
    printer(found.line())
    return found


def _metric(rows: pd.DataFrame, spec: SweepSpec) -> pd.Series:
    """Per row, the metric this sweep optimises: its ``metric``, or under ``objective`` the row's task monitor."""
    return rows["monitor"] if spec.metric == "objective" else pd.Series(spec.metric, index=rows.index)


def _fit(row: pd.Series, spec: SweepSpec, distributions: dict[str, Any], space: Any,
         ) -> optuna.trial.FrozenTrial | str:
    """The row as a finished trial of the new space (``space``: its define-by-run function, which names what
    a trial of the row's task and model draws), or why it does not fit it."""
    import optuna

    for what, names in (("task", spec.tasks), ("model", spec.models)):
        if row[what] not in names:
            return f"{what} {row[what]} not in this sweep"
    drawn = {name: distributions[name] for name in ("task", "model", *space.drawn(row["task"], row["model"]))}
    params, used = trial_params(row, drawn)
    missing = [name for name in drawn if name not in params]
    if missing:
        return f"no value of {missing[0]}" if row_value(row, missing[0]) is None else f"{missing[0]} outside this space"
    stopped = row["status"] == "stopped"
    step = int(row["epochs_run"]) if not pd.isna(row.get("epochs_run")) else 1
    return optuna.trial.create_trial(
        params=params, distributions=used, value=row["objective"],
        state=optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE,
        intermediate_values={step: row["objective"]} if stopped else None,
        user_attrs={FROM_ATTR: f"{row['sweep_id']}/{row['trial_id']}"})


def _dropped_params(rows: pd.DataFrame, spec: SweepSpec) -> list[str]:
    """Parameters an earlier sweep varied (``importance.inferred_distributions`` of its rows) that this space
    does not search: its trials are added without them."""
    searched = {*spec.space, *(key for block in (spec.per_model, spec.per_task) for params in block.values()
                               for key in params)}
    varied = {name for _, sweep in rows.groupby("sweep_id") for name in inferred_distributions(sweep)}
    return sorted(varied - searched - {"task", "model"})


def _best(trials: list[optuna.trial.FrozenTrial], spec: SweepSpec, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` best completed trials by value in this sweep's mode, one per configuration: ASHA judged the
    stopped ones poor, and re-running one configuration twice teaches nothing."""
    import optuna

    completed = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    best, seen = [], set()
    for trial in sorted(completed, key=lambda t: t.value, reverse=spec.mode == "max"):
        key = tuple(sorted((name, repr(value)) for name, value in trial.params.items()))
        if key not in seen and len(best) < k:
            best.append(trial)
            seen.add(key)
    return best
