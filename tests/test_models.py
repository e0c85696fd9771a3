"""The model zoo: every registered model builds and runs, backbones freeze and load weights as documented,
and mistakes in a config are ConfigErrors whose text says what to change.

Everything runs on CPU with small images and ``weights="none"`` (no network here); the ImageNet path is
exercised through keras's real loader with the download itself simulated.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from runner.errors import ConfigError
from runner.models import (
    MODELS,
    _backbone,
    backbone_layers,
    create_model,
    last_conv_layer,
    load_model,
    min_image_size,
    save_backbone_weights,
)

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("vgg16", "vgg19", "inception_v3", "densenet121")
# Narrow layers where a model has them, purely for speed; any other parameter keeps its default.
FAST = {
    "weights": "none",
    "hidden": 8,
    "decoder_filters": [8, 8, 8, 8],
}
LAST_CONV = {
    "baseline": "conv",
    "small_cnn": "block4_conv",
    "vgg16": "block5_conv3",
    "vgg19": "block5_conv4",
    "densenet121": "relu",
    "inception_v3": "mixed10",
}


def fast_params(name: str, **overrides: Any) -> dict[str, Any]:
    defaults = MODELS.get(name).defaults()
    return {**{k: v for k, v in FAST.items() if k in defaults}, **overrides}


def smallest_size(name: str, params: dict[str, Any], at_least: int = 32) -> int:
    spec = MODELS.get(name)
    minimum, multiple = spec.size_rule(spec.bind(params))
    size = max(minimum, at_least)
    return -(-size // multiple) * multiple


def images(size: int, channels: int = 1, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((batch, size, size, channels), dtype=np.float32)


def backbone_weights(layers: list[keras.layers.Layer]) -> list[np.ndarray]:
    return [w for layer in layers for w in layer.get_weights()]


def assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------------------- the whole zoo


def test_importing_runner_models_does_not_import_tensorflow() -> None:
    code = (
        "import sys, runner.models as m; assert m.MODELS.kind == 'model'; "
        "bad = [n for n in ('tensorflow', 'keras') if n in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_registered_models() -> None:
    assert set(MODELS.names()) >= {
        "baseline",
        "small_cnn",
        "vgg16",
        "vgg19",
        "inception_v3",
        "densenet121",
        "conv_autoencoder",
        "vgg16_unet",
    }


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_and_runs(name: str) -> None:
    """Built as its registration declares: named after it, the declared output, every feature layer there."""
    spec = MODELS.get(name)
    params = fast_params(name)
    size = smallest_size(name, params)
    outputs = None if spec.output == "image" else 3  # a reconstruction has its input's channels
    model = create_model(name, input_shape=(size, size, 1), num_outputs=outputs, **params)
    assert model.name == name  # feature_layer finds a built model's registration by its name
    y = model(images(size))
    assert y.dtype == "float32"
    assert model.get_layer("output").dtype_policy.compute_dtype == "float32"
    values = np.asarray(y)
    assert np.all((values >= 0) & (values <= 1))  # every default output activation is a sigmoid
    for layer in spec.features.values():
        assert len(model.get_layer(layer).output.shape) >= 2
    if spec.output == "classes":  # one column per output, and a Grad-CAM-ready feature map
        assert y.shape == (2, 3)
        conv = last_conv_layer(model)
        if name in LAST_CONV:
            assert conv == LAST_CONV[name]
        grad_model = keras.Model(model.input, [model.get_layer(conv).output, model.output])
        features, _ = grad_model(images(size))
        assert len(features.shape) == 4
    else:  # an image or a mask: as large as the input, a reconstruction as deep, a mask num_outputs deep
        assert y.shape == (2, size, size, 1 if spec.output == "image" else 3)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_parameters_and_defaults(name: str) -> None:
    """One builder serves the four backbones: each still takes exactly these parameters and defaults."""
    assert MODELS.get(name).defaults() == {
        "weights": "imagenet", "frozen_layers": 0, "pooling": "avg", "hidden": 256, "dropout": 0.5,
        "batch_norm": False, "bn_momentum": 0.99,
    }
    with pytest.raises(ConfigError, match=f"model '{name}': parameter 'pooling' must be one of avg, max, flatten"):
        create_model(name, input_shape=(96, 96, 1), weights="none", pooling="mean")


def test_mask_model_outputs_num_outputs_channels_with_the_activation() -> None:
    model = create_model("vgg16_unet", input_shape=(32, 32, 1), num_outputs=2, output_activation="softmax",
                         **fast_params("vgg16_unet"))
    masks = np.asarray(model(images(32)))
    assert masks.shape == (2, 32, 32, 2)
    np.testing.assert_allclose(masks.sum(axis=-1), 1.0, rtol=1e-5)


def test_min_image_size() -> None:
    expected = {
        "vgg16": 32,
        "vgg19": 32,
        "densenet121": 32,
        "inception_v3": 75,
        "vgg16_unet": 32,
        "small_cnn": 16,
        "conv_autoencoder": 8,
        "baseline": 1,
    }
    assert {name: min_image_size(name) for name in expected} == expected
    assert min_image_size("conv_autoencoder", filters=[8, 8, 8, 8]) == 16


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_minimum_is_keras_own(name: str) -> None:
    """Our minimum is exactly where keras.applications starts refusing, so the two never disagree."""
    minimum = min_image_size(name)
    app = _backbone.FAMILIES[name].application()
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        app(include_top=False, weights=None, input_shape=(minimum - 1, minimum - 1, 3))


@pytest.mark.parametrize(
    ("name", "size", "minimum"), [("vgg16", 16, 32), ("densenet121", 31, 32), ("inception_v3", 64, 75)]
)
def test_image_below_backbone_minimum(name: str, size: int, minimum: int) -> None:
    with pytest.raises(ConfigError) as error:
        create_model(name, input_shape=(size, size, 1), weights="none")
    message = str(error.value)
    assert f"model '{name}'" in message and f"{size}x{size}" in message and f"{minimum}x{minimum}" in message


def test_unknown_model() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'resnet50': choose one of .*vgg16"):
        create_model("resnet50", input_shape=(32, 32, 1))


def test_unknown_parameter() -> None:
    with pytest.raises(ConfigError) as error:
        create_model("vgg16", input_shape=(32, 32, 1), weights="none", dropuot=0.1)
    assert str(error.value).startswith(
        "model 'vgg16' has no parameter 'dropuot': "
        "choose from batch_norm, bn_momentum, dropout, frozen_layers, hidden, pooling, weights"
    )
    assert "did you mean 'dropout'" in str(error.value)


@pytest.mark.parametrize(
    ("name", "params", "text"),
    [
        ("vgg16", {"pooling": "mean"}, "'pooling' must be one of avg, max, flatten; got 'mean'"),
        ("vgg16", {"dropout": 1.5}, "'dropout' must be a number from 0 to 1"),
        ("small_cnn", {"l2": -1}, "'l2' must be a number >= 0"),
        ("conv_autoencoder", {"bottleneck": "vae"}, "'bottleneck' must be one of conv, dense"),
        ("conv_autoencoder", {"filters": []}, "'filters' must be a non-empty list"),
        ("vgg16_unet", {"decoder_filters": [8, 8]}, "'decoder_filters' must be a list of 4 positive"),
        ("vgg16", {"weights": 3}, "weights must be imagenet, none or a weights file path"),
        ("vgg16", {"batch_norm": "yes"}, "'batch_norm' must be true, false or auto"),
        ("densenet121", {"batch_norm": True}, "densenet121 already has batch normalization"),
        ("vgg16", {"bn_momentum": 1.0}, "'bn_momentum' must be a number from 0 to 1 (exclusive)"),
    ],
)
def test_bad_parameter_values(name: str, params: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=f"model '{name}'") as error:
        create_model(name, input_shape=(32, 32, 1), **{**fast_params(name), **params})
    assert text in str(error.value)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 2), (0, 32, 1), "32x32"])
def test_bad_input_shape(shape: Any) -> None:
    with pytest.raises(ConfigError, match="input_shape must be"):
        create_model("baseline", input_shape=shape)


def test_bad_output_activation() -> None:
    with pytest.raises(ConfigError, match="unknown output_activation 'sigmoidd'"):
        create_model("baseline", input_shape=(8, 8, 1), output_activation="sigmoidd")


# ----------------------------------------------------------------------------------------- freezing


@pytest.mark.parametrize(
    ("name", "frozen", "expected", "last_frozen"),
    [
        ("vgg16", 0, 0, None),
        ("vgg16", 6, 6, "block2_conv2"),
        ("vgg16", "all", 19, "block5_pool"),
        ("vgg16", 0.5, 11, "block3_pool"),  # 9.5 of 19 layers -> the boundary after block3_pool
        ("vgg16", 0.75, 15, "block4_pool"),
        ("vgg16", 1.0, 19, "block5_pool"),
        ("densenet121", 0, 0, None),
        ("densenet121", 100, 100, None),
        ("densenet121", "all", 427, "relu"),
        ("densenet121", 0.1, 49, "conv2_block6_concat"),  # 42.7 -> end of dense block 1
        ("densenet121", 0.5, 141, "pool3_pool"),  # 213.5 -> end of transition block 2
        ("inception_v3", 0.3, 87, "mixed2"),  # 93.3 of 311 -> after the mixed2 module
        ("vgg16_unet", "all", 15, "block4_pool"),  # the cut encoder: input + blocks 1-4
        ("vgg16_unet", 0.5, 7, "block2_pool"),
    ],
)
def test_frozen_layers(name: str, frozen: Any, expected: int, last_frozen: str | None) -> None:
    params = fast_params(name, frozen_layers=frozen)
    size = smallest_size(name, params)
    model = create_model(name, input_shape=(size, size, 1), **params)
    layers = backbone_layers(model)
    frozen_flags = [not layer.trainable for layer in layers]
    assert frozen_flags == [True] * expected + [False] * (len(layers) - expected)  # exactly the leading ones
    if last_frozen:
        assert layers[expected - 1].name == last_frozen
    backbone = {id(layer) for layer in layers}
    assert all(layer.trainable for layer in model.layers if id(layer) not in backbone)  # head / decoder
    if expected == len(layers):
        backbone_vars = {id(v) for layer in layers for v in layer.weights}
        assert model.trainable_weights and not any(id(v) in backbone_vars for v in model.trainable_weights)


@pytest.mark.parametrize("name", ["vgg16", "densenet121"])
def test_backbone_layers_line_up_with_keras(name: str) -> None:
    """frozen_layers counts like keras.applications.<Family>().layers, input layer included."""
    model = create_model(name, input_shape=(32, 32, 1), **fast_params(name))
    plain = _backbone.FAMILIES[name].application()(include_top=False, weights=None, input_shape=(32, 32, 3))
    ours = backbone_layers(model)
    assert len(ours) == len(plain.layers)
    assert [type(a) for a in ours[1:]] == [type(b) for b in plain.layers[1:]]
    assert ours[-1].name == plain.layers[-1].name


@pytest.mark.parametrize(
    ("frozen", "text"),
    [
        (-1, "frozen_layers=-1 is out of range: the vgg16 backbone has 19 layers; use an int 0..19"),
        (20, "frozen_layers=20 is out of range: the vgg16 backbone has 19 layers; use an int 0..19"),
        (1.5, "frozen_layers=1.5 is out of range: a fraction must lie in 0..1"),
        (-0.1, "frozen_layers=-0.1 is out of range: a fraction must lie in 0..1"),
        ("most", "frozen_layers='most' is not understood: use an int 0..19"),
        (True, "frozen_layers=True is not understood"),
    ],
)
def test_impossible_frozen_layers(frozen: Any, text: str) -> None:
    with pytest.raises(ConfigError, match="model 'vgg16'") as error:
        create_model("vgg16", input_shape=(32, 32, 1), weights="none", frozen_layers=frozen)
    assert text in str(error.value)


def test_impossible_frozen_layers_in_the_cut_unet_encoder() -> None:
    with pytest.raises(ConfigError) as error:
        create_model("vgg16_unet", input_shape=(32, 32, 1), **fast_params("vgg16_unet", frozen_layers=16))
    assert (
        "frozen_layers=16 is out of range: the vgg16 encoder (cut at block4_pool) has 15 layers; "
        "use an int 0..15" in str(error.value)
    )


# ----------------------------------------------------------------------------------------- weights


def test_backbone_weights_file_round_trip(tmp_path: Path) -> None:
    first = create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8)
    path = save_backbone_weights(first, tmp_path / "vgg16.weights.h5")
    assert path.is_file()
    second = create_model("vgg16", input_shape=(48, 48, 1), weights=str(path), hidden=8)  # size-independent
    assert_same_weights(backbone_weights(backbone_layers(first)), backbone_weights(backbone_layers(second)))
    fresh = create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8)
    first_kernel = backbone_layers(first)[1].get_weights()[0]
    assert not np.array_equal(backbone_layers(fresh)[1].get_weights()[0], first_kernel)


def test_plain_keras_backbone_file_loads_and_feeds_the_unet(tmp_path: Path) -> None:
    """A file from keras's own ``backbone.save_weights`` works, also for the U-Net's cut VGG16 encoder."""
    plain = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "plain_vgg16.weights.h5"
    plain.save_weights(str(path))
    model = create_model("vgg16", input_shape=(32, 32, 1), weights=str(path), hidden=8)
    assert_same_weights(backbone_weights(plain.layers), backbone_weights(backbone_layers(model)))
    unet = create_model("vgg16_unet", input_shape=(32, 32, 1), **fast_params("vgg16_unet", weights=str(path)))
    encoder = backbone_layers(unet)
    assert_same_weights(backbone_weights(plain.layers[: len(encoder)]), backbone_weights(encoder))


def batch_norm_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_vgg_batch_norm_follows_every_convolution_and_keeps_a_weights_file(tmp_path: Path) -> None:
    """``batch_norm``: a ``<conv>_bn`` layer straight after each of VGG16's 13 convolutions (true, or auto with
    random weights); auto with a weights file leaves the pretrained VGG plain, and true loads the file's
    convolutions unchanged under the added layers."""
    plain = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "plain_vgg16.weights.h5"
    plain.save_weights(str(path))
    convs = [layer.name for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 13
    for weights, batch_norm, added in [("none", True, True), ("none", "auto", True), ("none", False, False),
                                       (str(path), "auto", False), (str(path), True, True)]:
        model = create_model("vgg16", input_shape=(32, 32, 1), weights=weights, hidden=8, batch_norm=batch_norm)
        names = [layer.name for layer in model.layers]
        following = [names[names.index(conv) + 1] for conv in convs]
        assert [layer.name for layer in batch_norm_layers(model)] == (following if added else [])
        assert all(name.endswith("_bn") for name in following) == added
        assert model(images(32)).shape == (2, 1)
        if weights != "none":
            for conv in convs:
                assert_same_weights(plain.get_layer(conv).get_weights(), model.get_layer(conv).get_weights())


@pytest.mark.parametrize("name", ["vgg16", "densenet121"])
def test_bn_momentum_sets_every_batch_norm_layer(name: str) -> None:
    """The default is keras's own 0.99; a value reaches every BatchNormalization layer, own and added."""
    params = {**fast_params(name), "batch_norm": "auto"}
    default = batch_norm_layers(create_model(name, input_shape=(32, 32, 1), **params))
    tuned = batch_norm_layers(create_model(name, input_shape=(32, 32, 1), **params, bn_momentum=0.9))
    assert len(default) == len(tuned) > 10
    assert {layer.momentum for layer in default} == {0.99} and {layer.momentum for layer in tuned} == {0.9}


