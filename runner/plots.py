"""Per-trial plots: PNG files in the trial directory, drawn from what the trial already holds.

``write_trial_plots`` is called by ``runner.trial.run_trial`` after evaluation (config key ``plots``, on by
default) with the result, the prediction rows, the test split and the model, so no plot recomputes a metric
or reloads anything. This module is the library of pictures; which of them a trial gets, and from which
inputs, is its task kind's choice (``Task.plots`` in ``runner.tasks``). Every file is listed in the trial's
``result.json`` under ``plots`` and described in ``results/README.md``:

- ``training_curves``: loss, train and validation; the monitored validation metric;
- ``confusion_matrix`` (counts and row-normalised) and ``roc_pr`` (ROC and precision-recall curves with
  their areas), test split;
- ``reliability``: the reliability diagram of a classifier's probabilities on every evaluated split, before
  and after temperature scaling, with each split's ECE and Brier score;
- ``anomaly_scores``: score distribution per class, KDE and strip plot, threshold marked;
  ``reconstructions``: test images beside their reconstructions, with each one's MSE;
- ``masks``: test images with the true and the predicted mask, with each one's Dice;
- ``gradcam_grid``: Grad-CAM heat maps over test images per class, correct and wrong.

Figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas: no pyplot global state, no display,
safe in Ray's worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from runner.tasks import Split, Task

DPI = 100
EXAMPLES_PER_CELL = 2  # Grad-CAM: images per (class, correct / wrong)
MAX_GRID = 6  # reconstructions and masks: images shown


def write_trial_plots(directory: Path, task: Task, result: Mapping[str, Any], predictions: pd.DataFrame,
                      test: Split, model) -> list[str]:
    """Draws the task's plots (``task.plots``) into ``directory``; returns the file names written, in
    drawing order."""
    test_rows = predictions[predictions["split"] == "test"].reset_index(drop=True)
    written = []
    for name, draw in task.plots(result, test_rows, test, model):
        figure = draw()
        figure.savefig(directory / name, dpi=DPI)
        written.append(name)
    return written


def new_figure(width: float, height: float):
    """A constrained-layout figure without pyplot (no global state, no GUI backend, safe in trial threads)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ----------------------------------------------------------------------------------------- training curves


def training_curves(history: Mapping[str, Sequence[float | None]], monitor: str, best_epoch: int | None):
    """Loss (train and validation) and the monitored metric per epoch, the kept epoch marked. The task's
    metric exists for validation only (``ValidationMetrics`` computes it each epoch; doing the same on the
    training set would cost a second pass over it), unless Keras logged a training counterpart."""
    figure = new_figure(10, 3.6)
    loss_axes, metric_axes = figure.subplots(1, 2)
    _series(loss_axes, history, ("loss", "train"), ("val_loss", "validation"))
    loss_axes.set(title="loss", xlabel="epoch", ylabel="loss")
    train_key = monitor.removeprefix("val_")
    _series(metric_axes, history, (train_key, "train"), (monitor, "validation"))
    metric_axes.set(title=monitor, xlabel="epoch", ylabel=train_key)
    for axes in (loss_axes, metric_axes):
        axes.xaxis.get_major_locator().set_params(integer=True)
        if best_epoch:
            axes.axvline(best_epoch, color="grey", linestyle=":", label=f"kept epoch {best_epoch}")
        axes.legend(loc="best", fontsize="small")
        axes.grid(alpha=0.3)
    return figure


def _series(axes, history: Mapping[str, Sequence[float | None]], *keys: tuple[str, str]) -> None:
    for key, label in keys:
        values = history.get(key)
        if values:
            y = np.array([np.nan if v is None else v for v in values], dtype=float)
            axes.plot(np.arange(1, len(y) + 1), y, marker="o", label=label)


# ------------------------------------------------------------------------------------------- classification


