"""The Parquet leaderboard: row types, atomic idempotent writes, concurrent writers, ranking, the CLI, and
the query snippets of results/README.md (run exactly as written, so the docs cannot go stale)."""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import typing
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner import leaderboard
from runner import metrics as m
from runner.errors import ConfigError, CxrError
from runner.leaderboard.files import row_table

README = Path(__file__).resolve().parents[1] / "results" / "README.md"
V1 = Path(__file__).resolve().parent / "data" / "leaderboard_v1"  # a results folder written by the runner of d14512b
#: Core columns added since ``V1`` was written: its files lack them, so they read as null there.
ADDED_SINCE_V1 = ("attempts", "attempt_errors", "gpu_util_mean", "gpu_util_peak", "gpu_memory_peak_mb")
START = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

# task kind -> (task, model, classes, monitor, model parameters)
KINDS: dict[str, tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = {
    "binary": ("pneumonia", "small_cnn", ("normal", "pneumonia"), "val_f1",
               {"dropout": 0, "l2": 0.0, "class_weights": False, "threshold_criterion": "f1"}),
    "multiclass": ("covid", "vgg16", ("covid", "normal", "pneumonia"), "val_f1_macro",
                   {"weights": "none", "frozen_layers": 4, "pooling": "avg", "hidden": 256, "dropout": 0.5,
                    "batch_norm": False, "bn_momentum": 0.99, "class_weights": True}),
    "segmentation": ("pneumothorax", "vgg16_unet", ("normal", "pneumothorax"), "val_dice",
                     {"weights": "none", "frozen_layers": "all", "decoder_filters": [32, 16, 16, 8],
                      "skip_connections": True, "bce_weight": 1.0, "dice_weight": 1.0}),
}

TASK_PARAMS = ("class_weights", "threshold_criterion", "bce_weight", "dice_weight")


def make_result(kind: str = "binary", trial_id: str = "t-0", *, seed: int = 0, val: dict | None = None,
                hp: dict | None = None, finished: datetime | None = None, external: bool = False,
                model: str | None = None) -> dict:
    """A ``result.json`` dict shaped like ``runner.trial.run_trial``'s, metrics from the real metric functions."""
    task, default_model, classes, monitor, params = KINDS[kind]
    model = model or default_model
    rng = np.random.default_rng(seed)

    def scores(n: int = 60) -> dict[str, Any]:
        if kind == "binary":
            y_val, y_test = rng.integers(0, 2, n), rng.integers(0, 2, n)
            s_val, s_test = rng.random(n) * 0.5 + y_val * 0.4, rng.random(n) * 0.5 + y_test * 0.4
            found = {"val": {**m.binary_metrics(y_val, s_val), **m.calibration_metrics(y_val, s_val)},
                     "test": {**m.binary_report(y_val, s_val, y_test, s_test), **m.calibration_metrics(y_test, s_test)}}
            ci = {"roc_auc": (0.7, 0.9), "f1": (0.6, 0.8), "recall": (None, None), "specificity": (0.5, 0.7),
                  "ece": (0.05, 0.2), "brier": (0.1, 0.3)}
            reliability = {split: {"before": m.reliability_bins(y, s), "after": None}
                           for split, y, s in (("val", y_val, s_val), ("test", y_test, s_test))}
        elif kind == "multiclass":
            y_val, y_test = rng.integers(0, 3, n), rng.integers(0, 3, n)
            probs = {split: rng.dirichlet([1, 1, 1], n) * 0.7 + np.eye(3)[y] * 0.3
                     for split, y in (("val", y_val), ("test", y_test))}
            found = {split: {**m.multiclass_metrics(y, probs[split], classes), **m.calibration_metrics(y, probs[split])}
                     for split, y in (("val", y_val), ("test", y_test))}
            ci = {"f1_macro": (0.5, 0.7), "accuracy": (0.5, 0.8), "roc_auc_ovr": (0.6, 0.9), "ece": (0.05, 0.2),
                  "brier": (0.2, 0.5)}
            reliability = {split: {"before": m.reliability_bins(y, probs[split]), "after": None}
                           for split, y in (("val", y_val), ("test", y_test))}
        else:
            truth = rng.random((8, 16, 16)) > 0.8
            found = {split: m.segmentation_metrics(truth, np.clip(truth * 0.6 + rng.random(truth.shape) * 0.5, 0, 1))
                     for split in ("val", "test")}
            for split in found:
                found[split]["pixel_roc_auc"] = 0.8
            ci = {"dice": (0.3, 0.5), "iou": (0.2, 0.4)}
            reliability = None
        found["test"] = m.with_confidence_intervals(found["test"], ci)
        if external:
            found["external_test"] = dict(found["test"])
        return found, reliability

    found, reliability = scores()
    found["val"].update(val or {})
    data = {"layout": "demo", "masks": True} if kind == "segmentation" else {"layout": "demo", "classes": list(classes)}
    hyperparameters = {
        "task": task, "model": model, "data": {**data, "n": 300}, "test_data": None,
        "image_size": 64, "batch_size": 32, "epochs": 10, "optimizer": "adam", "learning_rate": 0.001,
        "momentum": 0.9, "early_stopping": 5, "reduce_lr": 0, "augment": False, "seed": seed,
        "mixed_precision": "auto", "bootstrap": 200, "cache_dir": None, "plots": True, "calibrate": "none",
        **params, **(hp or {}),
    }
    per_epoch = {f"val_{key}": [value, value] for key, value in found["val"].items() if not isinstance(value, list)}
    finished = finished or START + timedelta(minutes=seed)
    return {
        "schema_version": 1, "trial_id": trial_id, "task": task, "model": model,
        "config": {**{k: v for k, v in hyperparameters.items() if k not in params},
                   "model_params": {k: v for k, v in params.items() if k not in TASK_PARAMS},
                   "task_params": {k: v for k, v in params.items() if k in TASK_PARAMS}},
        "hyperparameters": hyperparameters,
        "data": {"root": "/data/demo", "layout": "demo", "fingerprint": "ab" * 32, "classes": list(classes),
                 "counts": {"train": 180, "val": 60, "test": 60}, "skipped": 0,
                 "shortcut_warnings": ["all normal images come from one source"] if kind == "binary" else [],
                 "external_test": "/data/other/img0.png" if external else None},
        "metrics": found, "monitor": monitor, "mode": "max",
        "calibration": None if reliability is None else {"method": "none", "bins": m.ECE_BINS,
                                                         "reliability": reliability},
        "gpu": {"util_mean": None, "util_peak": None, "memory_peak_mb": None},
        "history": {"loss": [0.7, 0.5], "val_loss": [0.6, None], **per_epoch, monitor: [0.5, 0.6]},
        "epochs_run": 7, "best_epoch": 2, "stopped_early": True, "train_seconds": 12.5,
        "images_per_second": 100.8, "eval_seconds": 1.5, "resumed_from_epoch": None, "intra_op_threads": 2,
        "rss_mb": 812.5, "plots": ["training_curves.png"], "plot_error": None, "plot_seconds": 0.8,
        "parameters": {"total": 1000, "trainable": 800, "frozen": 200}, "seed": seed, "device": "CPU",
        "host": "node-1",
        "versions": {"python": "3.11.7", "tensorflow": "2.18.0", "keras": "3.8.0", "numpy": "2.1.0",
                     "scikit-learn": "1.6.0", "h5py": "3.12.1", "ray": "2.50.0", "optuna": None, "pandas": "2.2.3",
                     "pyarrow": "18.1.0", "cxr-runner": "0.1.0"},
        "git_commit": "0123abcd", "started_at": (finished - timedelta(seconds=14)).isoformat(),
        "finished_at": finished.isoformat(),
    }


def record(results: Path, kind: str = "binary", trial_id: str = "t-0", *, sweep: str = "s1",
           sweep_name: str = "demo_sweep", status: str = "completed", **kwargs: Any) -> str:
    row = leaderboard.row_from_result(make_result(kind, trial_id, **kwargs), sweep_id=sweep, sweep_name=sweep_name,
                                      status=status, extra={"trial_dir": f"/tmp/trials/{trial_id}"})
    return leaderboard.write_row(results, row)


def record_failed(results: Path, trial_id: str = "t-bad", sweep: str = "s1") -> str:
    row = leaderboard.failed_row(sweep_id=sweep, sweep_name="demo_sweep", trial_id=trial_id, task="pneumonia",
                                 model="small_cnn", error="ResourceExhaustedError: OOM when allocating tensor",
                                 hyperparameters={"task": "pneumonia", "model": "small_cnn", "learning_rate": 0.1,
                                                  "batch_size": 512, "dropout": 0.3, "augment": {"rotation": 0.1}},
                                 node_id="node-abc", started_at=START.isoformat(),
                                 finished_at=START + timedelta(hours=1))
    return leaderboard.write_row(results, row)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """The leaderboard command through a parser built here, as runner.cli.main runs handlers."""
    parser = argparse.ArgumentParser(prog="python -m runner")
    leaderboard.add_leaderboard_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["leaderboard", *argv])
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            code = args.handler(args)
        except CxrError as error:
            print(f"error: {error}")
            code = 2
    return code, out.getvalue()


