"""Per-epoch training checkpoints, so a trial whose process dies mid-training resumes at its last epoch.

A sweep hands ``run_trial`` a ``Checkpointing``: after every epoch the trial writes a checkpoint folder
(weights with the optimizer's state, the epoch number, the history so far, and the early-stopping /
learning-rate-plateau counters with early stopping's best weights) and passes it to ``publish``, which
reports it to Ray with the epoch's metrics. A retried trial gets the folder back from Ray and continues
with ``initial_epoch``: the same model, optimizer and callback state, and a history that holds every epoch.
``runner train`` never checkpoints. Keras's own ``BackupAndRestore`` keeps weights and the epoch only, not
the history or the callbacks' state, and writes to a fixed folder, not one per report.

The Keras callback that writes checkpoints is ``runner.callbacks.EpochCheckpoint``: this module imports no
Keras, so a sweep's driver, which hands trials a ``Checkpointing`` and reads checkpoints back, does not import
TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
