"""``keras.applications`` backbones inside our models: input adaptation, weights, freezing.

The backbone is built *flat* into the model through ``input_tensor=``, not called as a nested sub-model,
so every backbone layer sits in ``model.layers`` under its keras name and its output is connected to
``model.input``: Grad-CAM (``model.get_layer("block5_conv3").output``) and U-Net skip connections need
nothing special. The first backbone layer is a ``BackboneInput`` that knows its family and the backbone's
last layer, which is how ``backbone_layers`` and ``save_backbone_weights`` find the backbone again, even in a
model reloaded from a ``.keras`` file.
"""

from __future__ import annotations

import contextlib
import re
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError

if TYPE_CHECKING:
    import keras

# Seconds a silent socket may block while keras downloads ImageNet weights. Without it a machine behind a
# black-holing firewall waits for the OS TCP timeout (minutes) before the ConfigError below can be raised.
DOWNLOAD_TIMEOUT_S = 30.0
#: ``batch_norm: auto``: batch normalization added to a family without it only when its weights are random.
AUTO_BATCH_NORM = "auto"


def _vgg_block_end(names: list[str], i: int) -> bool:
    return re.fullmatch(r"block\d+_pool", names[i]) is not None


def _densenet_block_end(names: list[str], i: int) -> bool:
    """After the stem's ``pool1``, a dense block's last ``concat``, or a transition block's ``poolN_pool``."""
    name = names[i]
    if name == "pool1" or re.fullmatch(r"pool\d+_pool", name):
        return True
    dense = re.fullmatch(r"(conv\d+)_block\d+_concat", name)
    return dense is not None and (i + 1 == len(names) or not names[i + 1].startswith(f"{dense[1]}_block"))


def _inception_block_end(names: list[str], i: int) -> bool:
    # mixed0..mixed10 end the inception modules; mixed9_0 / mixed9_1 are concats *inside* a module.
    return re.fullmatch(r"mixed\d+", names[i]) is not None


@dataclass(frozen=True)
class Family:
    """One ``keras.applications`` family as our builders need it. Its constructor and preprocessing are
    named, not imported: the model registry reads ``min_size`` when a sweep's driver checks its YAML, and
    that must not import TensorFlow (its import's time and memory come before the first trial starts)."""

    app: str  # the keras.applications constructor, e.g. "VGG16"
    module: str  # the keras.applications module whose preprocess_input the family uses, e.g. "vgg16"
    min_size: int  # keras.applications' own minimum input side (obtain_input_shape's min_size)
    output_layer: str  # last layer with include_top=False, pooling=None
    block_end: Callable[[list[str], int], bool]  # does a block end at layer i? (fraction rounding)
    batch_norm: bool = True  # does every convolution already feed a BatchNormalization? (VGG's do not)

    def application(self) -> Callable[..., keras.Model]:
        import keras

        return getattr(keras.applications, self.app)

    def preprocess(self, images: Any) -> Any:
        """The family's own ``preprocess_input`` of 0..255 RGB images."""
        import keras

        return getattr(keras.applications, self.module).preprocess_input(images)


FAMILIES: dict[str, Family] = {
    "vgg16": Family("VGG16", "vgg16", 32, "block5_pool", _vgg_block_end, batch_norm=False),
    "vgg19": Family("VGG19", "vgg19", 32, "block5_pool", _vgg_block_end, batch_norm=False),
    "densenet121": Family("DenseNet121", "densenet", 32, "relu", _densenet_block_end),
    "inception_v3": Family("InceptionV3", "inception_v3", 75, "mixed10", _inception_block_end),
}


