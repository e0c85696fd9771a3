"""Warm start: a new sweep's real (journal-file) Optuna study begins with the fitting finished trials of earlier
sweeps, rebuilt from their real leaderboard rows, and re-runs their best configurations first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from test_leaderboard import make_result
from test_sweep import TINY

from runner import leaderboard
from runner.cli import _overrides, build_parser, main
from runner.errors import ConfigError
from runner.sweep.assemble import load_sweep
from runner.sweep.record import SweepRun
from runner.sweep.run import _searcher
from runner.sweep.study import TRIAL_ID_ATTR, load_study, study_file
from runner.sweep.warm import FROM_ATTR, RERUN_ATTR, earlier_rows, warm_study

OLD = "old-20250101-120000-ab12"
SPACE = {
    "tasks": ["pneumonia"], "models": ["baseline"],
    "fixed": {"epochs": 2, "image_size": 32, "data": {"n": 60}},
    "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "per_model": {"baseline": {"filters": {"type": "categorical", "choices": [16, 32]}}},
    "num_samples": 4,
}
# trial id -> (status, model, learning_rate, momentum, filters, val_f1) of the earlier sweep, which searched
# learning_rate, momentum (not searched by SPACE) and filters, over two models
EARLIER = {
    "a": ("completed", "baseline", 1e-3, 0.8, 32, 0.80),
    "b": ("completed", "baseline", 3e-3, 0.9, 16, 0.90),
    "c": ("completed", "baseline", 5e-4, 0.7, 16, 0.70),
    "d": ("stopped", "baseline", 2e-3, 0.8, 32, 0.40),
    "e": ("completed", "baseline", 5e-2, 0.9, 32, 0.95),  # learning_rate outside the new range
    "f": ("completed", "small_cnn", 1e-3, 0.8, 16, 0.85),  # a model the new sweep does not train
}
FITTING = ("a", "b", "c", "d")


def _earlier_sweep(results: Path, without: str | None = None) -> None:
    """The earlier sweep's rows, written as a sweep writes them (``row_from_result`` + ``write_row``);
    ``without``: a hyper-parameter the rows do not record (rows of an older runner)."""
    for trial_id, (status, model, rate, momentum, filters, f1) in EARLIER.items():
        result = make_result(trial_id=trial_id, model=model, val={"f1": f1},
                             hp={"learning_rate": rate, "momentum": momentum, "filters": filters})
        result["hyperparameters"].pop(without, None)
        result["epochs_run"] = 1 if status == "stopped" else 2
        leaderboard.write_row(results, leaderboard.row_from_result(
            result, sweep_id=OLD, sweep_name="old", status=status, sweep_metric="val_f1", sweep_mode="max"))


def _space(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}))
    return str(path)


def _new_sweep(tmp_path: Path, **changes: Any):
    """A new sweep's searcher over its journal-file study, warmed as ``run_sweep`` warms it."""
    results = tmp_path / "results"
    _earlier_sweep(results)
    spec = load_sweep(_space(tmp_path, warm_start={"sweeps": [OLD], **changes}))
    run = SweepRun(sweep_id="new-1", name="new", results=str(results), storage=str(tmp_path / "tune"),
                   source="new.yaml", overrides={}, profile=None)
    searcher = _searcher(spec, run)
    printed: list[str] = []
    warm_study(searcher._ot_study, spec, str(results), printed.append)
    return spec, run, searcher, printed


def _study(run: SweepRun) -> optuna.Study:
    return load_study(study_file(run), run.sweep_id)


