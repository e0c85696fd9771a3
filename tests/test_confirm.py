"""``runner confirm``: a real two-trial sweep's top configurations retrained with new seeds through the real
command (real Ray, real Keras trials on demo data, real Parquet rows): K x S rows with ``confirm_of``, printed
statistics equal to NumPy's from those rows, the same command again trains nothing, the report shows the runs
(only once there are some), and the errors a user can make are one line each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from runner import leaderboard
from runner.cli import main
from runner.config import MAX_SEED
from runner.confirm import confirm_sweep_id, new_seed, plan_runs
from runner.html_report import render_report

#: Two tiny trials, an external test set so every counterpart of the metric is there, and val_roc_auc as the
#: objective: at this size F1 is 0 for every seed, which would make equal statistics prove nothing.
SWEEP = {
    "tasks": ["pneumonia"], "models": ["small_cnn"],
    "fixed": {"epochs": 2, "image_size": 32, "batch_size": 16, "bootstrap": 20, "early_stopping": 0,
              "data": {"n": 60}, "test_data": {"layout": "demo", "n": 24, "seed": 7}},
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "metric": "val_roc_auc", "num_samples": 2, "scheduler": {"type": "fifo"},
    "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}
TOP, SEEDS = 2, 2
#: The tests of one real sweep and its confirmation (about a minute to set up, shared): in the slow run, which
#: CI runs too, to keep the default run inside its budget.
SLOW = pytest.mark.slow
COLUMNS = ("val_roc_auc", "test_roc_auc", "external_test_roc_auc")
SECTION = "<h2>Confirmation with new seeds</h2>"


@dataclass(frozen=True)
class Confirmed:
    results: Path
    sweep_id: str
    first: str  # the confirm command's output
    again: str  # the same command's output, given again
    rows_after_first: pd.DataFrame
    report_before: str  # the sweep's report before confirm ran


def _runner(work: Path, *args: str, cwd: Path | None = None) -> str:
    run = subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "CXR_RUNNER_CACHE": str(work / "cache")}, cwd=cwd or work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory: pytest.TempPathFactory) -> Confirmed:
    work = tmp_path_factory.mktemp("confirm")
    results, start = work / "results", work / "start"
    start.mkdir()
    (start / "tiny.yaml").write_text(yaml.safe_dump(SWEEP))
    _runner(work, "sweep", "tiny.yaml", "--results", str(results), cwd=start)  # confirm runs from work
    sweep_id = leaderboard.load(results)["sweep_id"].iloc[0]
    before = render_report(str(results), sweep_id)
    command = ("confirm", sweep_id, "--top", str(TOP), "--seeds", str(SEEDS), "--results", str(results))
    first = _runner(work, *command)
    rows = leaderboard.load(results, sweep=confirm_sweep_id(sweep_id))
    return Confirmed(results, sweep_id, first, _runner(work, *command), rows, before)


@SLOW
def test_confirm_records_k_times_s_runs_with_new_seeds(confirmed: Confirmed) -> None:
    """One row per run, in the confirmation's own sweep, each naming its original trial; the original's config
    but for the seed, which is the original's + 1 + index; ordinary rows keep a null confirm_of."""
    board = leaderboard.load(confirmed.results)
    sweep = board[board["sweep_id"] == confirmed.sweep_id]
    runs = board[board["sweep_id"] == confirm_sweep_id(confirmed.sweep_id)]
    assert len(runs) == TOP * SEEDS and (runs["status"] == "completed").all()
    assert sweep["confirm_of"].isna().all() and runs["confirm_of"].notna().all()
    assert sorted(runs["confirm_of"].unique()) == sorted(sweep["trial_id"])  # K = 2: both trials
    hps = [c for c in sweep.columns if c.startswith("hp_") and c != "hp_seed"]
    for original in sweep.to_dict("records"):
        mine = runs[runs["confirm_of"] == original["trial_id"]]
        assert sorted(mine["seed"]) == [original["seed"] + 1 + i for i in range(SEEDS)]
        assert sorted(mine["trial_id"]) == [f"{original['trial_id']}-seed{seed}" for seed in sorted(mine["seed"])]
        for column in hps:
            expected = "-" if pd.isna(original[column]) else str(original[column])
            assert (mine[column].fillna("-").astype(str) == expected).all(), column
        assert mine["external_test_roc_auc"].notna().all()
    assert runs["trial_dir"].map(lambda folder: (Path(folder) / "model.keras").is_file()).all()


