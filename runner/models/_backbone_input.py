"""The backbone's input layer, the one custom layer our models hold.

It lives in a module of its own, which imports Keras, so that ``runner.models._backbone`` (read by the model
registry when a sweep's YAML is checked) does not. A saved ``model.keras`` with a backbone names this class:
load it through ``runner.models.load_model``, which imports this module first.
"""

from __future__ import annotations

from typing import Any

import keras

from runner.models._backbone import FAMILIES


@keras.saving.register_keras_serializable(package="cxr_runner")
class BackboneInput(keras.layers.Layer):
    """[0, 1] grayscale or RGB images -> what an ImageNet backbone was trained on.

    Grayscale is repeated to three channels (the pretrained first convolution expects RGB), scaled to
    0..255 and passed through the family's own ``preprocess_input`` (BGR mean subtraction for VGG, [-1, 1]
    for Inception, ImageNet mean/std for DenseNet). Doing it inside the model keeps data pipelines
    model-agnostic and saved models self-contained. ``output_layer`` records where the backbone ends.
    """

    def __init__(self, family: str, output_layer: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.family = family
        self.output_layer = output_layer

    def call(self, inputs: Any) -> Any:
        x = inputs
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        return FAMILIES[self.family].preprocess(x * 255.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], 3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "family": self.family, "output_layer": self.output_layer}
