"""Plain-text summaries printed at the end of a trial."""

from __future__ import annotations

from typing import Any

TASK_HEADLINES = {
    "binary": ("f1", "roc_auc", "precision", "recall", "specificity", "accuracy", "f1_tuned"),
    "multiclass": ("f1_macro", "accuracy", "roc_auc_ovr", "precision_macro", "recall_macro"),
    "anomaly": ("roc_auc", "pr_auc", "f1", "precision", "recall", "specificity"),
    "segmentation": ("dice", "iou", "pixel_f1", "detection_f1"),
}


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def metrics_table(result: dict[str, Any]) -> str:
    """Validation, test (with 95% CI) and external-test columns for the task's headline metrics."""
    from runner.task import TASKS

    kind = TASKS.get(result["task"]).kind
    found = result["metrics"]
    columns = [name for name in ("val", "test", "external_test") if name in found]
    keys = [k for k in TASK_HEADLINES[kind] if any(k in found[c] for c in columns)]
    header = ["metric", *columns, "test 95% CI"]
    rows = [[key, *(_cell(found[c].get(key)) for c in columns), _interval(found.get("test", {}), key)]
            for key in keys]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in
             [header, *rows]]
    note = "(threshold 0.5, except *_tuned: threshold tuned on validation)" if kind == "binary" else ""
    return "\n".join([*lines, note] if note else lines)
