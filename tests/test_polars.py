"""Polars reads the leaderboard as results/README.md shows: the README's Polars block, run as written over real
rows (a real tiny trial's, in two sweeps, and a failed trial's) in the documented layout, gives exactly the
rows, columns, types and values of ``runner.leaderboard.load``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from runner import leaderboard
from runner.config import make_config
from runner.trial import run_trial

README = Path(__file__).resolve().parents[1] / "results" / "README.md"
TRIAL = {"task": "pneumonia", "model": "baseline", "epochs": 1, "image_size": 32, "bootstrap": 10,
         "data": {"n": 60}, "plots": False}
#: The types the leaderboard fixes (results/README.md, Columns), as Polars names them.
POLARS_TYPES = {"val_f1": pl.Float64, "test_roc_auc_ci_low": pl.Float64, "hp_learning_rate": pl.Float64,
                "epochs_run": pl.Int64, "stopped_early": pl.Boolean, "status": pl.String, "config_json": pl.String,
                "started_at": pl.Datetime("us", "UTC")}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``work/results`` with three rows in two sweep folders: one real trial recorded in both sweeps, and a
    failed trial, whose row lacks every metric column (rows of one folder differ in their columns)."""
    work = tmp_path_factory.mktemp("polars")
    trial = run_trial(make_config(TRIAL), work / "trials", verbose=False)
    for sweep in ("sweep-a", "sweep-b"):
        leaderboard.write_row(work / "results", leaderboard.row_from_result(trial.result, sweep_id=sweep,
                                                                            sweep_name="polars"))
    leaderboard.write_row(work / "results", leaderboard.failed_row(
        sweep_id="sweep-a", sweep_name="polars", trial_id="broken", task="pneumonia", model="baseline",
        hyperparameters={"learning_rate": 0.1}, error="DataError: no usable images"))
    return work / "results"


def _readme_polars_block() -> str:
    (block,) = [code for code in re.findall(r"```python\n(.*?)^```", README.read_text(), re.S | re.M)
                if "import polars" in code]
    return block


def _values(column: pd.Series | pl.Series) -> list[Any]:
    """Python values, missing ones as None (pandas' NaN / NA and Polars' null alike)."""
    return [None if value is None or value is pd.NA or value != value else value for value in column.to_list()]


def test_readme_polars_block_reads_what_load_reads(results: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(results.parent)
    namespace: dict[str, Any] = {}
    exec(_readme_polars_block(), namespace)
    board: pl.DataFrame = namespace["board"].sort("sweep_id", "trial_id")
    expected = leaderboard.load(results).sort_values(["sweep_id", "trial_id"], kind="mergesort")
    assert board.height == len(expected) == 3 and set(board["sweep_id"]) == {"sweep-a", "sweep-b"}
    assert set(board.columns) == set(expected.columns)
    assert {name: board.schema[name] for name in POLARS_TYPES} == POLARS_TYPES
    differing = [name for name in expected.columns if _values(board[name]) != _values(expected[name])]
    assert not differing, f"Polars and leaderboard.load disagree on {differing}"
    assert board.filter(pl.col("status") == "failed")["val_f1"].to_list() == [None]
    assert "completed" in capsys.readouterr().out
