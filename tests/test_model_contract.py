"""The task <-> model contract: every model declares what it outputs and which feature layers it offers,
every task kind what it needs, and a pair that does not fit is one error naming both when a sweep file or a
``train`` config loads, not a Keras shape error in every trial.

Two tiny image models stand in for an autoencoder without a latent layer and one whose latent layer is not
called ``bottleneck``; they are put into the real registry for one test each (``tiny_autoencoders``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, get_args

import keras
import numpy as np
import pytest
import yaml
from sklearn.covariance import LedoitWolf

from runner.cli import main
from runner.config import make_config
from runner.data import Record
from runner.errors import ConfigError
from runner.models import MODELS, ModelOutput, ModelSpec, check_fits, create_model, feature_layer
from runner.sweep.assemble import load_sweep
from runner.tasks import TASKS, Split

OUTPUTS = set(get_args(ModelOutput))


def tiny_autoencoder(name: str, input_shape: tuple[int, int, int], num_outputs: int, output_activation: str, *,
                     width: int = 4) -> keras.Model:
    """image -> ``code`` -> ``bottleneck`` -> ``output``: the layer named ``bottleneck`` is a decoy, so a
    latent score that reads it instead of the declared layer gets other numbers."""
    inputs = keras.Input(input_shape, name="image")
    code = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="code")(inputs)
    decoy = keras.layers.Conv2D(width + 1, 3, padding="same", activation="relu", name="bottleneck")(code)
    outputs = keras.layers.Conv2D(num_outputs, 1, activation=output_activation, name="output")(decoy)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def tiny_autoencoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """``plain_ae`` offers no feature, ``coded_ae`` offers ``latent`` in its layer ``code``; both are removed
    from the registry when the test ends."""
    MODELS.names()  # the real models first, so the registry does not load over these
    for name, features in (("plain_ae", {}), ("coded_ae", {"latent": "code"})):
        spec = ModelSpec(name, functools.partial(tiny_autoencoder, name), "image", features)
        monkeypatch.setitem(MODELS._entries, name, spec)


def write_sweep(path: Path, task: str, model: str, searched: dict[str, Any] | None = None,
                block: str = "space") -> Path:
    """A small sweep file crossing ``task`` with ``model``; ``searched`` goes into ``block`` (``space``,
    ``per_task.NAME`` or ``per_model.NAME``) beside a learning-rate range."""
    sweep: dict[str, Any] = {
        "tasks": [task], "models": [model], "fixed": {"epochs": 1, "image_size": 32},
        "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "num_samples": 2, "resources": {"cpu": 1, "gpu": 0, "workers": 0},
    }
    if searched:
        top, _, owner = block.partition(".")
        target = sweep.setdefault(top, {})
        (target.setdefault(owner, {}) if owner else target).update(searched)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ declarations


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_declares_its_output_and_features(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.output in OUTPUTS
    assert all(isinstance(feature, str) and isinstance(layer, str) for feature, layer in spec.features.items())


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_needs_an_output_some_model_gives(name: str) -> None:
    task = TASKS.get(name)
    assert task.model_output in OUTPUTS
    assert any(MODELS.get(model).output == task.model_output for model in MODELS.names())


def test_only_the_latent_score_reads_a_feature_layer() -> None:
    anomaly = TASKS.get("anomaly")
    assert anomaly.model_features(anomaly.bind_params({"score": "latent"})) == {"latent"}
    assert anomaly.model_features(anomaly.bind_params({"score": "ssim"})) == frozenset()
    assert TASKS.get("pneumonia").model_features(TASKS.get("pneumonia").bind_params({})) == frozenset()


def test_conv_autoencoder_latent_is_its_bottleneck_and_a_classifier_has_none() -> None:
    assert feature_layer(create_model("conv_autoencoder", input_shape=(16, 16, 1), filters=[4]), "latent") == \
        "bottleneck"
    with pytest.raises(ConfigError, match=r"^model 'baseline' offers no 'latent' feature layer: use one that does "
                                          r"\(conv_autoencoder\)$"):
        feature_layer(create_model("baseline", input_shape=(8, 8, 1), filters=2, hidden=2), "latent")


# ---------------------------------------------------------------------------- refused when the YAML loads


@pytest.mark.parametrize(("task", "model", "needs", "gives"), [
    ("pneumonia", "vgg16_unet", "class scores", "a mask"),
    ("pneumothorax", "small_cnn", "a mask", "class scores"),
    ("anomaly", "baseline", "a reconstructed image", "class scores"),
])
def test_sweep_pairing_a_task_with_a_model_that_cannot_serve_it_fails_to_load(
        tmp_path: Path, task: str, model: str, needs: str, gives: str) -> None:
    path = write_sweep(tmp_path / "sweep.yaml", task, model)
    with pytest.raises(ConfigError) as error:
        load_sweep(str(path))
    text = str(error.value)
    assert text.startswith(f"{path}: task '{task}' needs a model that outputs {needs}, but model '{model}' "
                           f"outputs {gives}: ")
    assert "remove one of the two or sweep them in separate files" in text and "\n" not in text


def test_dry_run_of_an_impossible_pair_is_one_line_naming_both(tmp_path: Path, capsys) -> None:
    path = write_sweep(tmp_path / "sweep.yaml", "pneumonia", "vgg16_unet")
    assert main(["sweep", str(path), "--dry-run", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: task 'pneumonia' needs a model that outputs class scores, but model "
                   "'vgg16_unet' outputs a mask: a sweep trains every task in 'tasks' with every model in 'models', "
                   "so remove one of the two or sweep them in separate files (models for task 'pneumonia': "
                   "baseline, densenet121, inception_v3, small_cnn, vgg16, vgg19)\n")
    assert not (tmp_path / "results").exists()


def test_train_with_an_impossible_pair_is_one_line_and_trains_nothing(tmp_path: Path, capsys) -> None:
    assert main(["train", "--task", "pneumothorax", "--model", "small_cnn", "--out", str(tmp_path / "trials")]) == 2
    assert capsys.readouterr().err == ("error: task 'pneumothorax' needs a model that outputs a mask, but model "
                                       "'small_cnn' outputs class scores: use one of vgg16_unet\n")
    assert not any((tmp_path / "trials").glob("*/config.yaml"))


def test_latent_score_with_a_model_without_latent_layer_is_refused(tiny_autoencoders: None) -> None:
    make_config({"task": "anomaly", "model": "plain_ae", "score": "mse"})  # the reconstruction scores fit
    with pytest.raises(ConfigError) as error:
        make_config({"task": "anomaly", "model": "plain_ae", "score": "latent"})
    assert str(error.value) == ("task 'anomaly' (score='latent', percentile=95.0) reads the model's 'latent' "
                                "feature layer, which model 'plain_ae' does not offer: use a model that does "
                                "(coded_ae, conv_autoencoder) or change the task's settings")


@pytest.mark.parametrize("block", ["space", "per_task.anomaly", "per_model.plain_ae"])
def test_searched_latent_score_is_refused_for_a_model_without_latent_layer(
        tmp_path: Path, tiny_autoencoders: None, block: str) -> None:
    """The score may be drawn: every choice that can be drawn is checked, wherever the file searches it."""
    path = write_sweep(tmp_path / "sweep.yaml", "anomaly", "plain_ae",
                       {"score": {"type": "categorical", "choices": ["mse", "latent"]}}, block)
    with pytest.raises(ConfigError) as error:
        load_sweep(str(path))
    assert str(error.value).startswith(f"{path}: {block}.score = 'latent' (task 'anomaly', model 'plain_ae'): "
                                       "task 'anomaly' (score='latent', percentile=95.0) reads the model's 'latent'")
    write_sweep(path, "anomaly", "plain_ae", {"score": {"type": "categorical", "choices": ["mse", "ssim"]}}, block)
    assert load_sweep(str(path)).models == ("plain_ae",)


def test_image_model_refuses_an_output_count_it_cannot_reconstruct() -> None:
    with pytest.raises(ConfigError, match=r"^model 'conv_autoencoder' reconstructs its input, so it outputs the "
                                          r"input's 1 channel\(s\): num_outputs=3 cannot be built; leave "
                                          r"num_outputs out or give 1$"):
        create_model("conv_autoencoder", input_shape=(16, 16, 1), num_outputs=3, filters=[4])
    assert check_fits(TASKS.get("anomaly"), "conv_autoencoder", {"score": "latent", "percentile": 95.0}) is None


# ------------------------------------------------------------------------ the latent score's real layer


def test_latent_score_is_the_mahalanobis_distance_in_the_declared_layer(tiny_autoencoders: None) -> None:
    """Scores from the declared ``code`` layer, recomputed here with sklearn's covariance and NumPy; the
    decoy layer named ``bottleneck`` gives other scores, so reading it would fail this test."""
    task = TASKS.get("anomaly")
    params = task.bind_params({"score": "latent"})
    model = create_model("coded_ae", input_shape=(8, 8, 1))
    rng = np.random.default_rng(0)
    labels = ["normal"] * 12 + ["pneumonia"] * 4
    train = Split("train", [Record(f"t{i}.png", label) for i, label in enumerate(labels)],
                  rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8))
    test = Split("test", [Record(f"s{i}.png", label) for i, label in enumerate(labels[:6] + labels[-2:])],
                 rng.integers(0, 256, (8, 8, 8, 1), dtype=np.uint8))
    scores = task.predict(model, test, params, train)

    def distances(layer: str) -> np.ndarray:
        encoder = keras.Model(model.input, model.get_layer(layer).output)
        features = {name: np.asarray(encoder(split.images.astype(np.float32) / 255.0)).mean(axis=(1, 2))
                    for name, split in (("train", train), ("test", test))}
        normals = features["train"][:12]  # the train split's normal images, in order
        centred = features["test"] - LedoitWolf().fit(normals).location_
        precision = LedoitWolf().fit(normals).precision_
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, precision, centred))

    np.testing.assert_allclose(scores, distances("code"), rtol=1e-4)
    assert not np.allclose(scores, distances("bottleneck"), rtol=1e-2)
