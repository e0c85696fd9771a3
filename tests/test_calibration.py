"""Calibration: ECE, Brier score and reliability bins against independent computations (scikit-learn, a NumPy ECE
written here), on arrays with known answers and on real tiny trials' ``predictions.parquet``; temperature scaling
on constructed over- and underconfident logits and in real trials; the leaderboard columns and the report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from runner import calibration, metrics
from runner.config import make_config
from runner.errors import ConfigError
from runner.html_report import render_report
from runner.leaderboard import load, natural_mode, row_from_result, write_row
from runner.report import metrics_table
from runner.trial import run_trial

BINS = 15


def numpy_ece(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> float:
    """ECE written out bin by bin: right-closed bins ``(lo, hi]``, the first also holding 0."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for b, (lo, hi) in enumerate(itertools.pairwise(edges)):
        inside = (confidence > lo) & (confidence <= hi) if b else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            total += inside.sum() / len(confidence) * abs(outcome[inside].mean() - confidence[inside].mean())
    return total


def top_class(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)


# ------------------------------------------------------------------------------------- constructed arrays


def test_perfectly_calibrated_probabilities_have_zero_ece() -> None:
    """Ten images at each of 0.1, 0.3, 0.5, 0.7, 0.9 with exactly that fraction positive."""
    p = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 10)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (1, 3, 5, 7, 9)]).astype(int)
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    assert metrics.brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    # sampled: outcomes drawn with probability p, so ECE is only sampling noise
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    assert metrics.expected_calibration_error(rng.random(p.size) < p, p) < 0.005


def test_a_known_miscalibration() -> None:
    """Binary: all say 0.9, half are positive: ECE 0.4, Brier (0.1² + 0.9²) / 2 = 0.41. Multi-class: every top
    class at 0.8, half right: ECE 0.3; Brier per image 0.2² + 0.1² + 0.1² right, 0.8² + 0.9² + 0.1² wrong."""
    y = np.r_[np.ones(50), np.zeros(50)].astype(int)
    assert metrics.calibration_metrics(y, np.full(100, 0.9)) == pytest.approx({"ece": 0.4, "brier": 0.41})
    p = np.tile([0.8, 0.1, 0.1], (100, 1))
    classes = np.r_[np.zeros(50), np.ones(50)].astype(int)
    found = metrics.calibration_metrics(classes, p)
    assert found["ece"] == pytest.approx(0.3)
    assert found["brier"] == pytest.approx((0.06 + 1.46) / 2)


def test_ece_brier_and_bins_match_independent_computations() -> None:
    """Random scores with some on bin edges (k/15): the NumPy ECE above, scikit-learn's ``brier_score_loss``
    (binary; multi-class unscaled, Brier's original score) and ``calibration_curve``'s bin means."""
    rng = np.random.default_rng(3)
    p = np.r_[rng.random(300) ** 2, np.arange(16) / 15]
    y = (rng.random(p.size) < p ** 0.7).astype(int)
    assert metrics.expected_calibration_error(y, p) == pytest.approx(numpy_ece(p, y.astype(float)))
    assert metrics.brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    table = metrics.reliability_bins(y, p)
    fraction, mean_p = calibration_curve(y, p, n_bins=BINS, strategy="uniform")
    filled = [i for i, n in enumerate(table["count"]) if n]
    assert np.allclose([table["outcome"][i] for i in filled], fraction)
    assert np.allclose([table["confidence"][i] for i in filled], mean_p)
    assert sum(table["count"]) == p.size and np.allclose(table["edges"], np.linspace(0, 1, BINS + 1))

    probs = softmax(rng.normal(0, 2, (400, 4)), axis=1)
    classes = rng.integers(0, 4, 400)
    assert metrics.expected_calibration_error(classes, probs) == pytest.approx(numpy_ece(*top_class(classes, probs)))
    assert metrics.brier_score(classes, probs) == pytest.approx(
        brier_score_loss(classes, probs, labels=[0, 1, 2, 3], scale_by_half=False))


