"""Convolutional autoencoder: reconstructs its input through a small bottleneck.

Used for unsupervised pretraining and anomaly scores (reconstruction error). The code is the layer named
``bottleneck`` in both bottleneck variants, declared as the model's ``latent`` feature, so an encoder is
``keras.Model(model.input, model.get_layer(feature_layer(model, "latent")).output)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner.models._layers import conv_block, image_input, image_output
from runner.models._spec import check_choice, check_int, check_int_list, register

if TYPE_CHECKING:
    import keras

BOTTLENECKS = ("conv", "dense")


def _scale(params: Mapping[str, Any]) -> int:
    """Each encoder block halves the side, so sides must be multiples of 2**blocks (and at least that)."""
    return 2 ** len(check_int_list("conv_autoencoder", "filters", params["filters"]))


def decoder_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """2x nearest upsampling then a 3x3 ReLU conv: mirrors ``conv_block`` without the checkerboard
    artefacts a strided transposed convolution tends to leave."""
    import keras

    x = keras.layers.UpSampling2D(2, name=f"{name}_up")(x)
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)


@register("conv_autoencoder", output="image", features={"latent": "bottleneck"}, min_size=_scale, size_multiple=_scale)
def conv_autoencoder(
    input_shape: tuple[int, int, int],
    num_outputs: int,
    output_activation: str,
    *,
    filters: Sequence[int] = (32, 64, 128),
    bottleneck: str = "dense",
    latent_dim: int = 128,
) -> keras.Model:
    """Encoder ``encoder1..N`` (conv + pool per ``filters`` entry), ``bottleneck``, mirrored ``decoder``.

    The default is a ``dense`` code of 128, chosen by validation on real radiographs: trained on normal
    Kermany images, a ``conv`` bottleneck (as many numbers as the image has pixels at 64 px with three
    levels and 64 channels) ranked pneumonia below normal (test ROC AUC 0.36), dense codes of 16-128 above
    it (0.66-0.76; ``bench/anomaly_real.py``, BENCHMARKS.md).

    ``bottleneck="conv"``: a 3x3 conv with ``latent_dim`` channels keeps the spatial map (side / 2**N).
    ``bottleneck="dense"``: the map is flattened to a ``latent_dim`` vector (a true fixed-size code) and
    expanded back (``bottleneck_expand``, ``bottleneck_reshape``). The output (``output``, float32,
    ``output_activation``: sigmoid by default, for [0, 1] images) has the input's shape; ``num_outputs`` is
    the input's channels (``create_model`` refuses any other count).
    """
    import keras

    filters = check_int_list("conv_autoencoder", "filters", filters)
    bottleneck = check_choice("conv_autoencoder", "bottleneck", bottleneck, BOTTLENECKS)
    latent_dim = check_int("conv_autoencoder", "latent_dim", latent_dim, minimum=1)
    inputs = image_input(input_shape)
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = conv_block(x, width, f"encoder{index}")
    if bottleneck == "conv":
        x = keras.layers.Conv2D(latent_dim, 3, padding="same", activation="relu", name="bottleneck")(x)
    else:
        map_shape = tuple(x.shape[1:])
        x = keras.layers.Flatten(name="bottleneck_flatten")(x)
        x = keras.layers.Dense(latent_dim, name="bottleneck")(x)
        x = keras.layers.Dense(
            map_shape[0] * map_shape[1] * map_shape[2], activation="relu", name="bottleneck_expand"
        )(x)
        x = keras.layers.Reshape(map_shape, name="bottleneck_reshape")(x)
    for index, width in reversed(list(enumerate(filters, start=1))):
        x = decoder_block(x, width, f"decoder{index}")
    outputs = image_output(x, num_outputs, output_activation, "conv_autoencoder")
    return keras.Model(inputs, outputs, name="conv_autoencoder")
