"""Small from-scratch CNNs: a sanity-check baseline and the notebooks' four-block CNN.

Both take [0, 1] images directly (no ImageNet preprocessing: nothing pretrained to match) and end in the
shared ``logits`` -> ``output`` block, so they plug into the same training code as the backbones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.models._layers import conv_block, dense_block, image_input, output_block
from runner.models._spec import check_fraction, check_int, check_number, register

if TYPE_CHECKING:
    import keras

SMALL_CNN_FILTERS = (32, 64, 128, 128)


@register("baseline", output="classes", min_size=1)
def baseline(
    input_shape: tuple[int, int, int],
    num_outputs: int,
    output_activation: str,
    *,
    filters: int = 32,
    hidden: int = 64,
) -> keras.Model:
    """One 3x3 conv (``conv``), global average pooling (``pool``), a ReLU dense layer (``dense``), output.

    The floor any real model must beat. Global pooling rather than flatten keeps it tiny at any image size
    (a flatten after a full-resolution conv at 224 px would be a 100M-parameter dense layer).
    """
    import keras

    filters = check_int("baseline", "filters", filters, minimum=1)
    hidden = check_int("baseline", "hidden", hidden, minimum=1)
    inputs = image_input(input_shape)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = dense_block(x, hidden, "dense")
    outputs = output_block(x, num_outputs, output_activation, "baseline")
    return keras.Model(inputs, outputs, name="baseline")


@register("small_cnn", output="classes", min_size=2 ** len(SMALL_CNN_FILTERS))
def small_cnn(
    input_shape: tuple[int, int, int],
    num_outputs: int,
    output_activation: str,
    *,
    dropout: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    """The notebooks' CNN: four conv + max-pool blocks (32, 64, 128, 128 filters), flatten, dense 512, 64.

    Layers ``block1_conv`` / ``block1_pool`` .. ``block4_*``, ``flatten``, ``fc1``, ``fc2`` (each followed
    by ``fc1_dropout`` / ``fc2_dropout`` when ``dropout`` > 0), ``logits``, ``output``. ``l2`` is a kernel
    penalty on every conv and dense layer. Four 2x poolings need images of at least 16 px; the last conv
    feature map (Grad-CAM) is ``block4_conv``.
    """
    import keras

    dropout = check_fraction("small_cnn", "dropout", dropout)
    l2 = check_number("small_cnn", "l2", l2)
    inputs = image_input(input_shape)
    x = inputs
    for index, filters in enumerate(SMALL_CNN_FILTERS, start=1):
        x = conv_block(x, filters, f"block{index}", l2=l2)
    x = keras.layers.Flatten(name="flatten")(x)
    x = dense_block(x, 512, "fc1", dropout=dropout, l2=l2)
    x = dense_block(x, 64, "fc2", dropout=dropout, l2=l2)
    outputs = output_block(x, num_outputs, output_activation, "small_cnn", l2=l2)
    return keras.Model(inputs, outputs, name="small_cnn")
