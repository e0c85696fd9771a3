"""Anomaly detection: an autoencoder trained on normal images flags the rest by its anomaly score."""

from runner.task import TASKS, Task

TASKS.register("anomaly")(Task(
    name="anomaly", kind="anomaly", classes=("normal",),
    default_data={"layout": "demo", "classes": ["normal", "pneumonia"]},
    monitor="val_roc_auc",
))
