"""Sweeps: every shipped search space validates; bad files fail with the key named; a real sweep on real
Ray records one typed leaderboard row per trial."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import make_class_folders

from runner.errors import ConfigError
from runner.sweep.assemble import build_sweep, load_sweep
from runner.sweep.space import SEARCH_SPACES

TINY = {
    "description": "tiny test sweep",
    "tasks": ["pneumonia"],
    "models": ["baseline"],
    "fixed": {"epochs": 2, "image_size": 32, "bootstrap": 50, "early_stopping": 0, "data": {"n": 60},
              "plots": False},  # plots are tested in test_plots_report.py; here they would only cost time
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "per_model": {"baseline": {"filters": {"type": "categorical", "choices": [4, 8]}}},
    "num_samples": 3,
    "scheduler": {"type": "asha", "max_t": 2, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}


def _write(tmp_path: Path, spec: dict, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _merged(base: dict, override: dict) -> dict:
    """The README's layering, written out independently: a later layer wins key by key, nested mappings merge."""
    return {**base, **{key: _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                       else value for key, value in override.items()}}


def _as_written(value: Any, keys: Iterable[str]) -> Any:
    """A spec field as YAML would write it: a dataclass as its ``keys`` (those the file sets), a mapping as a dict."""
    if dataclasses.is_dataclass(value):
        return {key: getattr(value, key) for key in keys}
    return dict(value) if isinstance(value, Mapping) else value


@pytest.mark.parametrize("name", SEARCH_SPACES.names())
def test_every_shipped_search_space_and_profile_validates(name: str) -> None:
    """Each shipped space loads, has the ``cpu`` profile a GPU-less machine runs, and each profile applied is
    the file with the profile's keys merged over it (every key it sets, checked against the raw YAML)."""
    raw = yaml.safe_load(SEARCH_SPACES.get(name).path.read_text())
    spec = load_sweep(name)
    assert spec.profile is None and spec.num_samples == raw["num_samples"] and dict(spec.fixed) == raw["fixed"]
    assert "cpu" in raw["profiles"] and set(spec.profiles) == set(raw["profiles"])
    for profile, override in raw["profiles"].items():
        applied, expected = load_sweep(name, profile=profile), _merged(raw, override)
        assert applied.profile == profile
        for key, value in override.items():
            keys = expected[key] if isinstance(value, dict) else ()
            assert _as_written(getattr(applied, key), keys) == expected[key], f"{name} profile {profile}: {key}"
    shrunk = build_sweep(name, profile=None, quick=True, resolve_weights=False)
    assert shrunk.num_samples == 2 and shrunk.fixed["epochs"] == 1 and shrunk.fixed["image_size"] == 64


@pytest.mark.parametrize(("change", "message"), [
    ({"learning_rat": 1}, r"unknown key 'learning_rat': choose from"),
    ({"num_samples": "many"}, r"'num_samples' must be int"),
    ({"space": {"learning_rate": {"type": "float", "low": 1.0, "high": 0.1}}}, r"'space.learning_rate' is not a "
                                                                              r"valid float range"),
    ({"space": {"dropout": {"type": "categorical", "choices": []}}}, r"'space.dropout' is not a valid categorical"),
    ({"space": {"dropuot": {"type": "float", "low": 0.1, "high": 0.2}}}, r"key 'dropuot' is not a setting of task "
                                                                         r"'pneumonia' with model 'baseline'"),
    ({"models": ["resnet"]}, r"unknown model 'resnet' in models: choose from baseline"),
    ({"scheduler": {"type": "pbt"}}, r"scheduler.type must be one of asha, fifo"),
])
def test_bad_search_space_names_file_and_key(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path, {**TINY, **change})
    with pytest.raises(ConfigError, match=message) as error:
        load_sweep(str(path))
    assert str(path) in str(error.value)


def test_set_overrides_and_unknown_sweep(tmp_path: Path) -> None:
    spec = load_sweep(str(_write(tmp_path, TINY)), {"num_samples": 5, "fixed": {"epochs": 1}})
    assert spec.num_samples == 5 and spec.fixed["epochs"] == 1 and spec.fixed["image_size"] == 32
    with pytest.raises(ConfigError, match=r"unknown search space 'transfr': choose one of anomaly"):
        load_sweep("transfr")


