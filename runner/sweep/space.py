"""Search spaces: what a validated sweep is (``SweepSpec``), where its YAML files are found (``SEARCH_SPACES``:
the user's ``./search_spaces/`` first, then the spaces shipped in ``runner/search_spaces/``), and Optuna's
define-by-run space built from it. ``runner.sweep.assemble.build_sweep`` turns a file and the command line's
choices into a ``SweepSpec``.

A file names the tasks and models to cross, the data, fixed keys for every trial, and distributions in
Optuna's own vocabulary (``{type: float, low, high, log}``, ``{type: int, ...}``,
``{type: categorical, choices}``), built with Optuna's distribution classes so their checks apply. Keys
under ``per_model`` / ``per_task`` are conditional: they exist only when that model or task is drawn, and
Optuna sees them under a namespaced name (``vgg16.frozen_layers``) so each keeps its own distribution.
Every key is checked against the trial config (training keys, model and task parameters) before a trial
starts, so a typo fails in a second with the file and key named.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.config import DATA_KEYS, MAX_SEED, SEED_RANGE, absolute_data
from runner.errors import ConfigError, CxrError
from runner.registry import Registry

if TYPE_CHECKING:
    from runner.config import TrialConfig

SCHEDULERS = ("asha", "fifo")
SEARCHERS = ("optuna", "random", "grid")
TOP_KEYS = {
    "description": str, "tasks": list, "models": list, "data": (str, dict, type(None)), "fixed": dict,
    "space": dict, "per_model": dict, "per_task": dict, "metric": str, "mode": str, "num_samples": int,
    "seed": int, "scheduler": dict, "searcher": str, "resources": dict, "max_concurrent_trials": (int, type(None)),
    "max_failures": int, "checkpoint_every": int, "profiles": dict, "warm_start": (list, dict), "stop": dict,
}
SCHEDULER_KEYS = {"type": str, "max_t": int, "grace_period": int, "reduction_factor": (int, float)}
RESOURCE_KEYS = {"cpu": (int, float), "gpu": (int, float), "workers": int}
WARM_START_KEYS = {"sweeps": list, "enqueue": int}
STOP_KEYS = {"patience": int, "min_delta": (int, float), "target": (int, float), "time_budget_s": (int, float)}
DISTRIBUTION_TYPES = ("float", "int", "categorical")


#: The search spaces that ship with the package (package data, so any install has them).
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
#: The user's own search spaces: ``search_spaces/`` in the working directory, looked at before the shipped ones.
USER_DIR = "search_spaces"
#: Where a search space file came from, as ``sweep --list`` says it.
SHIPPED, USER, GIVEN = "shipped", f"./{USER_DIR}", "path"


@dataclass(frozen=True)
class SpaceFile:
    """A search space file and where it came from: ``shipped``, ``./search_spaces`` or a ``path`` given."""

    path: Path
    origin: str


class _SearchSpaces(Registry[SpaceFile]):
    """The search-space registry: sweep name -> YAML file, ``./search_spaces/NAME.yaml`` in the working directory
    (the user's own spaces, which win) before the shipped ``runner/search_spaces/NAME.yaml``. Read again at each
    lookup, since the working directory and the files in it may change while the runner is imported."""

    def __init__(self) -> None:
        super().__init__("search space")

    def _load(self) -> None:
        found: dict[str, SpaceFile] = {}
        for folder, origin in ((Path.cwd() / USER_DIR, USER), (SHIPPED_DIR, SHIPPED)):
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, SpaceFile(path, origin))
        self._entries = found


SEARCH_SPACES = _SearchSpaces()


def find_search_space(name_or_path: str) -> SpaceFile:
    """A registered sweep's file, or the given file: a name with a YAML suffix or a folder in it is a path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return SpaceFile(path, GIVEN)
    return SEARCH_SPACES.get(name_or_path)


def space_digest(name_or_path: str) -> str | None:
    """The SHA-256 of the file ``find_search_space`` names (None where there is none: the load reports it)."""
    path = find_search_space(name_or_path).path
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@dataclass(frozen=True)
class Resources:
    """Per trial: CPUs and GPUs, and Ray Train workers (0 = local mode: train inside the trial process)."""

    cpu: float = 1
    gpu: float = 0
    workers: int = 0


@dataclass(frozen=True)
class Scheduler:
    type: str = "asha"
    max_t: int = 10
    grace_period: int = 1
    reduction_factor: float = 3

    def reports(self, epochs: int) -> int:
        """ASHA's ``max_t`` in Tune reports: one per epoch plus the final evaluation, for the longer of
        ``max_t`` and the trials' ``epochs``."""
        return max(epochs, self.max_t) + 1

    def rungs(self, epochs: int) -> list[float]:
        """The reports at which ASHA compares trials, as Ray's ``_Bracket`` computes them (one bracket)."""
        count = int(math.log(self.reports(epochs) / self.grace_period) / math.log(self.reduction_factor) + 1)
        return [self.grace_period * self.reduction_factor ** k for k in range(count)]


@dataclass(frozen=True)
class WarmStart:
    """``warm_start``: earlier sweeps (by id, in the same results folder) whose finished trials the new study
    starts with, and how many of their best configurations are re-run first (``runner.sweep.warm``)."""

    sweeps: tuple[str, ...] = ()
    enqueue: int = 0


@dataclass(frozen=True)
class Stop:
    """``stop:``: when the sweep ends before ``num_samples`` (``runner.sweep.stopping``). Each rule is off
    when None; ``min_delta`` only qualifies ``patience``."""

    patience: int | None = None
    min_delta: float = 0.0
    target: float | None = None
    time_budget_s: float | None = None

    @property
    def active(self) -> bool:
        return (self.patience, self.target, self.time_budget_s) != (None, None, None)

    def describe(self, mode: str) -> str:
        """The rules as ``sweep --dry-run`` prints them."""
        rules = [f"after {self.patience} ended trials in a row without an improvement of more than "
                 f"{self.min_delta:g}" if self.patience is not None else "",
                 f"once a trial's objective is {'>=' if mode == 'max' else '<='} {self.target:g}"
                 if self.target is not None else "",
                 f"{self.time_budget_s:g} s after the sweep started" if self.time_budget_s is not None else ""]
        return " or ".join(rule for rule in rules if rule) or "after num_samples trials"


@dataclass(frozen=True)
class SweepSpec:
    """A validated search space, as one run uses it (``runner.sweep.assemble.build_sweep`` builds it)."""

    name: str
    source: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    description: str = ""
    data: Any = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    space: Mapping[str, Any] = field(default_factory=dict)
    per_model: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    per_task: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric: str = "objective"
    mode: str = "max"
    num_samples: int = 8
    seed: int = 0
    scheduler: Scheduler = Scheduler()
    searcher: str = "optuna"
    resources: Resources = Resources()
    max_concurrent_trials: int | None = None
    max_failures: int = 1
    checkpoint_every: int = 1
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    warm_start: WarmStart = WarmStart()
    stop: Stop = Stop()
    #: The profile applied (``runner.sweep.assemble``); None: the file as written.
    profile: str | None = None

    def trial_values(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The flat config keys of one trial: fixed keys, then the sampled task, model and parameters
        (conditional ones drop their ``owner.`` namespace)."""
        values = {**self.fixed}
        if self.data is not None:
            values["data"] = self.data
        for name, value in sampled.items():
            values[name.split(".", 1)[-1]] = value
        return values


def _type_error(source: str, key: str, value: Any, expected: Any) -> ConfigError:
    names = expected if isinstance(expected, tuple) else (expected,)
    wanted = " or ".join("null" if t is type(None) else "a mapping" if t is dict else "a list" if t is list
                         else t.__name__ for t in names)
    return ConfigError(f"{source}: '{key}' must be {wanted}, not {value!r}")


def _check_keys(source: str, where: str, given: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    for key, value in given.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean '{where}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{where}{key}'{hint}: choose from {', '.join(sorted(allowed))}")
        expected = allowed[key]
        ok = isinstance(value, expected) and not (expected in (int, (int, float)) and isinstance(value, bool))
        if not ok:
            raise _type_error(source, f"{where}{key}", value, expected)


def make_distribution(source: str, key: str, spec: Any):
    """An Optuna distribution from ``{type: float|int|categorical, ...}``; Optuna's own checks apply."""
    import optuna.distributions as d

    if not isinstance(spec, Mapping) or spec.get("type") not in DISTRIBUTION_TYPES:
        raise ConfigError(f"{source}: '{key}' must be a distribution {{type: float|int|categorical, ...}}, "
                          f"not {spec!r}")
    attributes = {k: v for k, v in spec.items() if k != "type"}
    kind = spec["type"]
    allowed = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
               "categorical": ("choices",)}[kind]
    unknown = sorted(set(attributes) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: '{key}' ({kind}) has unknown field '{unknown[0]}': choose from "
                          f"{', '.join(allowed)}")
    try:
        if kind == "categorical":
            choices = attributes.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError("choices must be a non-empty list")
            return d.CategoricalDistribution(choices)
        cls = d.FloatDistribution if kind == "float" else d.IntDistribution
        return cls(**attributes)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: '{key}' is not a valid {kind} range ({error}): fix low/high/choices") from None


def _distributions(source: str, where: str, block: Any) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise _type_error(source, where.rstrip("."), block, dict)
    return {key: make_distribution(source, f"{where}{key}", spec) for key, spec in block.items()}


def _check_names(source: str, spec: SweepSpec) -> None:
    from runner.models import MODELS, check_pairs
    from runner.tasks import TASKS

    for task in spec.tasks:
        if task not in TASKS:
            raise ConfigError(f"{source}: unknown task '{task}' in tasks: choose from {', '.join(TASKS.names())}")
    for model in spec.models:
        if model not in MODELS:
            raise ConfigError(f"{source}: unknown model '{model}' in models: choose from {', '.join(MODELS.names())}")
    for block, names in (("per_model", spec.models), ("per_task", spec.tasks)):
        for name in getattr(spec, block):
            if name not in names:
                raise ConfigError(f"{source}: '{block}.{name}' is not one of this sweep's {block[4:]}s: "
                                  f"{', '.join(names)}")
    check_pairs(source, [TASKS.get(task) for task in spec.tasks], spec.models)
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"{source}: mode must be max or min, not {spec.mode!r}")
    if spec.searcher not in SEARCHERS:
        raise ConfigError(f"{source}: searcher must be one of {', '.join(SEARCHERS)}, not {spec.searcher!r}")
    if spec.scheduler.type not in SCHEDULERS:
        raise ConfigError(f"{source}: scheduler.type must be one of {', '.join(SCHEDULERS)}")
    if spec.num_samples < 1:
        raise ConfigError(f"{source}: num_samples must be >= 1")
    if spec.warm_start.sweeps and spec.searcher != "optuna":
        raise ConfigError(f"{source}: warm_start needs searcher optuna: {spec.searcher} search ignores earlier "
                          "trials: set searcher: optuna, or leave warm_start out")


