"""One trial end to end: `runner train` for every task on demo data, reproducibility, outputs, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from runner.cli import main
from runner.config import make_config
from runner.errors import ConfigError
from runner.trial import run_trial

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


@pytest.mark.parametrize(("task", "model", "settings", "metric", "floor"), END_TO_END,
                         ids=[case[0] for case in END_TO_END])
def test_train_each_task_end_to_end(tmp_path: Path, capsys, task, model, settings, metric, floor) -> None:
    result = _train(tmp_path, task, model, *settings)
    trial = tmp_path / result["trial_id"]
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
    out = capsys.readouterr().out
    assert "epoch 1/" in out and "test 95% CI" in out


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
