"""Seeing results: Grad-CAM on real models, and the sweep HTML report rendered by real headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import yaml
from chromium import render

from runner import leaderboard
from runner.config import make_config
from runner.html_report import render_report
from runner.report import human_duration
from runner.trial import run_trial

# A real sweep with every status, on the validation loss: at learning rate 1.0 training diverges (ASHA stops it at
# the grace period), hidden=0 is refused by the baseline builder when the trial starts (the trial fails).
SWEEP = {
    "description": "report test sweep", "tasks": ["pneumonia"], "models": ["baseline"],
    "fixed": {"epochs": 3, "image_size": 32, "bootstrap": 50, "early_stopping": 0, "batch_size": 16,
              "data": {"n": 80}},
    "space": {"learning_rate": {"type": "categorical", "choices": [1.0, 0.001]}}, "metric": "val_loss", "mode": "min",
    "per_model": {"baseline": {"hidden": {"type": "categorical", "choices": [16, 0]}}},
    "num_samples": 4, "max_concurrent_trials": 1, "max_failures": 0, "searcher": "random",
    "scheduler": {"type": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}
URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize(("model", "settings"), [("small_cnn", {}), ("vgg16", {"weights": "none", "hidden": 8})])
def test_gradcam_heat_map_is_finite_varied_and_image_shaped(model: str, settings: dict) -> None:
    """On a seeded random network: unseeded, a random VGG16's 2 x 2 last feature map had no positive evidence
    for any class on one of the four images now and then (all-zero maps, which ReLU makes correct), so the
    check of a varied map failed for 2 of 20 seeds (measured; seed 0 passes)."""
    import keras

    from runner import gradcam
    from runner.models import create_model

    keras.utils.set_random_seed(0)
    network = create_model(model, input_shape=(32, 32, 1), num_outputs=3, output_activation="softmax", **settings)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype(np.uint8)
    maps = np.stack([gradcam.heatmaps(network, images, index) for index in range(3)])  # (class, image, H, W)
    assert maps.shape == (3, 4, 32, 32) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    # A class with no positive evidence anywhere has an all-zero map (ReLU); some class must have a varied one.
    spread = np.ptp(maps.reshape(3, 4, -1), axis=2)
    assert (spread.max(axis=0) > 0.1).all(), spread


def test_chromium_check_catches_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><p>hi</p><script>console.error('boom'); undefinedFunction();</script>"
                      "</body></html>")
    rendered = render(broken, tmp_path / "broken.png")
    assert any("boom" in e for e in rendered.errors) and any("undefinedFunction" in e for e in rendered.errors)
    assert rendered.screenshot.stat().st_size > 0


#: In the loaded page: the leaderboard's trial column after one click on its "validation" header, and after a second.
SORT_BY_VALIDATION = """(() => {
  const table = document.querySelector("table.sortable");
  const headers = Array.from(table.tHead.rows[0].cells);
  const column = name => headers.findIndex(th => th.textContent.trim() === name);
  const trials = () => Array.from(table.tBodies[0].rows, row => row.cells[column("trial")].textContent.trim());
  const orders = [];
  for (const click of [1, 2]) { headers[column("validation")].click(); orders.push(trials()); }
  return orders;
})()"""


def _sections(html: str) -> dict[str, str]:
    """Each ``<h2>`` heading of the page and the HTML under it, up to the next one (the last up to the script)."""
    parts = html.split("<script>")[0].split("<h2>")[1:]
    return dict(part.split("</h2>", 1) for part in parts)


def _rows(section: str) -> list[list[str]]:
    """The text of each body cell of the section's tables, row by row."""
    body = "".join(re.findall(r"<tbody>(.*?)</tbody>", section, re.DOTALL))
    return [[unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)]


