"""The multi-label kind, ``MultilabelTask``: several findings per image (NIH ChestX-ray14, CheXpert).

Its ``classes`` are findings, each present or not independently of the others: one sigmoid per finding, binary
cross-entropy per finding, and metrics per finding with their macro (mean over findings) and micro (pooled over
findings and images) averages. The data layer carries an image's findings as one label string
(``runner.data.findings_label``: ``cardiomegaly|effusion``, ``Edema?`` for an uncertain one, ``No Finding``); this
kind reads them (``read_labels``), decides what an uncertain finding means (the ``uncertain`` policy), and what
each split must hold (a positive and a negative image of every finding).

Everything the kind contract asks (``runner.tasks._kinds``) is here; nothing outside ``runner.tasks`` knows the
kind exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runner import metrics
from runner.data import (
    LABEL_SEPARATOR,
    NO_FINDING,
    SPLITS,
    UNCERTAIN_MARK,
    DataSet,
    DataSpec,
    Ignored,
    Record,
    findings_label,
    label_parts,
    load_dataset,
    map_label,
    read_findings,
)
from runner.data.splits import ClassNeed
from runner.errors import DataError
from runner.tasks._kinds import Kind, Plot, Split, Task

if TYPE_CHECKING:
    from runner.models import ModelOutput

#: What an uncertain finding (CheXpert's -1) is for training and metrics: unknown (left out of the loss and the
#: metrics of that finding), absent, or present (CheXpert's U-Ignore, U-Zeros, U-Ones).
UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")
#: ``balanced``: each finding's positives and negatives weigh alike in the training loss (sklearn's 'balanced'
#: per finding), for rare findings; ``none``: every known label weighs 1.
LABEL_WEIGHTS = ("balanced", "none")
#: Metric key suffixes the averages use, so no finding may take them.
_AVERAGES = ("macro", "micro")


def _metric_key(name: str) -> str:
    """A finding name as a metric key suffix: 'Pleural Effusion' -> 'pleural_effusion'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class FindingNeed(ClassNeed):
    """A split needs an image that surely holds finding ``label``, or with ``other_than``, one that surely does
    not (neither present nor uncertain): a finding without both trains blind and has no ROC AUC."""

    def met_by(self, labels: set[str]) -> bool:
        return any(self._met_by_one(label) for label in labels)

    def _met_by_one(self, label: str) -> bool:
        certain, uncertain = read_findings(label)
        return self.label not in certain | uncertain if self.other_than else self.label in certain

    def describe(self) -> str:
        return f"images without '{self.label}'" if self.other_than else f"images with '{self.label}'"


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values (a finding with one class only in a split has no ROC AUC there)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _pooled(y: np.ndarray, known: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The known (image, finding) entries of ``y`` and ``values`` flattened: what a micro average pools."""
    return y[known], values[known]


def findings_metrics(keys: Sequence[str], y: np.ndarray, known: np.ndarray, scores: np.ndarray,
                     thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Per finding (key suffix) ``auc_``, ``pr_auc_``, ``f1_`` (at 0.5), ``n_positive_``; their ``_macro`` means
    and ``_micro`` values over the pooled entries; ``n``. With ``thresholds`` (one per finding, tuned on
    validation) also ``threshold_<finding>``, ``f1_tuned_<finding>``, ``f1_tuned_macro`` and ``f1_tuned_micro``.
    ``y`` (0/1), ``known`` (False: left out) and ``scores`` are (images, findings)."""
    per_finding: dict[str, list[float | None]] = {"auc": [], "pr_auc": [], "f1": [], "f1_tuned": []}
    counts = {}
    for j in range(len(keys)):
        truth, score = y[known[:, j], j], scores[known[:, j], j]
        per_finding["auc"].append(metrics.roc_auc(truth, score))
        per_finding["pr_auc"].append(metrics.pr_auc(truth, score))
        per_finding["f1"].append(metrics.binary_metrics(truth, score, 0.5)["f1"])
        if thresholds is not None:
            per_finding["f1_tuned"].append(metrics.binary_metrics(truth, score, thresholds[j])["f1"])
        counts[keys[j]] = int(truth.sum())
    pooled_truth, pooled_scores = _pooled(y, known, scores)
    result: dict[str, Any] = {
        "auc_micro": metrics.roc_auc(pooled_truth, pooled_scores),
        "pr_auc_micro": metrics.pr_auc(pooled_truth, pooled_scores),
        "f1_micro": metrics.binary_metrics(pooled_truth, pooled_scores, 0.5)["f1"],
    }
    if thresholds is not None:
        predicted = (scores >= np.asarray(thresholds)[None, :]).astype(float)
        result["f1_tuned_micro"] = metrics.binary_metrics(*_pooled(y, known, predicted), 0.5)["f1"]
    for name, values in per_finding.items():
        if values:
            result[f"{name}_macro"] = _mean(values)
            result.update({f"{name}_{key}": value for key, value in zip(keys, values, strict=True)})
    if thresholds is not None:
        result.update({f"threshold_{key}": float(t) for key, t in zip(keys, thresholds, strict=True)})
    result.update({f"n_positive_{key}": count for key, count in counts.items()})
    result["n"] = len(y)
    return metrics.json_safe(result)


def as_counted(states: np.ndarray, policy: str) -> np.ndarray:
    """Finding states (1 present, 0 absent, -1 uncertain) as the ``uncertain`` policy counts them: -1 stays
    left out under ``ignore``, becomes 0 under ``zeros`` and 1 under ``ones``."""
    return states if policy == "ignore" else np.where(states < 0, int(policy == "ones"), states)


def _masked_bce(findings: int):
    """Binary cross-entropy per finding, each weighted (0 = left out) by the weights packed after the targets in
    ``y_true`` (images, 2 x findings), averaged over findings."""
    import keras
    from keras import ops

    def findings_bce(y_true, y_pred):
        targets, weights = y_true[:, :findings], y_true[:, findings:]
        per_finding = keras.losses.binary_crossentropy(ops.expand_dims(targets, -1),
                                                       ops.expand_dims(ops.cast(y_pred, "float32"), -1))
        return ops.sum(weights * per_finding, axis=-1) / findings

    return findings_bce


def _balanced_weights(y: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per entry: known images / (2 x that finding's positives) for a positive, likewise for a negative."""
    n_known = known.sum(axis=0).astype(float)
    positives = (y * known).sum(axis=0).astype(float)
    negatives = n_known - positives
    weight_positive = np.divide(n_known, 2 * positives, out=np.zeros_like(n_known), where=positives > 0)
    weight_negative = np.divide(n_known, 2 * negatives, out=np.zeros_like(n_known), where=negatives > 0)
    return np.where(y == 1, weight_positive[None, :], weight_negative[None, :]).astype(np.float32)


def gradcam_per_finding(model, test: Split, findings: Sequence[str], truth: np.ndarray, scores: np.ndarray,
                        thresholds: Sequence[float]):
    """Rows: findings; columns: test images holding the finding that the model found (score at or above its
    tuned threshold), then ones it missed, each with the Grad-CAM map of that finding's output."""
    from runner import gradcam, plots

    per_cell = plots.EXAMPLES_PER_CELL
    cells = []  # (finding index, found?, image indices)
    for j in range(len(findings)):
        for found in (True, False):
            chosen = np.flatnonzero((truth[:, j] == 1) & ((scores[:, j] >= thresholds[j]) == found))[:per_cell]
            cells.append((j, found, chosen.tolist()))
    figure = plots.new_figure(2.1 * 2 * per_cell, 2.3 * len(findings) + 0.4)
    figure.suptitle("Grad-CAM of each finding (test images holding it; left: found, right: missed, at the "
                    "threshold tuned on validation)", fontsize="medium")
    grid = figure.subplots(len(findings), 2 * per_cell, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    shown = [(index, j) for j, _, indices in cells for index in indices]
    maps = gradcam.heatmaps(model, test.images[[i for i, _ in shown]], [j for _, j in shown]) if shown else []
    heat = dict(zip(shown, maps, strict=True))
    for j, found, indices in cells:
        column = 0 if found else per_cell
        if not indices:
            first = grid[j, column]
            first.text(0.5, 0.5, f"no {'found' if found else 'missed'} {findings[j]}\nin test", ha="center",
                       va="center", fontsize="small", transform=first.transAxes)
        for slot, index in enumerate(indices):
            axes = grid[j, column + slot]
            axes.imshow(test.images[index, ..., 0], cmap="gray")
            axes.imshow(heat[(index, j)], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            axes.set_title(f"{findings[j]} {scores[index, j]:.2f} {'✓' if found else '✗'}", fontsize="small",
                           color="green" if found else "red")
    return figure


@dataclass(frozen=True)
class MultilabelTask(Task):
    """``classes`` are findings, any number of them per image: a sigmoid per finding, binary cross-entropy per
    finding (``label_weights: balanced`` weighs each finding's positives and negatives alike; ``uncertain``
    decides what an uncertain label is), per-finding ROC AUC, PR AUC and F1 (at 0.5, and at thresholds tuned on
    validation, never on test), with macro and micro averages; the sweep optimises ``val_auc_macro``."""

    monitor: str = "val_auc_macro"
    params: Mapping[str, Any] = field(default_factory=lambda: {"uncertain": "ignore", "label_weights": "none"})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {
        "uncertain": UNCERTAIN_POLICIES, "label_weights": LABEL_WEIGHTS})
    kind: ClassVar[Kind] = "multilabel"
    model_output: ClassVar[ModelOutput] = "classes"
    bootstrapped: ClassVar[tuple[str, ...]] = ("auc_macro", "auc_micro", "pr_auc_macro", "pr_auc_micro")
    summary_note: ClassVar[str] = ("(macro: mean over findings; micro: pooled over findings and images; f1 at 0.5, "
                                   "f1_tuned at each finding's threshold tuned on validation)")
    need_two_classes: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """Findings that would break the label spelling or collide as metric keys fail at registration."""
        keys = self.keys
        if len(self.classes) < 2:
            raise ValueError(f"task '{self.name}': a multi-label task needs two findings at least (one is a "
                             "binary task)")
        for name, key in zip(self.classes, keys, strict=True):
            if LABEL_SEPARATOR in name or name.endswith(UNCERTAIN_MARK) or name == NO_FINDING or not key:
                raise ValueError(f"task '{self.name}': finding {name!r} cannot contain '{LABEL_SEPARATOR}', end in "
                                 f"'{UNCERTAIN_MARK}' or be '{NO_FINDING}'")
            if key in _AVERAGES or key.startswith("tuned_"):
                raise ValueError(f"task '{self.name}': finding {name!r} would collide with the averages' metric keys")
        if len(set(keys)) != len(keys):
            raise ValueError(f"task '{self.name}': findings {list(self.classes)} give the same metric key twice "
                             f"({list(keys)})")

    @property
    def keys(self) -> tuple[str, ...]:
        """Each finding's metric and prediction-column suffix."""
        return tuple(_metric_key(name) for name in self.classes)

    @property
    def summary(self) -> tuple[str, ...]:
        """The averages, then each finding's ROC AUC and tuned F1."""
        return ("auc_macro", "auc_micro", "pr_auc_macro", "pr_auc_micro", "f1_tuned_macro", "f1_tuned_micro",
                *(f"auc_{key}" for key in self.keys), *(f"f1_tuned_{key}" for key in self.keys))

    # ------------------------------------------------------------------------------------------------- data

    def load_data(self, spec: str | Mapping[str, Any] | DataSpec, *, whole: bool = False,
                  cache_dir: Path | None = None) -> DataSet:
        """Labels read finding by finding (``read_labels``); every split needs a positive and a negative image of
        every finding, unless used ``whole`` (an external test set)."""
        return load_dataset(spec, split_needs=None if whole else self.split_needs(), cache_dir=cache_dir,
                            read_labels=self.read_labels)

    def read_labels(self, records: list[Record], options: Mapping[str, Any]
                    ) -> tuple[list[Record], tuple[str, ...], list[Ignored]]:
        """Each finding of each image mapped with ``label_map`` (``null`` drops that finding, not the image),
        matched to the task's findings (case aside) and kept if in ``data.classes``; an image left with none is
        negative for every finding (no image is dropped). A finding the task does not have is one error naming
        the first image holding it."""
        label_map = options["label_map"] or {}
        by_folded = {name.casefold(): name for name in self.classes}
        keep = {by_folded.get(name.casefold(), name) for name in options["classes"]} if options["classes"] else None
        unknown: dict[str, list[Record]] = {}

        def finding(raw: str, record: Record) -> str | None:
            mapped = map_label(raw, label_map)
            if mapped is None or mapped in ("", NO_FINDING):
                return None
            mapped = by_folded.get(mapped.casefold(), mapped)
            if keep is not None and mapped not in keep:
                return None
            if mapped not in self.classes:
                unknown.setdefault(mapped, []).append(record)
            return mapped

        labelled, held = [], set()
        for record in records:
            parts = label_parts(record.label)
            if NO_FINDING in parts and len(parts) > 1:
                raise DataError(f"{record.where or record.path}: label '{record.label}' says '{NO_FINDING}' and names "
                                "findings: keep one")
            certain, uncertain = read_findings(record.label)
            found = {finding(name, record) for name in certain} - {None}
            unsure = {finding(name, record) for name in uncertain} - {None}
            labelled.append(replace(record, label=findings_label(found, unsure)))
            held |= found | unsure
        if unknown:
            name, holding = next(iter(unknown.items()))
            raise DataError(f"{holding[0].where or holding[0].path}: finding '{name}' is not one of "
                            f"{', '.join(self.classes)} ({len(holding)} images hold it): map it with data.label_map "
                            "(null drops it) or keep only some findings with data.classes")
        if labelled:
            self._check_every_finding_held(held)
        return labelled, self.classes, []

    def _check_every_finding_held(self, held: set[str]) -> None:
        """The task models each of its findings, so data without one cannot train it: ``data.classes`` only narrows
        what is read (the generic advice to drop the class with it would not help). ``held``: every finding some
        image holds, certain or uncertain."""
        missing = [name for name in self.classes if name not in held]
        if missing:
            raise DataError(f"no image holds the finding '{missing[0]}' (task '{self.name}' models "
                            f"{', '.join(self.classes)}, each needs images): map your data's name for it with "
                            "data.label_map, or register a task with the findings your data has")

    def split_needs(self) -> dict[str, tuple[ClassNeed, ...]]:
        needs = tuple(need for name in self.classes for need in (FindingNeed(name), FindingNeed(name, other_than=True)))
        return dict.fromkeys(SPLITS, needs)

    def states(self, split: Split) -> np.ndarray:
        """(images, findings): 1 present, 0 absent, -1 uncertain, as the labels say (no policy applied)."""
        index = {name: j for j, name in enumerate(self.classes)}
        states = np.zeros((len(split.records), len(self.classes)), np.int64)
        for i, label in enumerate(split.labels):
            certain, uncertain = read_findings(label)
            states[i, [index[name] for name in uncertain]] = -1
            states[i, [index[name] for name in certain]] = 1
        return states

    def targets(self, split: Split, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(y, known), each (images, findings): 1 where a finding is present (an uncertain one per the
        ``uncertain`` policy), and False where a label is left out (uncertain under ``ignore``)."""
        counted = as_counted(self.states(split), params["uncertain"])
        return (counted == 1).astype(np.float32), counted >= 0

    # ----------------------------------------------------------------------------------------------- model

    def head(self) -> tuple[int, str]:
        return len(self.classes), "sigmoid"

    def loss(self, params):
        return _masked_bce(len(self.classes))

    def training_arrays(self, split, params):
        """Targets and per-label weights side by side, (images, 2 x findings), for ``_masked_bce``. Label weights
        shape the training split's loss only (as Keras applies ``class_weight``): ``val_loss`` stays plain."""
        y, known = self.targets(split, params)
        weights = known.astype(np.float32)
        if params["label_weights"] == "balanced" and split.name == "train":
            weights *= _balanced_weights(y, known)
        return split.images, np.concatenate([y, weights], axis=1), "label"

    # --------------------------------------------------------------------------------------------- metrics

    def tuned_thresholds(self, split: Split, scores: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        """Each finding's F1-maximising threshold on ``split`` (validation), from its known labels."""
        y, known = self.targets(split, params)
        return np.array([metrics.tune_threshold(y[known[:, j], j], scores[known[:, j], j], "f1")
                         for j in range(len(self.classes))])

    def evaluate(self, split, scores, params, val=None):
        y, known = self.targets(split, params)
        thresholds = None if val is None else self.tuned_thresholds(*val, params)
        return findings_metrics(self.keys, y, known, scores, thresholds)

    def bootstrap_inputs(self, split, scores, params):
        y, known = self.targets(split, params)

        def macro(score):
            return lambda t, k, s: _mean(score(t[k[:, j], j], s[k[:, j], j]) for j in range(t.shape[1]))

        def micro(score):
            return lambda t, k, s: score(*_pooled(t, k, s))

        arrays = (y, known, scores)
        return {"auc_macro": (macro(metrics.roc_auc), arrays), "auc_micro": (micro(metrics.roc_auc), arrays),
                "pr_auc_macro": (macro(metrics.pr_auc), arrays), "pr_auc_micro": (micro(metrics.pr_auc), arrays)}

    def prediction_columns(self, split, scores):
        """``score_<finding>`` and ``target_<finding>`` (1 present, 0 absent, -1 uncertain: the trial's
        ``uncertain`` policy says how its metrics counted it, ``as_counted``), so every metric, and each
        validation-tuned threshold from the val rows, can be recomputed."""
        states = self.states(split)
        columns: dict[str, Any] = {}
        for j, key in enumerate(self.keys):
            columns[f"score_{key}"] = scores[:, j].astype(float)
            columns[f"target_{key}"] = states[:, j]
        return columns

    def recorded_scores(self, rows):
        return rows[[f"score_{key}" for key in self.keys]].to_numpy(float)

    def random_scores(self, split, rng):
        return rng.random((len(split.records), len(self.classes)))

    # ------------------------------------------------------------------------------------------------ plots

    def plots(self, result, test_rows, test, model) -> list[Plot]:
        from runner import plots

        found = result["metrics"]["test"]
        states = np.stack([test_rows[f"target_{key}"].to_numpy(int) for key in self.keys], axis=1)
        truth = as_counted(states, result["config"]["task_params"]["uncertain"])
        scores = np.stack([test_rows[f"score_{key}"].to_numpy(float) for key in self.keys], axis=1)
        curves = [(name, truth[truth[:, j] >= 0, j], scores[truth[:, j] >= 0, j])
                  for j, name in enumerate(self.classes)]
        thresholds = [found[f"threshold_{key}"] for key in self.keys]
        return [*super().plots(result, test_rows, test, model),
                ("roc_pr.png", lambda: plots.roc_pr(curves)),
                ("gradcam.png", lambda: gradcam_per_finding(model, test, self.classes, truth, scores, thresholds))]
