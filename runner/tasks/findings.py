"""Findings: several per image (the NIH ChestX-ray14 / CheXpert shape), here the demo's four."""

from runner.tasks._multilabel import MultilabelTask
from runner.tasks._registry import register

register(MultilabelTask(name="findings", classes=("cardiomegaly", "effusion", "opacity", "pneumothorax")))