def test_missing_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ConfigError, match=re.escape(f"weights file '{missing}' does not exist")):
        create_model("vgg16", input_shape=(32, 32, 1), weights=str(missing))


def test_weights_file_of_another_backbone(tmp_path: Path) -> None:
    path = tmp_path / "vgg19.weights.h5"
    keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(str(path))
    expected = re.escape(f"weights file '{path}' does not fit the vgg16 backbone")
    with pytest.raises(ConfigError, match=expected):
        create_model("vgg16", input_shape=(32, 32, 1), weights=str(path))


@pytest.fixture
def offline_keras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """keras with an empty weights cache whose downloads fail like a machine without network.

    Returns the socket default timeouts seen by each download attempt.
    """
    from keras.src.backend import config
    from keras.src.utils import file_utils

    seen: list[float | None] = []

    def no_network(url: str, *args: Any, **kwargs: Any) -> None:
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path / "keras_home"))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return seen


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["vgg16", "vgg16_unet"])
def test_imagenet_weights_without_network(name: str, offline_keras: list[float | None]) -> None:
    before = socket.getdefaulttimeout()
    with pytest.raises(ConfigError) as error:
        create_model(name, input_shape=(32, 32, 1), weights="imagenet")
    message = str(error.value)
    assert f"model '{name}': ImageNet weights for vgg16 could not be downloaded" in message
    assert "weights: none" in message and "path to a local vgg16 weights file" in message
    assert offline_keras == [_backbone.DOWNLOAD_TIMEOUT_S]  # bounded while downloading ...
    assert socket.getdefaulttimeout() == before  # ... and restored afterwards


