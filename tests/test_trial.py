"""One trial end to end: `runner train` for every task on demo data, its recorded metrics recomputed from its
predictions with scikit-learn / NumPy, reproducibility, outputs, errors."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from runner.cli import main
from runner.config import make_config
from runner.errors import ConfigError
from runner.leaderboard import load, row_from_result, write_row
from runner.tasks import TASKS
from runner.trial import load_splits, run_trial

# (task, model, settings, headline metric, value the model must beat: chance is 0.5 for every one of them;
# None: a U-Net from scratch does not localise the demo pneumothorax in 2 CPU epochs, so that case checks the
# loss falls and the metrics are defined; the slow test checks real segmentation quality on real lung masks)
END_TO_END = [
    ("pneumonia", "small_cnn", ["epochs=5", "batch_size=16", "data.n=300"], "roc_auc", 0.75),
    ("covid", "small_cnn", ["epochs=5", "batch_size=16", "data.n=300"], "roc_auc_ovr", 0.65),
    ("anomaly", "conv_autoencoder", ["epochs=2", "data.n=240"], "roc_auc", 0.55),
    ("pneumothorax", "vgg16_unet", ["epochs=2", "data.n=100", "weights=none", "decoder_filters=[32,16,16,8]"],
     "pixel_roc_auc", None),
]

CLASSIFIER_PLOTS = {"training_curves.png", "confusion_matrix.png", "roc_pr.png"}
PLOTS = {"pneumonia": {*CLASSIFIER_PLOTS, "reliability.png", "gradcam.png"},
         "covid": {*CLASSIFIER_PLOTS, "reliability.png", "gradcam.png"},
         "anomaly": {*CLASSIFIER_PLOTS, "anomaly_scores.png", "reconstructions.png"},
         "pneumothorax": {"training_curves.png", "masks.png"}}


def _train(tmp_path: Path, task: str, model: str, *settings: str, extra: tuple[str, ...] = ()) -> dict:
    argv = ["train", "--task", task, "--model", model, "--out", str(tmp_path), "--set", "image_size=64",
            "--set", "bootstrap=200", *extra]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 0
    (trial,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return json.loads((trial / "result.json").read_text())


@dataclass
class Trained:
    """One end-to-end trial of ``END_TO_END``: its ``result.json`` content, directory and printed output."""

    result: dict
    directory: Path
    out: str

    def predictions(self, split: str) -> pd.DataFrame:
        rows = pd.read_parquet(self.directory / "predictions.parquet")
        return rows[rows["split"] == split].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """``trained(task)``: the ``END_TO_END`` trial of ``task``, trained on first use and shared by every test of
    the module (the end-to-end checks and the metric recomputations read the same four trials)."""
    done: dict[str, Trained] = {}

    def get(task: str) -> Trained:
        if task not in done:
            _, model, settings, _, _ = next(case for case in END_TO_END if case[0] == task)
            out, printed = tmp_path_factory.mktemp(task), io.StringIO()
            with contextlib.redirect_stdout(printed):
                result = _train(out, task, model, *settings)
            done[task] = Trained(result, out / result["trial_id"], printed.getvalue())
        return done[task]

    return get


@pytest.mark.parametrize(("task", "model", "settings", "metric", "floor"), END_TO_END,
                         ids=[case[0] for case in END_TO_END])
def test_train_each_task_end_to_end(trained, task, model, settings, metric, floor) -> None:
    run = trained(task)
    result, trial = run.result, run.directory
    assert result["plot_error"] is None and set(result["plots"]) == PLOTS[task]
    assert {p.name for p in trial.iterdir()} == {"config.yaml", "model.keras", "predictions.parquet", "result.json",
                                                 "tensorboard", *PLOTS[task]}
    assert list((trial / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    if floor is None:
        assert 0 <= result["metrics"]["test"][metric] <= 1
        assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    else:
        assert result["metrics"]["test"][metric] > floor
    assert result["epochs_run"] >= 1 and result["train_seconds"] > 0
    assert result["parameters"]["trainable"] > 0
    predictions = pd.read_parquet(trial / "predictions.parquet")
    assert set(predictions["split"]) == {"val", "test"}
    assert len(predictions[predictions["split"] == "test"]) == result["data"]["counts"]["test"]
    assert "epoch 1/" in run.out and "test 95% CI" in run.out


# ------------------------------------------------------- recorded metrics against scikit-learn / NumPy


def _defined(value: float) -> float | None:
    """scikit-learn's NaN (``zero_division=np.nan``: undefined) as the runner's ``None``."""
    return None if value is None or np.isnan(value) else float(value)


def _thresholded(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """The threshold metrics of one positive outcome, from scikit-learn (positive when ``score >= threshold``)."""
    predicted = (scores >= threshold).astype(int)
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, predicted, labels=[0, 1])
    return {"accuracy": skm.accuracy_score(y, predicted),
            "precision": _defined(skm.precision_score(y, predicted, zero_division=np.nan)),
            "recall": _defined(skm.recall_score(y, predicted, zero_division=np.nan)),
            "sensitivity": _defined(skm.recall_score(y, predicted, zero_division=np.nan)),
            "specificity": _defined(skm.recall_score(y, predicted, pos_label=0, zero_division=np.nan)),
            "f1": _defined(skm.f1_score(y, predicted, zero_division=np.nan)),
            "confusion_matrix": [[tn, fp], [fn, tp]], "n": len(y), "n_positive": int(y.sum())}


def _ranked(y: np.ndarray, scores: np.ndarray) -> dict:
    return {"roc_auc": skm.roc_auc_score(y, scores), "pr_auc": skm.average_precision_score(y, scores)}


def _resampled_ci(metric: Callable[..., float | None], arrays: tuple[np.ndarray, ...], result: dict
                  ) -> tuple[float | None, float | None]:
    """The test's own percentile bootstrap: the trial's seed and resample count, the same paired indices drawn
    from ``default_rng(seed)``, undefined (None / NaN) resamples skipped, ``(None, None)`` if over half are."""
    resamples, n = result["config"]["bootstrap"], len(arrays[0])
    values = []
    for idx in np.random.default_rng(result["seed"]).integers(0, n, size=(resamples, n)):
        value = metric(*(a[idx] for a in arrays))
        if value is not None and not np.isnan(value):
            values.append(value)
    if 2 * len(values) < resamples:
        return None, None
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))


def _auc_or_nan(y: np.ndarray, scores: np.ndarray) -> float:
    return skm.roc_auc_score(y, scores) if 0 < y.sum() < len(y) else np.nan


def _assert_recorded(found: dict, expected: dict) -> None:
    """Every expected metric is recorded with that value (None where undefined)."""
    for key, value in expected.items():
        assert key in found, key
        if value is None or isinstance(value, list):
            assert found[key] == (value if value is None else np.asarray(value).tolist()), key
        else:
            assert found[key] == pytest.approx(float(value), abs=1e-9), key


def _binned_ece(confidence: np.ndarray, outcome: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over 15 equal-width bins closed on the right (0 in the first), written here
    apart from runner.metrics: the share of images in each bin times |mean outcome - mean confidence|."""
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return float(sum(np.mean(index == b) * abs(np.mean(outcome[index == b]) - np.mean(confidence[index == b]))
                     for b in range(bins) if np.any(index == b)))


