"""COVID-19 / normal / pneumonia: the transfer-learning notebooks' task."""

from runner.tasks._kinds import MulticlassTask
from runner.tasks._registry import register

register(MulticlassTask(name="covid", classes=("covid", "normal", "pneumonia")))