def confusion_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], note: str):
    """Counts and row-normalised (each true class sums to 1: per-class recall on the diagonal)."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = 2.2 + 0.9 * len(names)
    figure = new_figure(2 * side + 1, side)
    figure.suptitle(f"confusion matrix ({note})", fontsize="medium")
    for axes, values, title, text in zip(figure.subplots(1, 2), (counts, normalised), ("counts", "row-normalised"),
                                         ("{:.0f}", "{:.2f}"), strict=True):
        image = axes.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        figure.colorbar(image, ax=axes, shrink=0.8)
        for (i, j), value in np.ndenumerate(values):
            axes.text(j, i, text.format(value), ha="center", va="center",
                      color="white" if value > values.max() / 2 else "black")
        axes.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(names)), yticks=range(len(names)),
                 xticklabels=names, yticklabels=names)
    return figure


def roc_pr(curves: list[tuple[str, np.ndarray, np.ndarray]]):
    """ROC and precision-recall curves of the test split, one per (label, is_positive, score) (one-vs-rest
    per class for a multi-class task), with ROC AUC and average precision (the same functions as
    ``result.json``'s metrics); a class absent from the test split is named, not drawn."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from runner import metrics

    figure = new_figure(10, 4.2)
    roc_axes, pr_axes = figure.subplots(1, 2)
    for label, truth, score in curves:
        auc, ap = metrics.roc_auc(truth, score), metrics.pr_auc(truth, score)
        if auc is None or ap is None:
            roc_axes.plot([], [], " ", label=f"{label}: undefined (one class only)")
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        roc_axes.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
        precision, recall, _ = precision_recall_curve(truth, score)
        pr_axes.step(recall, precision, where="post", label=f"{label} (AP {ap:.3f})")
        pr_axes.axhline(truth.mean(), color="grey", linestyle=":", linewidth=0.8)
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="chance")
    roc_axes.set(title="ROC (test)", xlabel="false positive rate", ylabel="true positive rate")
    pr_axes.set(title="precision-recall (test; dotted: prevalence)", xlabel="recall", ylabel="precision",
                ylim=(0, 1.02))
    for axes in (roc_axes, pr_axes):
        axes.legend(loc="lower right" if axes is roc_axes else "lower left", fontsize="small")
        axes.grid(alpha=0.3)
    return figure


SPLIT_TITLES = {"val": "validation", "test": "test", "external_test": "external test"}


def reliability(result: Mapping[str, Any], confidence: str, outcome: str):
    """One column per evaluated split (validation, test, external test): above, the mean ``outcome`` of each
    confidence bin against its mean ``confidence`` (the diagonal is perfect calibration; below it,
    overconfident), before and, with ``calibrate: temperature``, after scaling; below, how many images each
    bin holds. Drawn from ``result.json``'s ``calibration`` tables (``runner.metrics.reliability_bins``) and
    its metrics, nothing recomputed."""
    found = result["calibration"]
    tables = found["reliability"]
    temperature = result["metrics"]["val"].get("temperature")
    figure = new_figure(4.2 * len(tables), 5.6)
    figure.suptitle(f"reliability ({found['bins']} equal-width bins"
                    + (f"; temperature {temperature:.3g} fitted on validation)" if temperature is not None
                       else ")"), fontsize="medium")
    grid = figure.subplots(2, len(tables), squeeze=False, sharex=True, height_ratios=(3, 1))
    for column, (split, table) in enumerate(tables.items()):
        curve_axes, count_axes = grid[0, column], grid[1, column]
        split_metrics = result["metrics"][split]
        curve_axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect")
        edges = np.asarray(table["before"]["edges"])
        for when, style, suffix in (("before", "-", ""), ("after", ":", "_calibrated")):
            if table[when] is None:
                continue
            points = [(c, o) for c, o in zip(table[when]["confidence"], table[when]["outcome"], strict=True)
                      if c is not None]
            x, y = zip(*points, strict=True) if points else ((), ())
            label = (f"{'scaled' if suffix else 'model'}: ECE {_figure(split_metrics.get('ece' + suffix))}, "
                     f"Brier {_figure(split_metrics.get('brier' + suffix))}")
            curve_axes.plot(x, y, style, marker="o", markersize=4, label=label)
            count_axes.bar(edges[:-1], table[when]["count"], width=np.diff(edges), align="edge", alpha=0.5,
                           label=when)
        curve_axes.set(title=SPLIT_TITLES.get(split, split), ylabel=outcome, xlim=(0, 1), ylim=(0, 1))
        curve_axes.legend(loc="upper left", fontsize="x-small")
        count_axes.set(xlabel=confidence, ylabel="images")
        if table["after"] is not None:
            count_axes.legend(fontsize="x-small")
        for axes in (curve_axes, count_axes):
            axes.grid(alpha=0.3)
    return figure


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def select_examples(truth: np.ndarray, predicted: np.ndarray, classes: int, per_cell: int = EXAMPLES_PER_CELL
                    ) -> list[tuple[int, bool, list[int]]]:
    """(class, correct?, image indices) for each true class: the first ``per_cell`` correct and wrong ones."""
    cells = []
    for index in range(classes):
        for correct in (True, False):
            chosen = np.flatnonzero((truth == index) & ((predicted == truth) == correct))[:per_cell]
            cells.append((index, correct, chosen.tolist()))
    return cells