# ------------------------------------------------------------------------------------------ columns, types



def _shape(value: Any) -> Any:
    """A JSON value's keys (recursively) and types: what a test fixture must share with the real thing."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return "list" if isinstance(value, list) else type(value).__name__


def _shape_differences(made: Any, real: Any, where: str = "") -> list[str]:
    """Where ``made`` differs in shape from ``real``: a key only one has, or another type (``None``, an undefined
    value, goes with any type)."""
    if isinstance(made, dict) and isinstance(real, dict):
        return [f"{where}/{key}: only in {'make_result' if key in made else 'run_trial'}"
                for key in sorted(set(made) ^ set(real))] + \
            [found for key in sorted(set(made) & set(real)) for found in _shape_differences(made[key], real[key],
                                                                                           f"{where}/{key}")]
    return [] if made == real or "NoneType" in (made, real) else [f"{where}: {made} here, {real} in run_trial"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_make_result_has_the_shape_of_a_real_trial(tmp_path: Path, kind: str) -> None:
    """The hand-made ``result.json`` every leaderboard test builds rows from has the keys and types of a real
    ``run_trial`` output of the same task, model and parameters (a tiny one), at every level: a key the runner
    adds or drops, or a model parameter the model does not take, fails here rather than leaving the fixtures
    testing a shape the runner no longer writes."""
    from runner.config import make_config
    from runner.trial import run_trial

    task, model, _, _, params = KINDS[kind]
    config = make_config({"task": task, "model": model, "image_size": 32, "epochs": 1, "bootstrap": 10,
                          "plots": False, "data": {"n": 40}, **params})
    real = json.loads(json.dumps(run_trial(config, tmp_path, verbose=False).result))
    assert _shape_differences(_shape(make_result(kind)), _shape(real)) == []


def test_row_columns_and_types(tmp_path: Path) -> None:
    record(tmp_path, "multiclass", "c-4", external=True)
    record(tmp_path, "multiclass", "c-all", seed=1, hp={"frozen_layers": "all", "dropout": 0})
    record(tmp_path, "binary", "b-1", hp={"augment": {"rotation": 0.05, "noise": 0.02}})
    record(tmp_path, "segmentation", "s-1", status="stopped")
    df = leaderboard.load(tmp_path)
    assert len(df) == 4
    assert list(df.columns[:8]) == list(leaderboard.IDENTITY_COLUMNS)
    assert set(leaderboard.CORE_TYPES) <= set(df.columns)
    assert "hp_task" not in df and "hp_model" not in df
    for column in ("val_f1_macro", "test_recall_covid", "test_f1_macro_ci_low", "external_test_f1_macro", "val_f1",
                   "test_f1_tuned", "test_recall_ci_low", "test_dice", "val_pixel_roc_auc", "test_n", "hp_dropout",
                   "hp_learning_rate", "hp_epochs", "train_seconds", "images_per_second"):
        assert df[column].dtype == np.float64, column
    for column in ("epochs_run", "best_epoch", "n_train", "n_test", "seed", "params_total", "schema_version"):
        assert df[column].dtype == "Int64", column
    assert df["stopped_early"].dtype == bool
    assert df["hp_class_weights"].dtype == "boolean"  # missing (NaN) for segmentation rows, so nullable
    assert str(df["started_at"].dtype).startswith("datetime64") and str(df["finished_at"].dt.tz) == "UTC"
    by_id = df.set_index("trial_id")
    assert by_id.loc["c-4", "hp_frozen_layers"] == "4" and by_id.loc["c-all", "hp_frozen_layers"] == "all"
    assert by_id.loc["s-1", "hp_frozen_layers"] == "all" and pd.isna(by_id.loc["b-1", "hp_frozen_layers"])
    assert json.loads(by_id.loc["s-1", "hp_decoder_filters"]) == [32, 16, 16, 8]
    assert json.loads(by_id.loc["b-1", "hp_augment"]) == {"noise": 0.02, "rotation": 0.05}
    assert json.loads(by_id.loc["c-4", "hp_augment"]) is False
    assert json.loads(by_id.loc["b-1", "hp_data"])["layout"] == "demo" and pd.isna(by_id.loc["b-1", "hp_test_data"])
    assert len(json.loads(by_id.loc["c-4", "val_confusion_matrix"])) == 3
    assert json.loads(by_id.loc["b-1", "shortcut_warnings"]) == ["all normal images come from one source"]
    assert np.isnan(by_id.loc["b-1", "test_recall_ci_low"])  # None in result.json -> NaN
    assert by_id.loc["s-1", "status"] == "stopped" and bool(by_id.loc["s-1", "stopped_early"])
    assert by_id.loc["b-1", "tensorflow_version"] == "2.18.0" and by_id.loc["b-1", "runner_version"] == "0.1.0"
    assert by_id.loc["b-1", "trial_dir"] == "/tmp/trials/b-1" and by_id.loc["b-1", "monitor"] == "val_f1"
    assert by_id.loc["c-4", "n_train"] == 180 and by_id.loc["c-4", "epochs_run"] == 7
    assert json.loads(by_id.loc["b-1", "config_json"])["learning_rate"] == 0.001
    assert json.loads(by_id.loc["b-1", "versions_json"])["optuna"] is None
    assert by_id.loc["b-1", "started_at"] == pd.Timestamp(START + timedelta(seconds=-14))


def test_each_file_has_the_same_types_per_column(tmp_path: Path) -> None:
    """Types come from the column name, not the value: files must unify without any type promotion."""
    record(tmp_path, "binary", "b-int", hp={"dropout": 0, "filters": 32, "weights": None})
    record(tmp_path, "binary", "b-float", hp={"dropout": 0.3, "filters": [32, 64, 128], "weights": "/w.h5"})
    record(tmp_path, "multiclass", "c-frac", hp={"frozen_layers": 0.5})
    record(tmp_path, "multiclass", "c-all", hp={"frozen_layers": "all"})
    record_failed(tmp_path)
    schemas = [pq.read_schema(p) for p in sorted((tmp_path / "leaderboard").rglob("*.parquet"))]
    unified = pa.unify_schemas(schemas)  # default promotion: only null -> T is allowed
    for name, kind in {"hp_dropout": pa.float64(), "hp_filters": pa.string(), "hp_frozen_layers": pa.string(),
                       "hp_weights": pa.string(), "hp_batch_size": pa.float64(), "val_f1": pa.float64(),
                       "epochs_run": pa.int64(), "stopped_early": pa.bool_(), "hp_augment": pa.string(),
                       "finished_at": pa.timestamp("us", tz="UTC"), "val_confusion_matrix": pa.string()}.items():
        assert unified.field(name).type == kind, name
    df = leaderboard.load(tmp_path).set_index("trial_id")
    assert df.loc["c-frac", "hp_frozen_layers"] == "0.5" and df.loc["b-int", "hp_filters"] == "32"
    assert json.loads(df.loc["b-float", "hp_filters"]) == [32, 64, 128]


def test_failed_and_completed_rows_read_together_with_pandas_and_duckdb(tmp_path: Path, monkeypatch) -> None:
    record(tmp_path, "binary", "b-1", val={"f1": 0.7})
    record(tmp_path, "multiclass", "c-1")
    failed_path = record_failed(tmp_path)
    df = leaderboard.load(tmp_path)
    failed = df.set_index("trial_id").loc["t-bad"]
    assert failed["status"] == "failed" and failed["error"].startswith("ResourceExhaustedError")
    assert np.isnan(failed["val_f1"]) and pd.isna(failed["epochs_run"]) and not failed["stopped_early"]
    assert failed["hp_batch_size"] == 512.0 and json.loads(failed["hp_augment"]) == {"rotation": 0.1}
    assert failed["node_id"] == "node-abc" and failed["finished_at"] == pd.Timestamp(START + timedelta(hours=1))
    assert df["val_f1"].dtype == np.float64 and df["epochs_run"].dtype == "Int64"
    assert pq.read_schema(failed_path).field("epochs_run").type == pa.int64()

    monkeypatch.chdir(tmp_path)
    sql = "select * from read_parquet('leaderboard/**/*.parquet', union_by_name=true) order by trial_id"
    rows = duckdb.sql(sql).df()
    assert list(rows["trial_id"]) == ["b-1", "c-1", "t-bad"]
    assert rows.loc[2, "status"] == "failed" and pd.isna(rows.loc[2, "val_f1"]) and rows.loc[0, "val_f1"] == 0.7
    types = {name: kind for name, kind, *_ in duckdb.sql(f"describe {sql}").fetchall()}
    assert types["val_f1"] == "DOUBLE" and types["epochs_run"] == "BIGINT" and types["stopped_early"] == "BOOLEAN"
    assert types["hp_frozen_layers"] == "VARCHAR" and types["finished_at"].startswith("TIMESTAMP")


# -------------------------------------------------------------------------------------------- README


def readme_snippets() -> dict[str, tuple[str, str]]:
    """name -> (language, code) for every fenced block right after a ``<!-- snippet: NAME -->`` marker."""
    pattern = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\s*```(?P<lang>\w+)\n(?P<code>.*?)^```", re.S | re.M)
    return {match["name"]: (match["lang"], match["code"]) for match in pattern.finditer(README.read_text())}


def test_readme_snippets_run_as_written(tmp_path: Path, monkeypatch) -> None:
    snippets = readme_snippets()
    assert set(snippets) == {"pandas-best-f1", "duckdb-best-f1", "pandas-best-per-task", "duckdb-status"}
    results = tmp_path / "results"
    for i, (f1, model) in enumerate([(0.61, "small_cnn"), (0.83, "small_cnn"), (0.72, "baseline")]):
        record(results, "binary", f"b-{i}", seed=i, val={"f1": f1}, model=model)
    for i, f1 in enumerate([0.5, 0.9]):
        record(results, "multiclass", f"c-{i}", sweep="s2", sweep_name="covid_sweep", seed=10 + i,
               val={"f1_macro": f1})
    record(results, "segmentation", "p-0", sweep="s2", sweep_name="covid_sweep", val={"dice": 0.4})
    record_failed(results)
    monkeypatch.chdir(tmp_path)

    def run_python(name: str) -> dict[str, Any]:
        language, code = snippets[name]
        assert language == "python"
        namespace: dict[str, Any] = {}
        with redirect_stdout(io.StringIO()):
            exec(compile(code, f"{README}:{name}", "exec"), namespace)
        return namespace

    best = run_python("pandas-best-f1")["best"]
    assert list(zip(best["model"], best["trial_id"], best["val_f1"], strict=True)) == [
        ("baseline", "b-2", 0.72), ("small_cnn", "b-1", 0.83)]
    language, sql = snippets["duckdb-best-f1"]
    assert language == "sql"
    same = duckdb.sql(sql).df()
    pd.testing.assert_frame_equal(same.reset_index(drop=True), best.reset_index(drop=True), check_dtype=False)

    per_task = run_python("pandas-best-per-task")["best"]
    assert dict(zip(per_task["task"] + "/" + per_task["model"], per_task["val_score"], strict=True)) == {
        "covid/vgg16": 0.9, "pneumonia/baseline": 0.72, "pneumonia/small_cnn": 0.83, "pneumothorax/vgg16_unet": 0.4}

    language, sql = snippets["duckdb-status"]
    status = duckdb.sql(sql).df()
    assert list(zip(status["sweep_name"], status["status"], status["trials"], strict=True)) == [
        ("covid_sweep", "completed", 3), ("demo_sweep", "completed", 3), ("demo_sweep", "failed", 1)]
    assert status.loc[2, "an_error"].startswith("ResourceExhaustedError")


# ---------------------------------------------------------------------------------- storage guarantees


def test_writing_a_trial_again_replaces_its_row(tmp_path: Path) -> None:
    first = record(tmp_path, "binary", "t-1", val={"f1": 0.5}, finished=START)
    again = record(tmp_path, "binary", "t-1", val={"f1": 0.8}, finished=START + timedelta(hours=1))
    assert first == again == str(tmp_path / "leaderboard" / "s1" / "t-1.parquet")
    df = leaderboard.load(tmp_path)
    assert len(df) == 1 and df.loc[0, "val_f1"] == 0.8
    # the same trial recorded twice under one sweep id (files copied between folders): newest finished_at wins
    copy = tmp_path / "leaderboard" / "s1-copy"
    copy.mkdir()
    old = leaderboard.row_from_result(make_result("binary", "t-1", val={"f1": 0.1}, finished=START), sweep_id="s1",
                                      sweep_name="demo_sweep")
    pq.write_table(row_table(old), copy / "t-1.parquet")
    df = leaderboard.load(tmp_path)
    assert len(df) == 1 and df.loc[0, "val_f1"] == 0.8


def test_writes_leave_no_temporary_and_leftovers_are_ignored(tmp_path: Path) -> None:
    path = Path(record(tmp_path, "binary", "t-1"))
    folder = path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["t-1.parquet"]
    (folder / ".x.tmp").write_bytes(b"PAR1 half a file")  # what a crash mid-write leaves
    (folder / ".t-2.parquet.123.abcd.tmp").write_bytes(b"PAR1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = leaderboard.load(tmp_path)
    assert list(df["trial_id"]) == ["t-1"]
    (folder / "t-3.parquet").write_bytes(b"not parquet at all")  # cannot happen through write_row; be defensive
    with pytest.warns(UserWarning, match=r"skipping leaderboard file .*t-3\.parquet: unreadable"):
        df = leaderboard.load(tmp_path)
    assert list(df["trial_id"]) == ["t-1"]


def test_odd_ids_are_quoted_into_safe_file_names(tmp_path: Path) -> None:
    path = Path(record(tmp_path, "binary", ".hidden/trial 1", sweep="a/b"))
    assert path.parent.parent == tmp_path / "leaderboard" and not path.name.startswith(".")
    df = leaderboard.load(tmp_path)
    assert list(df["trial_id"]) == [".hidden/trial 1"] and list(df["sweep_id"]) == ["a/b"]


def _write_many(results: str, rows: list[dict], barrier: Any) -> None:
    barrier.wait()
    for row in rows:
        leaderboard.write_row(results, row)
    assert "tensorflow" not in sys.modules  # writing a built row (hp_test_data missing included) needs no model


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    """Rows are built here, as the sweep driver builds them where its models are loaded; the two writers only
    write, which needs no model (a worker that built rows would import TensorFlow first, for seconds)."""
    rows = [[leaderboard.row_from_result(make_result(["binary", "multiclass", "segmentation"][i % 3],
                                                     f"w{worker}-{i:02d}", seed=i),
                                         sweep_id=f"sweep-{worker}" if i % 2 else "shared", sweep_name="demo_sweep")
             for i in range(20)] for worker in range(2)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_write_many, args=(str(tmp_path), rows[w], barrier)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = leaderboard.load(tmp_path)
    assert len(df) == 40 and df["trial_id"].is_unique
    assert set(df["sweep_id"]) == {"shared", "sweep-0", "sweep-1"}
    assert not [p for p in (tmp_path / "leaderboard").rglob("*") if p.name.startswith(".")]


def test_missing_folder_filters_and_file_uri(tmp_path: Path) -> None:
    empty = leaderboard.load(tmp_path / "nothing-here")
    assert empty.empty and list(empty.columns) == list(leaderboard.IDENTITY_COLUMNS)
    uri = (tmp_path / "r").as_uri()
    record(tmp_path / "r", "binary", "b-1", sweep="id-1", sweep_name="first")
    leaderboard.write_row(uri, leaderboard.row_from_result(make_result("multiclass", "c-1"), sweep_id="id-2",
                                                           sweep_name="second"))
    assert (tmp_path / "r" / "leaderboard" / "id-2" / "c-1.parquet").is_file()
    assert list(leaderboard.load(uri)["trial_id"]) == ["b-1", "c-1"]
    assert list(leaderboard.load(tmp_path / "r", task="covid")["trial_id"]) == ["c-1"]
    assert list(leaderboard.load(str(tmp_path / "r"), sweep="first")["trial_id"]) == ["b-1"]
    assert list(leaderboard.load(tmp_path / "r", sweep="id-2")["trial_id"]) == ["c-1"]
    assert leaderboard.load(tmp_path / "r", task="anomaly").empty


def test_row_checks() -> None:
    result = make_result()
    with pytest.raises(ValueError, match="status must be one of completed, stopped, failed"):
        leaderboard.row_from_result(result, sweep_id="s", sweep_name="n", status="crashed")
    with pytest.raises(ValueError, match="extra column 'val_f1' would overwrite"):
        leaderboard.row_from_result(result, sweep_id="s", sweep_name="n", extra={"val_f1": 1.0})
    row = leaderboard.row_from_result(result, sweep_id="s", sweep_name="n", extra={"ray_trial_id": "ab_0001"},
                                      node_id="n1")
    assert row["ray_trial_id"] == "ab_0001" and row["node_id"] == "n1"
    assert row["finished_at"].tzinfo is not None


def test_reading_imports_neither_tensorflow_nor_ray() -> None:
    """load, the leaderboard command and the report read the column types from the files: no model needed."""
    code = ("import sys\n"
            "from runner import leaderboard\n"
            "from runner.cli import main\n"
            "from runner.html_report import render_report\n"
            f"assert len(leaderboard.load({str(V1)!r})) == 5\n"
            f"assert main(['leaderboard', '--results', {str(V1)!r}, '--by', 'val_f1']) == 0\n"
            f"assert 'c-4' in render_report({str(V1)!r}, 's1')\n"
            "print(sorted({'tensorflow', 'keras', 'ray'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------------ top


def _ranking_frame(tmp_path: Path) -> pd.DataFrame:
    for trial, f1 in (("a", 0.6), ("b", 0.9), ("c", None), ("d", 0.75)):
        record(tmp_path, "binary", trial, val={"f1": f1, "pr_auc": {"a": 0.2, "b": 0.4, "c": 0.1, "d": None}[trial]})
    record_failed(tmp_path)
    return leaderboard.load(tmp_path)


def test_top_ranks_by_validation_metric_nan_last(tmp_path: Path) -> None:
    df = _ranking_frame(tmp_path)
    best = leaderboard.top(df, n=10)  # default: the rows' own monitor (val_f1) and mode (max)
    assert list(best["trial_id"]) == ["b", "d", "a", "c", "t-bad"] and list(best["rank"]) == [1, 2, 3, 4, 5]
    assert best.attrs == {"by": "val_f1", "mode": "max"}
    assert list(leaderboard.top(df, n=2)["trial_id"]) == ["b", "d"]
    assert list(leaderboard.top(df, by="val_f1", mode="min")["trial_id"])[:3] == ["a", "d", "b"]
    assert list(leaderboard.top(df, by="val_pr_auc", mode="min")["trial_id"])[:3] == ["c", "a", "b"]
    assert list(leaderboard.top(df, by="val_pr_auc")["trial_id"])[-2:] == ["d", "t-bad"]  # NaN last either way


def test_top_refuses_test_metrics_and_unknown_ones(tmp_path: Path) -> None:
    df = _ranking_frame(tmp_path)
    for metric in ("test_f1", "external_test_f1"):
        with pytest.raises(ConfigError, match=rf"cannot rank by '{metric}': ranking uses validation metrics only"):
            leaderboard.top(df, by=metric)
    with pytest.raises(ConfigError, match=r"unknown metric 'val_dice': choose --by from .*val_f1.*val_roc_auc"):
        leaderboard.top(df, by="val_dice")
    record(tmp_path, "segmentation", "s-1")
    with pytest.raises(ConfigError, match=r"trials optimise different metrics \(val_dice, val_f1\): pass --by"):
        leaderboard.top(leaderboard.load(tmp_path))
    assert leaderboard.top(leaderboard.load(tmp_path, task="pneumothorax")).attrs["by"] == "val_dice"
    with pytest.raises(ConfigError, match="at least 1"):
        leaderboard.top(df, n=0)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_table_csv_json(tmp_path: Path) -> None:
    for i, (f1, lr) in enumerate([(0.6, 0.01), (0.9, 0.001), (0.75, 0.0003)]):
        record(tmp_path, "binary", f"pneumonia-small_cnn-20250101-12000{i}-ab1{i}", seed=i, val={"f1": f1},
               hp={"learning_rate": lr})
    record_failed(tmp_path)
    code, out = run_cli(["--results", str(tmp_path), "--top", "3"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "sweep_name", "trial_id", "status", "task", "model", "val_f1", "test_f1",
                                "hp_learning_rate", "hp_seed", "train_seconds"]
    assert len(lines) == 5 and lines[1].split()[0] == "1" and "0.9000" in lines[1] and "0.001" in lines[1]
    trial = lines[1].split()[2]  # long ids are shortened from the left: the distinctive end stays
    assert trial.startswith("..") and len(trial) == 24 and trial.endswith("20250101-120001-ab11")
    assert lines[-1] == "ranked by val_f1 (max); test_f1 is shown, never used to rank; 3 of 4 trials"
    start = lines[0].index("val_f1")  # aligned: each value sits under its header
    assert [line[start:start + 6] for line in lines[1:4]] == ["0.9000", "0.7500", "0.6000"]

    code, out = run_cli(["--results", str(tmp_path), "--format", "csv", "--top", "2"])
    table = pd.read_csv(io.StringIO(out))
    assert code == 0 and len(table) == 2 and {"rank", "config_json", "test_f1", "hp_data"} <= set(table.columns)
    assert list(table["val_f1"]) == [0.9, 0.75]

    code, out = run_cli(["--results", str(tmp_path), "--format", "json"])
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4 and rows[-1]["status"] == "failed" and rows[-1]["val_f1"] is None
    assert rows[0]["rank"] == 1 and rows[0]["finished_at"].startswith("2025-01-01T12:01")


def test_table_shows_scalar_hyperparameters_before_lists_and_mappings(tmp_path: Path) -> None:
    record(tmp_path, "binary", "b-1", hp={"augment": False, "filters": 32, "dropout": 0.1, "learning_rate": 0.01})
    record(tmp_path, "binary", "b-2", seed=1, hp={"augment": {"rotation": 0.1}, "filters": [32, 64], "dropout": 0.2,
                                                  "learning_rate": 0.01})
    header = leaderboard.render_table(leaderboard.top(leaderboard.load(tmp_path))).splitlines()[0].split()
    assert header[header.index("test_f1") + 1:] == ["hp_dropout", "hp_seed", "hp_augment", "hp_filters",
                                                    "train_seconds"]


def test_cli_errors_and_empty_leaderboard(tmp_path: Path) -> None:
    record(tmp_path, "binary", "b-1")
    code, out = run_cli(["--results", str(tmp_path), "--by", "val_f2"])
    assert code == 2 and out.startswith("error: unknown metric 'val_f2': choose --by from the validation metrics: ")
    assert "val_f1" in out and "test_f1" not in out
    code, out = run_cli(["--results", str(tmp_path), "--by", "test_f1"])
    assert code == 2 and "ranking uses validation metrics only" in out
    assert run_cli(["--results", str(tmp_path / "none")]) == (
        0, f"no trials in {tmp_path / 'none'} (no such folder: check --results)\n")
    code, out = run_cli(["--results", str(tmp_path), "--task", "covid"])
    assert (code, out) == (0, f"no trials in {tmp_path} (task=covid)\n")


def test_a_column_typed_differently_by_hand_is_read_as_text(tmp_path: Path) -> None:
    record(tmp_path, "binary", "b-1", hp={"dropout": 0.3})
    odd = leaderboard.row_from_result(make_result("binary", "b-old"), sweep_id="s1", sweep_name="demo_sweep")
    table = row_table(odd)
    table = table.set_column(table.column_names.index("hp_dropout"), "hp_dropout", pa.array(["0.1"]))
    pq.write_table(table, tmp_path / "leaderboard" / "s1" / "b-old.parquet")  # e.g. written by an older runner
    with pytest.warns(UserWarning, match="different types in different files, read as text: hp_dropout"):
        df = leaderboard.load(tmp_path)
    assert sorted(df["hp_dropout"]) == ["0.1", "0.3"] and df["val_f1"].dtype == np.float64


def test_cli_when_every_trial_failed(tmp_path: Path) -> None:
    record_failed(tmp_path, "t-1")
    record_failed(tmp_path, "t-2")
    code, out = run_cli(["--results", str(tmp_path)])
    assert code == 0 and out.splitlines()[0].split()[:4] == ["rank", "sweep_name", "trial_id", "status"]
    assert out.splitlines()[-1] == "no validation metric recorded: trials in the order they finished; 2 of 2 trials"


def test_undefined_metrics_are_null_for_sql_and_nan_for_pandas(tmp_path: Path, monkeypatch) -> None:
    record(tmp_path, "binary", "defined", val={"f1": 0.7})
    record(tmp_path, "binary", "undefined", val={"f1": None}, seed=1)  # e.g. F1 with no positives in val
    assert np.isnan(leaderboard.load(tmp_path).set_index("trial_id").loc["undefined", "val_f1"])
    monkeypatch.chdir(tmp_path)
    best = duckdb.sql("select arg_max(trial_id, val_f1), count(val_f1) from "
                      "read_parquet('leaderboard/**/*.parquet', union_by_name=true)").fetchall()[0]
    assert best == ("defined", 1)  # a stored NaN would sort above every number in SQL and win max()


def test_a_row_read_back_through_pandas_can_be_written_again(tmp_path: Path) -> None:
    record(tmp_path, "binary", "b-1")
    record(tmp_path, "multiclass", "c-1")
    record_failed(tmp_path)
    df = leaderboard.load(tmp_path)
    row = df.set_index("trial_id", drop=False).loc["t-bad"].to_dict()
    row["sweep_name"] = "renamed"
    leaderboard.write_row(tmp_path, row)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = leaderboard.load(tmp_path)
    assert len(again) == 3 and set(again["sweep_name"]) == {"demo_sweep", "renamed"}
    for column in ("val_f1", "hp_dropout", "epochs_run", "stopped_early", "finished_at", "hp_frozen_layers"):
        assert again[column].dtype == df[column].dtype, column


# ----------------------------------------------------------------------- column types of hyper-parameters


def _declarations(key: str) -> list[Any]:
    """Every declared type of hyper-parameter ``key``: TrialConfig's field, else each model's parameter."""
    from runner.config import TRAINING_KEYS, TrialConfig
    from runner.models import MODELS

    if key in TRAINING_KEYS:
        return [typing.get_type_hints(TrialConfig)[key]]
    specs = [MODELS.get(name) for name in MODELS.names()]
    return [spec.parameter_types()[key] for spec in specs if key in spec.parameter_types()]


def test_derived_kinds_are_the_old_hand_lists_for_todays_models() -> None:
    """Until the kinds were derived they were two lists kept by hand beside the models: JSON for ``data``,
    ``test_data``, ``augment``, ``filters``, ``decoder_filters`` and text for ``frozen_layers``, ``weights``.
    The declarations give exactly those, and text too for parameters declared as strings only, whose values
    were already stored as those same strings."""
    kinds = leaderboard.hyperparameter_kinds()
    assert {key for key, kind in kinds.items() if kind == "json"} == {"data", "test_data", "augment", "filters",
                                                                      "decoder_filters"}
    text = {key for key, kind in kinds.items() if kind == "text"}
    assert {"frozen_layers", "weights", "batch_norm"} <= text
    assert set(_declarations("batch_norm")) == {bool | str}  # true, false or auto: stored as text
    for key in text - {"frozen_layers", "weights", "batch_norm"}:
        for declared in _declarations(key):
            assert declared in (str, str | None), (key, declared)
    assert _declarations("filters") == [int, Sequence[int]]  # baseline's number, conv_autoencoder's list


def test_a_new_models_parameters_get_their_column_types_from_its_signature(tmp_path: Path, monkeypatch) -> None:
    """A model registered here, with a list-or-number and a number-or-text parameter, gets JSON and text
    columns from its builder's annotations alone: nothing in the leaderboard names them."""
    from runner.models import MODELS
    from runner.models._spec import register

    MODELS.names()  # the real models first, then a copy of the registry that the test may change
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))

    @register("tiny_pyramid", output="classes")
    def tiny_pyramid(input_shape: tuple[int, int, int], num_outputs: int, output_activation: str = "sigmoid", *,
                     kernel_sizes: int | Sequence[int] = 3, padding: int | str = "same", width: float = 1.0) -> Any:
        raise AssertionError("never built: only its signature is read")

    for trial, values in (("p-list", {"kernel_sizes": [3, 5], "padding": 2, "width": 0.5}),
                          ("p-number", {"kernel_sizes": 7, "padding": "valid", "width": 1})):
        record(tmp_path, "binary", trial, model="tiny_pyramid", hp=values)
    schemas = [pq.read_schema(p) for p in sorted((tmp_path / "leaderboard").rglob("*.parquet"))]
    for schema in schemas:
        types = {name: schema.field(name).type for name in ("hp_kernel_sizes", "hp_padding", "hp_width")}
        assert types == {"hp_kernel_sizes": pa.string(), "hp_padding": pa.string(), "hp_width": pa.float64()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one type per column: no "read as text" warning
        df = leaderboard.load(tmp_path).set_index("trial_id")
    assert json.loads(df.loc["p-list", "hp_kernel_sizes"]) == [3, 5] and df.loc["p-number", "hp_kernel_sizes"] == "7"
    assert list(df["hp_padding"]) == ["2", "valid"] and list(df["hp_width"]) == [0.5, 1.0]


def _write_v1_inputs(results: Path) -> None:
    """The rows of ``V1``, built and written again by today's code from the inputs they were written from."""
    for entry in json.loads((V1 / "inputs.json").read_text()):
        if "failed" in entry:
            row = leaderboard.failed_row(sweep_id="s1", sweep_name="demo_sweep", **entry["failed"])
        else:
            options = {key: value for key, value in entry.items() if key != "result"}
            row = leaderboard.row_from_result(entry["result"], sweep_id="s1", sweep_name="demo_sweep", **options)
        leaderboard.write_row(results, row)


def test_a_results_folder_written_by_schema_v1_still_loads(tmp_path: Path) -> None:
    """Rows written before the column types were derived read back as they did, equal column for column and
    type for type to the rows today's code writes from the same results; both kinds of file read as one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = leaderboard.load(V1)
    by_id = old.set_index("trial_id").sort_index()
    assert list(by_id.index) == ["a-ae", "b-small", "c-4", "s-all", "t-bad"]
    assert old["val_f1"].dtype == np.float64 and old["epochs_run"].dtype == "Int64"
    assert old["stopped_early"].dtype == bool and str(old["finished_at"].dt.tz) == "UTC"
    assert list(by_id["hp_frozen_layers"].fillna("-")) == ["-", "-", "4", "all", "0.75"]
    assert json.loads(by_id.loc["a-ae", "hp_filters"]) == [32, 64, 128] and by_id.loc["b-small", "hp_filters"] == "32"
    assert pd.isna(by_id.loc["s-all", "hp_weights"]) and json.loads(by_id.loc["t-bad", "hp_augment"]) == {
        "rotation": 0.1}

    assert "confirm_of" not in pq.read_schema(next((V1 / "leaderboard").rglob("*.parquet"))).names
    assert old["confirm_of"].isna().all()  # a column added since: null in every old row, all of them ordinary

    _write_v1_inputs(tmp_path)
    new = leaderboard.load(tmp_path)
    assert new[list(ADDED_SINCE_V1)].isna().all().all()
    pd.testing.assert_frame_equal(new.drop(columns=list(ADDED_SINCE_V1)), old)  # every other column, in order,
    for old_file in sorted((V1 / "leaderboard").rglob("*.parquet")):              # dtype and value
        old_schema, new_schema = pq.read_schema(old_file), pq.read_schema(tmp_path / old_file.relative_to(V1))
        assert new_schema.field("confirm_of").type == pa.string(), old_file.name
        new_schema = pa.schema([field for field in new_schema if field.name not in (*ADDED_SINCE_V1, "confirm_of")])
        assert new_schema.names == old_schema.names, old_file.name
        changed = {was.name: (was.type, now.type) for was, now in zip(old_schema, new_schema, strict=True)
                   if was.type != now.type}
        # the one difference: cache_dir, declared a string, is a string column when missing too (was null-typed)
        assert changed in ({}, {"hp_cache_dir": (pa.null(), pa.string())}), (old_file.name, changed)

    shutil.copytree(V1 / "leaderboard" / "s1", tmp_path / "leaderboard" / "s1-old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # old and new files join without a column read as text
        both = leaderboard.load(tmp_path)
    assert len(both) == 5  # each trial twice, so once
    assert both.drop(columns=list(ADDED_SINCE_V1)).dtypes.equals(old.dtypes)