@SLOW
def test_confirm_shows_a_line_per_run_event_and_nothing_of_ray_or_tensorflow(confirmed: Confirmed) -> None:
    """Behind the sweep's console: without a terminal, each run's start and end as one plain line named by its
    run id, the log's path, and none of Ray's, Tune's or TensorFlow's output, which is in the log."""
    from test_console import NOISE

    log = confirmed.results / "sweeps" / f"{confirm_sweep_id(confirmed.sweep_id)}.log"
    assert f"log: {log} " in confirmed.first and "Running in local mode" in log.read_text()
    start = confirmed.results.parent / "start"
    assert f"reading the sweep's relative paths from {start}, where it started" in confirmed.first
    runs = sorted(confirmed.rows_after_first["trial_id"])
    assert sorted(re.findall(r"^started  (\S+)  pneumonia small_cnn \(", confirmed.first, re.M)) == runs
    ended = re.findall(rf"^\[(\d)/{len(runs)}\] (\S+)  small_cnn  val_roc_auc \d\.\d{{4}}  completed at epoch",
                       confirmed.first, re.M)
    assert sorted(run for _, run in ended) == runs and sorted(int(n) for n, _ in ended) == list(
        range(1, len(runs) + 1)), confirmed.first
    assert "\x1b" not in confirmed.first
    assert not [noise for noise in NOISE if noise in confirmed.first], [n for n in NOISE if n in confirmed.first]


def _printed(output: str, trial_id: str) -> list[str]:
    """The cells of a trial's line in the printed table."""
    line = next(line for line in output.splitlines() if re.match(rf"^\d+\s+\d+\s+{re.escape(trial_id)}\s", line))
    return re.split(r"\s{2,}", line.strip())


@SLOW
def test_printed_statistics_are_numpys_from_the_rows(confirmed: Confirmed) -> None:
    """Mean ± sd (ddof=1) and the 95% t-interval of each metric column over each configuration's runs, as
    NumPy and SciPy compute them from the leaderboard rows; the winner by mean and the single-run winner's
    fate follow from those means."""
    runs = confirmed.rows_after_first
    sweep = leaderboard.top(leaderboard.load(confirmed.results, sweep=confirmed.sweep_id))
    means = {}
    for original in sweep.to_dict("records"):
        cells = _printed(confirmed.first, original["trial_id"])
        assert cells[0] == str(original["rank"]) and cells[3] == "small_cnn" and cells[5] == str(SEEDS)
        assert cells[4] == f"{original['val_roc_auc']:.4f}"
        mine = runs[runs["confirm_of"] == original["trial_id"]]
        for index, column in enumerate(COLUMNS):
            values = mine[column].to_numpy(float)
            mean, sd = values.mean(), values.std(ddof=1)
            half = stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values))
            assert cells[6 + 2 * index] == f"{mean:.4f} ± {sd:.4f}", column
            assert cells[7 + 2 * index] == f"[{mean - half:.4f}, {mean + half:.4f}]", column
        means[original["trial_id"]] = mine["val_roc_auc"].mean()
    for trial, mean in means.items():  # rank by mean: 1 + how many configurations have a higher mean
        assert _printed(confirmed.first, trial)[1] == str(1 + sum(other > mean for other in means.values()))
    best = max(means, key=lambda trial: (means[trial], -int(sweep.set_index("trial_id").loc[trial, "rank"])))
    assert f"winner by mean: {best} (small_cnn)" in confirmed.first
    single = sweep["trial_id"].iloc[0]
    kept = means[single] >= max(means.values())
    assert (f"the single-run winner {single} kept its rank" in confirmed.first) == kept


@SLOW
def test_the_same_command_again_trains_nothing(confirmed: Confirmed) -> None:
    """Every run has its row: nothing is trained, no row added or rewritten, the same table printed."""
    again = leaderboard.load(confirmed.results, sweep=confirm_sweep_id(confirmed.sweep_id))
    pd.testing.assert_frame_equal(again, confirmed.rows_after_first)
    assert f"all {TOP * SEEDS} confirmation runs of {confirmed.sweep_id} (top {TOP} x {SEEDS} seeds) are recorded " \
           "already" in confirmed.again
    table = [line for line in confirmed.first.splitlines() if line.startswith(("pneumonia:", "rank  ", "winner"))]
    assert len(table) == 3 and all(line in confirmed.again.splitlines() for line in table)


