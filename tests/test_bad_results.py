"""Results that cannot be trusted as they are: files in the leaderboard folder that are not leaderboard rows
(another tool's Parquet, a truncated file, a hand-edited row), and a sweep ``metric`` / ``mode`` that the sweep
would not honour. Real files only; no Ray sweep (the objective is checked where it is built)."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_leaderboard import make_result, record
from test_sweep import TINY, _write

from runner import leaderboard
from runner.errors import ConfigError
from runner.leaderboard.files import row_table
from runner.sweep.assemble import load_sweep
from runner.sweep.trainable import epoch_metrics, final_metrics

# file name -> what the warning must say about it
BAD_FILES = {
    "other-tool.parquet": "not a leaderboard row: no column schema_version, sweep_id",
    "truncated.parquet": "unreadable (",
    "val-f1-as-text.parquet": "column 'val_f1' is string, not double",
    "no-trial-id.parquet": "not a leaderboard row: no column trial_id",
    "odd-status.parquet": "status 'done' is not one of completed, stopped, failed",
}


def _row_table(trial_id: str) -> pa.Table:
    row = leaderboard.row_from_result(make_result("binary", trial_id), sweep_id="s1", sweep_name="demo_sweep")
    return row_table(row)


def _results_with_bad_files(root: Path) -> Path:
    """Two rows written by the runner, one edited through pandas (legitimate: text as large_string), and one
    file of each bad kind beside them."""
    good = Path(record(root, "binary", "b-1"))
    record(root, "binary", "b-2", seed=1)
    folder = good.parent
    edited = leaderboard.load(root).set_index("trial_id", drop=False).loc[["b-2"]].assign(trial_id="b-edited")
    edited.to_parquet(folder / "b-edited.parquet", index=False)
    pd.DataFrame({"patient": ["p1", "p2"], "score": [0.1, 0.9]}).to_parquet(folder / "other-tool.parquet")
    (folder / "truncated.parquet").write_bytes(good.read_bytes()[:400])
    table = _row_table("b-text")
    pq.write_table(table.set_column(table.column_names.index("val_f1"), "val_f1", pa.array(["0.99"])),
                   folder / "val-f1-as-text.parquet")
    pq.write_table(_row_table("b-noid").drop(["trial_id"]), folder / "no-trial-id.parquet")
    table = _row_table("b-odd")
    pq.write_table(table.set_column(table.column_names.index("status"), "status", pa.array(["done"])),
                   folder / "odd-status.parquet")
    return folder


def test_load_keeps_the_rows_and_names_each_file_it_skips(tmp_path: Path) -> None:
    folder = _results_with_bad_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = leaderboard.load(tmp_path)
    assert sorted(df["trial_id"]) == ["b-1", "b-2", "b-edited"]
    assert df["val_f1"].dtype == "float64" and df["epochs_run"].dtype == "Int64"
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(BAD_FILES), messages
    for name, why in BAD_FILES.items():
        assert [m for m in messages if m.startswith(f"skipping leaderboard file {folder / name}: {why}")], name
    assert leaderboard.top(df, n=1).loc[0, "trial_id"] == "b-1"  # the text val_f1 of 0.99 would have won


def test_leaderboard_and_report_commands_warn_once_per_skipped_file(tmp_path: Path) -> None:
    folder = _results_with_bad_files(tmp_path)
    done = subprocess.run([sys.executable, "-m", "runner", "leaderboard", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "b-1" in done.stdout and "3 of 3 trials" in done.stdout
    for name in BAD_FILES:
        assert done.stderr.count(f"skipping leaderboard file {folder / name}") == 1, done.stderr
    from runner.html_report import render_report

    with pytest.warns(UserWarning) as caught:
        page = render_report(str(tmp_path), "s1")
    assert "b-edited" in page and "b-text" not in page
    skipped = [str(w.message) for w in caught if str(w.message).startswith("skipping leaderboard file")]
    assert sorted(skipped) == sorted(set(skipped)) and len(skipped) == len(BAD_FILES)


# ----------------------------------------------------------------------------------- sweep metric and mode


@pytest.mark.parametrize(("change", "message"), [
    ({"metric": "val_f2"}, r"metric 'val_f2' is not a validation metric every trial of pneumonia reports: "
                           r"choose objective \(each task's own\) or one of val_loss, val_accuracy, .*val_f1, "
                           r"val_roc_auc, val_pr_auc, val_ece, val_brier$"),
    ({"metric": "val_n"}, r"metric 'val_n' is not a validation metric"),
    ({"metric": "loss"}, r"metric 'loss' is not a validation metric"),
    ({"metric": "test_f1"}, r"metric 'test_f1' is not a validation metric"),
    ({"tasks": ["pneumonia", "covid"], "metric": "val_f1"},
     r"metric 'val_f1' is not a validation metric every trial of pneumonia, covid reports: choose objective "
     r"\(each task's own\) or one of val_loss, val_accuracy, val_ece, val_brier$"),
    ({"metric": "val_loss", "mode": "max"}, r"mode max contradicts metric 'val_loss', which is better when lower: "
                                            r"set mode: min, or leave mode out"),
    ({"metric": "objective", "mode": "min"}, r"mode min contradicts metric objective \(each task's own validation "
                                             r"metric\), which is better when higher: set mode: max"),
])
def test_a_metric_the_sweep_would_not_optimise_is_refused_at_load(tmp_path: Path, change: dict,
                                                                   message: str) -> None:
    path = _write(tmp_path, {**TINY, **change})
    with pytest.raises(ConfigError, match=message) as error:
        load_sweep(str(path))
    assert str(error.value).startswith(f"{path}: ")


def test_a_named_metric_sets_the_mode_and_is_what_optuna_asha_and_ranking_use(tmp_path: Path) -> None:
    from runner.sweep.record import SweepRun
    from runner.sweep.run import LeaderboardWriter, _scheduler, _searcher

    spec = load_sweep(str(_write(tmp_path, {**TINY, "metric": "val_loss"})))
    assert (spec.metric, spec.mode) == ("val_loss", "min")  # mode left out: the metric's own direction
    assert load_sweep(str(_write(tmp_path, TINY))).mode == "max"
    run = SweepRun(sweep_id="s1", name="tiny", results=str(tmp_path / "results"), storage=str(tmp_path / "tune"),
                   source=spec.source, overrides={}, profile=None)
    searcher, scheduler = _searcher(spec, run), _scheduler(spec, epochs=2)
    assert (searcher.metric, searcher.mode) == ("objective", "min")
    assert (scheduler.metric, scheduler._mode, scheduler._metric_op) == ("objective", "min", -1.0)
    # every epoch, and the last report, carry the sweep's metric as "objective"
    logs = {"loss": 0.9, "val_loss": 0.7, "val_f1": 0.4}
    assert epoch_metrics(logs, "val_loss", 0, "min")["objective"] == 0.7
    assert epoch_metrics({**logs, "val_loss": math.nan}, "val_loss", 0, "min")["objective"] == sys.float_info.max
    assert epoch_metrics({**logs, "val_f1": math.nan}, "val_f1", 0, "max")["objective"] == 0.0
    results = []
    for index, (losses, best) in enumerate((([0.8, 0.5, 0.6], 2), ([0.7, 0.3, 0.9], 2))):
        result = {**make_result("binary", f"t-{index}", seed=index), "best_epoch": best, "epochs_run": 3,
                  "history": {"loss": [1.0] * 3, "val_loss": losses, "val_f1": [0.5] * 3}}
        results.append(result)
        told = final_metrics(result, "val_loss", "min")["objective"]
        row = leaderboard.row_from_result(result, sweep_id="s1", sweep_name="tiny",
                                          **LeaderboardWriter(run, spec)._optimised(result["monitor"]))
        assert told == row["val_loss"] == losses[best - 1]
        assert (row["sweep_metric"], row["sweep_mode"], row["monitor"]) == ("val_loss", "min", "val_f1")
        leaderboard.write_row(run.results, row)
    ranked = leaderboard.top(leaderboard.load(run.results))
    assert ranked.attrs == {"by": "val_loss", "mode": "min"} and list(ranked["trial_id"]) == ["t-1", "t-0"]
    default = leaderboard.row_from_result(results[0], sweep_id="s2", sweep_name="tiny",
                                          **LeaderboardWriter(run, load_sweep(str(_write(tmp_path, TINY))))
                                          ._optimised("val_f1"))
    assert (default["sweep_metric"], default["sweep_mode"]) == ("val_f1", "max") and "val_loss" not in default
    assert final_metrics(results[0], "val_f1", "max")["objective"] == default["val_f1"]
