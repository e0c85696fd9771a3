"""``stop:`` in a search space: the stopping rule over real sequences of trial ends, its validation, and one
real tiny sweep that stops early, records every ended trial once, and refuses ``--resume``."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from test_faults import _started, _sweep_command
from test_leaderboard import make_result
from test_sweep import _wait_for_rows

from runner import leaderboard
from runner.errors import ConfigError
from runner.sweep.assemble import load_sweep
from runner.sweep.space import Stop
from runner.sweep.stopping import StopRule, TrialEnd, ended_in_order
from runner.sweep.study import TRIAL_ID_ATTR, load_study
from runner.sweep.warm import FROM_ATTR, RERUN_ATTR

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _row(trial_id: str, value: float | None, status: str = "completed", minute: int = 0,
         metric: str = "val_f1") -> dict:
    """A real leaderboard row, as ``LeaderboardWriter`` builds it, of a trial that ended ``minute`` minutes in."""
    if status == "failed":
        return leaderboard.failed_row(sweep_id="s", sweep_name="s", trial_id=trial_id, task="pneumonia",
                                      model="baseline", hyperparameters={}, error="RuntimeError: boom",
                                      finished_at=START + timedelta(minutes=minute))
    result = {"trial_id": trial_id, "task": "pneumonia", "model": "baseline", "monitor": metric, "mode": "max",
              "metrics": {"val": {metric.removeprefix("val_"): value}},
              "finished_at": (START + timedelta(minutes=minute)).isoformat()}
    return leaderboard.row_from_result(result, sweep_id="s", sweep_name="s", status=status,
                                       sweep_metric=metric, sweep_mode="max")


def _run(rule: StopRule, rows: list[dict]) -> list[str | None]:
    """The reason after each row, fed as the rows' trials ended (the order they are rebuilt in at resume)."""
    return [None if (reason := rule.record(end)) is None else reason.text for end in ended_in_order(rows)]


def _rule(mode: str = "max", clock=None, **stop) -> StopRule:
    return StopRule(Stop(**stop), mode, started_at=START.timestamp(), clock=clock or (lambda: START.timestamp()))


def test_patience_counts_trials_without_an_improvement_of_more_than_min_delta() -> None:
    rows = [_row("t1", 0.80, minute=1), _row("t2", 0.805, minute=2), _row("t3", 0.85, minute=3),
            _row("t4", 0.855, minute=4), _row("t5", 0.858, minute=5)]
    reasons = _run(_rule(patience=2, min_delta=0.01), rows)
    # t2 (+0.005) is no improvement; t3 (+0.05) is and resets the count; t4 and t5 (+0.005, +0.008) are not
    assert reasons[:4] == [None, None, None, None]
    assert reasons[4] == "no improvement of more than 0.01 in the last 2 trials (best 0.85, trial t3)"


def test_rows_are_replayed_in_the_order_their_trials_ended() -> None:
    """The rule is rebuilt from rows at ``--resume``: the order they ended, not the order they are listed."""
    rows = [_row("late", 0.5, minute=9), _row("first", 0.9, minute=1), _row("second", 0.7, minute=2)]
    assert [end.trial_id for end in ended_in_order(rows)] == ["first", "second", "late"]
    assert _run(_rule(patience=2), rows)[-1] == "no improvement in the last 2 trials (best 0.9, trial first)"


@pytest.mark.parametrize(("mode", "target", "values", "stops_at"), [
    ("max", 0.9, [0.7, 0.89, 0.92, 0.95], 2),
    ("min", 0.3, [0.5, 0.31, 0.25, 0.2], 2),
])
def test_target_respects_mode(mode: str, target: float, values: list[float], stops_at: int) -> None:
    rows = [_row(f"t{i}", value, minute=i, metric="val_f1" if mode == "max" else "val_loss")
            for i, value in enumerate(values)]
    reasons = _run(_rule(mode, target=target), rows)
    assert reasons[:stops_at] == [None] * stops_at
    assert reasons[stops_at] == f"target {target:g} reached by trial t{stops_at} ({values[stops_at]:.4g})"


