"""Pneumothorax segmentation from image + mask pairs."""

from runner.tasks._kinds import SegmentationTask
from runner.tasks._registry import register

register(SegmentationTask(name="pneumothorax", classes=("normal", "pneumothorax")))