def _check_trial_keys(source: str, spec: SweepSpec) -> None:
    """Every fixed and searched key must be a key a trial of each (task, model) pair accepts."""
    from runner.config import TRAINING_KEYS
    from runner.models import MODELS
    from runner.tasks import TASKS

    for task_name in spec.tasks:
        task = TASKS.get(task_name)
        for model in spec.models:
            valid = {*TRAINING_KEYS, *MODELS.get(model).defaults(), *task.params} - {"task", "model"}
            keys = {*spec.fixed, *spec.space, *spec.per_model.get(model, {}), *spec.per_task.get(task_name, {})}
            for key in sorted(keys):
                if key not in valid:
                    raise ConfigError(f"{source}: key '{key}' is not a setting of task '{task_name}' with model "
                                      f"'{model}': choose from {', '.join(sorted(valid))}")


def _range_ends(spec: Mapping[str, Any]) -> list[Any]:
    """The values a distribution can draw that are most likely to be wrong: its ends, or every choice."""
    return list(spec["choices"]) if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def edge_configs(spec: SweepSpec) -> Iterator[tuple[str, TrialConfig]]:
    """(where, config) for the fixed keys and each end of every range (every choice), for every (task,
    model) pair: the trial configs most likely to be wrong, and between them every data set a trial reads.
    An invalid one raises ``ConfigError`` naming the file, the value and the pair."""
    from runner.config import make_config

    source = spec.source
    for task in spec.tasks:
        for model in spec.models:
            fixed = {**spec.fixed, **({} if spec.data is None else {"data": spec.data}), "task": task,
                     "model": model}
            drawn = {}  # key -> (block, distribution); a conditional block overrides space, as in a trial
            for block, params in (("space", spec.space), (f"per_model.{model}", spec.per_model.get(model, {})),
                                  (f"per_task.{task}", spec.per_task.get(task, {}))):
                drawn.update({key: (block, distribution) for key, distribution in params.items()})
            # a conditional block refines a fixed key for its model or task (fixed image_size 64 beside
            # inception_v3's own per_model sizes): that pair's configs take a drawn value instead, since the fixed
            # one never reaches its trials (a key both fixed and in space is checked as fixed, as written)
            redrawn = {key: (block, _range_ends(distribution)[0]) for key, (block, distribution) in drawn.items()
                       if key in fixed and block != "space"}
            base = {**fixed, **{key: value for key, (_, value) in redrawn.items()}}
            label = ", ".join(["fixed", *(f"{block}.{key} = {value!r}" for key, (block, value) in redrawn.items())])
            candidates = [(label, base)] + [(f"{block}.{key} = {value!r}", {**base, key: value})
                                            for key, (block, distribution) in drawn.items()
                                            for value in _range_ends(distribution)]
            for where, values in candidates:
                try:
                    yield where, make_config(values)
                except ConfigError as error:
                    raise ConfigError(f"{source}: {where} (task '{task}', model '{model}'): {error}") from None


