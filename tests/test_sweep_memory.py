"""A sweep of 50 small trials must not grow memory without bound: trial processes are reused, so a leak
(graphs, models or datasets kept alive between trials) shows as resident memory rising trial after trial.
Slow: 50 real trials are the longest test there is (6 of the default run's 39 minutes on a loaded 2-core
machine); CI runs it with the slow tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sweep_memory import run_memory_sweep


@pytest.mark.slow
def test_fifty_trials_in_reused_processes_do_not_grow_memory(tmp_path: Path) -> None:
    trace = run_memory_sweep(tmp_path, trials=50)
    assert trace.trials == 50
    assert trace.first_mb > 100, "rss_mb was not recorded"
    assert trace.slope_mb_per_trial < 2.0, trace
    assert trace.last_mb - trace.first_mb < 150, trace