def _assert_intervals(found: dict, intervals: dict[str, tuple[Callable[..., float | None], tuple]], result: dict
                      ) -> None:
    """Each bootstrapped metric's bounds hold the point value and equal the test's own resampling."""
    assert {key.removesuffix("_ci_low") for key in found if key.endswith("_ci_low")} == set(intervals)
    for key, (metric, arrays) in intervals.items():
        low, high = found[f"{key}_ci_low"], found[f"{key}_ci_high"]
        assert low <= found[key] <= high, key
        assert (low, high) == pytest.approx(_resampled_ci(metric, arrays, result), abs=1e-9), key


def _assert_on_the_leaderboard(run: Trained, tmp_path: Path) -> None:
    """The leaderboard row read back holds each recorded val / test metric (a confusion matrix as JSON text)."""
    write_row(tmp_path, row_from_result(run.result, sweep_id="s", sweep_name="s"))
    (row,) = load(tmp_path).to_dict("records")
    for split in ("val", "test"):
        for key, value in run.result["metrics"][split].items():
            column = row[f"{split}_{key}"]
            if isinstance(value, list):
                assert json.loads(column) == value, (split, key)
            elif value is None:
                assert np.isnan(column), (split, key)
            else:
                assert column == pytest.approx(value, abs=1e-12), (split, key)


