"""COVID-19 / normal / pneumonia: the transfer-learning notebooks' task."""

from runner.task import TASKS, Task

TASKS.register("covid")(Task(
    name="covid", kind="multiclass", classes=("covid", "normal", "pneumonia"),
    default_data={"layout": "demo", "classes": ["covid", "normal", "pneumonia"]},
    monitor="val_f1_macro",
))