def _check_trial_values(source: str, spec: SweepSpec) -> None:
    """Every edge config must be valid, so a negative learning rate, an image size below a model's minimum,
    a data path that does not exist or a data option typo fails when the file loads instead of in every
    trial (each data spec is checked once: options and path, no file listed)."""
    from runner.config import check_data_spec

    checked: set[str] = set()
    for where, config in edge_configs(spec):
        for key in ("data", "test_data"):
            value = getattr(config, key)
            fingerprint = json.dumps(value, sort_keys=True, default=str)
            if value is None or fingerprint in checked:
                continue
            try:
                check_data_spec(value)
            except CxrError as error:
                raise ConfigError(f"{source}: {where} (task '{config.task}', model '{config.model}'): {key}: "
                                  f"{error}") from None
            checked.add(fingerprint)


def parse_spec(raw: Mapping[str, Any], name: str, source: str) -> SweepSpec:
    """Validate a loaded YAML mapping (after profile and ``--set`` overrides) into a ``SweepSpec``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a search space must be a mapping of keys (tasks, models, space, ...)")
    _check_keys(source, "", raw, TOP_KEYS)
    for required in ("tasks", "models"):
        if not raw.get(required):
            raise ConfigError(f"{source}: '{required}' must list at least one name")
    _check_keys(source, "scheduler.", raw.get("scheduler", {}), SCHEDULER_KEYS)
    _check_keys(source, "resources.", raw.get("resources", {}), RESOURCE_KEYS)
    _check_keys(source, "stop.", raw.get("stop", {}), STOP_KEYS)
    values = _with_absolute_data({k: v for k, v in raw.items() if k not in ("scheduler", "resources", "warm_start",
                                                                          "stop")})
    spec = SweepSpec(name=name, source=source, **{**values, "tasks": tuple(raw["tasks"]),
                                                 "models": tuple(raw["models"])},
                     scheduler=Scheduler(**raw.get("scheduler", {})), resources=Resources(**raw.get("resources", {})),
                     warm_start=_warm_start(source, raw.get("warm_start", [])),
                     stop=_checked_stop(source, raw.get("stop")))
    _check_resources(source, spec.resources)
    _check_scheduler(source, spec.scheduler)
    if spec.max_concurrent_trials is not None and spec.max_concurrent_trials < 1:
        raise ConfigError(f"{source}: max_concurrent_trials={spec.max_concurrent_trials} must be >= 1, or null to "
                          "run as many trials at once as the cluster holds")
    if not 0 <= spec.seed <= MAX_SEED:
        raise ConfigError(f"{source}: seed={spec.seed} (the searcher's) must be {SEED_RANGE}")
    if spec.checkpoint_every < 0:
        raise ConfigError(f"{source}: checkpoint_every must be >= 0 (epochs between checkpoints; 0 = none)")
    _distributions(source, "space.", spec.space)
    for block in ("per_model", "per_task"):
        for owner, params in getattr(spec, block).items():
            _distributions(source, f"{block}.{owner}.", params)
    _check_names(source, spec)
    spec = _checked_metric(spec, mode_given="mode" in raw)
    _check_trial_keys(source, spec)
    _check_trial_values(source, spec)
    _check_batch_split(source, spec)
    if spec.searcher == "grid":
        grid_points(spec)
    return spec


def _with_absolute_data(values: dict[str, Any]) -> dict[str, Any]:
    """The sweep's data specs (``data``, ``fixed.data``, ``fixed.test_data``, and the choices of a searched one)
    with absolute paths, from the directory the sweep starts in (``absolute_data``): its trials run elsewhere."""
    if "data" in values:
        values["data"] = absolute_data(values["data"])
    if isinstance(values.get("fixed"), Mapping):
        values["fixed"] = {key: absolute_data(value) if key in DATA_KEYS else value
                           for key, value in values["fixed"].items()}
    if isinstance(values.get("space"), Mapping):
        values["space"] = _absolute_choices(values["space"])
    for block in ("per_model", "per_task"):  # each owner's parameters
        if isinstance(values.get(block), Mapping):
            values[block] = {owner: _absolute_choices(params) if isinstance(params, Mapping) else params
                             for owner, params in values[block].items()}
    return values


def _absolute_choices(params: Mapping[str, Any]) -> dict[str, Any]:
    """A block's searched data sets (``data: {type: categorical, choices: [a, b]}``) with absolute paths."""
    return {key: {**value, "choices": [absolute_data(choice) for choice in value["choices"]]}
            if key in DATA_KEYS and isinstance(value, Mapping) and isinstance(value.get("choices"), list) else value
            for key, value in params.items()}