@SLOW
def test_the_report_shows_the_confirmation_once_there_are_runs(confirmed: Confirmed) -> None:
    assert SECTION not in confirmed.report_before
    page = render_report(str(confirmed.results), confirmed.sweep_id)
    section = page[page.index(SECTION):page.index("<h2>", page.index(SECTION) + 1)]
    runs = confirmed.rows_after_first
    for trial, mine in runs.groupby("confirm_of"):
        assert f"<td>{trial}</td>" in section
        assert f">{mine['val_roc_auc'].mean():.4g}</td>" in section
    assert "winner by mean:" in section


def test_seeds_are_new_and_fixed_by_the_original_seed_and_index() -> None:
    seeds = [new_seed(7, index) for index in range(5)]
    assert seeds == [new_seed(7, index) for index in range(5)] and 7 not in seeds and len(set(seeds)) == 5
    assert [new_seed(MAX_SEED - 1, index) for index in range(3)] == [MAX_SEED, 0, 1]  # every one a valid seed
    row = {"trial_id": "t1", "config_json": '{"task": "pneumonia", "model": "baseline", "seed": 3}'}
    runs = plan_runs(pd.DataFrame([row]), 2)
    assert [(run.run_id, run.confirm_of, run.seed, run.values["seed"]) for run in runs.values()] == [
        ("t1-seed4", "t1", 4, 4), ("t1-seed5", "t1", 5, 5)]


def test_what_cannot_be_confirmed_is_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaderboard.write_row(tmp_path, leaderboard.failed_row(
        sweep_id="broken-1", sweep_name="broken", trial_id="t1", task="pneumonia", model="small_cnn",
        hyperparameters={"learning_rate": 0.1}, error="DataError: no usable images"))
    cases = [
        (["nosuch"], f"error: no sweep 'nosuch' in {tmp_path}/leaderboard: check the id and --results"),
        (["broken-1", "--top", "0"], "error: --top must be at least 1, not 0"),
        (["broken-1", "--seeds", "0"], "error: --seeds must be at least 1, not 0"),
        (["broken-1"], "error: sweep 'broken-1' has no completed trial to confirm (1 failed): resume or rerun "
                       "the sweep first"),
    ]
    for args, message in cases:
        assert main(["confirm", *args, "--results", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(message) and error.count("\n") == 1, error


@pytest.mark.slow
def test_confirm_on_real_radiographs(shared_data: Path, tmp_path: Path) -> None:
    """A sweep on real radiographs (the Kermany subset, split by patient), then ``confirm`` of its best
    configuration with three new seeds: three rows that trained on the real images (mean validation ROC AUC
    far above chance), and the printed mean ± sd is NumPy's from them."""
    kermany = shared_data / "kermany-subset"
    manifest = pd.read_csv(kermany / "manifest.csv")
    manifest.sample(400, random_state=0).to_csv(tmp_path / "train.csv", index=False)
    data = tmp_path / "kermany.yaml"
    data.write_text(yaml.safe_dump({"layout": "manifest", "path": str(tmp_path / "train.csv"),
                                    "image_root": str(kermany)}))
    space = {**SWEEP, "fixed": {"epochs": 4, "image_size": 64, "batch_size": 16, "bootstrap": 50,
                                "early_stopping": 0, "plots": False, "data": str(data)},
             "space": {"learning_rate": {"type": "categorical", "choices": [0.0005, 0.001]}}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(space))
    results = tmp_path / "results"
    _runner(tmp_path, "sweep", str(tmp_path / "real.yaml"), "--results", str(results))
    sweep_id = leaderboard.load(results)["sweep_id"].iloc[0]
    shown = _runner(tmp_path, "confirm", sweep_id, "--top", "1", "--seeds", "3", "--results", str(results))
    runs = leaderboard.load(results, sweep=confirm_sweep_id(sweep_id))
    assert len(runs) == 3 and (runs["status"] == "completed").all() and runs["confirm_of"].nunique() == 1
    assert (runs["n_train"] > 200).all() and runs["val_roc_auc"].mean() > 0.7, runs[["val_roc_auc", "n_train"]]
    values = runs["val_roc_auc"].to_numpy(float)
    cells = _printed(shown, runs["confirm_of"].iloc[0])
    assert cells[5] == "3" and cells[6] == f"{values.mean():.4f} ± {values.std(ddof=1):.4f}", cells