@pytest.mark.timeout(120)
def test_imagenet_weights_really_offline() -> None:
    """The real download attempt (no monkeypatching) fails fast with the ConfigError on this machine."""
    from keras.src.backend import config

    cached = sorted((Path(config.keras_home()) / "models").glob("vgg16_*notop.h5"))
    if cached:
        pytest.skip(f"ImageNet weights are cached at {cached[0]}")
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=2).close()
        pytest.skip("network is reachable: the real download would succeed")
    except OSError:
        pass
    with pytest.raises(ConfigError, match="ImageNet weights for vgg16 could not be downloaded"):
        create_model("vgg16", input_shape=(32, 32, 1), weights="imagenet")


def test_imagenet_weights_go_through_keras_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the download stubbed by a keras-format ``*_notop.h5``, keras's own ImageNet loading path fills
    our flat backbone, and the same legacy file also works as ``weights: PATH``."""
    import h5py

    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    from keras.src.utils import file_utils

    plain = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy.save_weights_to_hdf5_group(handle, plain)
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(path))
    model = create_model("vgg16", input_shape=(32, 32, 1), weights="imagenet", hidden=8)
    assert_same_weights(backbone_weights(plain.layers), backbone_weights(backbone_layers(model)))
    from_path = create_model("vgg16", input_shape=(32, 32, 1), weights=str(path), hidden=8)
    assert_same_weights(backbone_weights(plain.layers), backbone_weights(backbone_layers(from_path)))


# ----------------------------------------------------------------------------------------- model details


def test_saved_model_reloads_with_its_backbone(tmp_path: Path) -> None:
    model = create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8, frozen_layers="all")
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(images(32), verbose=0), model.predict(images(32), verbose=0))
    assert len(backbone_layers(loaded)) == 19 and last_conv_layer(loaded) == "block5_conv3"


def _damaged(path: Path) -> Path:
    path.write_text("not a zip")
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda path: path, r"model\.keras: no saved model there"),
    (lambda path: path.parent, r": no saved model there"),
    (_damaged, r"model\.keras is not a saved Keras model \(a \.keras file is a zip archive\)"),
])
def test_load_model_names_a_missing_folder_or_damaged_file(tmp_path: Path, make: Any, message: str) -> None:
    """Keras says "File not found" for a file that is there but no zip; we name the file and what it is."""
    with pytest.raises(ConfigError, match=message):
        load_model(make(tmp_path / "model.keras"))


LOAD_IN_A_NEW_PROCESS = """
import sys
import numpy as np
from runner.models import load_model
model = load_model(sys.argv[1])
print(model.name, len(model.layers), float(np.asarray(model(np.full((1, 32, 32, 1), 0.5, "float32"))).sum()))
"""


def test_load_model_rebuilds_a_backbone_model_in_a_process_that_never_built_one(tmp_path: Path) -> None:
    """The backbone's input layer is registered with Keras by its own module, which building imports; a process
    that only loads (``evaluate``, a user's notebook) gets it through ``runner.models.load_model``."""
    model = create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8)
    model.save(tmp_path / "model.keras")
    run = subprocess.run([sys.executable, "-c", LOAD_IN_A_NEW_PROCESS, str(tmp_path / "model.keras")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    name, layers, output = run.stdout.split()
    expected = float(np.asarray(model(np.full((1, 32, 32, 1), 0.5, "float32"))).sum())
    assert (name, int(layers)) == ("vgg16", len(model.layers)) and float(output) == pytest.approx(expected, rel=1e-5)


def test_backbone_preprocessing_matches_keras() -> None:
    """Inside the model: gray -> RGB, x255, then the family's own preprocess_input."""
    model = create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8)
    x = images(32)
    ours = keras.Model(model.input, model.get_layer("backbone_input").output)(x)
    rgb = np.repeat(x, 3, axis=-1) * 255.0
    np.testing.assert_allclose(ours, keras.applications.vgg16.preprocess_input(rgb), rtol=1e-5, atol=1e-4)


def test_rgb_input() -> None:
    model = create_model("vgg16", input_shape=(32, 32, 3), weights="none", hidden=8)
    assert model(images(32, channels=3)).shape == (2, 1)
    autoencoder = create_model("conv_autoencoder", input_shape=(32, 32, 3))
    assert autoencoder(images(32, channels=3)).shape == (2, 32, 32, 3)


def test_autoencoder_defaults_to_a_small_dense_code() -> None:
    """A conv bottleneck copies any image and ranked pneumonia below normal on real radiographs
    (bench/anomaly_real.py): the default, which ``train`` and every space that does not choose get, is a
    dense code of 128 numbers."""
    model = create_model("conv_autoencoder", input_shape=(64, 64, 1))
    assert tuple(model.get_layer("bottleneck").output.shape) == (None, 128)


@pytest.mark.parametrize(("bottleneck", "shape"), [("conv", (None, 4, 4, 16)), ("dense", (None, 16))])
def test_autoencoder_bottleneck(bottleneck: str, shape: tuple[int | None, ...]) -> None:
    model = create_model("conv_autoencoder", input_shape=(32, 32, 1), bottleneck=bottleneck, latent_dim=16)
    assert tuple(model.get_layer("bottleneck").output.shape) == shape
    assert model(images(32)).shape == (2, 32, 32, 1)


def test_autoencoder_size_must_divide() -> None:
    with pytest.raises(ConfigError) as error:
        create_model("conv_autoencoder", input_shape=(36, 36, 1))
    assert "needs image sides divisible by 8; got 36x36" in str(error.value)
    assert "such as 32 or 40" in str(error.value)
    assert create_model("conv_autoencoder", input_shape=(36, 36, 1), filters=[8, 16]).output.shape[1] == 36


def test_unet_size_and_skips() -> None:
    with pytest.raises(ConfigError, match=r"divisible by 16; got 40x40 .* such as 32 or 48"):
        create_model("vgg16_unet", input_shape=(40, 40, 1), weights="none")
    with pytest.raises(ConfigError, match="at least 32x32 pixels; got 16x16"):
        create_model("vgg16_unet", input_shape=(16, 16, 1), weights="none")
    params = fast_params("vgg16_unet")
    with_skips = create_model("vgg16_unet", input_shape=(32, 32, 1), **params)
    without = create_model("vgg16_unet", input_shape=(32, 32, 1), skip_connections=False, **params)
    assert sum("concat" in layer.name for layer in with_skips.layers) == 4
    assert not any("concat" in layer.name for layer in without.layers)
    assert "block5_conv1" not in {layer.name for layer in with_skips.layers}  # cut at block4_pool


def test_small_cnn_options() -> None:
    plain = create_model("small_cnn", input_shape=(32, 32, 1))
    assert not plain.losses and not any("dropout" in layer.name for layer in plain.layers)
    regular = create_model("small_cnn", input_shape=(32, 32, 1), dropout=0.3, l2=1e-4)
    assert {"fc1_dropout", "fc2_dropout"} <= {layer.name for layer in regular.layers}
    assert len(regular.losses) == 7  # 4 convs, 2 hidden dense layers and the logits
    assert [regular.get_layer(f"block{i}_conv").filters for i in range(1, 5)] == [32, 64, 128, 128]


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["small_cnn", "vgg16"])
def test_fits_under_mixed_precision(name: str, mixed_precision: None) -> None:
    model = create_model(name, input_shape=(32, 32, 1), **fast_params(name))
    assert model.get_layer("logits").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    labels = np.array([[0.0], [1.0]], dtype=np.float32)
    history = model.fit(images(32), labels, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(images(32), verbose=0).dtype == np.float32