def _checked_metric(spec: SweepSpec, mode_given: bool) -> SweepSpec:
    """The spec with ``mode`` set to ``metric``'s direction when the file leaves it out. ``metric`` is what
    Optuna, ASHA and the leaderboard's ranking optimise: ``objective`` (each task's own validation metric and
    mode) or a validation metric every trial reports each epoch; anything else, or a ``mode`` that contradicts
    the metric's direction (maximising val_loss), is refused rather than run as a sweep optimising
    something other than what the file says."""
    from runner.leaderboard import natural_mode
    from runner.sweep.trainable import reported_metrics
    from runner.tasks import TASKS

    if spec.metric == "objective":
        directions = {TASKS.get(task).mode for task in spec.tasks}
        if len(directions) > 1:
            raise ConfigError(f"{spec.source}: metric objective: the tasks {', '.join(spec.tasks)} optimise in "
                              "different directions: sweep them separately, or name one metric")
        natural, what = directions.pop(), "objective (each task's own validation metric)"
    else:
        valid = [name for name in reported_metrics(spec.tasks[0])
                 if all(name in reported_metrics(task) for task in spec.tasks[1:])]
        if spec.metric not in valid:
            raise ConfigError(f"{spec.source}: metric '{spec.metric}' is not a validation metric every trial of "
                              f"{', '.join(spec.tasks)} reports: choose objective (each task's own) or one of "
                              f"{', '.join(valid)}")
        natural, what = natural_mode(spec.metric), f"'{spec.metric}'"
    if not mode_given:
        return replace(spec, mode=natural)
    if spec.mode != natural:
        raise ConfigError(f"{spec.source}: mode {spec.mode} contradicts metric {what}, which is better when "
                          f"{'lower' if natural == 'min' else 'higher'}: set mode: {natural}, or leave mode out")
    return spec


