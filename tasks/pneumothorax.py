"""Pneumothorax segmentation from image + mask pairs."""

from runner.task import TASKS, SegmentationTask

TASKS.register("pneumothorax")(SegmentationTask(
    name="pneumothorax", classes=("normal", "pneumothorax"),
    default_data={"layout": "demo", "masks": True},
))
