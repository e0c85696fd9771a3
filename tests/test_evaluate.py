"""``python -m runner evaluate``: a recorded trial's model on another data set gives the metrics the trial itself
gave on that set as its external test set; rows are idempotent, join the leaderboard, and show in the report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from conftest import make_class_folders

from runner import leaderboard
from runner.cli import main
from runner.config import make_config
from runner.errors import DataError
from runner.evaluate import load_evaluations
from runner.html_report import render_report
from runner.tasks import TASKS
from runner.trial import run_trial

SWEEP = "ext-1"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A results folder holding one real tiny pneumonia trial (temperature-scaled), whose own external test set
    is the data-spec file returned: evaluating the trial on that file must reproduce its external metrics."""
    root = tmp_path_factory.mktemp("evaluate")
    external = root / "external.yaml"
    external.write_text(yaml.safe_dump({"layout": "demo", "n": 60, "seed": 9, "classes": ["normal", "pneumonia"]}))
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 2, "batch_size": 16,
                          "bootstrap": 100, "calibrate": "temperature", "data": {"n": 120, "size": 48},
                          "test_data": str(external), "cache_dir": str(root / "cache")})
    results = root / "results"
    trial = run_trial(config, results / "trials", verbose=False)
    leaderboard.write_row(results, leaderboard.row_from_result(
        trial.result, sweep_id=SWEEP, sweep_name="ext", sweep_metric="val_f1", sweep_mode="max",
        extra={"trial_dir": str(trial.directory)}))
    return results, external, trial


