"""Plain-text summaries: the metrics printed at the end of a trial, and durations as a person reads them."""

from __future__ import annotations

from typing import Any

#: (unit, seconds in it), largest first: ``human_duration`` picks the first one the duration fills.
DURATION_UNITS = (("hour", 3600.0), ("minute", 60.0), ("second", 1.0))


def human_duration(seconds: float) -> str:
    """``234.8`` -> ``3.91 minutes``: the largest unit of which the duration holds one or more (seconds below
    a minute), to three significant figures, trailing zeros dropped (``2 hours``, ``1.5 hours``); thousands of
    hours as a whole number (``1,234 hours``), never in scientific notation."""
    unit, size = next(((name, size) for name, size in DURATION_UNITS if seconds >= size), DURATION_UNITS[-1])
    value = seconds / size
    shown = f"{value:.3g}" if value < 999.5 else f"{value:,.0f}"  # 999.7 would be .3g's "1e+03"
    return f"{shown} {unit}" if shown == "1" else f"{shown} {unit}s"


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def metrics_table(result: dict[str, Any]) -> str:
    """Validation, test (with 95% CI) and external-test columns for the task's summary metrics
    (``Task.summary``), each followed by its value after temperature scaling (``<metric>_calibrated``) when
    the trial scaled."""
    from runner.tasks import TASKS

    task = TASKS.get(result["task"])
    found = result["metrics"]
    columns = [name for name in ("val", "test", "external_test") if name in found]
    shown = [name for key in task.summary for name in (key, f"{key}_calibrated")]
    keys = [k for k in shown if any(k in found[c] for c in columns)]
    header = ["metric", *columns, "test 95% CI"]
    rows = [[key, *(_cell(found[c].get(key)) for c in columns), _interval(found.get("test", {}), key)]
            for key in keys]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in
             [header, *rows]]
    temperature = found["val"].get("temperature")
    notes = [task.summary_note] if task.summary_note else []
    if temperature is not None:
        notes.append(f"(*_calibrated: after temperature scaling, T = {temperature:.3g} fitted on validation)")
    return "\n".join([*lines, *notes])
