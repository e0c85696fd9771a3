"""The task <-> model contract: does a model give a task what the task reads from it?

A task kind declares the output it trains on (``Task.model_output``) and the feature layers its parameters
make it read (``Task.model_features``: the ``latent`` anomaly score reads the autoencoder's code); a model
declares what it outputs and which feature layers it offers at its registration (``ModelSpec``). The check
reads only the registry, so a search space or a ``train`` config that pairs them wrongly fails when it
loads, in one line naming both, instead of inside Keras in every trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from runner.errors import ConfigError
from runner.models._spec import OUTPUTS, ModelOutput

if TYPE_CHECKING:
    import keras


class TaskNeeds(Protocol):
    """What the check reads from a task (``runner.tasks.Task``); a protocol, so models never import tasks."""

    @property
    def name(self) -> str: ...

    @property
    def model_output(self) -> ModelOutput: ...

    def model_features(self, params: Mapping[str, Any]) -> frozenset[str]: ...


def check_fits(task: TaskNeeds, model: str, task_params: Mapping[str, Any]) -> None:
    """ConfigError unless ``model`` outputs what ``task`` trains on and offers every feature layer a trial
    with these bound ``task_params`` reads."""
    problem = _output_misfit(task, model)
    if problem:
        raise ConfigError(f"{problem}: use one of {_models_with(output=task.model_output)}")
    _check_features(task, model, task_params)


def check_pairs(source: str, tasks: Sequence[TaskNeeds], models: Sequence[str]) -> None:
    """Every (task, model) pair of a search space must fit on output. A sweep trains each task with each
    model, so one wrong pair is the file's error; features depend on drawn task parameters and are checked
    with each drawable value (``check_fits`` on the sweep's edge configs)."""
    for task in tasks:
        for model in models:
            problem = _output_misfit(task, model)
            if problem:
                raise ConfigError(
                    f"{source}: {problem}: a sweep trains every task in 'tasks' with every model in 'models', "
                    f"so remove one of the two or sweep them in separate files (models for task '{task.name}': "
                    f"{_models_with(output=task.model_output)})"
                )


def feature_layer(model: keras.Model, feature: str) -> str:
    """The name of the layer of a built model that holds ``feature``, as its registration declares.

    Found from the model's name (every builder names its keras model after its registration), so it also
    works on a model reloaded from disk.
    """
    from runner.models import MODELS

    spec = MODELS.get(model.name)
    if feature not in spec.features:
        raise ConfigError(
            f"model '{model.name}' offers no '{feature}' feature layer: use one that does "
            f"({_models_with(feature=feature)})"
        )
    return spec.features[feature]


def _output_misfit(task: TaskNeeds, model: str) -> str | None:
    from runner.models import MODELS

    output = MODELS.get(model).output
    if output == task.model_output:
        return None
    return (
        f"task '{task.name}' needs a model that outputs {OUTPUTS[task.model_output]}, but model '{model}' "
        f"outputs {OUTPUTS[output]}"
    )


def _check_features(task: TaskNeeds, model: str, task_params: Mapping[str, Any]) -> None:
    from runner.models import MODELS

    offered = MODELS.get(model).features
    missing = sorted(task.model_features(task_params) - set(offered))
    if missing:
        settings = ", ".join(f"{key}={value!r}" for key, value in task_params.items())
        raise ConfigError(
            f"task '{task.name}' ({settings}) reads the model's '{missing[0]}' feature layer, which model "
            f"'{model}' does not offer: use a model that does ({_models_with(feature=missing[0])}) or change "
            "the task's settings"
        )


def _models_with(*, output: str | None = None, feature: str | None = None) -> str:
    from runner.models import MODELS

    names = [
        name
        for name in MODELS.names()
        if (output is None or MODELS.get(name).output == output)
        and (feature is None or feature in MODELS.get(name).features)
    ]
    return ", ".join(names) or "none is registered"
