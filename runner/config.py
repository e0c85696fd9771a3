"""One trial's configuration: YAML or defaults, then ``--set`` overrides, then one frozen, typed object.

Keys are flat, as users type them (``--set learning_rate=3e-4 --set dropout=0.3``): the training keys below
are fields of ``TrialConfig``; any other key must be a parameter of the chosen model (``dropout``,
``frozen_layers``, ``weights``...) or of the task (``score``, ``percentile``...), and goes to
``model_params`` or ``task_params``. An unknown key is an error listing every valid one. The resolved
config, defaults included, is written beside every trial's results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner import yamlfile
from runner.calibration import METHODS as CALIBRATIONS
from runner.errors import ConfigError
from runner.overrides import deep_merge

OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("auto", "on", "off")
#: The largest seed: NumPy's and Optuna's seeds are unsigned 32-bit, and a trial adds small offsets to its seed
#: (augmentation layers, a confirmation run's new seeds), so half the range leaves room for them.
MAX_SEED = 2**31 - 1
SEED_RANGE = f"an integer from 0 to {MAX_SEED}"
#: ``weights`` values that are not a file path. ``auto`` (ImageNet when it loads, else none) is resolved where
#: the config is assembled (``resolve_config``; a sweep's ``build_sweep``), by ``runner.sweep.weights``.
WEIGHT_WORDS = ("imagenet", "none", "auto")


@dataclass(frozen=True)
class TrialConfig:
    """Everything that decides one trial's result. ``data`` None means the task's default (demo) data."""

    task: str
    model: str
    data: Any = None
    test_data: Any = None
    image_size: int = 128
    batch_size: int = 32
    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    early_stopping: int = 5
    reduce_lr: int = 0
    augment: Any = False
    seed: int = 0
    mixed_precision: str = "auto"
    bootstrap: int = 1000
    calibrate: str = "none"
    cache_dir: str | None = None
    plots: bool = True
    model_params: Mapping[str, Any] = field(default_factory=dict)
    task_params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hyperparameters(self) -> dict[str, Any]:
        """The flat key -> value view a user would type; the leaderboard's hyper-parameter columns."""
        flat = {k: v for k, v in self.to_dict().items() if k not in ("model_params", "task_params")}
        return {**flat, **self.model_params, **self.task_params}


TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name not in ("model_params",
                                                                                        "task_params"))


