"""Per-epoch training checkpoints, so a trial whose process dies mid-training resumes at its last epoch.

A sweep hands ``run_trial`` a ``Checkpointing``: after every epoch the trial writes a checkpoint folder
(weights with the optimizer's state, the epoch number, the history so far, and the early-stopping /
learning-rate-plateau counters with early stopping's best weights) and passes it to ``publish``, which
reports it to Ray with the epoch's metrics. A retried trial gets the folder back from Ray and continues
with ``initial_epoch``: the same model, optimizer and callback state, and a history that holds every epoch.
``runner train`` never checkpoints. Keras's own ``BackupAndRestore`` keeps weights and the epoch only, not
the history or the callbacks' state, and writes to a fixed folder, not one per report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

STATE_FILE = "training_state.json"
WEIGHTS_FILE = "model.weights.h5"
BEST_WEIGHTS_FILE = "best_weights.npz"
#: The counters each stateful callback keeps between epochs (``on_train_begin`` resets them all).
CALLBACK_STATE = {"EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
                  "ReduceLROnPlateau": ("wait", "best", "cooldown_counter")}

#: (checkpoint folder or None on epochs without one, 0-based epoch, the epoch's logs)
Publish = Callable[[Path | None, int, dict[str, Any]], None]


@dataclass
class TrainingState:
    """What a checkpoint folder holds, read back: ``epoch`` epochs were trained before it was written."""

    folder: Path
    epoch: int
    history: dict[str, list[float | None]]
    train_seconds: float
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def restore_weights(self, model) -> None:
        """Model and optimizer state (the optimizer must exist before its saved variables can load)."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / WEIGHTS_FILE)

    def best_weights(self) -> list[np.ndarray] | None:
        path = self.folder / BEST_WEIGHTS_FILE
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return [saved[f"w{i}"] for i in range(len(saved.files))]


def load_state(folder: Path) -> TrainingState:
    state = json.loads((folder / STATE_FILE).read_text())
    return TrainingState(folder, int(state["epoch"]), state["history"], float(state["train_seconds"]),
                         state["callbacks"])


@dataclass
class Checkpointing:
    """A trial's checkpoint policy: ``publish`` gets each epoch's logs, with a checkpoint folder every
    ``every`` epochs and at the last one (``every`` 0: never); ``resume`` is the state to continue from."""

    publish: Publish
    resume: TrainingState | None = None
    every: int = 1


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