def test_evaluate_reproduces_the_trials_own_external_metrics(recorded, capsys) -> None:
    results, external, trial = recorded
    assert main(["evaluate", SWEEP, "--data", str(external), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "internal test" in out and "external 95% CI" in out and trial.trial_id in out
    rows = load_evaluations(str(results), SWEEP)
    assert len(rows) == 1
    row = rows.iloc[0]
    recorded_metrics = trial.metrics["external_test"]
    assert row["n_images"] == recorded_metrics["n"] == 60
    for key in ("f1", "roc_auc", "f1_tuned", "threshold_tuned", "recall_tuned", "ece", "brier", "ece_calibrated",
                "brier_calibrated", "roc_auc_ci_low", "ece_calibrated_ci_high"):
        assert row[f"eval_{key}"] == pytest.approx(recorded_metrics[key], abs=1e-6), key
    assert row["temperature"] == pytest.approx(trial.metrics["val"]["temperature"])
    assert row["eval_threshold"] == 0.5 and row["eval_threshold_tuned"] != 0.5  # both operating points
    listed = TASKS.get("pneumonia").load_data(str(external), whole=True, cache_dir=results.parent / "cache")
    assert row["data_fingerprint"] == listed.fingerprint


def test_evaluating_again_replaces_the_row_and_rows_join_the_leaderboard(recorded, capsys) -> None:
    results, external, trial = recorded
    for _ in range(2):
        assert main(["evaluate", SWEEP, "--trials", trial.trial_id, "--data", str(external),
                     "--results", str(results)]) == 0
    files = list((results / "evaluations" / SWEEP).glob("*.parquet"))
    assert len(files) == 1 and files[0].name.startswith(f"{trial.trial_id}--")
    joined = duckdb.sql(f"""select l.test_f1, e.eval_f1, e.n_images from
        read_parquet('{results}/leaderboard/**/*.parquet', union_by_name=true) l join
        read_parquet('{results}/evaluations/**/*.parquet', union_by_name=true) e using (trial_id)""").df()
    assert len(joined) == 1 and joined["eval_f1"].iloc[0] == pytest.approx(trial.metrics["external_test"]["f1"])
    assert isinstance(pd.read_parquet(files[0]), pd.DataFrame)


def test_the_report_shows_internal_beside_external(recorded) -> None:
    results, external, trial = recorded
    assert main(["evaluate", SWEEP, "--data", str(external), "--results", str(results)]) == 0
    html = render_report(str(results), SWEEP)
    section = html.split("<h2>External validation</h2>")[1].split("<h2>")[0]
    assert trial.trial_id in section and "internal test" in section and "external - internal" in section
    assert f"{trial.metrics['external_test']['f1']:.4g}" in section


def test_a_data_set_with_other_classes_or_an_unknown_trial_is_one_error(recorded, tmp_path: Path, capsys) -> None:
    results, _, trial = recorded
    other = make_class_folders(tmp_path / "other", {"normal": 3, "covid": 3})
    assert main(["evaluate", SWEEP, "--data", str(other), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "covid" in err and len(err.strip().splitlines()) == 1, err
    assert main(["evaluate", SWEEP, "--trials", "nope", "--data", str(other), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"sweep '{SWEEP}' has no completed trial 'nope': its completed trials include {trial.trial_id}" in err
    assert main(["evaluate", "no-such-sweep", "--data", str(other), "--results", str(results)]) == 2
    assert "no sweep 'no-such-sweep'" in capsys.readouterr().err


def test_an_external_set_holding_an_image_the_trial_trained_on_is_refused(recorded, tmp_path: Path, capsys) -> None:
    """Before, evaluating on the trial's own data (or a folder with a copy of one of its training images) gave
    'external' metrics with no word said. A byte-identical copy of a train or val image is refused, by
    ``evaluate`` and by ``train --test-data``; one of the trial's test images is not (the model never saw it)."""
    results, _, trial = recorded
    own = TASKS.get("pneumonia").load_data(trial.result["config"]["data"], cache_dir=results.parent / "cache")
    train_image = next(r for r in own.records if r.split == "train" and r.label == "pneumonia")
    test_image = next(r for r in own.records if r.split == "test" and r.label == "pneumonia")
    folder = make_class_folders(tmp_path / "hospital_b", {"normal": 4, "pneumonia": 4}, seed=500)
    shutil.copy(test_image.path, folder / "pneumonia" / "from_test.png")
    assert main(["evaluate", SWEEP, "--data", str(folder), "--results", str(results)]) == 0
    capsys.readouterr()
    shutil.copy(train_image.path, folder / "pneumonia" / "copy.png")
    assert main(["evaluate", SWEEP, "--data", str(folder), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: external test set {folder}: 1 of its images are byte-identical to images of the trial's "
                   f"own train or val split (first: {(folder / 'pneumonia' / 'copy.png').resolve()} = "
                   f"{train_image.path}, train): evaluate on images the model never saw; remove them\n")
    config = make_config({**trial.result["config"], "test_data": str(folder), "epochs": 1})
    with pytest.raises(DataError, match=r"1 of its images are byte-identical to images of the trial's own train"):
        run_trial(config, tmp_path / "trials", verbose=False)


def test_the_trials_own_data_is_read_without_a_word_about_it(tmp_path: Path) -> None:
    """Read for the overlap check, the trial's own data printed its skipped files and warnings in the middle of
    the evaluation's output ('skipped 1 unusable files'), where they read as the evaluation set's."""
    from runner.evaluate import _own_data

    folder = make_class_folders(tmp_path / "own", {"normal": 8, "pneumonia": 8})
    (folder / "pneumonia" / "broken.png").write_bytes(b"not a png")
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "data": str(folder)})
    said: list[str] = []
    own, splits = _own_data(config, TASKS.get("pneumonia"), said.append)
    assert own is not None and len(own.skipped) == 1 and set(splits) == {"train", "val", "test"}
    assert said == []


def test_evaluate_a_real_ray_sweeps_best_and_all_trials(tmp_path: Path, capsys) -> None:
    """A real two-trial Ray sweep through the CLI (temperature-scaled), then ``evaluate``: ``best`` gives one row,
    the trial the leaderboard ranks first; ``all`` adds the other; each row's temperature is its trial's."""
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "tasks": ["pneumonia"], "models": ["baseline"],
        "fixed": {"epochs": 2, "image_size": 32, "bootstrap": 50, "early_stopping": 0, "data": {"n": 80},
                  "plots": False, "calibrate": "temperature"},
        "space": {"learning_rate": {"type": "categorical", "choices": [0.003, 0.01]}},
        "num_samples": 2, "searcher": "grid", "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0, "workers": 0}}))
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(sweep), "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    board = leaderboard.load(results)
    sweep_id = board["sweep_id"].iloc[0]
    external = tmp_path / "external.yaml"
    external.write_text(yaml.safe_dump({"layout": "demo", "n": 40, "seed": 3, "classes": ["normal", "pneumonia"]}))
    assert main(["evaluate", sweep_id, "--data", str(external), "--results", str(results)]) == 0
    (best,) = load_evaluations(str(results), sweep_id)["trial_id"]
    assert best == leaderboard.top(board, n=1)["trial_id"].iloc[0]
    assert main(["evaluate", sweep_id, "--trials", "all", "--data", str(external), "--results", str(results)]) == 0
    rows = load_evaluations(str(results), sweep_id).set_index("trial_id")
    assert sorted(rows.index) == sorted(board["trial_id"]) and rows["data_fingerprint"].nunique() == 1
    temperatures = board.set_index("trial_id")["val_temperature"]
    assert rows["temperature"].to_dict() == pytest.approx(temperatures.to_dict())
    assert rows["eval_ece_calibrated"].notna().all() and capsys.readouterr().out.count("internal test") == 2

@pytest.mark.slow
def test_evaluate_on_real_radiographs_of_held_out_patients(shared_data: Path, tmp_path: Path, capsys) -> None:
    """The Kermany subset split by patient into two manifests: a trial trains on the first, and ``evaluate`` on the
    second (patients the trial never saw) gives the metrics the trial gave it as its own external test set."""
    kermany = shared_data / "kermany-subset"
    manifest = pd.read_csv(kermany / "manifest.csv")
    patients = sorted(manifest["patient_id"].unique())
    held_out = set(patients[::3])
    for name, rows in (("train", manifest[~manifest["patient_id"].isin(held_out)].sample(360, random_state=0)),
                       ("external", manifest[manifest["patient_id"].isin(held_out)].sample(160, random_state=0))):
        rows.to_csv(tmp_path / f"{name}.csv", index=False)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"layout": "manifest", "path": str(tmp_path / f"{name}.csv"), "image_root": str(kermany)}))
    config = make_config({"task": "pneumonia", "model": "small_cnn", "image_size": 64, "epochs": 4, "batch_size": 16,
                          "bootstrap": 200, "calibrate": "temperature", "data": str(tmp_path / "train.yaml"),
                          "test_data": str(tmp_path / "external.yaml"), "cache_dir": str(tmp_path / "cache")})
    results = tmp_path / "results"
    trial = run_trial(config, results / "trials", verbose=False)
    leaderboard.write_row(results, leaderboard.row_from_result(
        trial.result, sweep_id="real", sweep_name="real", extra={"trial_dir": str(trial.directory)}))
    assert main(["evaluate", "real", "--data", str(tmp_path / "external.yaml"), "--results", str(results)]) == 0
    print(capsys.readouterr().out)
    row = load_evaluations(str(results), "real").iloc[0]
    assert row["n_images"] == 160
    for key in ("roc_auc", "f1", "f1_tuned", "ece", "ece_calibrated", "brier_calibrated_ci_low"):
        assert row[f"eval_{key}"] == pytest.approx(trial.metrics["external_test"][key], abs=1e-6), key
    assert row["eval_roc_auc"] > 0.7  # held-out patients' pneumonia is found: far above chance
