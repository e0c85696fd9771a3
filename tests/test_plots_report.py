"""Seeing results: Grad-CAM on real models, and the sweep HTML report rendered by real headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
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

# A real sweep with every status: learning rate 1e-9 learns nothing (ASHA stops it at the grace period),
# hidden=0 is refused by the baseline builder when the trial starts (the trial fails).
SWEEP = {
    "description": "report test sweep", "tasks": ["pneumonia"], "models": ["baseline"],
    "fixed": {"epochs": 3, "image_size": 32, "bootstrap": 50, "early_stopping": 0, "batch_size": 16,
              "data": {"n": 80}},
    "space": {"learning_rate": {"type": "categorical", "choices": [0.003, 1.0e-9]}},
    "per_model": {"baseline": {"hidden": {"type": "categorical", "choices": [16, 0]}}},
    "num_samples": 4, "max_concurrent_trials": 1, "max_failures": 0, "searcher": "random",
    "scheduler": {"type": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}
URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize(("model", "settings"), [("small_cnn", {}), ("vgg16", {"weights": "none", "hidden": 8})])
def test_gradcam_heat_map_is_finite_varied_and_image_shaped(model: str, settings: dict) -> None:
    from runner import gradcam
    from runner.models import create_model

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


def test_report_of_a_real_sweep_renders_in_chromium(tmp_path: Path) -> None:
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
    for trial_id in board["trial_id"]:
        assert trial_id in html
    for heading in ("Compute used", "Leaderboard", "Best trial per task and model", "Parallel coordinates",
                    "Parameter importances (Optuna)", "Trials stopped by ASHA", "Failed trials"):
        assert f"<h2>{heading}</h2>" in html
    best_plots = html.split("<h2>Best trial per task and model</h2>")[1].split("<h2>")[0]
    assert best_plots.count("data:image/png;base64,") == 5, "the best trial's five PNGs are embedded"
    assert "calibration: test ECE" in best_plots
    failed = board[board["status"] == "failed"]
    assert len(failed) and all(error in html for error in failed["error"].map(_escaped))
    rendered = render(page, tmp_path / "report.png")
    print(f"screenshot: {rendered.screenshot}")
    assert rendered.errors == [] and rendered.requests == []


def _escaped(text: str) -> str:
    from html import escape

    return escape(text)


def test_report_of_a_one_trial_sweep_without_its_record(tmp_path: Path) -> None:
    """Rows written by hand (no sweep record, no search space): the report still renders, and says why there
    are no importances."""
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 1,
                          "bootstrap": 20, "data": {"n": 60}})
    trial = run_trial(config, tmp_path / "trials", verbose=False)
    leaderboard.write_row(tmp_path / "results", leaderboard.row_from_result(
        trial.result, sweep_id="one", sweep_name="one", extra={"trial_dir": str(trial.directory)}))
    html = render_report(str(tmp_path / "results"), "one")
    assert "not computed: 1 finished trial(s): importances need at least two" in html
    compute = html.split("<h2>Compute used</h2>")[1].split("<h2>")[0]
    assert f"<td>{human_duration(trial.result['train_seconds'])}</td>" in compute and "hours)" not in compute
    assert html.count("data:image/png;base64,") == len(trial.result["plots"]) == 5


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

