"""Blocks shared by several builders, in the style of ``keras.applications.densenet``.

Each block is a function ``(x, ..., name) -> x`` that names its layers after ``name``, so a model's layer
names say where they come from (``block2_conv``, ``encoder1_pool``, ``decoder3_up``) and later code can
find them with ``model.get_layer``. Like every builder module, it imports Keras inside the functions that
build, so that reading the model registry (a sweep's driver checking its YAML) does not import TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import ConfigError

if TYPE_CHECKING:
    import keras

def image_input(input_shape: tuple[int, int, int]) -> keras.KerasTensor:
    """The model input: float32 images in [0, 1], whatever the global dtype policy (casts happen inside)."""
    import keras

    return keras.Input(shape=input_shape, dtype="float32", name="image")


def conv_block(x: keras.KerasTensor, filters: int, name: str, *, l2: float = 0.0) -> keras.KerasTensor:
    """3x3 same-padded ReLU convolution then 2x2 max pooling: halves the side, keeps the layer count small."""
    import keras

    x = keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=f"{name}_conv",
    )(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def dense_block(
    x: keras.KerasTensor, units: int, name: str, *, dropout: float = 0.0, l2: float = 0.0
) -> keras.KerasTensor:
    """ReLU dense layer, then dropout only when asked (a zero-rate Dropout layer would just be noise)."""
    import keras

    x = keras.layers.Dense(
        units,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def output_block(
    x: keras.KerasTensor, num_outputs: int, activation: str, model: str, *, l2: float = 0.0
) -> keras.KerasTensor:
    """Dense ``logits`` then the ``output`` activation, computed in float32.

    Under ``mixed_float16`` the dense layer runs in float16 but the activation layer has its own float32
    dtype policy, so sigmoid/softmax and the loss see float32 and the model's output dtype never depends on
    the global policy.
    """
    import keras

    check_activation(model, activation)
    x = keras.layers.Dense(
        num_outputs, kernel_regularizer=keras.regularizers.L2(l2) if l2 else None, name="logits"
    )(x)
    return keras.layers.Activation(activation, dtype="float32", name="output")(x)


def image_output(x: keras.KerasTensor, channels: int, activation: str, model: str) -> keras.KerasTensor:
    """A ``channels``-deep image (reconstruction or mask) named ``output``, activated in float32."""
    import keras

    check_activation(model, activation)
    x = keras.layers.Conv2D(channels, 1, name="output_conv")(x)
    return keras.layers.Activation(activation, dtype="float32", name="output")(x)


def check_activation(model: str, activation: str) -> None:
    import keras

    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"model '{model}': unknown output_activation {activation!r} (use sigmoid, softmax or linear)"
        ) from error


def last_conv_layer(model: keras.Model) -> str:
    """The last layer of a classifier whose output is a 4-D feature map (see ``runner.models``)."""
    import keras

    # Layers that never carry the feature map Grad-CAM wants, even though their output is 4-D.
    not_features = (keras.layers.InputLayer, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                    keras.layers.ZeroPadding2D, keras.layers.Dropout, keras.layers.SpatialDropout2D)
    if len(model.outputs[0].shape) != 2:
        raise ConfigError(
            f"model '{model.name}' outputs images, not classes: Grad-CAM needs a classifier "
            "(last_conv_layer works on baseline, small_cnn and the keras.applications backbones)"
        )
    for layer in reversed(model.layers):
        if isinstance(layer, not_features) or type(layer).__name__ == "BackboneInput":
            continue
        if len(layer.output.shape) == 4:
            return layer.name
    raise ConfigError(f"model '{model.name}' has no convolutional feature map")