def _warm_start(source: str, value: Any) -> WarmStart:
    """``warm_start: [SWEEP_ID, ...]`` or ``{sweeps: [SWEEP_ID, ...], enqueue: K}``."""
    block = {"sweeps": value} if isinstance(value, list) else value
    _check_keys(source, "warm_start.", block, WARM_START_KEYS)
    sweeps = block.get("sweeps", [])
    if not all(isinstance(sweep, str) and sweep for sweep in sweeps) or len(set(sweeps)) < len(sweeps):
        raise ConfigError(f"{source}: warm_start.sweeps must list distinct sweep ids, not {sweeps!r}")
    enqueue = block.get("enqueue", 0)
    if enqueue < 0 or (enqueue and not sweeps):
        raise ConfigError(f"{source}: warm_start.enqueue={enqueue}: re-run the best 0 or more configurations of "
                          "warm_start.sweeps (which must name at least one sweep)")
    return WarmStart(sweeps=tuple(sweeps), enqueue=enqueue)


def _check_resources(source: str, resources: Resources) -> None:
    """Data parallelism across Ray Train workers would need MultiWorkerMirroredStrategy, and Keras 3's
    ``fit`` fails under it (keras-team/keras#20585, reproduced here with TF 2.21 / Keras 3.15): refuse it up
    front rather than let every trial fail. Several GPUs in one trial train with MirroredStrategy."""
    if resources.workers > 1:
        raise ConfigError(f"{source}: resources.workers={resources.workers}: training one trial on several Ray "
                          "Train workers needs MultiWorkerMirroredStrategy, which Keras 3 does not support "
                          "(keras-team/keras#20585): use workers 0 or 1, and resources.gpu > 1 for data-parallel "
                          "training on one node's GPUs")
    if resources.workers < 0 or resources.cpu < 0 or resources.gpu < 0:
        raise ConfigError(f"{source}: resources: cpu, gpu and workers must not be negative")
    if resources.cpu == 0 and resources.gpu == 0:
        raise ConfigError(f"{source}: resources: cpu 0 and gpu 0: a trial needs some resource to run on: set "
                          "resources.cpu >= 1 (or a gpu)")
    if resources.gpu > 1 and resources.gpu != int(resources.gpu):
        raise ConfigError(f"{source}: resources.gpu={resources.gpu:g}: Ray shares a GPU between trials only below "
                          "1; above it a trial takes whole GPUs: use a fraction below 1 or a whole number")


