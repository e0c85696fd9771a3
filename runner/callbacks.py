"""Keras callbacks the trial uses: validation metrics each epoch, a one-line progress print, and the
per-epoch checkpoint a sweep's trial writes (its format: ``runner.checkpoint``)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from runner.checkpoint import BEST_WEIGHTS_FILE, CALLBACK_STATE, STATE_FILE, WEIGHTS_FILE, Checkpointing


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


class EpochCheckpoint(keras.callbacks.Callback):
    """Restores the stateful callbacks' counters when training resumes (after their own ``on_train_begin``
    reset them: it must come after them in the list), then writes and publishes a checkpoint each epoch."""

    def __init__(self, policy: Checkpointing, stateful: Sequence[keras.callbacks.Callback], epochs: int) -> None:
        super().__init__()
        self.policy = policy
        self.stateful = [callback for callback in stateful if type(callback).__name__ in CALLBACK_STATE]
        self.epochs = epochs
        resume = policy.resume
        earlier = resume.history if resume else {}
        self.history: dict[str, list[float | None]] = {key: list(values) for key, values in earlier.items()}
        self.seconds_before = resume.train_seconds if resume else 0.0
        self._start = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()
        resume = self.policy.resume
        if resume is None:
            return
        for callback in self.stateful:
            for key, value in resume.callbacks.get(type(callback).__name__, {}).items():
                setattr(callback, key, value)
            if isinstance(callback, keras.callbacks.EarlyStopping):
                callback.best_weights = resume.best_weights()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(_plain(value))
        done = epoch + 1
        every = self.policy.every
        if not every or (done % every and done != self.epochs and not self.model.stop_training):
            self.policy.publish(None, epoch, logs)
            return
        folder = Path(tempfile.mkdtemp(prefix="cxr-checkpoint-"))
        try:
            self.write(folder, done)
            self.policy.publish(folder, epoch, logs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def write(self, folder: Path, done: int) -> None:
        """The checkpoint of ``done`` trained epochs, into an existing empty ``folder``."""
        self.model.save_weights(folder / WEIGHTS_FILE)
        callbacks: dict[str, dict[str, Any]] = {}
        for callback in self.stateful:
            name = type(callback).__name__
            callbacks[name] = {key: _plain(getattr(callback, key, None)) for key in CALLBACK_STATE.get(name, ())}
            best = getattr(callback, "best_weights", None)
            if best is not None:
                np.savez(folder / BEST_WEIGHTS_FILE, **{f"w{i}": w for i, w in enumerate(best)})
        state = {"epoch": done, "history": self.history, "callbacks": callbacks,
                 "train_seconds": self.seconds_before + time.perf_counter() - self._start}
        (folder / STATE_FILE).write_text(json.dumps(state))


def _plain(value: Any) -> Any:
    """Numpy and tensor numbers as Python floats; infinities and NaN stay as they are (Python's JSON keeps
    them: a plateau callback starts from ``best = inf``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    return float(np.asarray(value))
