"""``tf.data`` pipelines over cached uint8 arrays: shuffle, batch, augment, prefetch.

A split is held in memory as one uint8 tensor (about 50 KB an image at 224 px: 100,000 images take 5 GB) and
batches are gathered from it inside TensorFlow's graph: no Python runs per image or per batch, so the
pipeline keeps up with a GPU and runs as fast as ``from_tensor_slices`` over the same arrays. Images leave
the pipeline as float32 in [0, 1]; models add their own preprocessing (ImageNet backbones repeat the
channel and apply their ``preprocess_input``), which keeps a saved model self-contained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from keras import layers

from runner.errors import ConfigError

Target = Literal["label", "image", "mask"]


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentations of the seed notebooks, each off at 0. Rotation is a fraction of a full turn, shift and
    zoom fractions of the side, shear a factor (Keras semantics); noise is the std of added Gaussian noise on
    [0, 1] images. Horizontal flip is off by default: the heart's side is anatomy, not noise."""

    flip: bool = False
    rotation: float = 0.03
    shift: float = 0.05
    zoom: float = 0.1
    shear: float = 0.0
    noise: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | bool | None) -> AugmentConfig | None:
        if options is None or options is False:
            return None
        if options is True:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation '{unknown[0]}': choose from {', '.join(sorted(known))}")
        config = cls(**options)
        for name in known - {"flip"}:
            if not 0 <= float(getattr(config, name)) <= 1:
                raise ConfigError(f"augmentation {name}={getattr(config, name)} must be between 0 and 1")
        return config


def _geometric_layers(config: AugmentConfig, seed: int) -> list[layers.Layer]:
    """Geometric transforms; applied to image and mask stacked on the channel axis so both move together."""
    chosen: list[layers.Layer] = []
    if config.flip:
        chosen.append(layers.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        chosen.append(layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed + 1))
    if config.shift:
        chosen.append(layers.RandomTranslation(config.shift, config.shift, fill_mode="constant", seed=seed + 2))
    if config.zoom:
        chosen.append(layers.RandomZoom(config.zoom, fill_mode="constant", seed=seed + 3))
    if config.shear:
        chosen.append(layers.RandomShear(config.shear, config.shear, fill_mode="constant", seed=seed + 4))
    return chosen


def make_augmenter(config: AugmentConfig, seed: int, with_mask: bool):
    """A function (images, masks|None) -> (images, masks|None) on float32 batches, for ``Dataset.map``."""
    geometric = _geometric_layers(config, seed)
    noise = layers.GaussianNoise(config.noise, seed=seed + 5) if config.noise else None

    def augment(images: tf.Tensor, masks: tf.Tensor | None):
        channels = images.shape[-1]
        stacked = tf.concat([images, masks], axis=-1) if with_mask else images
        for layer in geometric:
            stacked = layer(stacked, training=True)
        images = stacked[..., :channels]
        if with_mask:
            masks = tf.cast(stacked[..., channels:] > 0.5, tf.float32)
        if noise is not None:
            images = tf.clip_by_value(noise(images, training=True), 0.0, 1.0)
        return images, masks

    return augment


def make_dataset(images: np.ndarray, targets: np.ndarray | None = None, *, target: Target = "label",
                 batch_size: int = 32, multiple_of: int = 1) -> tf.data.Dataset:
    """Evaluation batches: a batched, prefetched dataset of ``(image, target)`` pairs, one pass over the
    images in their order, unaugmented (training batches: ``make_epochs``).

    ``images``: (n, h, w, c) uint8. ``target``: ``label`` (``targets`` float32 per image: 0/1 or one-hot),
    ``mask`` (``targets`` uint8 masks (n, h, w, 1), 0/255), or ``image`` (the autoencoder's own input).
    ``multiple_of``: see ``make_epochs``; here the last images are the ones left out.
    """
    indices = tf.data.Dataset.range(_used(_checked_size(images, targets, target), batch_size, multiple_of))
    return _examples(indices.batch(batch_size), images, targets, target, None, 0)


