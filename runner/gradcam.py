"""Grad-CAM (Selvaraju et al. 2017) for the classifiers, with ``tf.GradientTape`` and nothing else.

Which part of the image made the model say "pneumonia"? Grad-CAM weights each channel of the last
convolutional feature map by the mean gradient of the class score with respect to it, sums, keeps the positive
part and upsamples to the image. The feature map is ``runner.models.last_conv_layer(model)`` (``block4_conv``
for ``small_cnn``, ``block5_conv3`` for VGG16, ``relu`` for DenseNet121...), found from the graph so it works
on a model reloaded from ``model.keras``. The class score is the pre-activation ``logits`` layer where there
is one: gradients through a saturated sigmoid or softmax vanish and would give a blank map for the most
confident, most interesting images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def grad_model(model):
    """A model from the classifier's input to (last conv feature map, class logits)."""
    import keras

    from runner.models import last_conv_layer

    conv = model.get_layer(last_conv_layer(model))
    names = [layer.name for layer in model.layers]
    scores = model.get_layer("logits").output if "logits" in names else model.outputs[0]
    return keras.Model(model.inputs, [conv.output, scores])


def heatmaps(model, images: np.ndarray, classes: int | Sequence[int]) -> np.ndarray:
    """Grad-CAM maps for ``images`` (uint8 or [0, 1] floats, (n, H, W, C)) of ``classes`` (one class index
    for all, or one per image), as float32 (n, H, W) in [0, 1], each scaled by its own maximum (all zeros
    where no region supports the class). One forward and backward pass for the whole batch.

    A one-unit (sigmoid) head scores class 1 by its logit and class 0 by the negated logit."""
    import tensorflow as tf

    explainer = grad_model(model)
    x = tf.constant(_as_unit_floats(images))
    wanted = np.broadcast_to(np.asarray(classes, dtype=np.int64), (len(images),))
    with tf.GradientTape() as tape:
        features, logits = explainer(x, training=False)
        features = tf.cast(features, tf.float32)
        logits = tf.cast(logits, tf.float32)
        if logits.shape[-1] == 1:
            score = tf.where(tf.constant(wanted == 1), logits[:, 0], -logits[:, 0])
        else:
            score = tf.gather(logits, tf.constant(wanted), axis=1, batch_dims=1)
        # Each image's score depends on its own features only: one gradient of the sum serves every image.
        total = tf.reduce_sum(score)
    gradients = tape.gradient(total, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
    maps = tf.image.resize(maps, images.shape[1:3], method="bilinear")[..., 0].numpy()
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]).astype(np.float32)


def _as_unit_floats(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