def backbone(
    model_name: str,
    family: str,
    inputs: keras.KerasTensor,
    weights: Any,
    output_layer: str | None = None,
    batch_norm: bool | str = False,
) -> keras.Model:
    """Build ``family`` flat on ``inputs`` with ``weights`` loaded, cut at ``output_layer``.

    The returned model shares its layers and tensors with the caller's graph: ``.output`` and
    ``.get_layer(name).output`` are tensors downstream of ``inputs``, ready to feed a head or a decoder.

    ``weights``: "imagenet" (keras's own download and cache), "none"/None (random init) or a path to a
    ``.weights.h5`` file saved from the backbone (``save_backbone_weights`` or a plain keras backbone's
    ``save_weights``) or a legacy ``.h5`` like the keras ImageNet files. ``output_layer`` cuts the backbone
    (the U-Net stops at ``block4_pool``); layers after it never reach the model. ``batch_norm``
    (``add_batch_norm``): True, False or ``auto`` (only when training from scratch) for a family without it.
    """
    import keras

    from runner.models._backbone_input import BackboneInput

    spec = FAMILIES[family]
    output_layer = output_layer or spec.output_layer
    source = _weights_source(model_name, weights)
    normalise = adds_batch_norm(model_name, family, batch_norm, source is None)
    x = BackboneInput(family, output_layer, name="backbone_input")(inputs)
    kwargs: dict[str, Any] = {"include_top": False, "input_tensor": x, "input_shape": tuple(x.shape[1:])}
    if source == "imagenet":
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                full = spec.application()(weights="imagenet", **kwargs)
        except Exception as error:
            if not _is_download_error(error):
                raise
            raise ConfigError(
                f"model '{model_name}': ImageNet weights for {family} could not be downloaded "
                f"({_one_line(error)}); set weights: none to train from scratch, or weights: a path to a "
                f"local {family} weights file (.weights.h5 from save_backbone_weights, or keras's *_notop.h5)"
            ) from error
    else:
        full = spec.application()(weights=None, **kwargs)
    cut = keras.Model(full.inputs, full.get_layer(output_layer).output, name=f"{family}_backbone")
    if isinstance(source, Path):
        # A legacy .h5 is matched layer by layer in order, so it needs the whole backbone; a .weights.h5 is
        # matched by position per layer type and may hold more of the backbone than a cut one uses.
        legacy = source.suffix == ".h5" and not source.name.endswith(".weights.h5")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                (full if legacy else cut).load_weights(str(source))
        except (ValueError, OSError, KeyError) as error:
            raise ConfigError(
                f"model '{model_name}': weights file '{source}' does not fit the {family} backbone "
                f"({_one_line(error)}); save it with runner.models.save_backbone_weights or "
                f"keras.applications {family}(include_top=False).save_weights"
            ) from error
        # Keras warns about parts of the file it skipped; only worth showing when the load succeeded.
        for note in caught:
            warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
    return add_batch_norm(cut, x) if normalise else cut


def adds_batch_norm(model_name: str, family: str, batch_norm: bool | str, from_scratch: bool) -> bool:
    """Whether ``batch_norm`` adds BatchNormalization to ``family``: True, or ``auto`` with random weights.

    A deep plain stack like VGG does not move from a random start in the few dozen steps of a CPU sweep;
    normalising each convolution's output is what lets it learn there. A pretrained VGG keeps its own
    activation scales (``auto``), and DenseNet and Inception already normalise every convolution.
    """
    if batch_norm not in (True, False, AUTO_BATCH_NORM):
        raise ConfigError(f"model '{model_name}': parameter 'batch_norm' must be true, false or "
                          f"{AUTO_BATCH_NORM} (true when weights is none); got {batch_norm!r}")
    if FAMILIES[family].batch_norm:
        if batch_norm is True:
            raise ConfigError(f"model '{model_name}': batch_norm=true: {family} already has batch normalization "
                              f"after every convolution; use false or {AUTO_BATCH_NORM}")
        return False
    return batch_norm is True or (batch_norm == AUTO_BATCH_NORM and from_scratch)


