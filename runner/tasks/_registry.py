"""The task registry, in a leaf module: it imports only ``runner.registry`` (the task modules import it,
it imports none of them until it is first read), so no import cycle can run through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.registry import Registry

if TYPE_CHECKING:
    from runner.tasks._kinds import Task

TASKS: Registry[Task] = Registry("task", package="runner.tasks")
"""Task name -> ``Task``, filled by the modules of ``runner.tasks`` the first time it is read."""


def register(task: Task) -> Task:
    """Adds ``task`` to ``TASKS`` under its own ``name``, so a task module writes the name once; a name
    registered twice fails when the modules are imported."""
    return TASKS.register(task.name)(task)