def test_bad_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match=r"probabilities must be in \[0, 1\]"):
        metrics.expected_calibration_error([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="class indices must be in"):
        metrics.brier_score([0, 3], np.full((2, 3), 1 / 3))
    assert metrics.calibration_metrics([], np.zeros(0)) == {"ece": None, "brier": None}


# ------------------------------------------------------------------------------------ temperature scaling


def _overconfident(rng: np.random.Generator, n: int, k: int, sharpness: float):
    """Labels drawn from the true probabilities, and a model that reports them with logits x ``sharpness``."""
    if k == 2:
        z = rng.normal(0, 1.5, n)
        return (rng.random(n) < expit(z)).astype(int), expit(sharpness * z)
    z = rng.normal(0, 1.5, (n, k))
    truth = softmax(z, axis=1)
    return np.array([rng.choice(k, p=row) for row in truth]), softmax(sharpness * z, axis=1)


@pytest.mark.parametrize("k", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("sharpness", [3.0, 0.5], ids=["overconfident", "underconfident"])
def test_temperature_scaling_finds_the_distortion_and_lowers_ece(k: int, sharpness: float) -> None:
    """Fitted on one half, the temperature is the sharpness (> 1 overconfident, < 1 underconfident) within
    sampling error, and the NLL minimum of a brute-force grid (scikit-learn's ``log_loss``); on the other half
    ECE drops and no prediction changes side or class."""
    rng = np.random.default_rng(7)
    y, p = _overconfident(rng, 6000, k, sharpness)
    fit, held = slice(0, 3000), slice(3000, None)
    temperature = calibration.fit_temperature(y[fit], p[fit])
    assert temperature == pytest.approx(sharpness, rel=0.12)
    assert (temperature > 1) == (sharpness > 1)
    grid = np.linspace(temperature * 0.8, temperature * 1.2, 81)
    labels = list(range(k)) if k > 2 else [0, 1]
    losses = [log_loss(y[fit], calibration.scaled(p[fit], t), labels=labels) for t in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(temperature, rel=0.01)
    after = calibration.scaled(p[held], temperature)
    before_ece, after_ece = (metrics.expected_calibration_error(y[held], q) for q in (p[held], after))
    assert after_ece < before_ece / 2, (before_ece, after_ece)
    if k == 2:
        assert ((after >= 0.5) == (p[held] >= 0.5)).all()
    else:
        assert (after.argmax(axis=1) == p[held].argmax(axis=1)).all()


def test_saturated_probabilities_stay_finite() -> None:
    p = np.array([0.0, 1.0, 0.5, 1.0])
    z = calibration.logits(p)
    assert np.isfinite(z).all() and z[1] == pytest.approx(16.6, abs=0.1)
    assert np.isfinite(calibration.fit_temperature([0, 1, 1, 1], p))
    assert np.allclose(calibration.scaled(np.array([[1.0, 0.0, 0.0]]), 2.0).sum(axis=1), 1.0)


def test_calibrate_is_a_checked_config_key() -> None:
    assert make_config({"task": "pneumonia", "model": "baseline"}).calibrate == "none"
    with pytest.raises(ConfigError, match=r"calibrate='platt' must be one of none, temperature"):
        make_config({"task": "pneumonia", "model": "baseline", "calibrate": "platt"})
    for task, model in (("anomaly", "conv_autoencoder"), ("findings", "baseline")):
        with pytest.raises(ConfigError, match=rf"calibrate=temperature: task '{task}' .* outputs no class "
                                              "probabilities to calibrate; remove calibrate"):
            make_config({"task": task, "model": model, "calibrate": "temperature"})


def test_calibration_errors_rank_lower_first() -> None:
    assert [natural_mode(m) for m in ("val_ece", "val_brier_calibrated", "val_loss", "val_f1", "val_f1_fleece")] \
        == ["min", "min", "min", "max", "max"]


# ------------------------------------------------------------------------------------------ real trials


@pytest.fixture(scope="module", params=["pneumonia", "covid"])
def trial(request, tmp_path_factory: pytest.TempPathFactory):
    """One real tiny trial per calibrated kind (baseline model, 32 px, 3 epochs) with temperature scaling and
    the demo set as an external test set too."""
    from runner.tasks import TASKS

    out = tmp_path_factory.mktemp(f"calibration-{request.param}")
    external = {"layout": "demo", "n": 60, "seed": 5, "classes": list(TASKS.get(request.param).classes)}
    config = make_config({"task": request.param, "model": "baseline", "image_size": 32, "epochs": 3,
                          "batch_size": 16, "bootstrap": 100, "calibrate": "temperature",
                          "data": {"n": 160, "size": 48}, "test_data": external, "cache_dir": str(out / "cache")})
    return run_trial(config, out / "trials", verbose=False)


def _split(trial, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(targets, probabilities, temperature-scaled probabilities) of one split from ``predictions.parquet``."""
    rows = pd.read_parquet(trial.directory / "predictions.parquet").query("split == @split")
    if "score" in rows:
        return rows["target"].to_numpy(int), rows["score"].to_numpy(float), rows["calibrated_score"].to_numpy(float)
    classes = trial.result["data"]["classes"]
    return (rows["target"].to_numpy(int), rows[[f"score_{c}" for c in classes]].to_numpy(float),
            rows[[f"calibrated_score_{c}" for c in classes]].to_numpy(float))


def _independent(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if p.ndim == 1:
        return {"ece": numpy_ece(p, y.astype(float)), "brier": brier_score_loss(y, p)}
    return {"ece": numpy_ece(*top_class(y, p)),
            "brier": brier_score_loss(y, p, labels=list(range(p.shape[1])), scale_by_half=False)}


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 softmax rows: 1 within 1e-7
def test_trial_calibration_matches_independent_computations_from_predictions(trial) -> None:
    """Every split's ECE and Brier score, before and after scaling, recomputed from ``predictions.parquet``; the
    temperature is the one the validation rows alone give; the scaled columns are the raw ones scaled by it."""
    found = trial.metrics
    temperature = trial.metrics["val"]["temperature"]
    y_val, p_val, _ = _split(trial, "val")
    assert temperature == pytest.approx(calibration.fit_temperature(y_val, p_val), rel=1e-9)
    assert set(found) == {"val", "test", "external_test"}
    for split in found:
        y, p, scaled = _split(trial, split)
        assert np.allclose(scaled, calibration.scaled(p, temperature), atol=1e-12)
        for key, value in _independent(y, p).items():
            assert found[split][key] == pytest.approx(value)
        for key, value in _independent(y, scaled).items():
            assert found[split][f"{key}_calibrated"] == pytest.approx(value)
    y, p, scaled = _split(trial, "test")
    low, high = metrics.bootstrap_ci(metrics.expected_calibration_error, y, p, n_resamples=100, seed=0)
    assert (found["test"]["ece_ci_low"], found["test"]["ece_ci_high"]) == pytest.approx((low, high))
    assert found["test"]["brier_calibrated_ci_low"] <= found["test"]["brier_calibrated_ci_high"]


def test_reliability_tables_and_plot(trial) -> None:
    """The tables in ``result.json`` are ``calibration_curve``'s bins (top-class confidence for multi-class), and
    the plot is written and listed."""
    tables = trial.result["calibration"]["reliability"]
    assert trial.result["calibration"]["bins"] == BINS and set(tables) == {"val", "test", "external_test"}
    y, p, scaled = _split(trial, "test")
    for when, q in (("before", p), ("after", scaled)):
        confidence, outcome = (q, y) if q.ndim == 1 else top_class(y, q)
        fraction, mean_confidence = calibration_curve(outcome, confidence, n_bins=BINS)
        table = tables["test"][when]
        assert np.allclose([v for v in table["outcome"] if v is not None], fraction)
        assert np.allclose([v for v in table["confidence"] if v is not None], mean_confidence)
    assert trial.result["plot_error"] is None and "reliability.png" in trial.result["plots"]
    assert (trial.directory / "reliability.png").stat().st_size > 10_000
    json.dumps(trial.result, allow_nan=False)


def test_calibration_columns_in_the_leaderboard_table_and_report(trial, tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_row(results, row_from_result(trial.result, sweep_id="cal", sweep_name="cal",
                                       extra={"trial_dir": str(trial.directory)}))
    row = load(results).iloc[0]
    for split in ("val", "test", "external_test"):
        for key in ("ece", "brier", "ece_calibrated", "brier_calibrated"):
            assert row[f"{split}_{key}"] == pytest.approx(trial.metrics[split][key])
    for column in ("test_ece_ci_low", "test_brier_ci_high", "test_ece_calibrated_ci_low",
                   "external_test_brier_calibrated_ci_high"):
        assert 0 <= row[column] <= 2
    assert row["val_temperature"] == pytest.approx(trial.metrics["val"]["temperature"])
    assert row["hp_calibrate"] == "temperature"
    table = metrics_table(trial.result)
    assert "ece_calibrated" in table and "fitted on validation" in table
    html = render_report(str(results), "cal")
    assert 'alt="reliability.png"' in html
    assert f"test ECE {trial.metrics['test']['ece']:.3f}" in html and "fitted on validation" in html