def replicas(resources: Resources) -> int:
    """How many devices one trial trains on in parallel: its whole GPUs (``MirroredStrategy`` over the GPUs Ray
    makes visible to it), else 1."""
    return int(resources.gpu) if resources.gpu >= 1 else 1


def _check_batch_split(source: str, spec: SweepSpec) -> None:
    """A trial on several GPUs splits each batch across them, and only an even split trains (``_used`` in
    ``runner.data.pipeline`` refuses the rest): check every batch size the sweep can draw when the file loads,
    rather than fail each trial that draws one once its GPUs are allocated. Edge configs cover fixed values and
    every choice; an int range also needs its ``step`` (and so every value between) to be a multiple."""
    count = replicas(spec.resources)
    if count == 1:
        return
    blocks = [("space", spec.space), *((f"per_model.{model}", params) for model, params in spec.per_model.items()),
              *((f"per_task.{task}", params) for task, params in spec.per_task.items())]
    for block, params in blocks:
        drawn = params.get("batch_size", {})
        step = drawn.get("step", 1)
        if drawn.get("type") == "int" and (drawn.get("log") or step % count):
            scale = "on a log scale" if drawn.get("log") else f"with step {step}"
            raise ConfigError(f"{source}: {block}.batch_size is an int range {scale}, but with resources.gpu={count} "
                              f"every batch must split evenly over {count} GPUs: set step: {count} and low a "
                              "multiple of it, or list the sizes as choices")
    for where, config in edge_configs(spec):
        if config.batch_size % count:
            raise ConfigError(f"{source}: {where} (task '{config.task}', model '{config.model}'): batch_size="
                              f"{config.batch_size} does not split evenly over the {count} GPUs of "
                              f"resources.gpu={count}: use a multiple of {count}")


def _checked_stop(source: str, block: Mapping[str, Any] | None) -> Stop:
    """``stop:`` with each rule's range checked; an empty block, or ``min_delta`` alone, would look like a
    stopping rule and never stop, so both are refused."""
    if block is None:
        return Stop()
    stop = Stop(**block)
    if not stop.active:
        raise ConfigError(f"{source}: stop needs patience, target or time_budget_s (min_delta only qualifies "
                          "patience): add one, or remove 'stop'")
    if stop.patience is not None and stop.patience < 1:
        raise ConfigError(f"{source}: stop.patience={stop.patience} must be >= 1 (ended trials without an "
                          "improvement)")
    if stop.min_delta < 0 or ("min_delta" in block and stop.patience is None):
        raise ConfigError(f"{source}: stop.min_delta={stop.min_delta} must be >= 0 and goes with stop.patience")
    if stop.time_budget_s is not None and stop.time_budget_s <= 0:
        raise ConfigError(f"{source}: stop.time_budget_s={stop.time_budget_s} must be > 0 (seconds since the "
                          "sweep started)")
    return stop


