"""Tasks: what is predicted from which data. One file per task in the top-level ``tasks/`` package registers
an instance here; the classes below hold the behaviour shared by tasks of one kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.registry import Registry

Kind = Literal["binary", "multiclass", "anomaly", "segmentation"]


@dataclass(frozen=True)
class Task:
    """A task's contract: its ``kind``, its ``classes`` (for binary: negative first, positive second), the data
    it uses when none is given, and the validation metric a sweep optimises."""

    name: str
    kind: Kind
    classes: tuple[str, ...]
    default_data: Mapping[str, Any] = field(default_factory=dict)
    monitor: str = "val_f1"
    mode: Literal["max", "min"] = "max"

    @property
    def needs_masks(self) -> bool:
        return self.kind == "segmentation"

    @property
    def expected_classes(self) -> tuple[str, ...] | None:
        """Labels a data set may hold: any for anomaly (all non-normal are positive) and segmentation."""
        return self.classes if self.kind in ("binary", "multiclass") else None


TASKS: Registry[Task] = Registry("task", package="tasks")