def make_epochs(images: np.ndarray, targets: np.ndarray | None = None, *, target: Target = "label",
                batch_size: int = 32, augment: AugmentConfig | None = None, seed: int = 0, first_epoch: int = 0,
                multiple_of: int = 1) -> tf.data.Dataset:
    """Training batches, endless and shuffled: epoch ``first_epoch``, then the next, each in the order drawn from
    ``(seed, epoch)`` alone, augmented with ``augment`` (masks transformed with their image; the autoencoder's
    ``image`` target taken after augmentation); ``steps_per_epoch`` batches make one epoch (give Keras' ``fit`` that
    count). A reshuffling finite dataset draws each order from how many iterators TensorFlow made of it before,
    which ``MirroredStrategy``'s distributed dataset changes: on two replicas the same seed trained even epoch 1 on
    another order than on one device (the baseline model's scores 3e-4 apart after two epochs, measured). Here the
    order cannot change, and a trial resumed at epoch k sees the unbroken trial's orders from k on. Augmentation
    still draws from its Keras layers' seed state, which the distributed dataset advances differently: its
    transforms, and so scores (1e-4 apart), still differ on two replicas. Each pass of the images begins a new
    epoch: no batch mixes two. ``multiple_of`` (the replicas a global batch is split across; ``batch_size`` a
    multiple of it): each epoch leaves out its last ``n % multiple_of`` images in that epoch's order, so that every
    batch, the last one too, is a multiple of it.
    """
    n = _checked_size(images, targets, target)
    used = _used(n, batch_size, multiple_of)

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), number]))
        return tf.data.Dataset.from_tensor_slices(order[:used]).batch(batch_size)

    return _examples(tf.data.Dataset.counter(first_epoch).flat_map(epoch), images, targets, target, augment, seed)


def steps_per_epoch(n: int, batch_size: int, multiple_of: int = 1) -> int:
    """The batches ``make_epochs`` gives per epoch of ``n`` images: ceil(images used / batch_size)."""
    return -(-_used(n, batch_size, multiple_of) // batch_size)


def _used(n: int, batch_size: int, multiple_of: int) -> int:
    """How many of ``n`` images one pass uses, so that every batch splits evenly over ``multiple_of``."""
    if batch_size % multiple_of:
        raise ConfigError(f"batch_size={batch_size} does not split evenly over {multiple_of} replicas: "
                          f"use a multiple of {multiple_of}")
    return n - n % multiple_of


def _checked_size(images: np.ndarray, targets: np.ndarray | None, target: Target) -> int:
    n = len(images)
    if n == 0:
        raise ConfigError("cannot build a pipeline over an empty split: add data or change the split ratios")
    if target != "image" and (targets is None or len(targets) != n):
        raise ConfigError(f"target '{target}' needs one target per image ({n})")
    return n


def _examples(batches: tf.data.Dataset, images: np.ndarray, targets: np.ndarray | None, target: Target,
              augment: AugmentConfig | None, seed: int) -> tf.data.Dataset:
    """Batches of image indices as ``(image, target)`` float32 batches, gathered in TensorFlow's graph."""
    pixels = tf.constant(images)
    answers = tf.constant(targets if targets is not None else np.zeros(len(images), np.uint8))
    augmenter = make_augmenter(augment, seed, with_mask=target == "mask") if augment else None

    def gather(batch):
        x = tf.cast(tf.gather(pixels, batch), tf.float32) / 255.0
        y = tf.gather(answers, batch)
        if target == "mask":
            y = tf.cast(y, tf.float32) / 255.0
        if augmenter is not None:
            x, masks = augmenter(x, y if target == "mask" else None)
            if target == "mask":
                y = masks
        if target == "image":
            y = x
        return x, tf.cast(y, tf.float32)

    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
