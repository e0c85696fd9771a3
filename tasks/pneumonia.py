"""Normal vs pneumonia: the from-scratch CNN notebooks' task."""

from runner.task import TASKS, BinaryTask

TASKS.register("pneumonia")(BinaryTask(
    name="pneumonia", classes=("normal", "pneumonia"),
    default_data={"layout": "demo", "classes": ["normal", "pneumonia"]},
))
