"""Same seed, data and config on CPU: identical metrics and predictions, in one process or a fresh one; another
seed: other results. A sweep reuses trial processes, so trial A is run again after trial B in the same
process to show that nothing of B leaks into A (Keras state, random generators, TF's graph caches)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from runner.config import make_config
from runner.trial import run_trial

#: augment=true: random flips, rotations, shifts, zooms, noise, so the augmentation generators' seeding is tested.
SETTINGS = {"task": "pneumonia", "model": "small_cnn", "image_size": 32, "epochs": 2, "batch_size": 16,
            "bootstrap": 20, "early_stopping": 0, "augment": True, "data": {"n": 60}}


def _trial(out: Path, seed: int) -> tuple[dict, pd.DataFrame]:
    result = run_trial(make_config({**SETTINGS, "seed": seed}), out, trial_id=f"seed{seed}", verbose=False)
    return result.metrics, pd.read_parquet(result.directory / "predictions.parquet")


FRESH_PROCESS = """
import json, sys
from pathlib import Path
from runner.config import make_config
from runner.trial import run_trial
settings = json.loads(sys.argv[1])
result = run_trial(make_config(settings), Path(sys.argv[2]), trial_id="fresh", verbose=False)
print(json.dumps(result.metrics))
"""


def test_same_seed_identical_in_one_process_and_a_fresh_one_other_seed_differs(tmp_path: Path) -> None:
    first, first_predictions = _trial(tmp_path / "a1", seed=1)
    other, other_predictions = _trial(tmp_path / "b", seed=2)
    again, again_predictions = _trial(tmp_path / "a2", seed=1)
    assert again == first
    pd.testing.assert_frame_equal(again_predictions, first_predictions, check_exact=True)
    assert other != first
    assert not other_predictions["score"].equals(first_predictions["score"])

    fresh = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps({**SETTINGS, "seed": 1}),
                            str(tmp_path / "fresh")], capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == first
    fresh_predictions = pd.read_parquet(tmp_path / "fresh" / "fresh" / "predictions.parquet")
    pd.testing.assert_frame_equal(fresh_predictions, first_predictions, check_exact=True)