def test_binary_metrics_equal_scikit_learn_on_the_trial_predictions(trained, tmp_path: Path) -> None:
    """pneumonia: val at 0.5; test at 0.5 and at the F1-best validation threshold; bootstrap intervals; leaderboard."""
    run = trained("pneumonia")
    val, test = run.predictions("val"), run.predictions("test")
    y_val, s_val, y, s = val["target"].to_numpy(), val["score"].to_numpy(), test["target"].to_numpy(), \
        test["score"].to_numpy()
    found = run.result["metrics"]
    _assert_recorded(found["val"], {**_thresholded(y_val, s_val, 0.5), **_ranked(y_val, s_val), "threshold": 0.5})
    tuned = found["test"]["threshold_tuned"]
    best_on_val = max(skm.f1_score(y_val, s_val >= t) for t in np.unique(s_val))
    assert skm.f1_score(y_val, s_val >= tuned) == pytest.approx(best_on_val)
    assert (s_val >= tuned).sum() == (s_val > tuned).sum()  # between two validation scores, never on one
    at_tuned = {f"{key}_tuned": value for key, value in _thresholded(y, s, tuned).items()
                if key not in ("confusion_matrix", "n", "n_positive")}
    _assert_recorded(found["test"], {**_thresholded(y, s, 0.5), **_ranked(y, s), **at_tuned})
    assert 0 < (s >= 0.5).mean() < 1 and 0 < (s >= tuned).mean() < 1  # no threshold makes the figures constants
    _assert_intervals(found["test"], {
        "roc_auc": (_auc_or_nan, (y, s)),
        "f1": (lambda t, p: skm.f1_score(t, p >= 0.5, zero_division=np.nan), (y, s)),
        "recall": (lambda t, p: skm.recall_score(t, p >= 0.5, zero_division=np.nan), (y, s)),
        "specificity": (lambda t, p: skm.recall_score(t, p >= 0.5, pos_label=0, zero_division=np.nan), (y, s)),
        "ece": (lambda t, p: _binned_ece(p, t), (y, s)),
        "brier": (skm.brier_score_loss, (y, s)),
    }, run.result)
    _assert_on_the_leaderboard(run, tmp_path)


