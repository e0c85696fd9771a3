"""Anomaly detection: an autoencoder trained on normal images flags the rest by its anomaly score."""

from runner.tasks._kinds import AnomalyTask
from runner.tasks._registry import register

register(AnomalyTask(name="anomaly", classes=("normal", "pneumonia")))