def test_sweep_on_real_ray_writes_one_row_per_trial(tmp_path: Path) -> None:
    """The sweep also logs to MLflow (``--mlflow``): one run per trial with the row's parameters and metrics;
    its terminal output is Tune's trimmed trial table, not a result box per trial; and its driver never
    imports TensorFlow (``-X importtime`` lists the driver's imports only: the trials run in Ray's processes)."""
    path = _write(tmp_path, TINY)
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "sweep", str(path), "--results",
                          str(results), "--set", "num_samples=3", "--mlflow", tracking],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 trials recorded" in run.stdout
    from runner.leaderboard import load

    board = load(results)
    assert len(board) == 3 and board["trial_id"].is_unique
    assert set(board["status"]) <= {"completed", "stopped"}
    assert (board["status"] == "completed").any()
    completed = board[board["status"] == "completed"]
    assert completed["test_roc_auc"].notna().all() and completed["val_f1"].notna().all()
    assert pd.api.types.is_float_dtype(board["hp_learning_rate"]) and set(board["hp_filters"]) <= {"4", "8"}
    assert (board["task"] == "pneumonia").all() and (board["model"] == "baseline").all()
    for trial_dir in completed["trial_dir"]:
        assert (Path(trial_dir) / "result.json").is_file()
    listed = subprocess.run([sys.executable, "-m", "runner", "leaderboard", "--results", str(results),
                             "--format", "csv"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    printed = pd.read_csv(io.StringIO(listed.stdout))
    assert len(printed) == 3 and set(printed["trial_id"]) == set(board["trial_id"])
    assert set(printed.columns) == {"rank", *board.columns} and printed["rank"].tolist() == [1, 2, 3]  # every column
    _assert_mlflow_runs_match(tracking, board)
    (log,) = (p for p in (results / "sweeps").glob("*.log") if not p.name.endswith(".optuna.log"))
    logged = log.read_text()  # Tune's trial table goes to the sweep's log (tests/test_console.py: the console)
    table = logged[logged.rindex("Number of trials: 3/3"):]
    assert re.search(r"\| status +\|.*\| +epoch \| +objective \|", table) and "TERMINATED" in table, table
    assert "result_json" not in logged, "Tune's per-trial result boxes are back"
    imported = [line.split("|")[-1].strip() for line in (run.stderr + logged).splitlines()
                if line.startswith("import time:")]  # the driver's stderr goes to the log once the sweep starts
    assert "runner.sweep.run" in imported and "tensorflow" not in imported
    for lines in _tune_reports(results / "tune" / board["sweep_id"].iloc[0]).values():
        assert {line["train_pid"] for line in lines} == {line["pid"] for line in lines}  # local mode: one process


DRIVER_WITHOUT_TENSORFLOW = """
import sys
import runner.cli, runner.sweep.run, runner.sweep.trainable
from runner.leaderboard.schema import hyperparameter_kinds
from runner.models import MODELS
from runner.sweep.assemble import build_sweep
from runner.sweep.space import SEARCH_SPACES

for name in SEARCH_SPACES.names():
    build_sweep(name, resolve_weights=False, printer=lambda _: None)
for model in MODELS.names():
    MODELS.get(model).parameter_types()
hyperparameter_kinds()
print(sorted(module for module in sys.modules if module.split(".")[0] in ("tensorflow", "keras"))[:5])
"""


def test_the_sweep_driver_checks_every_shipped_space_without_importing_tensorflow() -> None:
    """The driver validates names, parameters, minimum sizes and column types from the registries alone: the
    builder modules import Keras only to build, so a sweep does not spend TensorFlow's import time and memory
    before Ray starts, and a typo fails before it. (``weights: auto`` does import it: it tries loading the weights.)"""
    run = subprocess.run([sys.executable, "-c", DRIVER_WITHOUT_TENSORFLOW], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]", run.stdout


def _assert_mlflow_runs_match(tracking: str, board: pd.DataFrame) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["tiny"]).set_index("tags.trial_id")
    assert sorted(runs.index) == sorted(board["trial_id"]), runs.index
    for _, row in board.iterrows():
        logged = runs.loc[row["trial_id"]]
        assert logged["tags.sweep_id"] == row["sweep_id"] and logged["tags.status"] == row["status"]
        assert float(logged["params.learning_rate"]) == pytest.approx(row["hp_learning_rate"])
        assert logged["params.filters"] == row["hp_filters"]
        assert logged["metrics.val_f1"] == pytest.approx(row["val_f1"])
        assert logged["metrics.epochs_run"] == row["epochs_run"]
        if row["status"] == "completed":
            assert logged["metrics.test_f1"] == pytest.approx(row["test_f1"])
            artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(logged["run_id"])]
            assert "result.json" in artifacts and "config.yaml" in artifacts, artifacts
        history = mlflow.MlflowClient().get_metric_history(logged["run_id"], "epoch/val_f1")
        assert sorted(m.step for m in history) == list(range(1, int(row["epochs_run"]) + 1))


def _start_sweep(path: Path, results: Path, *extra: str) -> subprocess.Popen:
    """The sweep driver in its own process group, so the test can kill it and every Ray process it started."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _wait_for_rows(results: Path, rows: int, driver: subprocess.Popen, timeout: float = 300,
                   poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while len(list(results.glob("leaderboard/*/*.parquet"))) < rows:
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {rows} leaderboard rows after {timeout} s"
        time.sleep(poll)


#: A driver that SIGKILLs itself and every process it started (its process group: Ray's, the trial's) at one
#: point of the sweep that the test chooses, so each recovery path is taken on purpose, not by timing:
#: ``row``: right after the first trial's leaderboard row is written, inside the writer's callback, before
#: Tune's experiment state can record that the trial ended; ``epoch``: when the first trial's second epoch
#: report reaches the driver, mid-trial, with no row yet.
KILLING_DRIVER = """
import os, signal, sys
from runner import leaderboard
from runner.cli import main
from runner.sweep.run import LeaderboardWriter