def test_warm_study_holds_the_fitting_earlier_trials_before_its_first_proposal(tmp_path: Path) -> None:
    _, run, searcher, _ = _new_sweep(tmp_path)
    trials = _study(run).trials
    assert [t.user_attrs[FROM_ATTR] for t in trials] == [f"{OLD}/{trial_id}" for trial_id in FITTING]
    for trial, trial_id in zip(trials, FITTING, strict=True):
        _, model, rate, _, filters, f1 = EARLIER[trial_id]
        assert trial.params == {"task": "pneumonia", "model": model, "learning_rate": pytest.approx(rate),
                                "baseline.filters": filters}
        assert trial.value == pytest.approx(f1)
        assert TRIAL_ID_ATTR not in trial.user_attrs  # no Tune trial, no leaderboard row
    states = {t.user_attrs[FROM_ATTR][-1]: t.state for t in trials}
    assert states == {"a": optuna.trial.TrialState.COMPLETE, "b": optuna.trial.TrialState.COMPLETE,
                      "c": optuna.trial.TrialState.COMPLETE, "d": optuna.trial.TrialState.PRUNED}
    assert trials[3].intermediate_values == {1: pytest.approx(0.40)}  # stopped at epoch 1, as a pruner leaves it
    searcher.suggest("tune-0")
    proposed = [t for t in _study(run).trials if TRIAL_ID_ATTR in t.user_attrs]
    assert [t.number for t in proposed] == [len(FITTING)]  # the first proposal comes after every warm trial


def test_what_left_the_space_is_dropped_and_reported(tmp_path: Path) -> None:
    *_, printed = _new_sweep(tmp_path)
    assert printed == [f"warm start: 4 trials from {OLD} (2 dropped: 1 learning_rate outside this space; 1 model "
                       "small_cnn not in this sweep; not searched here, so left out: momentum), 0 enqueued"]


def test_a_parameter_the_new_space_needs_but_rows_lack_skips_the_trial(tmp_path: Path) -> None:
    """The new space searches ``hidden``, which the earlier rows do not record."""
    results = tmp_path / "results"
    _earlier_sweep(results, without="hidden")
    spec = load_sweep(_space(tmp_path, warm_start=[OLD],
                             per_model={"baseline": {"hidden": {"type": "categorical", "choices": [32, 64]}}}))
    run = SweepRun(sweep_id="new-2", name="new", results=str(results), storage=str(tmp_path / "tune"),
                   source="new.yaml", overrides={}, profile=None)
    printed: list[str] = []
    warm_study(_searcher(spec, run)._ot_study, spec, str(results), printed.append)
    assert printed == [f"warm start: 0 trials from {OLD} (6 dropped: 1 learning_rate outside this space; 1 model "
                       "small_cnn not in this sweep; 4 no value of baseline.hidden; not searched here, so left out: "
                       "filters, momentum), 0 enqueued"]
    assert _study(run).trials == []


def test_enqueue_reruns_the_earlier_best_configurations_first(tmp_path: Path) -> None:
    spec, run, searcher, printed = _new_sweep(tmp_path, enqueue=2)
    assert printed[0].endswith(", 2 enqueued")
    proposals = []
    for index in range(spec.num_samples):
        proposals.append(searcher.suggest(f"tune-{index}"))
        searcher.on_trial_complete(f"tune-{index}", {"objective": 0.5})
    best = [EARLIER["b"], EARLIER["a"]]  # by val_f1, max; e (0.95) and f (0.85) do not fit
    assert [(p["learning_rate"], p["baseline.filters"]) for p in proposals[:2]] == [(r[2], r[4]) for r in best]
    study = _study(run)
    tune_trials = {t.user_attrs[TRIAL_ID_ATTR]: t for t in study.trials if TRIAL_ID_ATTR in t.user_attrs}
    assert sorted(tune_trials) == [f"tune-{index}" for index in range(spec.num_samples)]
    assert tune_trials["tune-0"].user_attrs[RERUN_ATTR] == f"{OLD}/b"
    assert tune_trials["tune-1"].user_attrs[RERUN_ATTR] == f"{OLD}/a"
    assert RERUN_ATTR not in tune_trials["tune-2"].user_attrs
    assert len(study.trials) == len(FITTING) + spec.num_samples  # the re-runs are sweep trials, not extra ones
    assert all(t.state.is_finished() for t in study.trials)


def test_a_restarted_sweep_does_not_warm_its_study_twice(tmp_path: Path) -> None:
    """A driver killed before Tune first saved restarts as a new run over the same study file."""
    spec, run, _, _ = _new_sweep(tmp_path, enqueue=1)
    again = _searcher(spec, run)
    warm_study(again._ot_study, spec, run.results, lambda line: None)
    trials = _study(run).trials
    assert len(trials) == len(FITTING) + 1
    assert [t.state for t in trials].count(optuna.trial.TrialState.WAITING) == 1