def _check_scheduler(source: str, scheduler: Scheduler) -> None:
    """What Ray's ASHAScheduler asserts, as errors naming the key: an assertion inside Ray would end the
    sweep after Ray started, with a traceback."""
    if scheduler.max_t < 1 or scheduler.grace_period < 1:
        raise ConfigError(f"{source}: scheduler.max_t and scheduler.grace_period must be >= 1 (epochs)")
    if scheduler.grace_period > scheduler.max_t:
        raise ConfigError(f"{source}: scheduler.grace_period={scheduler.grace_period} is more than scheduler.max_t="
                          f"{scheduler.max_t}: ASHA cannot stop a trial before it has run: lower grace_period")
    if scheduler.reduction_factor <= 1:
        raise ConfigError(f"{source}: scheduler.reduction_factor={scheduler.reduction_factor} must be > 1 (ASHA "
                          "keeps 1/reduction_factor of the trials at each rung; 3 is usual)")


class _DefineByRun:
    """Optuna's define-by-run function: draws task and model, then their own (conditional) parameters.
    A class, not a closure, so Ray can pickle the searcher with the experiment state for ``--resume``."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.space = _distributions(spec.source, "space.", spec.space)
        self.per_model = {m: _distributions(spec.source, f"per_model.{m}.", p) for m, p in spec.per_model.items()}
        self.per_task = {t: _distributions(spec.source, f"per_task.{t}.", p) for t, p in spec.per_task.items()}

    def __call__(self, trial) -> None:
        task = trial.suggest_categorical("task", list(self.spec.tasks))
        model = trial.suggest_categorical("model", list(self.spec.models))
        for name, distribution in self.drawn(task, model).items():
            _suggest(trial, name, distribution)

    def drawn(self, task: str, model: str) -> dict[str, Any]:
        """The parameters a trial of (task, model) draws after those two, by the names Optuna sees (the warm
        start rebuilds earlier trials with them)."""
        return {**self.space, **{f"{model}.{k}": v for k, v in self.per_model.get(model, {}).items()},
                **{f"{task}.{k}": v for k, v in self.per_task.get(task, {}).items()}}


def max_concurrent(spec: SweepSpec, cluster: Mapping[str, float]) -> int:
    """How many trials fit at once: by CPUs and GPUs per trial (workers x per-worker in Train mode), or the
    search space's ``max_concurrent_trials`` (set it on an autoscaling cluster, which starts small)."""
    if spec.max_concurrent_trials:
        return spec.max_concurrent_trials
    per = max(spec.resources.workers, 1)
    limits = [cluster.get("CPU", 0) // (spec.resources.cpu * per)] if spec.resources.cpu else []
    if spec.resources.gpu:
        limits.append(cluster.get("GPU", 0) // (spec.resources.gpu * per))
    return max(1, int(min(limits))) if limits else 1


def grid_points(spec: SweepSpec) -> dict[str, list[Any]]:
    """``searcher: grid``: every parameter's choices, for Optuna's GridSampler, which runs each combination
    once in a seeded random order. Only categorical, unconditional parameters make a grid whose points are
    all distinct trials, so anything else is refused; ``num_samples`` may not exceed the grid (the sampler
    would repeat points)."""
    if spec.per_model or spec.per_task:
        raise ConfigError(f"{spec.source}: searcher grid cannot take per_model or per_task parameters: move them "
                          "to 'space' or use searcher optuna or random")
    points: dict[str, list[Any]] = {"task": list(spec.tasks), "model": list(spec.models)}
    for key, value in spec.space.items():
        if value["type"] != "categorical":
            raise ConfigError(f"{spec.source}: searcher grid needs categorical choices, but 'space.{key}' is "
                              f"{value['type']}: list its values as {{type: categorical, choices: [...]}}")
        points[key] = list(value["choices"])
    size = math.prod(len(choices) for choices in points.values())
    if spec.num_samples > size:
        raise ConfigError(f"{spec.source}: num_samples={spec.num_samples} but the grid has {size} points: set "
                          f"num_samples to at most {size}")
    return points


def define_by_run(spec: SweepSpec) -> _DefineByRun:
    return _DefineByRun(spec)


def _suggest(trial, name: str, distribution) -> Any:
    import optuna.distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, d.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log,
                                   step=distribution.step)
    return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log, step=distribution.step)


