"""Keras callbacks the trial uses: validation metrics each epoch, and a one-line progress print."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np


class ValidationMetrics(keras.callbacks.Callback):
    """Computes the task's own validation metrics after every epoch and puts them in the epoch logs as
    ``val_<metric>``, so early stopping, ReduceLROnPlateau, Ray Tune and ASHA all see the same numbers
    the final report uses. Must come before the callbacks that read them."""

    def __init__(self, compute: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.compute = compute

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        for key, value in self.compute().items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                logs[f"val_{key}"] = float(value)
            elif value is None:
                logs[f"val_{key}"] = math.nan


class EpochLine(keras.callbacks.Callback):
    """``epoch 3/10  loss 0.412  val_loss 0.398  val_f1 0.881  (4.2 s)``: one line per epoch."""

    def __init__(self, epochs: int, monitor: str, printer: Callable[[str], None] = print) -> None:
        super().__init__()
        self.epochs = epochs
        self.monitor = monitor
        self.printer = printer
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        shown = [k for k in ("loss", "val_loss", self.monitor) if k in logs]
        values = "  ".join(f"{k} {logs[k]:.4f}" for k in shown if np.isfinite(logs[k]))
        self.printer(f"epoch {epoch + 1}/{self.epochs}  {values}  ({time.perf_counter() - self._start:.1f} s)")