def test_asha_stopped_and_failed_trials_count_as_no_improvement_and_never_as_one() -> None:
    """A stopped trial's value is a lower rung's: 0.99 must neither become the best, nor reach the target,
    nor reset patience; a failed trial ended without improving too."""
    rows = [_row("t1", 0.80, minute=1), _row("t2", 0.99, "stopped", minute=2), _row("t3", None, "failed", minute=3)]
    assert _run(_rule(patience=2, target=0.95), rows) == [
        None, None, "no improvement in the last 2 trials (best 0.8, trial t1)"]
    rule = _rule(patience=3)
    _run(rule, rows[:2])
    assert rule.best == TrialEnd("t1", "completed", 0.80)
    assert rule.record(TrialEnd("t4", "completed", 0.85)) is None and rule.without_improvement == 0


def test_patience_before_any_trial_completed_says_so() -> None:
    rows = [_row("t1", None, "failed", minute=1), _row("t2", 0.4, "stopped", minute=2)]
    assert _run(_rule(patience=2), rows)[-1] == "no improvement in the last 2 trials (no trial completed)"


def test_time_budget_counts_from_the_recorded_start() -> None:
    now = [START.timestamp() + 599.0]
    rule = _rule(time_budget_s=600, clock=lambda: now[0])
    assert rule.check_clock() is None
    now[0] += 1.0
    reason = rule.check_clock()
    assert reason is not None and (reason.rule, reason.text) == ("time_budget_s", "time budget 600 s used")
    assert rule.record(TrialEnd("t9", "completed", 1.0)) is reason  # decided once, never changed


def test_the_rule_is_rebuilt_from_the_rows_at_every_start_not_from_pickled_state(tmp_path: Path) -> None:
    """Tune pickles the stopper when the sweep starts (``tuner.pkl``, as a callback) and again at every step
    (its controller's ``stopper``, in the experiment state); a resumed driver unpickles the two apart. The
    rule must come from the rows written since, the controller's copy must follow the callback that Tune
    set up, and a reason the rows imply (the driver died between the deciding row and the stop) must stop
    the resumed sweep at once and be recorded."""
    from runner.sweep.record import SweepRun, find_sweep
    from runner.sweep.stopping import SweepStopper

    run = SweepRun(sweep_id="s-1", name="s", results=str(tmp_path / "results"), storage=str(tmp_path / "tune"),
                   source="s.yaml", overrides={}, profile=None, started_at=START.isoformat())
    run.save()
    pickled = pickle.dumps(SweepStopper(Stop(patience=2), "max", run, recorders=[]))

    def resumed() -> tuple[SweepStopper, SweepStopper]:
        callback, stopper = pickle.loads(pickled), pickle.loads(pickled)
        callback.setup()
        return callback, stopper

    for row in (_row("t1", 0.8, minute=1), _row("t2", 0.7, minute=2)):
        leaderboard.write_row(run.results, {**row, "sweep_id": run.sweep_id})
    callback, stopper = resumed()
    assert (callback.rule.best.trial_id, callback.rule.without_improvement, callback.rule.reason) == ("t1", 1, None)
    assert callback.rule.started_at == START.timestamp()
    assert not stopper.stop_all()

    leaderboard.write_row(run.results, {**_row("t3", 0.75, minute=3), "sweep_id": run.sweep_id})
    callback, stopper = resumed()
    assert stopper.stop_all() and callback.stop_all()
    assert find_sweep(run.results, run.name, run.sweep_id).stopped == {
        "rule": "patience", "reason": "no improvement in the last 2 trials (best 0.8, trial t1)"}


def test_a_stopped_sweep_settles_each_running_study_trial_as_its_row_says(tmp_path: Path) -> None:
    """Tune's experiment-wide stop leaves the study's running trials RUNNING. One whose final report came in
    beside the trial that stopped the sweep has a completed row and must be COMPLETE with the row's objective
    (the clean-clone CI once saw it PRUNED); one stopped mid-run is pruned at its last reported value; a failed
    one, and one created but never started (no row), failed. Real rows, a real journal-file study."""
    import optuna
    import pandas as pd

    from runner.sweep.run import row_ends
    from runner.sweep.study import journal_storage, settle_stopped_study

    path = tmp_path / "s.optuna.log"
    study = optuna.create_study(study_name="s", storage=journal_storage(path), direction="maximize")
    for trial_id in ("done", "cut", "broke", "never"):
        trial = study.ask()
        trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        if trial_id == "cut":
            trial.report(0.42, 1)
    board = pd.DataFrame([_row("done", 0.8), _row("cut", 0.5, status="stopped"), _row("broke", None, "failed")])
    ends = row_ends(board, "max")
    assert ends == {"done": ("completed", 0.8), "cut": ("stopped", 0.5), "broke": ("failed", 0.0)}
    assert settle_stopped_study(path, "s", ends) == 4
    settled = {t.user_attrs[TRIAL_ID_ATTR]: (t.state.name, t.value) for t in load_study(path, "s").trials}
    assert settled == {"done": ("COMPLETE", 0.8), "cut": ("PRUNED", 0.42), "broke": ("FAIL", None),
                       "never": ("FAIL", None)}
    assert settle_stopped_study(path, "s", ends) == 0, "a second settle (a resume) finds nothing running"