def die(*_):
    os.killpg(os.getpgrp(), signal.SIGKILL)

if sys.argv[1] == "row":
    write_row = leaderboard.write_row
    leaderboard.write_row = lambda results, row: (write_row(results, row), die())
else:
    LeaderboardWriter.on_trial_result = lambda self, result, **info: die() if result.get("epoch") == 2 else None
raise SystemExit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("point", ["row", "epoch"])
def test_resume_after_killed_driver_gives_exactly_one_row_per_trial(tmp_path: Path, point: str) -> None:
    """Killed right after the first row was written, the resumed sweep restarts that trial (Tune's save still
    has it running), which sees its row and returns: the row stands, unchanged (it was once replaced by a
    'failed' row: Tune could not restore the checkpoint the writer had deleted). Killed mid-trial, the resumed
    sweep continues that trial from the checkpoint of its first epoch, the last one Tune saved. Either way:
    one row per trial, no configuration run twice, and a study that matches the rows. The sweep starts with a
    relative space file and is resumed from another directory: it is rebuilt from the one it started in."""
    spec = {**TINY, "num_samples": 2, "max_concurrent_trials": 1, "scheduler": {"type": "fifo"},
            "fixed": {**TINY["fixed"], "epochs": 3}}
    start, results = tmp_path / "start", tmp_path / "results"
    start.mkdir()
    path = _write(start, spec)
    killed = subprocess.run([sys.executable, "-c", KILLING_DRIVER, point, "sweep", path.name, "--results",
                             str(results)], capture_output=True, text=True, timeout=600, start_new_session=True,
                            cwd=start)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    from runner.leaderboard import load

    first = load(results)
    assert len(first) == (1 if point == "row" else 0), first

    resumed = subprocess.run([sys.executable, "-m", "runner", "sweep", path.name, "--results", str(results),
                              "--resume"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming tiny-" in resumed.stdout and "2 trials recorded" in resumed.stdout
    assert f"reading the sweep's relative paths from {start}, where it started" in resumed.stdout
    assert "Could not recover" not in resumed.stdout + resumed.stderr
    stands = re.findall(r"trial (\S+) had ended before the sweep was interrupted: its row stands", resumed.stdout)
    assert stands == (first["trial_id"].tolist() if point == "row" else []), resumed.stdout[-3000:]

    board = load(results)
    assert len(board) == 2 and board["trial_id"].is_unique and board["sweep_id"].nunique() == 1
    assert (board["status"] == "completed").all(), board[["trial_id", "status", "error"]].to_string()
    if point == "row":
        kept = board.set_index("trial_id").loc[first["trial_id"], ["finished_at", "val_f1", "test_f1"]]
        pd.testing.assert_frame_equal(kept, first.set_index("trial_id")[["finished_at", "val_f1", "test_f1"]])
    resumed_from = board.sort_values("started_at")["resumed_from_epoch"].tolist()
    if point == "epoch":
        assert not pd.isna(resumed_from[0]) and resumed_from[0] == 1 and pd.isna(resumed_from[1:]).all(), resumed_from
    else:
        assert pd.isna(resumed_from).all(), resumed_from
    assert not board.duplicated(["hp_learning_rate", "hp_filters"]).any(), "a finished config was proposed again"
    _assert_study_matches(results, board)


def _assert_study_matches(results: Path, board: pd.DataFrame) -> None:
    """The Optuna study file holds one finished trial per row, each with the row's value and trial id."""
    import optuna

    from runner.sweep.study import TRIAL_ID_ATTR, load_study

    sweep_id = board["sweep_id"].iloc[0]
    study = load_study(results / "sweeps" / f"{sweep_id}.optuna.log", sweep_id)
    trials = study.trials
    assert len(trials) == len(board), [(t.number, t.state, t.user_attrs) for t in trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    values = {t.user_attrs[TRIAL_ID_ATTR]: t.value for t in trials}
    assert values == pytest.approx(dict(zip(board["trial_id"], board["val_f1"], strict=True)))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    spec = {**TINY, "num_samples": 4, "max_concurrent_trials": 1, "scheduler": {"type": "fifo"}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    driver = _start_sweep(path, results)
    _wait_for_rows(results, 1, driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 130, output[-3000:]
    assert "interrupted: finished trials are in the leaderboard; resume with python -m runner sweep tiny " \
           "--resume tiny-" in output
    from runner.leaderboard import load

    assert 1 <= len(load(results)) < 4


def test_a_trial_that_keeps_failing_is_recorded_with_its_error(tmp_path: Path) -> None:
    """The data path is relative, as users write it: before, each trial looked for it in the working directory
    Ray gives the trial and failed on "data path ... does not exist", not on the file that is broken."""
    data = make_class_folders(tmp_path / "xray", {"NORMAL": 12, "PNEUMONIA": 12})
    (data / "PNEUMONIA" / "broken.png").write_bytes(b"not a png")
    spec = {**TINY, "num_samples": 2, "scheduler": {"type": "fifo"}, "max_failures": 0,  # no retry: see error_line
            "fixed": {**TINY["fixed"], "data": {"path": "xray", "strict": True}}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 trials recorded" in run.stdout and "2 failed" in run.stdout
    from runner.leaderboard import load

    board = load(results)
    assert len(board) == 2 and (board["status"] == "failed").all()
    assert board["error"].str.contains("broken.png").all(), board["error"].tolist()


@pytest.mark.slow  # about 45 s: a sweep that fails, a fix, and a resume that reruns the failed trial
def test_retry_failed_reruns_a_failed_trial_in_place_and_keeps_its_error(tmp_path: Path) -> None:
    """One of two trials fails for a cause outside its configuration (its cache folder lies under a file, as
    a full or missing disk would fail it). A plain resume leaves it failed; once the cause is gone,
    ``--resume --retry-failed`` runs it again under its trial id: its row is replaced (one row per trial id),
    keeps the first attempt's error, and the Optuna study learns its value in a new trial for the same
    configuration, linked by trial id."""
    import optuna

    from runner.leaderboard import load
    from runner.sweep.study import ATTEMPT_ATTR, RETRY_OF_ATTR, TRIAL_ID_ATTR, load_study

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder's parent should be")
    good, bad = str(tmp_path / "cache"), str(blocker / "cache")
    spec = {**TINY, "num_samples": 2, "scheduler": {"type": "fifo"}, "max_failures": 0, "searcher": "grid",
            "space": {"cache_dir": {"type": "categorical", "choices": [good, bad]}}, "per_model": {}}
    path, results = _write(tmp_path, spec), tmp_path / "results"

    def sweep(*extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results),
                               *extra], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    assert "2 trials recorded (1 failed)" in sweep().stdout
    first = load(results).set_index("hp_cache_dir")
    failed_id, error = first.loc[bad, "trial_id"], first.loc[bad, "error"]
    assert first.loc[bad, "status"] == "failed" and "blocker" in error, error
    assert first["attempts"].tolist() == [1, 1] and first["attempt_errors"].tolist() == ["[]", "[]"]

    plain = sweep("--resume")
    assert "2 trials recorded (1 failed)" in plain.stdout, "a resume without --retry-failed reran the failed trial"
    pd.testing.assert_frame_equal(load(results).set_index("hp_cache_dir"), first)

    blocker.unlink()  # the user fixes the cause
    retried = sweep("--resume", "--retry-failed")
    assert f"retry: running 1 failed trial(s) again: {failed_id}" in retried.stdout
    assert "2 trials recorded (0 failed)" in retried.stdout, retried.stdout[-3000:]
    board = load(results)
    assert len(board) == 2 and board["trial_id"].is_unique
    assert len(list(results.glob("leaderboard/*/*.parquet"))) == 2, "one row file per trial id"
    board = board.set_index("hp_cache_dir")
    row = board.loc[bad]
    assert row["trial_id"] == failed_id and row["status"] == "completed" and pd.isna(row["error"])
    assert row["attempts"] == 2 and json.loads(row["attempt_errors"]) == [error]
    pd.testing.assert_series_equal(board.loc[good], first.loc[good])  # the completed trial was not touched

    sweep_id = row["sweep_id"]
    trials = load_study(results / "sweeps" / f"{sweep_id}.optuna.log", sweep_id).trials
    ours = [t for t in trials if t.user_attrs[TRIAL_ID_ATTR] == failed_id]
    assert [t.state for t in ours] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert ours[1].params == ours[0].params and ours[0].params["cache_dir"] == bad
    assert ours[1].user_attrs[ATTEMPT_ATTR] == 2 and ours[1].user_attrs[RETRY_OF_ATTR] == ours[0].number
    assert ours[1].value == pytest.approx(row["val_f1"])


def test_offline_weights_auto_sweep_trains_unfrozen_and_says_the_backbones_were_random(tmp_path: Path) -> None:
    """No ImageNet weights reachable (test_assembly.OFFLINE): the sweep says so once, every row records
    frozen_layers 0 though the file searches other values, and the final summary and the HTML report each
    carry one line that the backbones were randomly initialised."""
    from test_assembly import OFFLINE

    from runner.html_report import render_report
    from runner.leaderboard import load, random_init_note

    spec = {**TINY, "models": ["vgg16"], "num_samples": 2, "scheduler": {"type": "fifo"}, "per_model": {},
            "fixed": {**TINY["fixed"], "epochs": 1, "weights": "auto"},
            "space": {**TINY["space"], "frozen_layers": {"type": "categorical", "choices": [0.5, "all"]}}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, **OFFLINE})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (run.stdout + run.stderr).count("weights: auto -> none") == 1, run.stdout[-3000:]
    board = load(results)
    assert len(board) == 2 and (board["status"] == "completed").all(), board[["status", "error"]]
    assert (board["hp_weights"] == "none").all() and (board["hp_frozen_layers"] == "0").all()
    assert all(json.loads(config)["model_params"]["frozen_layers"] == 0 for config in board["config_json"])
    note = random_init_note(board)
    assert note.startswith("note: 2 of 2 trials (vgg16) trained randomly initialised backbones") and \
        "frozen_layers 0:" in note, note
    assert run.stdout.count(note) == 1, run.stdout[-2000:]
    html = render_report(str(results), board["sweep_id"].iloc[0])
    assert html.count(f"<b>{note}</b>") == 1
    assert random_init_note(board.assign(hp_weights="/weights/vgg16.weights.h5")) is None  # a weights file


@pytest.mark.slow  # about 60 s: two Ray Train worker groups started one after the other
def test_ray_train_worker_trials_run_back_to_back_on_two_cores(tmp_path: Path) -> None:
    """Two trials in a row, each a Ray Train job of one 2-CPU worker on this 2-core machine: the second must get
    its worker once the first trial's is released (the trial process itself holds no CPU), reporting
    through TuneReportCallback: every report names a training process other than the trial's own (local mode,
    ``workers: 0``, trains in the trial process; ``test_sweep_on_real_ray_writes_one_row_per_trial``)."""
    spec = {**TINY, "num_samples": 2, "scheduler": {"type": "fifo"}, "resources": {"cpu": 2, "gpu": 0, "workers": 1}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    from runner.leaderboard import load

    board = load(results)
    assert len(board) == 2 and (board["status"] == "completed").all(), board[["status", "error"]]
    assert board["val_f1"].notna().all() and (board["epochs_run"] == 2).all()
    reports = _tune_reports(results / "tune" / board["sweep_id"].iloc[0])
    assert sorted(reports) == sorted(board["trial_id"])
    for trial_id, lines in reports.items():  # each epoch and the evaluation came from the Train worker
        assert [line["training_iteration"] for line in lines] == [1, 2, 3], trial_id
        assert len({line["train_pid"] for line in lines}) == 1 and len({line["pid"] for line in lines}) == 1
        assert lines[0]["train_pid"] != lines[0]["pid"], "trained in the trial process, not a Ray Train worker"
    assert len({lines[0]["train_pid"] for lines in reports.values()}) == 2  # a fresh worker per trial


def _tune_reports(tune_dir: Path) -> dict[str, list[dict]]:
    """Each Tune trial's reports in order, from its ``result.json`` lines: ``pid`` is the trial process (Tune's),
    ``train_pid`` the process that trained (the runner's)."""
    found: dict[str, list[dict]] = {}
    for path in tune_dir.glob("*/result.json"):
        for line in path.read_text().splitlines():
            report = json.loads(line)
            found.setdefault(report["trial_id"], []).append(report)
    return {trial: sorted(lines, key=lambda r: r["training_iteration"]) for trial, lines in found.items()}


def test_several_workers_per_trial_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resources.workers=2: .* Keras 3 does not support \(keras-team/keras#"):
        load_sweep(str(_write(tmp_path, {**TINY, "resources": {"cpu": 1, "gpu": 0, "workers": 2}})))



@pytest.mark.parametrize(("change", "message"), [
    ({"fixed": {"batch_size": 15}}, r"fixed \(task 'pneumonia', model 'baseline'\): batch_size=15 does not split "
                                    r"evenly over the 2 GPUs of resources.gpu=2: use a multiple of 2"),
    ({"per_model": {"baseline": {"batch_size": {"type": "categorical", "choices": [16, 33]}}}},
     r"per_model.baseline.batch_size = 33 \(task 'pneumonia', model 'baseline'\): batch_size=33 does not split"),
    ({"space": {"batch_size": {"type": "int", "low": 16, "high": 64}}},
     r"space.batch_size is an int range with step 1, but with resources.gpu=2 every batch must split evenly over "
     r"2 GPUs: set step: 2"),
    ({"space": {"batch_size": {"type": "int", "low": 16, "high": 64, "log": True}}}, r"int range on a log scale"),
    ({"resources": {"cpu": 1, "gpu": 1.5}}, r"resources.gpu=1.5: .* use a fraction below 1 or a whole number"),
])
def test_a_batch_that_cannot_split_over_a_trials_gpus_is_refused_when_the_sweep_loads(
        tmp_path: Path, change: dict, message: str) -> None:
    """A trial on several GPUs can train only batches that split evenly over them: each batch size the sweep
    can draw is checked when it loads, not in every trial once Ray has given it GPUs (this machine has none,
    and needs none to load the file)."""
    spec = {**TINY, "resources": {"cpu": 1, "gpu": 2}}
    spec = {**spec, **change, "fixed": {**TINY["fixed"], **change.get("fixed", {})}}
    with pytest.raises(ConfigError, match=message):
        load_sweep(str(_write(tmp_path, spec)))


@pytest.mark.parametrize("resources", [{"cpu": 1, "gpu": 2}, {"cpu": 1, "gpu": 0.5}])
def test_batches_that_split_over_a_trials_gpus_load(tmp_path: Path, resources: dict) -> None:
    """Even sizes over two GPUs, as fixed values, choices and an int range with step 2, load; so does any size on
    a fraction of one GPU, which trains on one device."""
    odd = 15 if resources["gpu"] < 1 else 16
    spec = {**TINY, "resources": resources, "fixed": {**TINY["fixed"], "batch_size": odd},
            "space": {**TINY["space"], "batch_size": {"type": "int", "low": 16, "high": 64, "step": 2}},
            "per_model": {"baseline": {"batch_size": {"type": "categorical", "choices": [8, 32]}}}}
    loaded = load_sweep(str(_write(tmp_path, spec)))
    assert loaded.resources.gpu == resources["gpu"] and loaded.fixed["batch_size"] == odd

TWO_REPLICAS = """
import itertools, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, pandas as pd
from pathlib import Path
from runner.config import make_config
from runner.tasks import TASKS
from runner.trial import _datasets, load_splits, run_trial

class Steps(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.replicas, self.steps = self.model.distribute_strategy.num_replicas_in_sync, []
    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)
    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

config = make_config(json.loads(sys.argv[2]))
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
found = {}
for name, strategy in (("one", None), ("two", mirrored)):
    steps = Steps()
    result = run_trial(config, Path(sys.argv[1]), strategy=strategy, callbacks=[steps], verbose=False)
    rows = pd.read_parquet(result.directory / "predictions.parquet")
    found[name] = {"replicas": steps.replicas, "steps": steps.steps, "train": result.result["data"]["counts"]["train"],
                   "loss": result.result["history"]["loss"], "scores": rows["score"].tolist(),
                   "metrics": {split: {k: v for k, v in values.items() if isinstance(v, float)}
                               for split, values in result.metrics.items()}}
task = TASKS.get(config.task)
train, steps, _ = _datasets(config, task, load_splits(config, task, print)[1], replicas=2)
found["replica_batches"] = [[int(part.shape[0]) for part in images.values]
                            for images, _ in itertools.islice(mirrored.experimental_distribute_dataset(train), steps)]
print(json.dumps(found))
"""


def test_a_multi_device_trial_trains_data_parallel_with_mirrored_strategy(tmp_path: Path) -> None:
    """What a trial with several GPUs does, on two logical CPU devices (a subprocess: devices must be configured
    before TensorFlow starts), against the same trial on one device: MirroredStrategy trains it, on global
    batches of ``batch_size`` (ceil(n / batch_size) steps an epoch, every training image used: 44 divide
    evenly over 2) split in halves, and ends with the same scores and metrics. The tolerance: both train on
    the same batches in the same order, so only float32 summation order differs (a mean over 16 images vs
    two means over 8 averaged across replicas): measured 6e-8 on scores, 7e-9 on metrics. Training on other
    orders or leaving the last partial batch out (as the runner did) moved scores by 3e-4 to 2e-3."""
    batch = 16
    config = {"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 2, "data": {"n": 60},
              "bootstrap": 0, "batch_size": batch, "early_stopping": 0, "plots": False}
    run = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(tmp_path), json.dumps(config)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.splitlines()[-1])
    one, two = found["one"], found["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    n = two["train"]
    assert n == 44 and two["steps"] == one["steps"] == [-(-n // batch)] * 2, (n, one["steps"], two["steps"])
    assert found["replica_batches"] == [[batch // 2] * 2] * (n // batch) + [[n % batch // 2] * 2]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["scores"], one["scores"], rtol=0, atol=1e-5)
    assert two["metrics"].keys() == one["metrics"].keys() == {"val", "test"}
    for split, metrics in one["metrics"].items():
        assert two["metrics"][split].keys() == metrics.keys()
        np.testing.assert_allclose([two["metrics"][split][k] for k in metrics], list(metrics.values()),
                                   rtol=0, atol=1e-5, err_msg=split)


def _spec_with(tmp_path: Path, **changes) -> object:
    return load_sweep(str(_write(tmp_path, {**TINY, **changes})))


def test_concurrency_follows_per_trial_resources(tmp_path: Path) -> None:
    from runner.sweep.run import max_concurrent, trial_resources

    two_cores = {"CPU": 2.0}
    local = _spec_with(tmp_path, resources={"cpu": 1, "gpu": 0, "workers": 0})
    assert max_concurrent(local, two_cores) == 2 and trial_resources(local) == {"cpu": 1, "gpu": 0}
    on_workers = _spec_with(tmp_path, resources={"cpu": 2, "gpu": 0, "workers": 1})
    assert max_concurrent(on_workers, two_cores) == 1
    assert trial_resources(on_workers)["cpu"] == 0, "a coordinating trial must not hold a CPU its worker needs"
    gpus = _spec_with(tmp_path, resources={"cpu": 4, "gpu": 1, "workers": 0})
    assert max_concurrent(gpus, {"CPU": 64.0, "GPU": 3.0}) == 3
    capped = _spec_with(tmp_path, max_concurrent_trials=5)
    assert max_concurrent(capped, {"CPU": 1.0}) == 5


def test_gpu_request_without_gpus_is_an_error_here_and_a_warning_on_a_cluster(tmp_path: Path) -> None:
    from runner.sweep.run import check_gpu

    spec = _spec_with(tmp_path, resources={"cpu": 1, "gpu": 1, "workers": 0})
    with pytest.raises(ConfigError, match=r"resources.gpu=1 per trial but the cluster has 0 GPUs: set "
                                          r"resources.gpu=0"):
        check_gpu(spec, 0, cluster=False, printer=print)
    said: list[str] = []
    check_gpu(spec, 0, cluster=True, printer=said.append)
    assert said and "autoscaler" in said[0]


def test_results_at_a_uri_get_uploaded_trial_folders(tmp_path: Path) -> None:
    """A cluster's results are a URI every node reaches: trials are built on local disk and uploaded whole
    (``file://`` takes the same pyarrow upload path as ``s3://``)."""
    shared = f"file://{tmp_path}/shared"
    path = _write(tmp_path, {**TINY, "num_samples": 1, "scheduler": {"type": "fifo"}})
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", shared],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    from runner.leaderboard import load

    board = load(shared)
    assert len(board) == 1 and board["trial_dir"][0].startswith(f"{shared}/trials/tiny-")
    uploaded = Path(board["trial_dir"][0].removeprefix("file://"))
    assert {"result.json", "model.keras", "predictions.parquet", "config.yaml"} <= {p.name for p in uploaded.iterdir()}
    assert list((tmp_path / "shared" / "sweeps").glob("tiny-*.json")) and (tmp_path / "shared" / "tune").is_dir()
    assert isinstance(board["node_id"][0], str) and len(board["node_id"][0]) > 20


#: ASHA's milestones for the test below (grace_period 1, reduction_factor 2, 2 epochs + the final evaluation = 3
#: Tune reports): a trial is compared with the others after epochs 1 and 2.
ASHA_MILESTONES = (1, 2)


def _asha_stops(curves: list[dict[int, float]], reduction_factor: float) -> list[int | None]:
    """ASHA's rule replayed on the recorded curves of trials run one after another (the test's own reading of
    asynchronous successive halving, mode min): at a milestone report a trial is stopped if its objective is
    above the ``1/reduction_factor`` quantile of the objectives recorded at that milestone by the trials before it
    (stopped ones included), and then joins them. Per trial: the report it is stopped at, or None."""
    rungs: dict[int, list[float]] = {milestone: [] for milestone in ASHA_MILESTONES}
    stops: list[int | None] = []
    for curve in curves:
        stop = None
        for report, value in sorted(curve.items()):
            if report in rungs:
                earlier = rungs[report]
                if earlier and value > np.percentile(earlier, 100 / reduction_factor):
                    stop = report
                earlier.append(value)
            if stop is not None:
                break
        stops.append(stop)
    return stops


#: What the seeded sweep below does, per searcher: in the order they ran, each trial's learning rate and the
#: epoch ASHA stops it at (None: it ran both epochs and was evaluated). At the rate 1.0 training diverges.
ASHA_OUTCOMES = {
    "random": [(0.001, None), (0.001, None), (1.0, 1), (0.001, None)],
    "optuna": [(0.001, None), (0.001, None), (0.001, None), (1.0, 1)],
}


@pytest.mark.parametrize("searcher", list(ASHA_OUTCOMES))
def test_asha_stops_exactly_the_poor_trials(tmp_path: Path, searcher: str) -> None:
    """Trials one at a time (so the order is fixed), some with a learning rate so large that training diverges,
    on the validation loss (at 0.5, the F1 of a model that learned nothing can beat that of one learning slowly):
    ASHA compares each trial at its milestones with those before it and stops poor ones, which the
    Optuna study records as pruned. The seeded run is deterministic: exactly the trials ASHA's rule picks from
    their recorded objectives stop, at the epoch it picks, with the random and with the default (Optuna) searcher."""
    spec = {**TINY, "num_samples": 4, "max_concurrent_trials": 1, "searcher": searcher, "metric": "val_loss",
            "mode": "min", "fixed": {**TINY["fixed"], "epochs": 2, "data": {"n": 120}, "batch_size": 16},
            "space": {"learning_rate": {"type": "categorical", "choices": [1.0, 0.001]}},
            "scheduler": {"type": "asha", "max_t": 2, "grace_period": 1, "reduction_factor": 2}}
    if searcher == "optuna":
        del spec["searcher"]  # the default
    path, results = _write(tmp_path, spec), tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    from test_tpe import assert_study_records_the_board, tune_curves

    from runner.leaderboard import load
    from runner.sweep.study import TRIAL_ID_ATTR, load_study

    board = load(results)
    sweep_id = board["sweep_id"].iloc[0]
    asked = sorted(load_study(results / "sweeps" / f"{sweep_id}.optuna.log", sweep_id).trials, key=lambda t: t.number)
    board = board.set_index("trial_id").loc[[t.user_attrs[TRIAL_ID_ATTR] for t in asked]].reset_index()
    curves = tune_curves(results / "tune" / sweep_id)
    stops = _asha_stops([curves[trial_id] for trial_id in board["trial_id"]], reduction_factor=2)
    outcome = [(rate, stop) for rate, stop in zip(board["hp_learning_rate"], stops, strict=True)]
    assert outcome == ASHA_OUTCOMES[searcher], board[["trial_id", "status", "hp_learning_rate", "epochs_run"]]
    stopped = board["status"] == "stopped"
    assert stopped.tolist() == [stop is not None for stop in stops]
    assert board["epochs_run"].tolist() == [stop or 2 for stop in stops]
    poor = board["hp_learning_rate"] == 1.0
    assert not (stopped & ~poor).any() and stopped.any()  # the stopped ones are diverged trials
    for (_, row), stop in zip(board.iterrows(), stops, strict=True):
        if stop is not None:
            assert curves[row["trial_id"]][stop] == pytest.approx(row["val_loss"])  # the row holds its rung's loss
    assert board.loc[stopped, "stopped_early"].all()
    assert board.loc[stopped, "test_f1"].isna().all(), "a stopped trial is never evaluated on the test set"
    assert board.loc[~stopped, "test_f1"].notna().all()
    assert (board.loc[stopped, "finished_at"] > board.loc[stopped, "started_at"]).all(), "stopped rows carry times"
    assert_study_records_the_board(results, board)  # stopped rows are pruned trials with their curves


def test_restored_searcher_takes_over_a_trial_asked_after_the_last_save(tmp_path: Path) -> None:
    """A driver killed between Optuna's ``ask`` and Tune's state save leaves a RUNNING trial in the study that
    the restored searcher never saw: the next Tune trial gets it (no orphan, no extra trial), and the sampler,
    restored as old as the save, does not draw that trial's parameters again for the one after."""
    import pickle

    import optuna

    from runner.sweep.space import define_by_run
    from runner.sweep.study import TRIAL_ID_ATTR, StoredOptunaSearch, journal_storage, load_study
    from runner.sweep.trainable import RESULT_KEY

    spec = load_sweep(str(_write(tmp_path, TINY)))
    ran = {RESULT_KEY: "{}"}  # trials that ran to the end (a stopped trial's last report has no result_json)
    study_path = tmp_path / "study.optuna.log"
    searcher = StoredOptunaSearch(space=define_by_run(spec), metric="objective", mode="max",
                                  sampler=optuna.samplers.TPESampler(seed=0), study_name="s",
                                  storage=journal_storage(study_path))
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"objective": 0.5, **ran})
    searcher.save(str(tmp_path / "searcher.pkl"))
    orphan = searcher.suggest("b")  # the driver dies before Tune records trial b

    restored = pickle.loads(pickle.dumps(searcher))  # as Tune unpickles tuner.pkl, then restores the save
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("c") == orphan
    after = restored.suggest("d")
    assert after != orphan
    restored.on_trial_complete("c", {"objective": 0.7, **ran})
    restored.on_trial_complete("d", {"objective": 0.6, **ran})

    trials = load_study(study_path, "s").trials
    assert [(t.user_attrs[TRIAL_ID_ATTR], t.value) for t in trials] == [("a", 0.5), ("c", 0.7), ("d", 0.6)]


def test_mlflow_file_store_is_refused_with_what_to_use_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from runner.sweep.tracking import open_experiment

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match=r"--mlflow file://.*maintenance mode.*: use sqlite:///PATH/mlflow.db"):
        open_experiment(f"file://{tmp_path}/mlruns", "tiny")


def test_limiter_releases_a_trial_the_study_finished_but_its_saved_state_still_counts(tmp_path: Path) -> None:
    """The driver-kill hang: a save where the limiter still counts a finished trial as live. Tune's own
    limiter then never suggests again; ours asks the study, which was written when the trial ended."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from runner.sweep.space import define_by_run
    from runner.sweep.study import StoredOptunaSearch, StudyAwareLimiter, journal_storage

    spec = load_sweep(str(_write(tmp_path, TINY)))

    def limiter(kind, name: str):
        searcher = StoredOptunaSearch(space=define_by_run(spec), metric="objective", mode="max",
                                      sampler=optuna.samplers.TPESampler(seed=0), study_name=name,
                                      storage=journal_storage(tmp_path / f"{name}.optuna.log"))
        return kind(searcher, max_concurrent=1)

    for kind, expected in ((ConcurrencyLimiter, False), (StudyAwareLimiter, True)):
        stale = limiter(kind, kind.__name__)
        assert stale.suggest("a") is not None
        stale.searcher.on_trial_complete("a", {"objective": 0.5})  # recorded in the study, not in the limiter
        assert (stale.suggest("b") is not None) is expected


def test_progress_table_survives_parameters_only_some_models_have(tmp_path: Path) -> None:
    """Each model has a parameter the other lacks, so whichever trial is best misses one of the table's columns:
    Tune's "current best trial" line raised KeyError on that and ended `sweep transfer` mid-run."""
    spec = {**TINY, "models": ["baseline", "small_cnn"], "num_samples": 2, "scheduler": {"type": "fifo"},
            "fixed": {**TINY["fixed"], "epochs": 1},
            "per_model": {"baseline": {"filters": {"type": "categorical", "choices": [4, 8]}},
                          "small_cnn": {"dropout": {"type": "float", "low": 0.0, "high": 0.5}}}}
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(_write(tmp_path, spec)), "--results",
                          str(tmp_path / "results")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 trials recorded (0 failed)" in run.stdout
