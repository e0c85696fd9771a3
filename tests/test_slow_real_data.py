"""Slow: train on the real radiographs in ../shared/data and check the models are far above chance.
Run with ``python -m pytest -m slow``; never asserts exact values."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import make_config
from runner.trial import run_trial

pytestmark = pytest.mark.slow


def test_pneumonia_on_kermany_subset(shared_data: Path, tmp_path: Path) -> None:
    config = make_config({"task": "pneumonia", "model": "small_cnn", "image_size": 96, "epochs": 6, "batch_size": 16,
                          "data": str(shared_data / "kermany-subset"), "bootstrap": 200})
    result = run_trial(config, tmp_path, verbose=False)
    assert result.metrics["test"]["roc_auc"] > 0.85


def test_lung_segmentation_on_lungseg(shared_data: Path, tmp_path: Path) -> None:
    config = make_config({"task": "pneumothorax", "model": "vgg16_unet", "weights": "none", "image_size": 64,
                          "epochs": 8, "batch_size": 8, "learning_rate": 3e-4, "decoder_filters": [64, 32, 16, 16],
                          "data": str(shared_data / "lungseg"), "bootstrap": 100})
    result = run_trial(config, tmp_path, verbose=False)
    assert result.metrics["test"]["pixel_roc_auc"] > 0.8
    assert result.metrics["test"]["dice"] > 0.5
