"""Tasks: what is predicted from which data, with which loss, head and metrics.

One file per task in the top-level ``tasks/`` package registers an instance of one of the four kinds below
(``BinaryTask``, ``MulticlassTask``, ``AnomalyTask``, ``SegmentationTask``); the kinds hold the behaviour,
so a new task of a known kind is a few lines. The contract every kind fulfils, used by ``runner.trial``:

- ``head()``: (units, activation) of the model's output; ``loss(params)``: the Keras loss;
- ``training_arrays(split, params)``: (images, targets, target kind) for ``make_dataset``; the anomaly
  task trains on normal images only;
- ``predict(model, split, params, train)``: scores as numpy; ``evaluate(split, scores, params, val)``: a
  flat metric dict (validation predictions are passed for threshold tuning, never test ones);
- ``headline``: the metrics that get bootstrap confidence intervals; ``prediction_columns``: what goes into
  ``predictions.parquet`` so any metric can be recomputed later.
- ``model_output`` and ``model_features(params)``: what the model must output and which of its declared
  feature layers a trial reads (``runner.models.check_fits`` refuses a model that does not fit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from runner import metrics
from runner.data import Record
from runner.errors import ConfigError
from runner.registry import Registry

if TYPE_CHECKING:
    from runner.models import ModelOutput

Kind = Literal["binary", "multiclass", "anomaly", "segmentation"]


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
    """A registered task: its classes, default data, the validation metric a sweep optimises, and its
    parameters (``params``: name -> default; ``choices``: name -> allowed values)."""

    name: str
    classes: tuple[str, ...]
    default_data: Mapping[str, Any] = field(default_factory=dict)
    monitor: str = "val_f1"
    mode: Literal["max", "min"] = "max"
    params: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    kind: ClassVar[Kind]
    headline: ClassVar[tuple[str, ...]] = ()
    #: What the model must output for this kind (``runner.models.check_fits`` compares it with the model's).
    model_output: ClassVar[ModelOutput]

    def model_features(self, params: Mapping[str, Any]) -> frozenset[str]:
        """Feature layers (``runner.models`` ``features``) a trial with these bound params reads from the model."""
        return frozenset()

    @property
    def needs_masks(self) -> bool:
        return self.kind == "segmentation"

    @property
    def expected_classes(self) -> tuple[str, ...] | None:
        """Labels a data set may hold: any for anomaly (all non-normal are positive) and segmentation."""
        return self.classes if self.kind in ("binary", "multiclass") else None

    @property
    def need_two_classes(self) -> bool:
        return self.kind != "segmentation"

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
        """headline metric -> (metric function, arrays to resample together)."""
        return {}

    @abstractmethod
    def prediction_columns(self, split: Split, scores: np.ndarray) -> dict[str, Any]: ...

    def class_weights(self, split: Split) -> dict[int, float] | None:
        return None


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
    headline: ClassVar[tuple[str, ...]] = ("roc_auc", "f1", "recall", "specificity")

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
            return metrics.binary_metrics(y, scores)
        val_split, val_scores = val
        return metrics.binary_report(self.positives(val_split), val_scores, y, scores,
                                     criterion=params["threshold_criterion"])

    def bootstrap_inputs(self, split, scores, params):
        y = self.positives(split)
        return {
            "roc_auc": (metrics.roc_auc, (y, scores)),
            "f1": (lambda t, s: metrics.binary_metrics(t, s)["f1"], (y, scores)),
            "recall": (lambda t, s: metrics.binary_metrics(t, s)["recall"], (y, scores)),
            "specificity": (lambda t, s: metrics.binary_metrics(t, s)["specificity"], (y, scores)),
        }

    def prediction_columns(self, split, scores):
        return {"score": scores.astype(float), "target": self.positives(split)}

    def class_weights(self, split):
        return _balanced_weights(self.positives(split), 2)


@dataclass(frozen=True)
class MulticlassTask(Task):
    """Softmax head over ``classes``, categorical cross-entropy, macro / per-class metrics."""

    monitor: str = "val_f1_macro"
    params: Mapping[str, Any] = field(default_factory=lambda: {"class_weights": False})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {"class_weights": (True, False)})
    kind: ClassVar[Kind] = "multiclass"
    model_output: ClassVar[ModelOutput] = "classes"
    headline: ClassVar[tuple[str, ...]] = ("f1_macro", "accuracy", "roc_auc_ovr")

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
        return metrics.multiclass_metrics(self.indices(split), scores, self.classes)

    def bootstrap_inputs(self, split, scores, params):
        y = self.indices(split)
        return {key: ((lambda t, s, key=key: metrics.multiclass_metrics(t, s, self.classes)[key]), (y, scores))
                for key in self.headline}

    def prediction_columns(self, split, scores):
        columns: dict[str, Any] = {"target": self.indices(split), "predicted": np.argmax(scores, axis=1)}
        for index, name in enumerate(self.classes):
            columns[f"score_{name}"] = scores[:, index].astype(float)
        return columns

    def class_weights(self, split):
        return _balanced_weights(self.indices(split), len(self.classes))


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
    """An autoencoder trained on ``normal`` images only; any other label is a positive. The anomaly score
    (``mse``, ``ssim`` or ``latent`` Mahalanobis distance) is a parameter because the notebooks' MSE score
    measured ROC AUC 0.47 for pneumonia on real radiographs; the threshold is a percentile of validation
    negatives' scores, applied unchanged to test."""

    monitor: str = "val_roc_auc"
    params: Mapping[str, Any] = field(default_factory=lambda: {"score": "mse", "percentile": 95.0})
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: {"score": ANOMALY_SCORES})
    kind: ClassVar[Kind] = "anomaly"
    model_output: ClassVar[ModelOutput] = "image"
    headline: ClassVar[tuple[str, ...]] = ("roc_auc",)

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
    headline: ClassVar[tuple[str, ...]] = ("dice", "iou")

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
        return {key: ((lambda v: float(np.mean(v)) if len(v) else None), (per_image[key],)) for key in self.headline}

    def prediction_columns(self, split, scores):
        per_image = self.per_image(split, scores)
        return {"dice": per_image["dice"], "iou": per_image["iou"],
                "true_area": (split.masks > 127).reshape(len(scores), -1).mean(axis=1),
                "predicted_area": (scores >= 0.5).reshape(len(scores), -1).mean(axis=1)}


TASKS: Registry[Task] = Registry("task", package="tasks")