def test_report_of_a_real_sweep_renders_in_chromium(tmp_path: Path) -> None:
    """Every section of a sweep with every status has its content: each trial once in the leaderboard, the
    stopped and the failed trials (with their errors) in their tables, the best trial's four plots and one
    figure for each of the three plot sections; in Chromium the page loads nothing, logs no error, and a click on
    the validation header sorts the leaderboard ascending (trials without a metric last), a second descending."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SWEEP))
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(spec), "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    board = leaderboard.load(results)
    sweep_id = board["sweep_id"].iloc[0]
    made = subprocess.run([sys.executable, "-m", "runner", "report", sweep_id, "--results", str(results),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    page = tmp_path / "out" / f"{sweep_id}.html"
    html = page.read_text()
    assert not URL_ATTRIBUTE.search(html), URL_ATTRIBUTE.search(html)
    by_status = {status: sorted(board.loc[board["status"] == status, "trial_id"]) for status in leaderboard.STATUSES}
    assert all(by_status.values()), board[["trial_id", "status", "hp_learning_rate", "hp_hidden", "val_loss"]]
    sections = _sections(html)
    assert list(sections) == ["Compute used", "Leaderboard", "Best trial per task and model",
                              "Validation metric vs hyper-parameters", "Parallel coordinates",
                              "Parameter importances (Optuna)", "Trials stopped by ASHA", "Failed trials"]
    assert "Left out" not in html
    assert sorted(row[1] for row in _rows(sections["Leaderboard"])) == sorted(board["trial_id"])
    assert sorted(row[0] for row in _rows(sections["Trials stopped by ASHA"])) == by_status["stopped"]
    failed = {row[0]: row[3] for row in _rows(sections["Failed trials"])}
    assert failed == dict(zip(board.loc[board["status"] == "failed", "trial_id"],
                              board.loc[board["status"] == "failed", "error"], strict=True))
    images = {title: content.count("data:image/png;base64,") for title, content in sections.items()}
    assert images == {"Compute used": 0, "Leaderboard": 0, "Best trial per task and model": 5,
                      "Validation metric vs hyper-parameters": 1, "Parallel coordinates": 1,
                      "Parameter importances (Optuna)": 1, "Trials stopped by ASHA": 0, "Failed trials": 0}
    assert "calibration: test ECE" in sections["Best trial per task and model"]
    rendered = render(page, tmp_path / "report.png", script=SORT_BY_VALIDATION)
    print(f"screenshot: {rendered.screenshot}")
    assert rendered.errors == [] and rendered.requests == []
    shown = [row[1] for row in _rows(sections["Leaderboard"])]
    objective = dict(zip(board["trial_id"], board[board["sweep_metric"].iloc[0]], strict=True))
    ascending = sorted(shown, key=lambda trial: (np.isnan(objective[trial]), objective[trial]))
    descending = sorted(ascending, key=lambda trial: (np.isnan(objective[trial]), objective[trial]), reverse=True)
    assert rendered.value == [ascending, descending]
    assert ascending != shown or descending != shown  # the clicks moved rows


def test_report_of_a_one_trial_sweep_without_its_record(tmp_path: Path) -> None:
    """Rows written by hand (no sweep record, no search space): the report still renders, leaves out the sections
    it has nothing for, and says which and why."""
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 1,
                          "bootstrap": 20, "data": {"n": 60}})
    trial = run_trial(config, tmp_path / "trials", verbose=False)
    leaderboard.write_row(tmp_path / "results", leaderboard.row_from_result(
        trial.result, sweep_id="one", sweep_name="one", extra={"trial_dir": str(trial.directory)}))
    html = render_report(str(tmp_path / "results"), "one")
    assert list(_sections(html)) == ["Compute used", "Leaderboard", "Best trial per task and model"]
    assert ("Left out, with nothing to show: Validation metric vs hyper-parameters (needs at least two finished "
            "trials of a task with differing hyper-parameters); Parallel coordinates (needs") in html
    assert "Parameter importances (Optuna) (not computed: 1 finished trial(s): importances need at least two" in html
    assert "Trials stopped by ASHA (no trial was stopped); Failed trials (no trial failed)." in html
    assert [row[1] for row in _rows(_sections(html)["Leaderboard"])] == [trial.trial_id]
    assert html.count("data:image/png;base64,") == len(trial.result["plots"]) == 5
    compute = html.split("<h2>Compute used</h2>")[1].split("<h2>")[0]
    assert f"<td>{human_duration(trial.result['train_seconds'])}</td>" in compute and "hours)" not in compute


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.0, "0 seconds"), (1.0, "1 second"), (12.34, "12.3 seconds"), (60.0, "1 minute"),
    (234.792, "3.91 minutes"), (0.06522 * 3600, "3.91 minutes"), (3600.0, "1 hour"), (5400.0, "1.5 hours"),
    (3 * 86400.0, "72 hours"), (999.9 * 3600, "1,000 hours"), (1234.4 * 3600, "1,234 hours")])
def test_compute_used_is_in_minutes_or_hours_to_three_significant_figures(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_report_of_an_unknown_sweep_is_a_one_line_error(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "runner", "report", "nope", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 2 and made.stderr.startswith("error: no sweep 'nope' in"), made.stderr

