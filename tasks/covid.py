"""COVID-19 / normal / pneumonia: the transfer-learning notebooks' task."""

from runner.task import TASKS, MulticlassTask

TASKS.register("covid")(MulticlassTask(
    name="covid", classes=("covid", "normal", "pneumonia"),
    default_data={"layout": "demo", "classes": ["covid", "normal", "pneumonia"]},
))