def _check_types(config: TrialConfig) -> None:
    checks = [
        ("image_size", isinstance(config.image_size, int) and config.image_size >= 16, "an integer >= 16"),
        ("batch_size", isinstance(config.batch_size, int) and config.batch_size >= 1, "an integer >= 1"),
        ("epochs", isinstance(config.epochs, int) and config.epochs >= 1, "an integer >= 1"),
        ("learning_rate", isinstance(config.learning_rate, int | float) and config.learning_rate > 0,
         "a number > 0"),
        ("early_stopping", isinstance(config.early_stopping, int) and config.early_stopping >= 0,
         "an integer >= 0 (0 turns it off)"),
        ("reduce_lr", isinstance(config.reduce_lr, int) and config.reduce_lr >= 0, "an integer >= 0 (0 = off)"),
        ("seed", isinstance(config.seed, int) and 0 <= config.seed <= MAX_SEED, SEED_RANGE),
        ("bootstrap", isinstance(config.bootstrap, int) and config.bootstrap >= 0, "an integer >= 0 (0 = off)"),
        ("plots", isinstance(config.plots, bool), "true or false (per-trial plots and TensorBoard files)"),
        ("optimizer", config.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
        ("mixed_precision", config.mixed_precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ("calibrate", config.calibrate in CALIBRATIONS,
         f"one of {', '.join(CALIBRATIONS)} (temperature: scaling fitted on validation, runner/calibration.py)"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"{key}={getattr(config, key)!r} must be {what}")


#: The config keys that hold a data spec.
DATA_KEYS = ("data", "test_data")


def names_data_set(value: Any) -> bool:
    """A data spec that says which data set (a path or a layout), not one that only adjusts the task's demo
    data (``{n: 240}``)."""
    return isinstance(value, Mapping) and bool({"path", "layout"} & set(value))


def merge_layers(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """``upper`` over ``lower`` (``deep_merge``), except that a data spec naming a data set replaces one below
    it that only adjusts the demo data: a ``cpu`` profile's ``data: {n: 240}`` sizes the demo, and merged into
    the user's ``--set 'fixed.data={path: ..., label_map: ...}'`` it was an unknown option of their layout."""
    return deep_merge(lower, upper, replaces=lambda key, below, value: key in DATA_KEYS and names_data_set(value)
                      and not names_data_set(below))


def absolute_data(value: Any) -> Any:
    """A data spec with its path (a folder, CSV or data-spec YAML) made absolute from the current directory,
    nothing read: Ray runs each trial in a working directory of its own, where a sweep's ``data=images`` named
    nothing, so every trial failed while the checks, run in the sweep's directory, passed. ``demo``, a
    mapping without a path and any other value are returned as they are."""
    if isinstance(value, str) and value and value != "demo":
        return str(Path(value).expanduser().resolve())
    if isinstance(value, Mapping) and isinstance(value.get("path"), str) and value["path"]:
        return {**value, "path": str(Path(value["path"]).expanduser().resolve())}
    return value


def normalise_data(value: Any, default: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A data spec as a mapping with an absolute path (trials may run in another working directory).

    A string is ``demo``, a path or a ``.yaml`` data spec; a mapping with neither ``path`` nor ``layout`` only
    adjusts options of ``default`` (the task's demo data), e.g. ``--set data.n=200``.
    """
    if value is None or value == "":
        return dict(default) if default is not None else None
    if isinstance(value, str | Mapping):
        from runner.data._dataset import spec_options

        value = spec_options(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"data must be a path, 'demo', a .yaml file or a mapping of data options, not {value!r}")
    if not names_data_set(value) and default is not None:
        value = deep_merge(default, value)
    return dict(absolute_data(value))


def check_data_spec(value: Mapping[str, Any]) -> None:
    """A normalised data spec's options and local path, without listing a file: what a sweep checks for
    each data set when its search space loads, so a typo fails in a second rather than in every trial."""
    from runner.data import parse_data_spec
    from runner.data.adapters._common import require_exists

    if value.get("path"):
        require_exists(Path(value["path"]))  # parse_data_spec only looks at the files when it detects the layout
    parse_data_spec(value)


def make_config(values: Mapping[str, Any]) -> TrialConfig:
    """A validated config from flat keys (and optional explicit ``model_params`` / ``task_params``). A
    ``weights`` path is made absolute; ``weights: auto`` stays as it is for ``resolve_config`` (or a sweep's
    ``build_sweep``) to resolve once."""
    from runner.models import MODELS, check_fits
    from runner.tasks import TASKS

    values = dict(values)
    for required in ("task", "model"):
        if not values.get(required):
            raise ConfigError(f"no {required} given: set {required} (e.g. --{required} NAME)")
    task = TASKS.get(values["task"])
    model_defaults = MODELS.get(values["model"]).defaults()
    model_params = dict(values.pop("model_params", {}) or {})
    task_params = dict(values.pop("task_params", {}) or {})
    training = {}
    for key, value in values.items():
        if key in TRAINING_KEYS:
            training[key] = value
        elif key in model_defaults:
            model_params[key] = value
        elif key in task.params:
            task_params[key] = value
        else:
            valid = sorted({*TRAINING_KEYS, *model_defaults, *task.params})
            raise ConfigError(f"unknown key '{key}' for task '{task.name}' and model '{values['model']}': "
                              f"choose from {', '.join(valid)}")
    if isinstance(training.get("mixed_precision"), bool):  # YAML reads a bare on/off as true/false
        training["mixed_precision"] = "on" if training["mixed_precision"] else "off"
    weights = model_params.get("weights")
    if isinstance(weights, str) and weights not in WEIGHT_WORDS:
        model_params["weights"] = str(Path(weights).expanduser().resolve())
    training["data"] = normalise_data(training.get("data"), task.default_data)
    training["test_data"] = normalise_data(training.get("test_data"))
    spec = MODELS.get(values["model"])
    config = TrialConfig(**training, model_params=spec.bind(model_params), task_params=task.bind_params(task_params))
    _check_types(config)
    if config.calibrate != "none" and not task.calibrated:
        raise ConfigError(f"calibrate={config.calibrate}: task '{task.name}' ({task.kind}) outputs no class "
                          "probabilities to calibrate; remove calibrate (it applies to binary and multi-class tasks)")
    check_fits(task, config.model, config.task_params)
    try:
        spec.check_input_shape((config.image_size, config.image_size, 1), config.model_params)
    except ConfigError as error:
        raise ConfigError(f"image_size={config.image_size} does not fit: {error}") from None
    return config


def load_config_file(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding one mapping; ``what`` names the file in errors (``cluster file``, ...)."""
    return yamlfile.read_mapping(path, what)


def resolve_config(*layers: Mapping[str, Any], printer: Callable[[str], None] = print) -> TrialConfig:
    """``train``'s config. Later layers win: defaults, then a config file, then command-line values, then
    ``--set``; then ``weights: auto`` is resolved as a sweep resolves it (ImageNet when it loads, else none
    with a warning), after the rest is validated, so a typo fails before any weights load."""
    from runner.sweep.weights import AUTO, resolve_auto_weights

    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge_layers(merged, {k: v for k, v in layer.items() if v is not None})
    config = make_config(merged)
    if config.model_params.get("weights") != AUTO:
        return config
    return dataclasses.replace(config, model_params=resolve_auto_weights(config.model_params, [config.model],
                                                                         printer))


def save_config(config: TrialConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