def gradcam_grid(model, test: Split, classes: Sequence[str], predicted: np.ndarray):
    """Rows: true classes; columns: correctly then wrongly classified test images, each with the Grad-CAM map
    of the class the model predicted (what made it say so)."""
    from runner import gradcam

    truth = np.array([classes.index(label) for label in test.labels])
    cells = select_examples(truth, predicted, len(classes))
    columns = 2 * EXAMPLES_PER_CELL
    figure = new_figure(2.1 * columns, 2.3 * len(classes) + 0.4)
    figure.suptitle("Grad-CAM of the predicted class (test; left: correct, right: wrong)", fontsize="medium")
    grid = np.atleast_2d(figure.subplots(len(classes), columns, squeeze=False))
    for axes in grid.flat:
        axes.axis("off")
    shown = [index for _, _, indices in cells for index in indices]
    heat = dict(zip(shown, gradcam.heatmaps(model, test.images[shown], predicted[shown]), strict=True)) if shown \
        else {}
    for class_index, correct, indices in cells:
        if not indices:
            first = grid[class_index, 0 if correct else EXAMPLES_PER_CELL]
            first.text(0.5, 0.5, f"no {'correct' if correct else 'wrong'} {classes[class_index]}\nin test",
                       ha="center", va="center", fontsize="small", transform=first.transAxes)
        for slot, image_index in enumerate(indices):
            guess = int(predicted[image_index])
            axes = grid[class_index, slot + (0 if correct else EXAMPLES_PER_CELL)]
            axes.imshow(test.images[image_index, ..., 0], cmap="gray")
            axes.imshow(heat[image_index], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            axes.set_title(f"{classes[class_index]} → {classes[guess]} {'✓' if correct else '✗'}", fontsize="small",
                           color="green" if correct else "red")
    return figure


# ------------------------------------------------------------------------------------------------- anomaly


def anomaly_scores(rows: pd.DataFrame, threshold: float | None, score: str):
    """Test anomaly scores per original label: a KDE per class above, a jittered strip plot below, and the
    threshold (set on validation normals) across both."""
    from scipy.stats import gaussian_kde

    figure = new_figure(9, 5.5)
    kde_axes, strip_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    labels = sorted(rows["label"].unique())
    ends = [rows["score"].min(), rows["score"].max(), *([threshold] if threshold is not None else [])]
    grid = np.linspace(min(ends), max(ends), 200)
    jitter = np.random.default_rng(0)
    for position, label in enumerate(labels):
        values = rows.loc[rows["label"] == label, "score"].to_numpy(float)
        color = f"C{position}"
        if len(values) > 1 and np.ptp(values) > 0:
            kde_axes.plot(grid, gaussian_kde(values)(grid), color=color, label=f"{label} (n={len(values)})")
        else:
            kde_axes.plot([], [], color=color, label=f"{label} (n={len(values)}, too few for a KDE)")
        strip_axes.scatter(values, position + jitter.uniform(-0.2, 0.2, len(values)), s=10, alpha=0.6, color=color)
    for axes in (kde_axes, strip_axes):
        if threshold is not None:
            axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
        axes.grid(alpha=0.3)
    kde_axes.set(title=f"anomaly score ({score}) on test, per class", ylabel="density")
    kde_axes.legend(fontsize="small")
    strip_axes.set(xlabel=f"anomaly score ({score}); higher = more anomalous", yticks=range(len(labels)),
                   yticklabels=labels)
    return figure


def _spread_indices(labels: Sequence[str], count: int) -> list[int]:
    """Up to ``count`` indices taking each label in turn, so every class is shown."""
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    queues = [by_label[label] for label in sorted(by_label)]
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def reconstructions(model, test: Split):
    """Original above reconstruction for a few test images of each class, each titled with its MSE."""
    chosen = _spread_indices(test.labels, MAX_GRID)
    x = test.images[chosen].astype(np.float32) / 255.0
    recon = np.asarray(model(x, training=False), dtype=np.float32)
    errors = ((x - recon) ** 2).reshape(len(x), -1).mean(axis=1)
    figure = new_figure(1.8 * len(chosen), 4)
    figure.suptitle("test images (top) and their reconstructions (bottom)", fontsize="medium")
    grid = figure.subplots(2, len(chosen), squeeze=False)
    for column, index in enumerate(chosen):
        grid[0, column].imshow(x[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        grid[0, column].set_title(test.labels[index], fontsize="small")
        grid[1, column].imshow(recon[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        grid[1, column].set_title(f"MSE {errors[column]:.4f}", fontsize="small")
    for axes in grid.flat:
        axes.axis("off")
    return figure


# -------------------------------------------------------------------------------------------- segmentation


def masks(model, test: Split, dice: np.ndarray):
    """Image, true mask and predicted mask (threshold 0.5) overlays for test images with a mask first, then
    without, each row titled with its Dice."""
    has_mask = (test.masks > 127).reshape(len(test.masks), -1).any(axis=1)
    chosen = (np.flatnonzero(has_mask)[: MAX_GRID // 2 + MAX_GRID % 2].tolist()
              + np.flatnonzero(~has_mask)[: MAX_GRID // 2].tolist())
    x = test.images[chosen].astype(np.float32) / 255.0
    predicted = np.asarray(model(x, training=False), dtype=np.float32) >= 0.5
    figure = new_figure(7, 2.3 * len(chosen) + 0.4)
    figure.suptitle("test: image, true mask (green), predicted mask (red)", fontsize="medium")
    grid = figure.subplots(len(chosen), 3, squeeze=False)
    for row, index in enumerate(chosen):
        image = x[row, ..., 0]
        grid[row, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
        grid[row, 0].set_title(f"{Path(test.records[index].path).name}", fontsize="x-small")
        _overlay(grid[row, 1], image, test.masks[index, ..., 0] > 127, "Greens", "true mask")
        _overlay(grid[row, 2], image, predicted[row, ..., 0], "Reds", f"predicted, Dice {dice[index]:.3f}")
    for axes in grid.flat:
        axes.axis("off")
    return figure


def _overlay(axes, image: np.ndarray, mask: np.ndarray, cmap: str, title: str) -> None:
    axes.imshow(image, cmap="gray", vmin=0, vmax=1)
    axes.imshow(np.ma.masked_where(~mask, mask.astype(float)), cmap=cmap, alpha=0.5, vmin=0, vmax=1)
    axes.set_title(title, fontsize="small")
