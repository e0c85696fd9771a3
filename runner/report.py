"""Plain-text summaries printed at the end of a trial."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def metrics_table(result: dict[str, Any]) -> str:
    """Validation, test (with 95% CI) and external-test columns for the task's summary metrics
    (``Task.summary``)."""
    from runner.tasks import TASKS

    task = TASKS.get(result["task"])
    found = result["metrics"]
    columns = [name for name in ("val", "test", "external_test") if name in found]
    keys = [k for k in task.summary if any(k in found[c] for c in columns)]
    header = ["metric", *columns, "test 95% CI"]
    rows = [[key, *(_cell(found[c].get(key)) for c in columns), _interval(found.get("test", {}), key)]
            for key in keys]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in
             [header, *rows]]
    return "\n".join([*lines, task.summary_note] if task.summary_note else lines)