def _space(tmp_path: Path, **changes) -> Path:
    raw = {"tasks": ["pneumonia"], "models": ["baseline"], "num_samples": 8,
           "fixed": {"epochs": 1, "image_size": 32, "bootstrap": 0, "early_stopping": 0, "data": {"n": 60},
                     "plots": False},
           "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
           "scheduler": {"type": "fifo"},
           "resources": {"cpu": 1, "gpu": 0, "workers": 0}, "max_concurrent_trials": 2, **changes}
    path = tmp_path / "stopping.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("stop", "message"), [
    ({"patence": 3}, r"unknown key 'stop.patence' \(did you mean 'stop.patience'\?\)"),
    ({"patience": 0}, r"stop.patience=0 must be >= 1"),
    ({"patience": 2.5}, r"'stop.patience' must be int"),
    ({"min_delta": 0.01}, r"stop needs patience, target or time_budget_s"),
    ({"target": 0.9, "min_delta": 0.01}, r"stop.min_delta=0.01 must be >= 0 and goes with stop.patience"),
    ({"time_budget_s": 0}, r"stop.time_budget_s=0 must be > 0"),
    ({}, r"stop needs patience, target or time_budget_s"),
])
def test_bad_stop_blocks_name_file_and_key(tmp_path: Path, stop: dict, message: str) -> None:
    path = _space(tmp_path, stop=stop)
    with pytest.raises(ConfigError, match=message) as error:
        load_sweep(str(path))
    assert str(path) in str(error.value)


def test_stop_block_loads_into_the_spec(tmp_path: Path) -> None:
    spec = load_sweep(str(_space(tmp_path, stop={"patience": 4, "min_delta": 0.01, "time_budget_s": 600})))
    assert spec.stop == Stop(patience=4, min_delta=0.01, time_budget_s=600)
    assert spec.stop.describe(spec.mode) == ("after 4 ended trials in a row without an improvement of more than "
                                             "0.01 or 600 s after the sweep started")
    assert not load_sweep(str(_space(tmp_path))).stop.active


def _tune_trials(experiment: Path) -> tuple[set[str], set[str]]:
    """Tune's saved experiment state: every trial it created, and those that reported an epoch."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment)).trials
    return ({trial.trial_id for trial in trials},
            {trial.trial_id for trial in trials if "objective" in trial.run_metadata.last_result})


def _stopping_trial(reason: str) -> str:
    """The trial a target stop's reason names ("target 0 reached by trial <id> (<value>)")."""
    found = re.match(r"target \S+ reached by trial (\w+) \(", reason)
    assert found, reason
    return found.group(1)


