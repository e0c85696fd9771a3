"""The searchers a search space names, driven through Ray Tune's OptunaSearch as a sweep would drive them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner.errors import ConfigError
from runner.sweep.assemble import load_sweep
from runner.sweep.record import SweepRun
from runner.sweep.run import _searcher


def _space(tmp_path: Path, **changes) -> Path:
    raw = {"tasks": ["pneumonia"], "models": ["baseline", "small_cnn"], "searcher": "grid", "num_samples": 12,
           "space": {"learning_rate": {"type": "categorical", "choices": [1e-3, 1e-2]},
                     "batch_size": {"type": "categorical", "choices": [8, 16, 32]}}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**raw, **changes}))
    return path


def _suggestions(path: Path, n: int) -> list[tuple]:
    run = SweepRun(sweep_id="s", name="s", results=str(path.parent / "results"), storage=str(path.parent / "tune"),
                   source=str(path), overrides={}, profile=None)
    searcher = _searcher(load_sweep(str(path)), run)
    seen = []
    for index in range(n):
        seen.append(tuple(sorted(searcher.suggest(f"trial-{index}").items())))
        searcher.on_trial_complete(f"trial-{index}", {"objective": 0.5})
    return seen


def test_grid_runs_every_point_once(tmp_path: Path) -> None:
    seen = _suggestions(_space(tmp_path), 12)
    assert len(set(seen)) == 12
    assert {dict(point)["model"] for point in seen} == {"baseline", "small_cnn"}
    assert {dict(point)["batch_size"] for point in seen} == {8, 16, 32}


def test_random_search_differs_from_grid(tmp_path: Path) -> None:
    seen = _suggestions(_space(tmp_path, searcher="random"), 12)
    assert len(set(seen)) < 12  # sampling with replacement from 12 points repeats some (seeded, so stable)


@pytest.mark.parametrize(("changes", "message"), [
    ({"space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}},
     "searcher grid needs categorical choices, but 'space.learning_rate' is float"),
    ({"num_samples": 13}, "num_samples=13 but the grid has 12 points: set num_samples to at most 12"),
    ({"per_model": {"small_cnn": {"dropout": {"type": "categorical", "choices": [0.0, 0.5]}}}},
     "searcher grid cannot take per_model or per_task parameters"),
])
def test_grid_refuses_what_it_cannot_enumerate(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_sweep(str(_space(tmp_path, **changes)))
