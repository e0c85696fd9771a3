"""One module per task; each registers a ``runner.task.Task`` in ``runner.task.TASKS`` under its file name."""