def _multiclass_expected(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    predicted = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    expected = {"accuracy": skm.accuracy_score(y, predicted), "n": len(y),
                "roc_auc_ovr": skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"),
                "confusion_matrix": skm.confusion_matrix(y, predicted, labels=labels).tolist()}
    for average in ("macro", "weighted"):
        for name, score in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
            expected[f"{name}_{average}"] = _defined(score(y, predicted, average=average, zero_division=np.nan))
    for index, name in enumerate(classes):
        truth, chosen = (y == index).astype(int), (predicted == index).astype(int)
        expected |= {f"precision_{name}": _defined(skm.precision_score(truth, chosen, zero_division=np.nan)),
                     f"recall_{name}": _defined(skm.recall_score(truth, chosen, zero_division=np.nan)),
                     f"f1_{name}": skm.f1_score(truth, chosen, zero_division=0.0), f"support_{name}": truth.sum(),
                     f"roc_auc_{name}": skm.roc_auc_score(truth, probs[:, index])}
    return expected


def _ovr_auc_of_present(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes a resample holds (scikit-learn's 'ovr' refuses the others)."""
    aucs = [skm.roc_auc_score(y == c, probs[:, c]) for c in range(probs.shape[1]) if 0 < (y == c).sum() < len(y)]
    return float(np.mean(aucs)) if aucs else np.nan


def test_multiclass_metrics_equal_scikit_learn_on_the_trial_predictions(trained, tmp_path: Path) -> None:
    """covid: F1 / precision / recall macro and weighted, OvR ROC AUC, per-class figures, confusion matrix."""
    run = trained("covid")
    classes = run.result["data"]["classes"]
    found = run.result["metrics"]
    for split in ("val", "test"):
        rows = run.predictions(split)
        probs = np.stack([rows[f"score_{name}"] for name in classes], axis=1)
        y = rows["target"].to_numpy()
        np.testing.assert_array_equal(rows["predicted"], probs.argmax(axis=1))
        _assert_recorded(found[split], _multiclass_expected(y, probs, classes))
    assert len({tuple(row) for row in np.asarray(found["test"]["confusion_matrix"]) > 0}) > 1  # not one column
    _assert_intervals(found["test"], {
        "f1_macro": (lambda t, p: skm.f1_score(t, p.argmax(axis=1), average="macro", zero_division=np.nan), (y, probs)),
        "accuracy": (lambda t, p: skm.accuracy_score(t, p.argmax(axis=1)), (y, probs)),
        "roc_auc_ovr": (_ovr_auc_of_present, (y, probs)),
        "ece": (lambda t, p: _binned_ece(p.max(axis=1), p.argmax(axis=1) == t), (y, probs)),
        "brier": (lambda t, p: float(np.mean(np.sum((p - np.eye(p.shape[1])[t]) ** 2, axis=1))), (y, probs)),
    }, run.result)
    _assert_on_the_leaderboard(run, tmp_path)


def test_anomaly_metrics_equal_scikit_learn_on_the_trial_predictions(trained, tmp_path: Path) -> None:
    """anomaly: the threshold is the percentile of validation normals' scores; test metrics at it, the class-wise
    score summaries, and the ROC AUC interval."""
    run = trained("anomaly")
    val, test = run.predictions("val"), run.predictions("test")
    y_val, s_val, y, s = val["target"].to_numpy(), val["score"].to_numpy(), test["target"].to_numpy(), \
        test["score"].to_numpy()
    found = run.result["metrics"]
    _assert_recorded(found["val"], _ranked(y_val, s_val))
    threshold = np.percentile(s_val[y_val == 0], run.result["config"]["task_params"]["percentile"])
    summaries = {f"score_{name}_{group}": fn(s[y == value]) for group, value in (("normal", 0), ("positive", 1))
                 for name, fn in (("mean", np.mean), ("median", np.median), ("std", np.std))}
    _assert_recorded(found["test"], {**_thresholded(y, s, threshold), **_ranked(y, s), **summaries,
                                     "threshold": threshold})
    _assert_intervals(found["test"], {"roc_auc": (_auc_or_nan, (y, s))}, run.result)
    _assert_on_the_leaderboard(run, tmp_path)


def _overlap(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU in NumPy; an image with neither a true nor a predicted mask scores 1."""
    inter = (truth & predicted).sum(axis=(1, 2, 3)).astype(float)
    total = truth.sum(axis=(1, 2, 3)) + predicted.sum(axis=(1, 2, 3))
    empty = total == 0
    dice = np.where(empty, 1.0, 2 * inter / np.where(empty, 1, total))
    union = total - inter
    return dice, np.where(empty, 1.0, inter / np.where(empty, 1, union))


def test_segmentation_metrics_equal_numpy_on_the_trial_masks(trained, tmp_path: Path) -> None:
    """pneumothorax: the saved best model's masks on the trial's own test images, scored in NumPy, give the
    per-image Dice / IoU of ``predictions.parquet``, the recorded means, pooled pixel and image-level detection
    figures and (scikit-learn) the pixel ROC AUC; the intervals resample the per-image rows."""
    import keras

    run = trained("pneumothorax")
    config = make_config(run.result["config"])
    _, splits = load_splits(config, TASKS.get("pneumothorax"), print)
    test = splits["test"]
    model = keras.models.load_model(run.directory / "model.keras", compile=False)
    probs = np.asarray(model.predict(test.images.astype(np.float32) / 255.0, verbose=0))
    truth, predicted = test.masks > 127, probs >= 0.5
    rows = run.predictions("test")
    # the same seeded demo images (this test's cache may not be the one the trial wrote them to)
    assert [Path(f).name for f in rows["file"]] == [Path(r.path).name for r in test.records]
    dice, iou = _overlap(truth, predicted)
    np.testing.assert_allclose(rows["dice"], dice)
    np.testing.assert_allclose(rows["iou"], iou)
    np.testing.assert_allclose(rows["true_area"], truth.mean(axis=(1, 2, 3)))
    tp, fp, fn = (truth & predicted).sum(), (~truth & predicted).sum(), (truth & ~predicted).sum()
    has_true, has_predicted = truth.any(axis=(1, 2, 3)), predicted.any(axis=(1, 2, 3))
    found = run.result["metrics"]["test"]
    _assert_recorded(found, {
        "dice": dice.mean(), "iou": iou.mean(), "n": len(dice), "n_with_mask": has_true.sum(),
        "pixel_precision": tp / (tp + fp) if tp + fp else None, "pixel_recall": tp / (tp + fn),
        "pixel_f1": 2 * tp / (2 * tp + fp + fn),
        "detection_precision": _defined(skm.precision_score(has_true, has_predicted, zero_division=np.nan)),
        "detection_recall": skm.recall_score(has_true, has_predicted),
        "detection_f1": skm.f1_score(has_true, has_predicted, zero_division=0.0),
        "detection_specificity": skm.recall_score(has_true, has_predicted, pos_label=False),
        "pixel_roc_auc": skm.roc_auc_score(truth.ravel(), probs.ravel())})
    assert dice.max() > 0  # some overlap: Dice and IoU are not a constant 0
    _assert_intervals(found, {"dice": (np.mean, (dice,)), "iou": (np.mean, (iou,))}, run.result)
    _assert_on_the_leaderboard(run, tmp_path)


def test_result_json_schema_and_no_nan(tmp_path: Path) -> None:
    result = _train(tmp_path, "pneumonia", "baseline", "epochs=1", "data.n=120")
    json.dumps(result, allow_nan=False)
    for key in ("schema_version", "trial_id", "task", "model", "config", "hyperparameters", "data", "metrics",
                "history", "epochs_run", "best_epoch", "stopped_early", "train_seconds", "images_per_second",
                "parameters", "seed", "device", "host", "versions", "started_at", "finished_at"):
        assert key in result, key
    assert len(result["data"]["fingerprint"]) == 64
    assert result["versions"]["tensorflow"] and result["device"] == "CPU"
    test = result["metrics"]["test"]
    assert {"f1", "f1_tuned", "threshold_tuned", "roc_auc_ci_low", "roc_auc_ci_high"} <= set(test)
    assert {"ece", "brier", "ece_ci_low", "brier_ci_high"} <= set(test)
    assert {"ece", "brier"} <= set(result["metrics"]["val"])
    assert not any(key.endswith("_calibrated") for key in test)  # calibrate: none, the default: no scaling
    assert result["calibration"]["method"] == "none" and "temperature" not in result["metrics"]["val"]
    assert result["hyperparameters"]["learning_rate"] == 1e-3 and result["hyperparameters"]["filters"] == 32


def _quick(seed: int, tmp_path: Path) -> tuple[dict, pd.DataFrame]:
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 2, "seed": seed,
                          "bootstrap": 50, "data": {"n": 120}, "augment": {"rotation": 0.05, "noise": 0.02}})
    result = run_trial(config, tmp_path / f"seed{seed}", verbose=False)
    return result.metrics, pd.read_parquet(result.directory / "predictions.parquet")


def test_same_seed_same_metrics_other_seed_differs(tmp_path: Path) -> None:
    first, first_predictions = _quick(1, tmp_path)
    again, again_predictions = _quick(1, tmp_path / "again")
    _, other_predictions = _quick(2, tmp_path)
    assert first["test"]["roc_auc"] == pytest.approx(again["test"]["roc_auc"], abs=1e-6)
    scalars = {k: v for k, v in first["val"].items() if k != "confusion_matrix"}
    assert scalars == pytest.approx({k: again["val"][k] for k in scalars}, abs=1e-6)
    assert first["val"]["confusion_matrix"] == again["val"]["confusion_matrix"]
    pd.testing.assert_series_equal(first_predictions["score"], again_predictions["score"], atol=1e-6)
    assert not first_predictions["score"].equals(other_predictions["score"])


def test_external_test_set_and_transfer_backbone(tmp_path: Path) -> None:
    result = _train(tmp_path, "covid", "vgg16", "epochs=1", "data.n=90", "weights=none", "frozen_layers=0.5",
                    "batch_size=16", extra=("--test-data", "demo", "--set", "test_data.seed=7",
                                            "--set", "test_data.n=45", "--set",
                                            "test_data.classes=[covid, normal, pneumonia]"))
    external = result["metrics"]["external_test"]
    assert external["n"] == 45 and "f1_macro_ci_low" in external
    assert result["parameters"]["frozen"] > 0


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'learnig_rate' for task 'pneumonia' and model 'small_cnn': "
                                          r"choose from .*learning_rate"):
        make_config({"task": "pneumonia", "model": "small_cnn", "learnig_rate": 0.1})
    with pytest.raises(ConfigError, match=r"learning_rate=-0.1 must be a number > 0"):
        make_config({"task": "pneumonia", "model": "small_cnn", "learning_rate": -0.1})
    with pytest.raises(ConfigError, match=r"model 'inception_v3' needs images of at least 75x75 pixels; got 64x64"):
        make_config({"task": "covid", "model": "inception_v3", "image_size": 64})
    with pytest.raises(ConfigError, match=r"unknown model 'resnet50': choose one of baseline"):
        make_config({"task": "covid", "model": "resnet50"})
    with pytest.raises(ConfigError, match=r"task 'anomaly': score='psnr' must be one of mse, ssim, latent"):
        make_config({"task": "anomaly", "model": "conv_autoencoder", "score": "psnr"})
    with pytest.raises(ConfigError, match=r"frozen_layers=30 is out of range"):
        run_trial(make_config({"task": "pneumonia", "model": "vgg16", "weights": "none", "frozen_layers": 30,
                               "image_size": 32, "data": {"n": 30}}), Path("/tmp/never-written"), verbose=False)


def test_cli_errors_are_one_line_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "runner", "train", "--task", "pneumonia", "--model", "small_cnn",
                             "--set", "epoch=1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown key 'epoch'")
    assert "Traceback" not in result.stderr
    helped = subprocess.run([sys.executable, "-m", "runner", "train", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--set KEY=VALUE" in helped.stdout
