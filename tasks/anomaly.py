"""Anomaly detection: an autoencoder trained on normal images flags the rest by its anomaly score."""

from runner.task import TASKS, AnomalyTask

TASKS.register("anomaly")(AnomalyTask(
    name="anomaly", classes=("normal",),
    default_data={"layout": "demo", "classes": ["normal", "pneumonia"]},
))