def add_batch_norm(cut: keras.Model, start: keras.KerasTensor) -> keras.Model:
    """``cut``, a chain of layers from ``start`` (VGG's), rebuilt with a BatchNormalization layer
    ``<conv>_bn`` after each convolution's ReLU. The convolutions are the same layer objects, so weights
    already loaded into them stay: a weights file gives the convolutions, the normalisation starts fresh."""
    import keras

    x = start
    names = [layer.name for layer in cut.layers]
    for layer in cut.layers[names.index("backbone_input") + 1 :]:
        x = layer(x)
        if isinstance(layer, keras.layers.Conv2D):
            x = keras.layers.BatchNormalization(name=f"{layer.name}_bn")(x)
    return keras.Model(cut.inputs, x, name=cut.name)


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> None:
    """Every BatchNormalization layer's moving-statistics momentum (keras's own is 0.99).

    At 0.99 the moving mean and variance need a few hundred steps to forget their initial 0 and 1; a
    randomly initialised backbone trained for a few dozen steps is then evaluated with statistics that
    match none of its activations, and predicts one class for every image.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def freeze(model_name: str, model: keras.Model, frozen_layers: Any) -> int:
    """Freeze the leading backbone layers ``frozen_layers`` resolves to; returns how many.

    Frozen BatchNormalization layers also switch to inference mode (keras's rule for ``trainable=False``),
    which is what fine-tuning a pretrained backbone wants.
    """
    layers = backbone_layers(model)
    adapter = _adapter(model)
    family = adapter.family
    what = f"{family} backbone"
    if adapter.output_layer != FAMILIES[family].output_layer:
        what = f"{family} encoder (cut at {adapter.output_layer})"
    count = resolve_frozen(model_name, frozen_layers, [layer.name for layer in layers], family, what)
    for layer in layers[:count]:
        layer.trainable = False
    return count


def resolve_frozen(model_name: str, value: Any, names: list[str], family: str, what: str = "") -> int:
    """``frozen_layers`` as a count of leading layers out of ``names``.

    An int is taken as is (0..len), "all" is every layer, a float in [0, 1] is a fraction of the layers
    rounded to the nearest block boundary (ties to the smaller count), so a fraction never splits a block.
    """
    total = len(names)
    what = what or f"{family} backbone"
    valid = f"use an int 0..{total}, a fraction 0..1 (rounded to a block boundary) or 'all'"
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return total
        raise ConfigError(f"model '{model_name}': frozen_layers={value!r} is not understood: {valid}")
    numeric = isinstance(value, (int, float)) or hasattr(value, "__index__")
    if isinstance(value, bool) or not numeric:
        raise ConfigError(f"model '{model_name}': frozen_layers={value!r} is not understood: {valid}")
    if not isinstance(value, float):
        if not 0 <= value <= total:
            raise ConfigError(
                f"model '{model_name}': frozen_layers={value} is out of range: the {what} has {total} "
                f"layers; {valid}"
            )
        return int(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"model '{model_name}': frozen_layers={value} is out of range: a fraction must lie in 0..1 "
            f"(the {what} has {total} layers); {valid}"
        )
    bounds = block_boundaries(names, family)
    target = value * total
    return min(bounds, key=lambda bound: (abs(bound - target), bound))


def block_boundaries(names: list[str], family: str) -> list[int]:
    """Layer counts that freeze whole blocks: 0, the index after each block end, and all of them."""
    block_end = FAMILIES[family].block_end
    return sorted({0, len(names)} | {i + 1 for i in range(len(names)) if block_end(names, i)})


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The input layer, then the backbone's layers up to its last one (see ``runner.models``)."""
    import keras

    adapter = _adapter(model)
    names = [layer.name for layer in model.layers]
    start, end = names.index(adapter.name), names.index(adapter.output_layer)
    inputs = [layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
    return [*inputs[:1], *model.layers[start + 1 : end + 1]]


def save_backbone_weights(model: keras.Model, path: str | Path) -> Path:
    import keras

    path = Path(path)
    adapter = _adapter(model)
    sub = keras.Model(model.inputs, model.get_layer(adapter.output_layer).output)
    path.parent.mkdir(parents=True, exist_ok=True)
    sub.save_weights(str(path))
    return path


def _adapter(model: keras.Model) -> keras.layers.Layer:
    """The model's ``BackboneInput`` layer."""
    from runner.models._backbone_input import BackboneInput

    for layer in model.layers:
        if isinstance(layer, BackboneInput):
            return layer
    raise ConfigError(f"model '{model.name}' has no keras.applications backbone")


def _weights_source(model_name: str, weights: Any) -> str | Path | None:
    if weights is None or (isinstance(weights, str) and weights.strip().lower() == "none"):
        return None
    if isinstance(weights, str) and weights.strip().lower() == "imagenet":
        return "imagenet"
    if not isinstance(weights, (str, Path)):
        raise ConfigError(
            f"model '{model_name}': weights must be imagenet, none or a weights file path; got {weights!r}"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model '{model_name}': weights file '{path}' does not exist (weights takes imagenet, none or "
            "a path to a .weights.h5 file)"
        )
    return path


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound each socket operation of a download, unless the process already chose its own timeout."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _is_download_error(error: Exception) -> bool:
    # keras.utils.get_file turns URLError/HTTPError into a bare Exception("URL fetch failure on ...");
    # timeouts and resets while reading arrive as OSError; a truncated file fails its hash check.
    text = str(error)
    return isinstance(error, OSError) or "URL fetch failure" in text or "file hash does not match" in text


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