def test_a_sweep_that_reaches_its_target_stops_early_with_every_ended_trial_recorded_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any finite F1 reaches target 0, so the first trial to end stops the sweep: the trial running beside it
    (two at a time) gets a ``stopped`` row from its last report, no further trial is created, and the exit is
    0 with the reason, not the Ctrl-C message. ``--resume`` then says the sweep is done and adds nothing."""
    import ray

    from runner.cli import main

    results = tmp_path / "results"
    path = _space(tmp_path, stop={"target": 0.0})
    try:
        code = main(["sweep", str(path), "--results", str(results), "--local"])
        out, err = capsys.readouterr()
        assert code == 0, out[-3000:] + err[-3000:]
        assert "interrupted" not in err
        board = leaderboard.load(results)
        assert len(board) == 2 and board["trial_id"].is_unique
        assert (board["status"] == "completed").any()
        sweep_id = board["sweep_id"].iloc[0]
        created, reported = _tune_trials(results / "tune" / sweep_id)
        assert reported <= set(board["trial_id"]) == created
        record = json.loads((results / "sweeps" / f"{sweep_id}.json").read_text())
        first = _stopping_trial(record["stopped"]["reason"])
        assert f"stopped early: target 0 reached by trial {first} (" in out
        completed = board[board["status"] == "completed"].set_index("trial_id")["finished_at"]
        assert first in completed.index, "the trial that reached the target completed"
        assert (completed[first] - completed.min()).total_seconds() < 2.0, (
            "the stop names the first trial to end (two ending in the same moment are the driver's to order)")
        assert record["stopped"]["rule"] == "target" and record["started_at"]
        study = {t.user_attrs.get("trial_id"): t for t in load_study(results / "sweeps" / f"{sweep_id}.optuna.log",
                                                                      sweep_id).trials}
        states = {trial_id: study[trial_id].state.name for trial_id in board["trial_id"]}
        assert states == {r.trial_id: "COMPLETE" if r.status == "completed" else "PRUNED" for r in board.itertuples()}
        assert all(t.state.is_finished() for t in study.values()), "the stop leaves no trial RUNNING in the study"

        code = main(["sweep", str(path), "--results", str(results), "--resume", sweep_id])
        out, _ = capsys.readouterr()
        assert code == 0
        assert (f"sweep {sweep_id} stopped early (target 0 reached by trial {first}" in out
                and "nothing to resume" in out)
        assert len(leaderboard.load(results)) == len(board)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_killed_warm_started_sweep_resumes_stops_early_with_one_row_per_trial(tmp_path: Path) -> None:
    """The issue's done-when, all at once: a sweep warm-started from an earlier sweep (its best configuration
    re-run first) with a patience rule that no trial can satisfy (an improvement of more than 1 in F1), so it
    stops after three ended trials of six; its driver is killed with SIGKILL as its first row lands, then
    resumed. The resumed sweep stops by the rule, rebuilt from the rows, with exactly one row per trial, and
    the study holds the earlier trials once (the resume does not warm it again), the re-run once, a finished
    trial per row in the row's state, and nothing RUNNING."""
    results = tmp_path / "results"
    earlier = {"e1": (2e-3, 0.7), "e2": (5e-3, 0.8)}
    for trial_id, (rate, f1) in earlier.items():
        leaderboard.write_row(results, leaderboard.row_from_result(
            make_result(trial_id=trial_id, model="baseline", val={"f1": f1}, hp={"learning_rate": rate}),
            sweep_id="old-1", sweep_name="old", sweep_metric="val_f1", sweep_mode="max"))
    path = _space(tmp_path, num_samples=6, max_concurrent_trials=1, warm_start={"sweeps": ["old-1"], "enqueue": 1},
                  stop={"patience": 2, "min_delta": 1.0})
    with _started(_sweep_command(path, results)) as driver:
        _wait_for_rows(results, len(earlier) + 1, driver, poll=0.01)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    board = leaderboard.load(results)
    rows = board[board["sweep_id"] != "old-1"]
    assert len(rows) < 3, "the sweep stopped before it was killed"
    sweep_id = rows["sweep_id"].iloc[0]

    resumed = subprocess.run(_sweep_command(path, results, "--resume", sweep_id), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "stopping the sweep early: no improvement of more than 1 in the last 2 trials" in resumed.stdout
    rows = leaderboard.load(results, sweep=sweep_id)
    assert len(rows) == 3 and rows["trial_id"].is_unique, rows[["trial_id", "status", "finished_at"]].to_string()
    assert (rows["warm_start"] == "old-1").all()
    assert json.loads((results / "sweeps" / f"{sweep_id}.json").read_text())["stopped"]["rule"] == "patience"

    trials = load_study(results / "sweeps" / f"{sweep_id}.optuna.log", sweep_id).trials
    assert sorted(t.user_attrs[FROM_ATTR] for t in trials if FROM_ATTR in t.user_attrs) == ["old-1/e1", "old-1/e2"]
    assert [t.user_attrs[RERUN_ATTR] for t in trials if RERUN_ATTR in t.user_attrs] == ["old-1/e2"]
    assert all(t.state.is_finished() for t in trials), [(t.number, t.state.name) for t in trials]
    by_trial = {t.user_attrs[TRIAL_ID_ATTR]: t for t in trials if TRIAL_ID_ATTR in t.user_attrs}
    assert {r.trial_id: by_trial[r.trial_id].state.name for r in rows.itertuples()} == {
        r.trial_id: "COMPLETE" if r.status == "completed" else "PRUNED" for r in rows.itertuples()}
    unrecorded = set(by_trial) - set(rows["trial_id"])
    assert all(by_trial[t].state.name == "FAIL" for t in unrecorded), "only a trial that never started has no row"
