"""U-Net with a VGG16 encoder for lung / lesion segmentation masks.

The encoder is VGG16 cut at ``block4_pool`` (side / 16), built flat like the classifiers' backbones, so its
``weights`` and ``frozen_layers`` behave as for ``vgg16`` (frozen layers counted within the 15-layer cut
encoder: input, blocks 1-4). The decoder upsamples four times back to the input size, concatenating the
encoder's last conv of each scale when ``skip_connections`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.models import _backbone
from runner.models._layers import image_input, image_output
from runner.models._spec import check_bool, check_int_list, register

if TYPE_CHECKING:
    import keras

# The encoder's last conv at sides /8, /4, /2, /1: the skip sources, deepest first (decoder order).
SKIPS = ("block4_conv3", "block3_conv3", "block2_conv2", "block1_conv2")


def up_block(
    x: keras.KerasTensor, skip: keras.KerasTensor | None, filters: int, name: str
) -> keras.KerasTensor:
    """Upsample 2x, concatenate the encoder's map of that scale (if any), then two 3x3 ReLU convs."""
    import keras

    x = keras.layers.UpSampling2D(2, name=f"{name}_up")(x)
    if skip is not None:
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)


@register("vgg16_unet", output="mask", min_size=32, size_multiple=16)
def vgg16_unet(
    input_shape: tuple[int, int, int],
    num_outputs: int,
    output_activation: str,
    *,
    weights: str | None = "imagenet",
    frozen_layers: int | float | str = 0,
    skip_connections: bool = True,
    decoder_filters: Sequence[int] = (256, 128, 64, 32),
) -> keras.Model:
    """VGG16 encoder -> ``decoder1..4`` (``decoder_filters``, deepest first) -> ``output`` mask.

    Sides must be multiples of 16 (four 2x poolings undone by four upsamplings) and at least 32 (VGG16's
    keras minimum). The output is a float32 mask of the input's height and width with ``num_outputs``
    channels (one per mask class) and ``output_activation`` (sigmoid: independent masks; softmax: one class
    per pixel).
    """
    import keras

    skip_connections = check_bool("vgg16_unet", "skip_connections", skip_connections)
    decoder_filters = check_int_list("vgg16_unet", "decoder_filters", decoder_filters, length=len(SKIPS))
    inputs = image_input(input_shape)
    encoder = _backbone.backbone("vgg16_unet", "vgg16", inputs, weights, output_layer="block4_pool")
    skips: list[Any] = [encoder.get_layer(name).output if skip_connections else None for name in SKIPS]
    x = encoder.output
    for index, (skip, filters) in enumerate(zip(skips, decoder_filters, strict=True), start=1):
        x = up_block(x, skip, filters, f"decoder{index}")
    outputs = image_output(x, num_outputs, output_activation, "vgg16_unet")
    model = keras.Model(inputs, outputs, name="vgg16_unet")
    _backbone.freeze("vgg16_unet", model, frozen_layers)
    return model
