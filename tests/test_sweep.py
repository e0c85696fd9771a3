"""Sweeps: every shipped search space validates; bad files fail with the key named; a real sweep on real
Ray records one typed leaderboard row per trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_class_folders

from runner.errors import ConfigError
from runner.sweep.space import SEARCH_SPACES, load_sweep, quick

TINY = {
    "description": "tiny test sweep",
    "tasks": ["pneumonia"],
    "models": ["baseline"],
    "fixed": {"epochs": 2, "image_size": 32, "bootstrap": 50, "early_stopping": 0, "data": {"n": 60}},
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


@pytest.mark.parametrize("name", SEARCH_SPACES.names())
def test_every_shipped_search_space_and_profile_validates(name: str) -> None:
    spec = load_sweep(name)
    for profile in spec.profiles:
        load_sweep(name, profile=profile)
    shrunk = quick(spec)
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
    path = _write(tmp_path, TINY)
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results),
                          "--set", "num_samples=3"], capture_output=True, text=True, env=env, timeout=600)
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
    assert listed.returncode == 0 and listed.stdout.count("\n") >= 4


def _start_sweep(path: Path, results: Path, *extra: str) -> subprocess.Popen:
    """The sweep driver in its own process group, so the test can kill it and every Ray process it started."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _wait_for_rows(results: Path, rows: int, driver: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(list(results.glob("leaderboard/*/*.parquet"))) < rows:
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {rows} leaderboard rows after {timeout} s"
        time.sleep(0.5)


def test_resume_after_killed_driver_gives_exactly_one_row_per_trial(tmp_path: Path) -> None:
    spec = {**TINY, "num_samples": 4, "max_concurrent_trials": 1, "scheduler": {"type": "fifo"}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    driver = _start_sweep(path, results)
    _wait_for_rows(results, 1, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert len(list(results.glob("leaderboard/*/*.parquet"))) < 4, "the sweep finished before it was killed"

    resumed = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results),
                              "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming tiny-" in resumed.stdout and "4 trials recorded" in resumed.stdout
    from runner.leaderboard import load

    board = load(results)
    assert len(board) == 4 and board["trial_id"].is_unique and board["sweep_id"].nunique() == 1
    assert (board["status"] == "completed").all()


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
    data = make_class_folders(tmp_path / "xray", {"NORMAL": 12, "PNEUMONIA": 12})
    (data / "PNEUMONIA" / "broken.png").write_bytes(b"not a png")
    spec = {**TINY, "num_samples": 2, "scheduler": {"type": "fifo"}, "max_failures": 1,
            "fixed": {**TINY["fixed"], "data": {"path": str(data), "strict": True}}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 trials recorded" in run.stdout and "2 failed" in run.stdout
    from runner.leaderboard import load

    board = load(results)
    assert len(board) == 2 and (board["status"] == "failed").all()
    assert board["error"].str.contains("broken.png").all(), board["error"].tolist()
