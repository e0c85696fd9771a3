"""The single-label task kinds: ``BinaryTask``, ``MulticlassTask``, ``AnomalyTask``, ``SegmentationTask`` (the
multi-label ``MultilabelTask`` has its own module, ``runner.tasks._multilabel``).

A kind owns everything that differs between kinds, so no code outside ``runner.tasks`` asks which kind a
task is; a named task (one module of ``runner.tasks``) is one instance of a kind. The contract every kind
fulfils, used by ``runner.trial``, ``runner.report`` and the data and sweep checks:

- data: ``load_data(spec)`` lists and splits a data set as the task reads it (``expected_classes``,
  ``need_two_classes``, ``split_needs``, ``needs_masks``); ``default_data``: the data a trial reads when
  none is given (the demo set, holding the task's classes);
- ``head()``: (units, activation) of the model's output; ``loss(params)``: the Keras loss;
- ``training_arrays(split, params)``: (images, targets, target kind) for ``make_epochs`` and
  ``make_dataset``; the anomaly task trains on normal images only;
- ``predict(model, split, params, train)``: scores as numpy; ``evaluate(split, scores, params, val)``: a
  flat metric dict (validation predictions are passed for threshold tuning, never test ones);
- ``bootstrapped``: the test metrics that get bootstrap confidence intervals (``bootstrap_inputs``);
- ``calibrated``: whether the scores are probabilities of one label per image (binary, multi-class), whose
  calibration the trial reports (``ece``, ``brier``, ``reliability.png``) and ``calibrate: temperature`` may
  rescale (``runner.calibration``); ``calibration_targets(split)``: what they are probabilities of;
  ``summary``: the wider set the end-of-trial table prints; ``prediction_columns``: what goes into
  ``predictions.parquet`` so any metric can be recomputed later;
- ``plots(result, test_rows, test, model)``: the trial's pictures, drawn by ``runner.plots``;
- ``model_output`` and ``model_features(params)``: what the model must output and which of its declared
  feature layers a trial reads (``runner.models.check_fits`` refuses a model that does not fit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from runner import metrics
from runner.data import SPLITS, DataSet, DataSpec, Record, load_dataset
from runner.data.splits import ClassNeed
from runner.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from runner.models import ModelOutput

Kind = Literal["binary", "multiclass", "anomaly", "segmentation", "multilabel"]
Plot = tuple[str, Callable[[], Any]]
"""A picture of a trial: its file name and the function drawing it (a matplotlib ``Figure``)."""


@dataclass
class Split:
    """One split of a cached data set, as the trial uses it."""

    name: str
    records: list[Record]
    images: np.ndarray
    masks: np.ndarray | None = None

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    def subset(self, keep: np.ndarray) -> Split:
        return Split(self.name, [r for r, k in zip(self.records, keep, strict=True) if k], self.images[keep],
                     None if self.masks is None else self.masks[keep])


def _batched_predict(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    outputs = [np.asarray(model(images[i:i + batch_size].astype(np.float32) / 255.0, training=False))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


@dataclass(frozen=True)
class Task(ABC):
    """A registered task: its name (the one used in YAML and on the command line), its classes, the
    validation metric a sweep optimises, and its parameters (``params``: name -> default; ``choices``: name
    -> allowed values). The defaults of the data methods are a classifier's; other kinds override them."""

    name: str
    classes: tuple[str, ...]
    monitor: str = "val_f1"
    mode: Literal["max", "min"] = "max"
    params: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    kind: ClassVar[Kind]
    bootstrapped: ClassVar[tuple[str, ...]] = ()
    """Test metrics given bootstrap 95% intervals (``<metric>_ci_low`` / ``_ci_high``): the keys of
    ``bootstrap_inputs``. Few, because each resamples the test split ``bootstrap`` times."""
    calibrated: ClassVar[bool] = False
    """The scores are probabilities of one label per image (a sigmoid's P(positive), a softmax over classes):
    the trial reports their calibration and ``calibrate: temperature`` may rescale them. An anomaly score, a
    mask or independent per-finding sigmoids are not that."""
    summary: ClassVar[tuple[str, ...]] = ()
    """Metrics the end-of-trial table prints (``runner.report``), in order: the bootstrapped ones and more."""
    summary_note: ClassVar[str] = ""
    """A line under that table saying how its figures were thresholded, where that needs saying."""
    needs_masks: ClassVar[bool] = False
    """The targets are masks: its splits carry them, and a data set without any is refused."""
    need_two_classes: ClassVar[bool] = True
    """A training data set must hold two classes at least (an external test set is used whole)."""
    #: What the model must output for this kind (``runner.models.check_fits`` compares it with the model's).
    model_output: ClassVar[ModelOutput]

    def model_features(self, params: Mapping[str, Any]) -> frozenset[str]:
        """Feature layers (``runner.models`` ``features``) a trial with these bound params reads from the model."""
        return frozenset()

    @property
    def expected_classes(self) -> tuple[str, ...] | None:
        """Labels a data set may hold (None: any): a classifier's own classes."""
        return self.classes

    @property
    def default_data(self) -> dict[str, Any]:
        """The data a trial reads when none is given: the demo set, holding this task's classes."""
        return {"layout": "demo", "classes": list(self.classes)}

    def split_needs(self) -> dict[str, tuple[ClassNeed, ...]]:
        """What each split must hold after splitting: every class in every split for a classifier (a split
        without one trains blind to it or reports f1 0.0)."""
        return dict.fromkeys(SPLITS, tuple(ClassNeed(c) for c in self.classes))

    def load_data(self, spec: str | Mapping[str, Any] | DataSpec, *, whole: bool = False,
                  cache_dir: Path | None = None) -> DataSet:
        """``spec`` listed, labelled and split as this task reads it (no pixel decoded): labels outside
        ``expected_classes`` are errors, and, unless ``whole`` (an external test set, used whole), so are a
        single class and a split missing what ``split_needs`` asks; a task that needs masks refuses a data set
        without any. The one place the trial, ``data check`` and ``sweep --dry-run`` load a task's data."""
        dataset = load_dataset(spec, expected_classes=self.expected_classes, known_classes=self.classes,
                               need_two_classes=self.need_two_classes and not whole,
                               split_needs=None if whole else self.split_needs(), cache_dir=cache_dir)
        if self.needs_masks and not any(r.mask_path or r.mask_rle is not None for r in dataset.records):
            raise DataError(f"{dataset.root} (layout {dataset.spec.layout}) has no masks, and task '{self.name}' "
                            "needs them: use the image_masks layout (images/ beside masks/), siim_rle, or a manifest "
                            "with mask_root or mask_column (Kaggle's png_images/ beside png_masks/)")
        return dataset

    def bind_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        bound = {**self.params, **given}
        for key, value in given.items():
            if key not in self.params:
                raise ConfigError(f"task '{self.name}' has no parameter '{key}': choose from "
                                  f"{', '.join(sorted(self.params)) or 'none'}")
            if key in self.choices and value not in self.choices[key]:
                raise ConfigError(f"task '{self.name}': {key}={value!r} must be one of "
                                  f"{', '.join(map(str, self.choices[key]))}")
        return bound

    def head(self) -> tuple[int, str]:
        return 1, "sigmoid"

    @abstractmethod
    def loss(self, params: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def training_arrays(self, split: Split, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, str]:
        ...

    def predict(self, model, split: Split, params: Mapping[str, Any], train: Split) -> np.ndarray:
        return _batched_predict(model, split.images)

    @abstractmethod
    def evaluate(self, split: Split, scores: np.ndarray, params: Mapping[str, Any],
                 val: tuple[Split, np.ndarray] | None = None) -> dict[str, Any]: ...

    def bootstrap_inputs(self, split: Split, scores: np.ndarray, params: Mapping[str, Any],
                         ) -> dict[str, tuple[Callable[..., float | None], tuple[np.ndarray, ...]]]:
        """Each ``bootstrapped`` metric -> (metric function, arrays to resample together)."""
        return {}

    @abstractmethod
    def prediction_columns(self, split: Split, scores: np.ndarray) -> dict[str, Any]: ...

    def recorded_scores(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The scores ``predict`` gave, read back from the ``prediction_columns`` of ``predictions.parquet``
        rows: what lets ``runner evaluate`` tune a threshold on a recorded trial's validation predictions
        without its images. None where those columns hold no scores (a mask's pixels are not stored)."""
        return None

    def class_weights(self, split: Split) -> dict[int, float] | None:
        return None

    def calibration_targets(self, split: Split) -> np.ndarray:
        """What a ``calibrated`` kind's scores are probabilities of, per image: 0/1 (is it the positive class)
        beside (n,) scores, the class index beside (n, k) ones (``runner.metrics.calibration_metrics``)."""
        raise NotImplementedError(f"task '{self.name}' ({self.kind}) scores are not class probabilities")

    def random_scores(self, split: Split, rng: np.random.Generator) -> np.ndarray:
        """Made-up scores shaped as ``predict`` returns them for ``split`` (one per image): what a sweep
        evaluates to learn which validation metrics the task reports (``sweep.trainable.reported_metrics``)."""
        return rng.random(len(split.records))

    def plots(self, result: Mapping[str, Any], test_rows: pd.DataFrame, test: Split, model) -> list[Plot]:
        """The pictures of a trial of this kind, in drawing order, from what the trial holds: its
        ``result.json`` content, the test split's prediction rows, the test split and the model (no picture
        recomputes a metric). Every kind: the training curves."""
        from runner import plots

        return [("training_curves.png",
                 lambda: plots.training_curves(result["history"], result["monitor"], result["best_epoch"]))]


def _score_curve(label: str, test_rows: pd.DataFrame) -> tuple[str, np.ndarray, np.ndarray]:
    """The one ROC / precision-recall curve of a task scoring each image for one positive outcome."""
    return label, test_rows["target"].to_numpy(int), test_rows["score"].to_numpy(float)




def _calibration_intervals(targets: np.ndarray, scores: np.ndarray
                           ) -> dict[str, tuple[Callable[..., float | None], tuple[np.ndarray, ...]]]:
    """The bootstrap inputs of a ``calibrated`` kind's ECE and Brier score (``metrics.CALIBRATION_KEYS``)."""
    return {"ece": (metrics.expected_calibration_error, (targets, scores)),
            "brier": (metrics.brier_score, (targets, scores))}


def _balanced_weights(indices: np.ndarray, k: int) -> dict[int, float]:
    """Inverse-frequency weights (sklearn's 'balanced'): public sets are ~3:1 pneumonia to normal."""
    counts = np.bincount(indices, minlength=k).astype(float)
    return {i: float(len(indices) / (k * c)) if c else 0.0 for i, c in enumerate(counts)}


@dataclass(frozen=True)
class BinaryTask(Task):
    """classes = (negative, positive); sigmoid head, binary cross-entropy; metrics at 0.5 and at a
    threshold tuned on validation."""

    params: Mapping[str, Any] = field(default_factory=lambda: {"class_weights": False, "threshold_criterion": "f1"})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {
        "class_weights": (True, False), "threshold_criterion": metrics.TUNING_CRITERIA})
    kind: ClassVar[Kind] = "binary"
    model_output: ClassVar[ModelOutput] = "classes"
    bootstrapped: ClassVar[tuple[str, ...]] = ("roc_auc", "f1", "recall", "specificity", *metrics.CALIBRATION_KEYS)
    calibrated: ClassVar[bool] = True
    summary: ClassVar[tuple[str, ...]] = ("f1", "roc_auc", "precision", "recall", "specificity", "accuracy",
                                          "f1_tuned", *metrics.CALIBRATION_KEYS)
    summary_note: ClassVar[str] = "(threshold 0.5, except *_tuned: threshold tuned on validation)"

    def positives(self, split: Split) -> np.ndarray:
        return np.array([label == self.classes[1] for label in split.labels], dtype=np.int64)

    def loss(self, params):
        import keras

        return keras.losses.BinaryCrossentropy()

    def training_arrays(self, split, params):
        return split.images, self.positives(split).astype(np.float32)[:, None], "label"

    def predict(self, model, split, params, train):
        return _batched_predict(model, split.images).reshape(-1)

    def evaluate(self, split, scores, params, val=None):
        y = self.positives(split)
        if val is None:
            found = metrics.binary_metrics(y, scores)
        else:
            val_split, val_scores = val
            found = metrics.binary_report(self.positives(val_split), val_scores, y, scores,
                                          criterion=params["threshold_criterion"])
        return {**found, **metrics.calibration_metrics(y, scores)}

    def bootstrap_inputs(self, split, scores, params):
        y = self.positives(split)
        return {
            "roc_auc": (metrics.roc_auc, (y, scores)),
            "f1": (lambda t, s: metrics.binary_metrics(t, s)["f1"], (y, scores)),
            "recall": (lambda t, s: metrics.binary_metrics(t, s)["recall"], (y, scores)),
            "specificity": (lambda t, s: metrics.binary_metrics(t, s)["specificity"], (y, scores)),
            **_calibration_intervals(y, scores),
        }

    def prediction_columns(self, split, scores):
        return {"score": scores.astype(float), "target": self.positives(split)}

    def recorded_scores(self, rows):
        return rows["score"].to_numpy(float)

    def class_weights(self, split):
        return _balanced_weights(self.positives(split), 2)

    def calibration_targets(self, split):
        return self.positives(split)

    def plots(self, result, test_rows, test, model):
        from runner import plots

        found = result["metrics"]["test"]
        predicted = (test_rows["score"].to_numpy(float) >= 0.5).astype(int)
        return [*super().plots(result, test_rows, test, model),
                ("confusion_matrix.png",
                 lambda: plots.confusion_matrix(found["confusion_matrix"], self.classes, "test, threshold 0.5")),
                ("roc_pr.png", lambda: plots.roc_pr([_score_curve(self.classes[1], test_rows)])),
                ("reliability.png", lambda: plots.reliability(result, f"P({self.classes[1]})",
                                                              f"fraction {self.classes[1]}")),
                ("gradcam.png", lambda: plots.gradcam_grid(model, test, self.classes, predicted))]


@dataclass(frozen=True)
class MulticlassTask(Task):
    """Softmax head over ``classes``, categorical cross-entropy, macro / per-class metrics."""

    monitor: str = "val_f1_macro"
    params: Mapping[str, Any] = field(default_factory=lambda: {"class_weights": False})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {"class_weights": (True, False)})
    kind: ClassVar[Kind] = "multiclass"
    model_output: ClassVar[ModelOutput] = "classes"
    bootstrapped: ClassVar[tuple[str, ...]] = ("f1_macro", "accuracy", "roc_auc_ovr", *metrics.CALIBRATION_KEYS)
    calibrated: ClassVar[bool] = True
    summary: ClassVar[tuple[str, ...]] = ("f1_macro", "accuracy", "roc_auc_ovr", "precision_macro", "recall_macro",
                                          *metrics.CALIBRATION_KEYS)

    def indices(self, split: Split) -> np.ndarray:
        return np.array([self.classes.index(label) for label in split.labels], dtype=np.int64)

    def head(self):
        return len(self.classes), "softmax"

    def loss(self, params):
        import keras

        return keras.losses.CategoricalCrossentropy()

    def training_arrays(self, split, params):
        return split.images, np.eye(len(self.classes), dtype=np.float32)[self.indices(split)], "label"

    def evaluate(self, split, scores, params, val=None):
        y = self.indices(split)
        return {**metrics.multiclass_metrics(y, scores, self.classes), **metrics.calibration_metrics(y, scores)}

    def bootstrap_inputs(self, split, scores, params):
        y = self.indices(split)
        return {**{key: ((lambda t, s, key=key: metrics.multiclass_metrics(t, s, self.classes)[key]), (y, scores))
                   for key in self.bootstrapped if key not in metrics.CALIBRATION_KEYS},
                **_calibration_intervals(y, scores)}

    def prediction_columns(self, split, scores):
        columns: dict[str, Any] = {"target": self.indices(split), "predicted": np.argmax(scores, axis=1)}
        for index, name in enumerate(self.classes):
            columns[f"score_{name}"] = scores[:, index].astype(float)
        return columns

    def recorded_scores(self, rows):
        return rows[[f"score_{name}" for name in self.classes]].to_numpy(float)

    def class_weights(self, split):
        return _balanced_weights(self.indices(split), len(self.classes))

    def calibration_targets(self, split):
        return self.indices(split)

    def random_scores(self, split, rng):
        return rng.dirichlet(np.ones(len(self.classes)), len(split.records))

    def plots(self, result, test_rows, test, model):
        from runner import plots

        found = result["metrics"]["test"]
        one_vs_rest = [(name, (test_rows["target"] == index).to_numpy(int), test_rows[f"score_{name}"].to_numpy(float))
                       for index, name in enumerate(self.classes)]
        return [*super().plots(result, test_rows, test, model),
                ("confusion_matrix.png",
                 lambda: plots.confusion_matrix(found["confusion_matrix"], self.classes, "test, arg-max class")),
                ("roc_pr.png", lambda: plots.roc_pr(one_vs_rest)),
                ("reliability.png", lambda: plots.reliability(result, "top-class confidence", "accuracy")),
                ("gradcam.png",
                 lambda: plots.gradcam_grid(model, test, self.classes, test_rows["predicted"].to_numpy(int)))]


ANOMALY_SCORES = ("mse", "ssim", "latent")


def _reconstruction_scores(model, images: np.ndarray, score: str) -> np.ndarray:
    import tensorflow as tf

    results = []
    for start in range(0, len(images), 64):
        x = images[start:start + 64].astype(np.float32) / 255.0
        recon = np.asarray(model(x, training=False))
        if score == "mse":
            results.append(((x - recon) ** 2).reshape(len(x), -1).mean(axis=1))
        else:
            results.append(1.0 - tf.image.ssim(tf.constant(x), tf.constant(recon), max_val=1.0,
                                               filter_size=min(11, x.shape[1] // 4 * 2 + 1)).numpy())
    return np.concatenate(results) if results else np.zeros(0)


def _latent_features(model, images: np.ndarray) -> np.ndarray:
    import keras

    from runner.models import feature_layer

    encoder = keras.Model(model.input, model.get_layer(feature_layer(model, "latent")).output)
    features = _batched_predict(encoder, images)
    return features.reshape(len(features), -1, features.shape[-1]).mean(axis=1) if features.ndim == 4 else features


@dataclass(frozen=True)
class AnomalyTask(Task):
    """An autoencoder trained on normal images only (``classes[0]``); any other label is a positive, and the
    other ``classes`` are the abnormal ones of its default data. The anomaly score (``mse``, ``ssim`` or
    ``latent`` Mahalanobis distance) is a parameter because the notebooks' MSE score measured ROC AUC 0.47 for
    pneumonia on real radiographs; the threshold is a percentile of validation negatives' scores, applied
    unchanged to test."""

    monitor: str = "val_roc_auc"
    params: Mapping[str, Any] = field(default_factory=lambda: {"score": "mse", "percentile": 95.0})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {"score": ANOMALY_SCORES})
    kind: ClassVar[Kind] = "anomaly"
    model_output: ClassVar[ModelOutput] = "image"
    bootstrapped: ClassVar[tuple[str, ...]] = ("roc_auc",)
    summary: ClassVar[tuple[str, ...]] = ("roc_auc", "pr_auc", "f1", "precision", "recall", "specificity")

    @property
    def expected_classes(self):
        """Any label: every one but the normal class is a positive."""
        return None

    def split_needs(self):
        """Normal images to train on; a normal and an abnormal image to evaluate."""
        normal = self.classes[0]
        evaluate = (ClassNeed(normal), ClassNeed(normal, other_than=True))
        return {"train": (ClassNeed(normal),), "val": evaluate, "test": evaluate}

    def positives(self, split: Split) -> np.ndarray:
        return np.array([label != self.classes[0] for label in split.labels], dtype=np.int64)

    def bind_params(self, given):
        bound = super().bind_params(given)
        if not 0 < float(bound["percentile"]) <= 100:
            raise ConfigError(f"task '{self.name}': percentile={bound['percentile']} must be in (0, 100]")
        return bound

    def loss(self, params):
        import keras

        return keras.losses.MeanSquaredError()

    def model_features(self, params):
        return frozenset({"latent"}) if params["score"] == "latent" else frozenset()

    def normals(self, split: Split) -> Split:
        return split.subset(self.positives(split) == 0)

    def training_arrays(self, split, params):
        normals = self.normals(split)
        if not len(normals.records):
            raise ConfigError(f"the {split.name} split has no '{self.classes[0]}' images to train the autoencoder on")
        return normals.images, None, "image"

    def predict(self, model, split, params, train):
        if params["score"] != "latent":
            return _reconstruction_scores(model, split.images, params["score"])
        from sklearn.covariance import LedoitWolf

        reference = LedoitWolf().fit(_latent_features(model, self.normals(train).images))
        return np.sqrt(reference.mahalanobis(_latent_features(model, split.images)))

    def evaluate(self, split, scores, params, val=None):
        y = self.positives(split)
        if val is None:
            return {"roc_auc": metrics.roc_auc(y, scores), "pr_auc": metrics.pr_auc(y, scores)}
        val_split, val_scores = val
        negatives = val_scores[self.positives(val_split) == 0]
        threshold = metrics.threshold_from_negatives(negatives, float(params["percentile"]))
        return metrics.anomaly_metrics(y, scores, threshold)

    def bootstrap_inputs(self, split, scores, params):
        return {"roc_auc": (metrics.roc_auc, (self.positives(split), scores))}

    def prediction_columns(self, split, scores):
        return {"score": scores.astype(float), "target": self.positives(split)}

    def recorded_scores(self, rows):
        return rows["score"].to_numpy(float)

    def plots(self, result, test_rows, test, model):
        from runner import plots

        found = result["metrics"]["test"]
        outcomes = (self.classes[0], f"not {self.classes[0]}")
        note = f"test, threshold {found['threshold']:.4g} (percentile of validation normals)"
        return [*super().plots(result, test_rows, test, model),
                ("confusion_matrix.png", lambda: plots.confusion_matrix(found["confusion_matrix"], outcomes, note)),
                ("roc_pr.png", lambda: plots.roc_pr([_score_curve(outcomes[1], test_rows)])),
                ("anomaly_scores.png",
                 lambda: plots.anomaly_scores(test_rows, found["threshold"], result["config"]["task_params"]["score"])),
                ("reconstructions.png", lambda: plots.reconstructions(model, test))]


def _dice_loss(weights: tuple[float, float]):
    import keras
    from keras import ops

    bce = keras.losses.BinaryCrossentropy()

    def bce_dice(y_true, y_pred):
        intersection = ops.sum(y_true * y_pred, axis=(1, 2, 3))
        total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
        dice = (2.0 * intersection + 1.0) / (total + 1.0)
        return weights[0] * bce(y_true, y_pred) + weights[1] * ops.mean(1.0 - dice)

    return bce_dice


@dataclass(frozen=True)
class SegmentationTask(Task):
    """Sigmoid mask output, loss ``bce_weight`` x BCE + ``dice_weight`` x (1 - soft Dice)."""

    monitor: str = "val_dice"
    params: Mapping[str, Any] = field(default_factory=lambda: {"bce_weight": 1.0, "dice_weight": 1.0})
    kind: ClassVar[Kind] = "segmentation"
    model_output: ClassVar[ModelOutput] = "mask"
    bootstrapped: ClassVar[tuple[str, ...]] = ("dice", "iou")
    summary: ClassVar[tuple[str, ...]] = ("dice", "iou", "pixel_f1", "detection_f1")
    needs_masks: ClassVar[bool] = True
    need_two_classes: ClassVar[bool] = False

    @property
    def expected_classes(self):
        """Any label: the masks are the targets."""
        return None

    @property
    def default_data(self):
        return {"layout": "demo", "masks": True}

    def split_needs(self):
        return {}

    def bind_params(self, given):
        bound = super().bind_params(given)
        for key in ("bce_weight", "dice_weight"):
            if not isinstance(bound[key], int | float) or bound[key] < 0:
                raise ConfigError(f"task '{self.name}': {key}={bound[key]!r} must be a number >= 0")
        if bound["bce_weight"] + bound["dice_weight"] == 0:
            raise ConfigError(f"task '{self.name}': bce_weight and dice_weight cannot both be 0")
        return bound

    def loss(self, params):
        return _dice_loss((float(params["bce_weight"]), float(params["dice_weight"])))

    def training_arrays(self, split, params):
        return split.images, split.masks, "mask"

    def evaluate(self, split, scores, params, val=None):
        found = metrics.segmentation_metrics(split.masks > 127, scores)
        found["pixel_roc_auc"] = self.pixel_roc_auc(split, scores)
        return found

    @staticmethod
    def pixel_roc_auc(split: Split, scores: np.ndarray, max_pixels: int = 1_000_000) -> float | None:
        """Threshold-free: do mask pixels score above the rest? Seeded subsample keeps big test sets cheap."""
        truth = (split.masks > 127).reshape(-1)
        flat = scores.reshape(-1)
        if truth.size > max_pixels:
            keep = np.random.default_rng(0).choice(truth.size, max_pixels, replace=False)
            truth, flat = truth[keep], flat[keep]
        return metrics.roc_auc(truth, flat)

    def per_image(self, split: Split, scores: np.ndarray) -> dict[str, np.ndarray]:
        keys = ("dice", "iou")
        rows = [metrics.segmentation_metrics(split.masks[i:i + 1] > 127, scores[i:i + 1]) for i in range(len(scores))]
        return {k: np.array([r[k] for r in rows], dtype=float) for k in keys}

    def bootstrap_inputs(self, split, scores, params):
        per_image = self.per_image(split, scores)
        return {key: ((lambda v: float(np.mean(v)) if len(v) else None), (per_image[key],))
                for key in self.bootstrapped}

    def prediction_columns(self, split, scores):
        per_image = self.per_image(split, scores)
        return {"dice": per_image["dice"], "iou": per_image["iou"],
                "true_area": (split.masks > 127).reshape(len(scores), -1).mean(axis=1),
                "predicted_area": (scores >= 0.5).reshape(len(scores), -1).mean(axis=1)}

    def random_scores(self, split, rng):
        return rng.random(split.images.shape)

    def plots(self, result, test_rows, test, model):
        from runner import plots

        return [*super().plots(result, test_rows, test, model),
                ("masks.png", lambda: plots.masks(model, test, test_rows["dice"].to_numpy()))]