def test_unknown_sweep_id_is_an_error_naming_how_to_find_ids(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _earlier_sweep(results)
    with pytest.raises(ConfigError, match=rf"warm_start: no sweep 'nope' in {results}/leaderboard: the sweep_id "
                                          rf"column of python -m runner leaderboard --results {results} --format csv"):
        earlier_rows(str(results), (OLD, "nope"))
    with pytest.raises(ConfigError, match=rf"'old' is a sweep name: give one of its ids, e.g. {OLD}"):
        earlier_rows(str(results), ("old",))


def test_unknown_sweep_id_fails_the_command_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ray

    results = tmp_path / "results"
    _earlier_sweep(results)
    assert main(["sweep", _space(tmp_path), "--results", str(results), "--warm-start", OLD, "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: warm_start: no sweep 'nope'")
    assert not ray.is_initialized()


@pytest.mark.parametrize(("warm", "searcher", "message"), [
    ([OLD], "random", r"warm_start needs searcher optuna: random search ignores earlier trials"),
    ({"sweeps": [OLD], "enqeue": 1}, "optuna", r"unknown key 'warm_start.enqeue' \(did you mean 'warm_start.enqueue'"),
    ({"sweeps": OLD}, "optuna", r"'warm_start.sweeps' must be a list"),
    ([OLD, OLD], "optuna", r"warm_start.sweeps must list distinct sweep ids"),
    ({"enqueue": 2}, "optuna", r"warm_start.enqueue=2: re-run the best 0 or more configurations"),
])
def test_bad_warm_start_names_the_key(tmp_path: Path, warm: Any, searcher: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(_space(tmp_path, warm_start=warm, searcher=searcher))


def test_warm_start_flag_replaces_the_yaml_sweeps_and_keeps_enqueue(tmp_path: Path) -> None:
    args = build_parser().parse_args(["sweep", "x", "--set", "num_samples=3", "--warm-start", "s-1", "s-2"])
    spec = load_sweep(_space(tmp_path, warm_start={"sweeps": ["s-0"], "enqueue": 1}), _overrides(args))
    assert spec.warm_start.sweeps == ("s-1", "s-2") and spec.warm_start.enqueue == 1 and spec.num_samples == 3
    assert load_sweep(_space(tmp_path, warm_start=["s-0"]), _overrides(args)).warm_start.sweeps == ("s-1", "s-2")


@pytest.mark.slow
def test_warm_started_sweep_on_real_ray(tmp_path: Path) -> None:
    """Two tiny real sweeps through the CLI: the second, warm-started from the first with one re-run, has
    exactly num_samples rows, each recording the sweep that warmed it, and its study holds num_samples
    trials plus the first sweep's."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "num_samples": 2, "scheduler": {"type": "fifo"}}))
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def sweep(*extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results),
                               *extra], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    sweep()
    first = leaderboard.load(results)["sweep_id"].iloc[0]
    second = sweep("--warm-start", first, "--set", "warm_start.enqueue=1")
    assert f"warm start: 2 trials from {first} (0 dropped), 1 enqueued" in second.stdout
    board = leaderboard.load(results)
    rows = board[board["sweep_id"] != first]
    assert len(rows) == 2 and (rows["warm_start"] == first).all()
    assert board.loc[board["sweep_id"] == first, "warm_start"].isna().all()
    new_id = rows["sweep_id"].iloc[0]
    study = load_study(results / "sweeps" / f"{new_id}.optuna.log", new_id)
    assert len(study.trials) == 2 + 2
    assert sorted(t.user_attrs[TRIAL_ID_ATTR] for t in study.trials if TRIAL_ID_ATTR in t.user_attrs) == sorted(
        rows["trial_id"])
    reruns = [t for t in study.trials if RERUN_ATTR in t.user_attrs]  # the enqueued one ran as a sweep trial
    assert len(reruns) == 1 and reruns[0].state.is_finished() and TRIAL_ID_ATTR in reruns[0].user_attrs
