"""The task package's shape: a kind owns its behaviour (no code outside ``runner.tasks`` asks which kind a
task is), a named task is one ``register`` call in a module named as the task, and every registered task
keeps the contract its kind declares."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from conftest import make_class_folders

import runner
import runner.tasks
from runner.config import make_config
from runner.data import Record
from runner.errors import DataError
from runner.sweep.trainable import reported_metrics
from runner.tasks import TASKS, BinaryTask, Kind, Split, Task, register

ROOT = Path(runner.__file__).parent.parent
TASK_PACKAGE = Path(runner.tasks.__file__).parent
KINDS = frozenset(get_args(Kind))


def kind_tests(source: str) -> list[int]:
    """Lines of ``source`` that branch on a task's kind: ``x.kind`` compared (``==``, ``!=``, ``in``, ``not
    in``) with a kind name or a collection of them, a table indexed by ``x.kind``, or ``match x.kind``.
    (``dtype.kind == "f"`` and ``registry.kind`` are other kinds: only task kind names count.)"""
    def is_kind(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "kind"

    def names_a_kind(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in KINDS
        return isinstance(node, ast.Tuple | ast.List | ast.Set) and any(names_a_kind(e) for e in node.elts)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(map(is_kind, operands)) and any(map(names_a_kind, operands)):
                found.append(node.lineno)
        elif (isinstance(node, ast.Subscript) and is_kind(node.slice)) or (
                isinstance(node, ast.Match) and is_kind(node.subject)):
            found.append(node.lineno)
    return sorted(found)


def test_the_kind_check_finds_each_way_of_branching_on_a_kind() -> None:
    source = ("if task.kind == 'binary': pass\nok = TASKS.get(n).kind in ('anomaly', 'segmentation')\n"
              "table[task.kind]\nmatch task.kind:\n    case _: pass\nfloat_pixels = dtype.kind == 'f'\n")
    assert kind_tests(source) == [1, 2, 3, 4]


def test_no_module_outside_the_task_package_branches_on_a_task_kind() -> None:
    modules = [path for folder in ("runner", "bench", "tests") for path in sorted((ROOT / folder).rglob("*.py"))
               if TASK_PACKAGE not in path.parents]
    assert len(modules) > 50, "the scan must see the whole code base"
    found = {f"{path.relative_to(ROOT)}:{line}" for path in modules for line in kind_tests(path.read_text())}
    assert not found, f"ask the task instead (a method or class attribute of its kind): {sorted(found)}"


def test_every_task_module_registers_the_task_it_is_named_after() -> None:
    modules = {m.name for m in pkgutil.iter_modules([str(TASK_PACKAGE)]) if not m.name.startswith("_")}
    assert modules == set(TASKS.names()) == {"anomaly", "covid", "findings", "pneumonia", "pneumothorax"}
    assert all(TASKS.get(name).name == name for name in modules)


@pytest.fixture
def registry_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task a test registers stays out of later tests (their lists of valid task names)."""
    TASKS.names()  # the shipped tasks, loaded before the copy
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))


def test_a_task_registered_in_one_call_is_usable_with_data_holding_its_classes(registry_restored) -> None:
    task = register(BinaryTask(name="covid_or_not", classes=("normal", "covid")))
    assert TASKS.get("covid_or_not") is task and "covid_or_not" in TASKS.names()
    config = make_config({"task": "covid_or_not", "model": "baseline", "data": {"n": 60, "size": 32}})
    assert config.data["layout"] == "demo" and config.data["classes"] == ["normal", "covid"]
    dataset = task.load_data(config.data)
    assert {split: sorted(counts) for split, counts in dataset.counts().items()} == {
        split: ["covid", "normal"] for split in ("train", "val", "test")}
    assert "val_f1" in reported_metrics("covid_or_not")
    with pytest.raises(ValueError, match="task 'covid_or_not' is registered twice"):
        register(BinaryTask(name="covid_or_not", classes=("normal", "pneumonia")))


def test_load_data_holds_what_its_kind_needs_and_an_external_set_is_used_whole(tmp_path: Path) -> None:
    """The one loading call of the trial, ``data check`` and ``sweep --dry-run``."""
    make_class_folders(tmp_path, {"normal": 3})
    with pytest.raises(DataError, match=r"\(layout class_folders\) has no masks, and task 'pneumothorax' needs "
                                        r"them: use the image_masks layout \(images/ beside masks/\), siim_rle, or a "
                                        r"manifest with mask_root or mask_column"):
        TASKS.get("pneumothorax").load_data(str(tmp_path))
    with pytest.raises(DataError, match=r"only one class \(normal\) found"):
        TASKS.get("anomaly").load_data(str(tmp_path))
    assert len(TASKS.get("anomaly").load_data(str(tmp_path), whole=True).records) == 3


def _made_up_split(task: Task) -> tuple[Split, np.ndarray]:
    """Eight images cycling through the task's classes, masks where it needs them, random scores."""
    rng = np.random.default_rng(0)
    shape = (8, 8, 8, 1)
    labels = [task.classes[i % len(task.classes)] for i in range(shape[0])]
    masks = (rng.random(shape) > 0.7).astype(np.uint8) * 255 if task.needs_masks else None
    split = Split("test", [Record(f"{i}.png", label) for i, label in enumerate(labels)], np.zeros(shape, np.uint8),
                  masks)
    return split, task.random_scores(split, rng)


@pytest.mark.parametrize("name", TASKS.names())
def test_each_task_computes_the_metrics_its_kind_declares(name: str) -> None:
    task = TASKS.get(name)
    split, scores = _made_up_split(task)
    params = task.bind_params({})
    assert set(task.bootstrap_inputs(split, scores, params)) == set(task.bootstrapped)
    test_metrics = task.evaluate(split, scores, params, val=(split, scores))
    assert set(task.bootstrapped) <= set(task.summary) <= set(test_metrics)


@pytest.mark.parametrize("name", TASKS.names())
def test_recorded_scores_are_the_scores_the_prediction_columns_hold(name: str) -> None:
    """What ``runner evaluate`` reads back from a trial's ``predictions.parquet`` to tune thresholds again: the
    scores themselves, for every kind that stores them (segmentation stores per-image Dice, not pixels)."""
    import pandas as pd

    task = TASKS.get(name)
    split, scores = _made_up_split(task)
    recorded = task.recorded_scores(pd.DataFrame(task.prediction_columns(split, scores)))
    assert (recorded is None) == task.needs_masks
    assert recorded is None or np.array_equal(recorded, scores)
