"""Pneumothorax segmentation from image + mask pairs."""

from runner.task import TASKS, Task

TASKS.register("pneumothorax")(Task(
    name="pneumothorax", kind="segmentation", classes=("normal", "pneumothorax"),
    default_data={"layout": "demo", "masks": True},
    monitor="val_dice",
))