def describe(spec: SweepSpec) -> str:
    """The human-readable summary ``runner sweep --list`` prints."""
    lines = [f"{spec.name}: {spec.description}".rstrip(": "),
             f"  tasks: {', '.join(spec.tasks)}   models: {', '.join(spec.models)}",
             f"  trials: {spec.num_samples}, searcher {spec.searcher}, scheduler {spec.scheduler.type}, "
             f"metric {spec.metric} ({spec.mode})"]
    for key, value in spec.space.items():
        lines.append(f"  {key}: {_describe_distribution(value)}")
    for block in ("per_model", "per_task"):
        for owner, params in getattr(spec, block).items():
            for key, value in params.items():
                lines.append(f"  {key} [{owner}]: {_describe_distribution(value)}")
    if spec.fixed:
        lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in spec.fixed.items()))
    if spec.profiles:
        lines.append("  profiles: " + ", ".join(spec.profiles))
    return "\n".join(lines)


def describe_run(spec: SweepSpec, cluster: Mapping[str, float]) -> str:
    """What running ``spec`` on ``cluster`` (``{"CPU": n, "GPU": n}``) does: trials, resources, concurrency,
    scheduler and searcher, as ``sweep --dry-run`` prints it."""
    per = spec.resources
    mode = f"{per.workers} Ray Train worker(s) each" if per.workers else "trained in the trial process"
    return "\n".join([
        f"  {spec.num_samples} trials over tasks {' | '.join(spec.tasks)} x models {' | '.join(spec.models)}",
        f"  per trial: {per.cpu:g} CPU, {per.gpu:g} GPU, {mode}",
        f"  at once: {max_concurrent(spec, cluster)} trial(s) on {cluster.get('CPU', 0):g} CPUs and "
        f"{cluster.get('GPU', 0):g} GPUs" + (" (max_concurrent_trials)" if spec.max_concurrent_trials else ""),
        f"  scheduler: {_describe_scheduler(spec)}",
        f"  searcher: {_describe_searcher(spec)}",
        f"  stops: {spec.stop.describe(spec.mode)}",
    ])


def _describe_searcher(spec: SweepSpec) -> str:
    if spec.searcher == "grid":
        points = math.prod(len(choices) for choices in grid_points(spec).values())
        return f"grid: {spec.num_samples} of {points} points, in a random order (seed {spec.seed})"
    if spec.searcher == "optuna":
        return (f"Optuna TPE (seed {spec.seed}): {startup_trials(spec.num_samples)} random trials, then proposals "
                "from the results so far")
    return f"random sampling (seed {spec.seed})"


#: Optuna's default startup (10 random trials) is sized for budgets of a hundred trials and more; it is the cap.
MAX_STARTUP_TRIALS = 10
#: TPE splits the trials it has seen into a "good" and a "bad" density and needs one trial in each.
MIN_STARTUP_TRIALS = 2


def startup_trials(num_samples: int) -> int:
    """How many trials TPE draws at random before it models the results: a quarter of the budget, at least 2
    and at most Optuna's 10. Our sweeps run 4-16 trials, so Optuna's 10 made every one of them (nearly) a
    random search; a quarter leaves three quarters of any budget to model-based proposals, and TPE's prior
    keeps its first proposals broad, so starting the model early costs little. Measured on the synthetic
    learning-rate objective of tests/test_tpe.py (the best trial's distance from the optimum in decades,
    40-150 seeds): 16 trials 0.055 with 4 startup trials, 0.066 with 10, 0.146 random; 8 trials 0.155 with 2,
    0.216 random; at 6 trials TPE and random tie. Trials already in the study (resumed, warm-started) count."""
    return max(MIN_STARTUP_TRIALS, min(MAX_STARTUP_TRIALS, num_samples // 4))


def _describe_scheduler(spec: SweepSpec) -> str:
    if spec.scheduler.type == "fifo":
        return "FIFO: every trial runs all its epochs (early_stopping still applies)"
    scheduler, epochs = spec.scheduler, int(spec.fixed.get("epochs", 10))
    rungs = ", ".join(f"{rung:g}" for rung in scheduler.rungs(epochs))
    return (f"ASHA: after epoch {rungs} a trial goes on only if in the best 1/{scheduler.reduction_factor:g} "
            f"so far (max_t {scheduler.max_t}, grace_period {scheduler.grace_period})")


def _describe_distribution(spec: Mapping[str, Any]) -> str:
    if spec["type"] == "categorical":
        return "one of " + ", ".join(map(str, spec["choices"]))
    scale = " (log)" if spec.get("log") else ""
    return f"{spec['type']} {spec['low']} .. {spec['high']}{scale}"
