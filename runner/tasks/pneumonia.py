"""Normal vs pneumonia: the from-scratch CNN notebooks' task."""

from runner.tasks._kinds import BinaryTask
from runner.tasks._registry import register

register(BinaryTask(name="pneumonia", classes=("normal", "pneumonia")))
