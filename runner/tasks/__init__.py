"""Tasks: what is predicted from which data, with which loss, head, metrics and pictures.

A task *kind* is one class that owns all of the kind's behaviour: ``BinaryTask``, ``MulticlassTask``,
``AnomalyTask``, ``SegmentationTask`` in ``runner/tasks/_kinds.py``, and ``MultilabelTask`` (several findings per
image) in ``runner/tasks/_multilabel.py``. A named task is one module of
this package, named as the task, that registers one instance of a kind, its name written once::

    from runner.tasks._kinds import BinaryTask
    from runner.tasks._registry import register

    register(BinaryTask(name="pneumonia", classes=("normal", "pneumonia")))

``TASKS`` imports those modules the first time it is read (every module here whose name does not start
with ``_``).
"""

from __future__ import annotations

from runner.tasks._kinds import (
    ANOMALY_SCORES,
    AnomalyTask,
    BinaryTask,
    Kind,
    MulticlassTask,
    Plot,
    SegmentationTask,
    Split,
    Task,
)
from runner.tasks._multilabel import FindingNeed, MultilabelTask
from runner.tasks._registry import TASKS, register

__all__ = [
    "ANOMALY_SCORES",
    "TASKS",
    "AnomalyTask",
    "BinaryTask",
    "FindingNeed",
    "Kind",
    "MulticlassTask",
    "MultilabelTask",
    "Plot",
    "SegmentationTask",
    "Split",
    "Task",
    "register",
]
