"""Model zoo: every network an experiment can name, built from one call.

``create_model(name, input_shape=..., **params)`` looks ``name`` up in ``MODELS``, checks the parameters
against the builder's signature and the image size against the model's minimum, then builds a
``keras.Model`` that takes float32 images in [0, 1] of ``input_shape`` (grayscale (H, W, 1) or RGB
(H, W, 3)) and returns float32 outputs even under a ``mixed_float16`` policy.

Each model declares at its registration what it outputs (``output``: ``classes``, ``image`` or ``mask``)
and which feature layers it offers (``features``: feature name -> layer name); a task declares what it
needs, and ``check_fits`` / ``check_pairs`` refuse a pair that does not fit when the config loads.

Registered models (see each builder's docstring for its parameters):

* ``baseline``, ``small_cnn`` (``runner.models.simple``): small from-scratch CNNs; output classes.
* ``vgg16``, ``vgg19``, ``inception_v3``, ``densenet121`` (``runner.models.applications``):
  ``keras.applications`` backbones with a classification head; output classes.
* ``conv_autoencoder`` (``runner.models.autoencoder``): output a reconstructed image; feature ``latent``
  (layer ``bottleneck``).
* ``vgg16_unet`` (``runner.models.unet``): output a segmentation mask.

Adding a model is one builder module here: a function ``(input_shape, num_outputs, output_activation, *,
param=default, ...) -> keras.Model`` decorated with ``@register(name, output=..., features=...)``, naming
its keras model ``name``, and importing ``keras`` inside the builder. Its keyword-only arguments are its
parameters (YAML keys), their defaults the defaults.

Layer names later code can rely on: the classifier's final activation is ``"output"`` (the pre-activation
dense layer ``"logits"``), a feature layer is the one ``feature_layer(model, feature)`` names, and
``last_conv_layer(model)`` names the last convolutional feature map for Grad-CAM (``block5_conv3`` for
VGG16, ``relu`` for DenseNet121, ``mixed10`` for InceptionV3, ``block4_conv`` for ``small_cnn``). Backbone
layers keep their keras names and sit directly in the model (not nested in a sub-model), so
``model.get_layer("block5_conv3").output`` is connected to ``model.input`` and a Grad-CAM model is just
``keras.Model(model.input, [model.get_layer(last_conv_layer(model)).output, model.output])``.

Neither importing this package nor looking a model up imports TensorFlow: the registry imports the builder
modules the first time it is read, and they import Keras inside the functions that build. A sweep's driver
checks its YAML against the registry (names, parameters, minimum sizes) without paying for TensorFlow's import
(time and memory before Ray starts: BENCHMARKS.md, Sweep overhead), and a typo fails before any of it. A saved
model loads with ``load_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.models._contract import check_fits, check_pairs, feature_layer
from runner.models._spec import MODELS, ModelOutput, ModelSpec

if TYPE_CHECKING:
    import keras

__all__ = [
    "MODELS",
    "ModelOutput",
    "ModelSpec",
    "backbone_layers",
    "check_fits",
    "check_pairs",
    "create_model",
    "feature_layer",
    "last_conv_layer",
    "load_model",
    "min_image_size",
    "save_backbone_weights",
]

def create_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_outputs: int | None = None,
    output_activation: str = "sigmoid",
    **params: Any,
) -> keras.Model:
    """Build model ``name`` for images of ``input_shape``.

    The ``output`` layer has ``num_outputs`` class units or mask channels with ``output_activation``
    (None: one); an image model's reconstruction has the input's channels, and any other ``num_outputs``
    is refused. ``params`` are the model's own parameters; an unknown one, an unknown model or an image
    too small for the model is a ConfigError.
    """
    spec = MODELS.get(name)
    bound = spec.bind(params)
    shape = spec.check_input_shape(input_shape, bound)
    count = spec.output_count(shape, num_outputs)
    return spec.build(shape, num_outputs=count, output_activation=output_activation, **bound)


def load_model(path: str | Path) -> keras.Model:
    """A saved ``model.keras``, uncompiled (predicting needs no loss: a custom one would not load). A model
    with a ``keras.applications`` backbone holds our ``BackboneInput`` layer, which Keras can only rebuild
    once its module is imported. A missing, damaged or foreign file is a ConfigError naming it."""
    import zipfile

    import keras

    from runner.models import _backbone_input  # noqa: F401  (registers BackboneInput with Keras)

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no saved model there (a trial writes model.keras into its folder when it "
                          "completes): give the path of a model.keras file")
    if not zipfile.is_zipfile(path):  # what Keras calls "File not found", though the file is there
        raise ConfigError(f"{path} is not a saved Keras model (a .keras file is a zip archive): it is damaged or "
                          "another kind of file; python -m runner rerun SWEEP_ID TRIAL_ID retrains its trial into "
                          "results/reruns/")
    return keras.saving.load_model(path, compile=False)


def min_image_size(name: str, **params: Any) -> int:
    """The smallest image side model ``name`` accepts (with its default parameters unless ``params``)."""
    spec = MODELS.get(name)
    return spec.size_rule(spec.bind(params))[0]


def last_conv_layer(model: keras.Model) -> str:
    """Name of the last convolutional feature map of a classifier: the layer Grad-CAM differentiates.

    Found from the graph, not from an attribute, so it also works on a model reloaded from disk: the last
    layer with a 4-D output that is not pooling, dropout or padding.
    """
    from runner.models import _layers

    return _layers.last_conv_layer(model)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The ``keras.applications`` backbone's layers in the order ``frozen_layers`` counts them.

    Index 0 is the model's input layer, so the list lines up with ``keras.applications.VGG16(...).layers``
    and notebook habits such as ``base.layers[:15]`` carry over. A ConfigError for a model without one.
    """
    from runner.models import _backbone

    return _backbone.backbone_layers(model)


def save_backbone_weights(model: keras.Model, path: str | Path) -> Path:
    """Save the backbone's weights to ``path`` (``*.weights.h5``) for a later ``weights: PATH``.

    The file has the layout of ``keras.applications.<Family>(include_top=False).save_weights``, so it also
    loads into a plain keras backbone and vice versa.
    """
    from runner.models import _backbone

    return _backbone.save_backbone_weights(model, path)
