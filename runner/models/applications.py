"""Transfer-learning classifiers: a ``keras.applications`` backbone plus a small head.

One generic builder, ``backbone_classifier``, registered once per ``keras.applications`` family in
``_backbone.FAMILIES`` under the family's name (``vgg16``, ``vgg19``, ``inception_v3``, ``densenet121``) as
``functools.partial(backbone_classifier, family)``: the partial's signature lists the parameters (and
defaults) a YAML config may set, as a hand-written wrapper's would. Each outputs classes; the last
convolutional feature map (Grad-CAM) is ``block5_conv3`` for VGG16, ``block5_conv4`` for VGG19,
``mixed10`` for InceptionV3 (inputs of at least 75 px) and ``relu`` (after the final BN) for DenseNet121,
CheXNet's backbone.

Parameters of every family:

* ``weights``: ``"imagenet"`` (downloaded and cached by keras; offline this is a ConfigError suggesting the
  alternatives), ``"none"`` (random init) or a path to a weights file of the backbone (see
  ``runner.models.save_backbone_weights``).
* ``frozen_layers``: leading backbone layers frozen, counted like ``keras.applications.<Family>().layers``
  (index 0 is the input layer). An int is exact, ``"all"`` freezes the whole backbone, and a float in 0..1
  is a fraction rounded to the nearest block boundary (after a ``blockN_pool`` for VGG, a dense or
  transition block for DenseNet, a ``mixedN`` module for Inception).
* ``pooling``: ``"avg"`` | ``"max"`` | ``"flatten"`` over the last feature map (layer ``head_pool``).
* ``hidden``: units of a ReLU dense layer ``head_dense`` (0 for none); ``dropout`` before ``logits``.
* ``batch_norm``: ``true`` adds a BatchNormalization layer ``<conv>_bn`` after every VGG convolution (as
  VGG-BN does; weights files still load into the convolutions), ``auto`` only when ``weights`` is none,
  ``false`` (the default) never. DenseNet and Inception have their own, so only false or auto there.
  Added layers count in ``frozen_layers`` like any other, and VGG's last feature map becomes ``block5_conv3_bn``.
* ``bn_momentum``: momentum of every BatchNormalization layer's moving statistics (default keras's own 0.99,
  which needs hundreds of steps to settle; a short from-scratch run wants less, e.g. 0.9).

Layers: ``image`` (input) -> ``backbone_input`` (gray -> RGB 0..255 -> the family's ``preprocess_input``)
-> the backbone's own layers -> ``head_pool`` -> [``head_dense``] -> [``head_dropout``] -> ``logits`` ->
``output`` (float32).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from runner.models import _backbone
from runner.models._backbone import FAMILIES
from runner.models._layers import image_input, output_block
from runner.models._spec import check_choice, check_fraction, check_int, register

if TYPE_CHECKING:
    import keras

POOLING = ("avg", "max", "flatten")


def head_block(
    x: keras.KerasTensor, pooling: str, hidden: int, dropout: float, name: str = "head"
) -> keras.KerasTensor:
    """Feature map -> vector -> optional hidden layer -> dropout: the part trained from scratch."""
    import keras

    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=f"{name}_pool")(x)
    else:
        x = keras.layers.Flatten(name=f"{name}_pool")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name=f"{name}_dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def backbone_classifier(
    family: str,
    input_shape: tuple[int, int, int],
    num_outputs: int,
    output_activation: str,
    *,
    weights: str | None = "imagenet",
    frozen_layers: int | float | str = 0,
    pooling: str = "avg",
    hidden: int = 256,
    dropout: float = 0.5,
    batch_norm: bool | str = False,
    bn_momentum: float = 0.99,
) -> keras.Model:
    """``family``'s backbone with weights, the head, and the leading ``frozen_layers`` frozen; the keras
    model is named after the family, which is also its registered name."""
    import keras

    name = family
    pooling = check_choice(name, "pooling", pooling, POOLING)
    hidden = check_int(name, "hidden", hidden)
    dropout = check_fraction(name, "dropout", dropout)
    bn_momentum = check_fraction(name, "bn_momentum", bn_momentum)
    inputs = image_input(input_shape)
    x = _backbone.backbone(name, family, inputs, weights, batch_norm=batch_norm).output
    x = head_block(x, pooling, hidden, dropout)
    outputs = output_block(x, num_outputs, output_activation, name)
    model = keras.Model(inputs, outputs, name=name)
    _backbone.set_batch_norm_momentum(model, bn_momentum)
    _backbone.freeze(name, model, frozen_layers)
    return model


for _name, _family in FAMILIES.items():
    register(_name, output="classes", min_size=_family.min_size)(functools.partial(backbone_classifier, _name))
