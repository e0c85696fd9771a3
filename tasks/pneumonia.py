"""Normal vs pneumonia: the from-scratch CNN notebooks' task."""

from runner.task import TASKS, Task

TASKS.register("pneumonia")(Task(
    name="pneumonia", kind="binary", classes=("normal", "pneumonia"),
    default_data={"layout": "demo", "classes": ["normal", "pneumonia"]},
))
