"""Per-trial GPU telemetry (``runner.gpu``): a fake ``nvidia-smi`` on ``PATH`` (a real executable the sampler
runs, printing a changing reading per call and logging each) while a real tiny trial trains; the trial's
``gpu`` summary, its leaderboard columns and the report's compute section must be exactly the mean and peaks
of what it printed. Without ``nvidia-smi`` everything is null."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from runner import gpu, leaderboard
from runner.config import make_config
from runner.html_report import render_report
from runner.trial import run_trial

FAKE = """#!/bin/sh
echo "$@" > "{folder}/args"
n=$(( $(cat "{folder}/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "{folder}/count"
line="$(( (n * 37) % 101 )), $(( 500 + (n * 173) % 4000 ))"
echo "$line" >> "{folder}/printed"
echo "$line"
"""


def _fake_nvidia_smi(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(FAKE.format(folder=folder))
    script.chmod(0o755)
    return folder


def _printed(folder: Path) -> list[tuple[float, float]]:
    lines = (folder / "printed").read_text().splitlines() if (folder / "printed").exists() else []
    return [(float(util), float(memory)) for util, memory in (line.split(",") for line in lines)]


def test_gpu_columns_are_the_mean_and_peaks_of_what_nvidia_smi_printed_while_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake}:{Path('/usr/bin')}:{Path('/bin')}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "SAMPLE_EVERY_S", 0.2)
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": 32, "epochs": 2, "bootstrap": 20,
                          "data": {"n": 60}, "plots": False})
    trial = run_trial(config, tmp_path / "trials", verbose=False)
    printed = _printed(fake)
    time.sleep(0.6)
    assert _printed(fake) == printed, "the sampler kept running after training ended"
    assert len(printed) >= 2, printed
    assert (fake / "args").read_text().split() == ["--query-gpu=utilization.gpu,memory.used",
                                                  "--format=csv,noheader,nounits"]
    utils, memory = [u for u, _ in printed], [m for _, m in printed]
    expected = {"util_mean": sum(utils) / len(utils), "util_peak": max(utils), "memory_peak_mb": max(memory)}
    assert trial.result["gpu"] == pytest.approx(expected)

    results = tmp_path / "results"
    leaderboard.write_row(results, leaderboard.row_from_result(trial.result, sweep_id="g", sweep_name="g",
                                                               extra={"trial_dir": str(trial.directory)}))
    row = leaderboard.load(results).iloc[0]
    assert (row["gpu_util_mean"], row["gpu_util_peak"], row["gpu_memory_peak_mb"]) == pytest.approx(
        (expected["util_mean"], expected["util_peak"], expected["memory_peak_mb"]))
    compute = render_report(str(results), "g").split("<h2>Compute used</h2>")[1].split("<h2>")[0]
    for value in expected.values():
        assert f">{value:.4g}</td>" in compute, (value, compute)


def test_without_nvidia_smi_or_a_gpu_nothing_is_sampled_and_the_columns_are_null(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with gpu.GpuSampler(every_s=0.05) as sampler:
        time.sleep(0.2)
    assert sampler.summary() == {"util_mean": None, "util_peak": None, "memory_peak_mb": None}
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # Ray gave the trial no GPU
    with gpu.GpuSampler(every_s=0.05) as sampler:
        time.sleep(0.2)
    assert _printed(fake) == [] and sampler.summary()["util_mean"] is None

    row = leaderboard.row_from_result({"trial_id": "cpu", "gpu": sampler.summary()}, sweep_id="c", sweep_name="c")
    leaderboard.write_row(tmp_path / "results", row)
    loaded = leaderboard.load(tmp_path / "results").iloc[0]
    assert all(pd.isna(loaded[c]) for c in ("gpu_util_mean", "gpu_util_peak", "gpu_memory_peak_mb"))


def test_a_multi_gpu_reading_is_the_mean_utilisation_and_the_summed_memory() -> None:
    assert gpu.parse_sample("10, 1000\n30, 3000\n") == (20.0, 4000.0)
    assert gpu.parse_sample("[N/A], [N/A]\n") is None and gpu.parse_sample("") is None
    assert gpu.parse_sample(" 7 , 512 ") == (7.0, 512.0)
