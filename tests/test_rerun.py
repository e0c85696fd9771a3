"""``runner rerun``: a trial of a real sweep, retrained from its leaderboard row, gives the recorded metrics
exactly (CPU); trials that cannot be rerun are one clear error each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from runner import leaderboard
from runner.cli import main

SWEEP = {
    "tasks": ["pneumonia"], "models": ["small_cnn"],
    "fixed": {"epochs": 2, "image_size": 32, "bootstrap": 20, "early_stopping": 0, "augment": True,
              "data": {"n": 60}},
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "num_samples": 1, "scheduler": {"type": "fifo"}, "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A one-trial sweep through the real command (real Ray, real Parquet row), its cache in the work folder."""
    work = tmp_path_factory.mktemp("rerun")
    (work / "tiny.yaml").write_text(yaml.safe_dump(SWEEP))
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(work / "tiny.yaml"), "--results",
                          str(work / "results")], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CXR_RUNNER_CACHE": str(work / "cache")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    row = leaderboard.load(work / "results").iloc[0].to_dict()
    assert row["status"] == "completed"
    return work / "results", row


def test_rerun_of_a_sweep_trial_is_identical(swept: tuple[Path, dict], capsys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Same data files (the sweep's demo set, same cache), same config: every metric equal."""
    results, row = swept
    monkeypatch.setenv("CXR_RUNNER_CACHE", str(results.parent / "cache"))
    assert main(["rerun", row["sweep_id"], row["trial_id"], "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "metric" in out and "recorded" in out and "difference" in out and "val_roc_auc" in out
    assert "identical: all" in out and "data changed" not in out
    rerun_dir = Path(out.strip().splitlines()[-1].removeprefix("rerun trial directory: "))
    assert rerun_dir.parent == results / "reruns" / row["sweep_id"]
    recorded = pd.read_parquet(Path(row["trial_dir"]) / "predictions.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(rerun_dir / "predictions.parquet"), recorded, check_exact=True)
    assert json.loads((rerun_dir / "result.json").read_text())["config"] == json.loads(row["config_json"])


def test_trials_that_cannot_be_rerun_say_why(swept: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    results, row = swept
    sweep_id = row["sweep_id"]
    leaderboard.write_row(tmp_path, leaderboard.failed_row(
        sweep_id=sweep_id, sweep_name="tiny", trial_id="broken", task="pneumonia", model="small_cnn",
        hyperparameters={"learning_rate": 0.1}, error="DataError: no usable images"))
    result = json.loads((Path(row["trial_dir"]) / "result.json").read_text())
    leaderboard.write_row(tmp_path, leaderboard.row_from_result({**result, "trial_id": "halted", "epochs_run": 1},
                                                                sweep_id=sweep_id, sweep_name="tiny",
                                                                status="stopped"))
    cases = [
        (["nosuch", "x", "--results", str(results)], f"error: no sweep 'nosuch' in {results}/leaderboard: check the "
                                                     "id and --results"),
        ([sweep_id, "nosuch", "--results", str(results)], f"error: sweep '{sweep_id}' has no trial 'nosuch': its "
                                                          f"trials include {row['trial_id']}"),
        ([sweep_id, "broken", "--results", str(tmp_path)], "error: trial 'broken' failed (DataError: no usable "
                                                           "images): it has no metrics to compare"),
        ([sweep_id, "halted", "--results", str(tmp_path)], "error: trial 'halted' was stopped early by the "
                                                           "scheduler after 1 epoch(s)"),
    ]
    for argv, message in cases:
        assert main(["rerun", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(message), err
