"""What the registry stores for each model, and the parameter checks every builder shares.

Nothing here imports Keras: ``create_model`` validates names, parameters and image sizes before a builder
module (and with it TensorFlow) is asked to build anything, so a typo in a YAML file fails in milliseconds
with a message naming the key, not deep inside a layer constructor. For the same reason a model declares
what it outputs and which feature layers it offers at its registration: a task that cannot use the model
is refused when the config loads (``runner.models.check_fits``), not when Keras meets a shape it cannot fit.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from runner.errors import ConfigError
from runner.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])
SizeRule = int | Callable[[Mapping[str, Any]], int]
#: What a model's ``output`` layer holds: one unit per class (``num_outputs`` of them), an image of the input's
#: shape and channels (a reconstruction), or a mask of the input's height and width (``num_outputs`` channels).
ModelOutput = Literal["classes", "image", "mask"]
OUTPUTS: dict[str, str] = {"classes": "class scores", "image": "a reconstructed image", "mask": "a mask"}

# Builders take these three from ``create_model`` itself; every other parameter is a keyword-only model
# parameter with its default in the builder's signature, so the signature is the single list of parameters.
FIXED_ARGUMENTS = ("input_shape", "num_outputs", "output_activation")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, what it outputs, the features it offers and the input sizes it accepts.

    ``output`` is what tasks are matched on (``Task.model_output``). ``features`` maps a feature a task may
    read (``"latent"``: the code an anomaly score measures distances in) to the name of the layer that
    holds it in every model the builder makes. ``min_size`` and ``size_multiple`` are ints or functions of
    the bound parameters (the autoencoder's depth, for example, decides both), so the size rule is checked
    once, in ``create_model``, with one wording for every model.
    """

    name: str
    build: Callable[..., Any]
    output: ModelOutput
    features: Mapping[str, str] = field(default_factory=dict)
    min_size: SizeRule = 1
    size_multiple: SizeRule = 1

    def defaults(self) -> dict[str, Any]:
        """The model parameters and their defaults, read from the builder's keyword-only arguments."""
        return {
            p.name: p.default
            for p in inspect.signature(self.build).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def parameter_types(self) -> dict[str, Any]:
        """Each model parameter's declared type, from the builder's annotations (``Any`` where it has none):
        what the leaderboard types the parameter's column by. Only the parameters' annotations are evaluated,
        in the builder's module: its return annotation names ``keras``, which builder modules import only
        when they build (see ``runner.models._layers``)."""
        names = inspect.unwrap(getattr(self.build, "func", self.build)).__globals__
        return {
            p.name: Any if p.annotation is p.empty else
            eval(p.annotation, names) if isinstance(p.annotation, str) else p.annotation
            for p in inspect.signature(self.build).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``; an unknown parameter is a ConfigError listing the valid ones."""
        defaults = self.defaults()
        for key in params:
            if key not in defaults:
                valid = sorted(defaults)
                hint = difflib.get_close_matches(key, valid, n=1)
                raise ConfigError(
                    f"model '{self.name}' has no parameter '{key}': choose from {', '.join(valid)}"
                    + (f" (did you mean '{hint[0]}'?)" if hint else "")
                )
        return {**defaults, **params}

    def size_rule(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(smallest side, required divisor of each side) for these bound parameters."""
        minimum = self.min_size(params) if callable(self.min_size) else self.min_size
        multiple = self.size_multiple(params) if callable(self.size_multiple) else self.size_multiple
        return minimum, multiple

    def check_input_shape(self, input_shape: Any, params: Mapping[str, Any]) -> tuple[int, int, int]:
        """``input_shape`` as an int triple, after checking it against this model's size rule."""
        shape = check_input_shape(self.name, input_shape)
        height, width, _ = shape
        minimum, multiple = self.size_rule(params)
        if height < minimum or width < minimum:
            raise ConfigError(
                f"model '{self.name}' needs images of at least {minimum}x{minimum} pixels; "
                f"got {height}x{width} (input_shape {shape})"
            )
        if height % multiple or width % multiple:
            side = height if height % multiple else width
            good = [s for s in (_round_down(side, multiple), _round_up(side, multiple)) if s >= minimum]
            raise ConfigError(
                f"model '{self.name}' needs image sides divisible by {multiple}; got {height}x{width} "
                f"(input_shape {shape}): use a multiple of {multiple} such as "
                f"{' or '.join(str(s) for s in dict.fromkeys(good))}"
            )
        return shape

    def output_count(self, input_shape: tuple[int, int, int], num_outputs: int | None) -> int:
        """Units (classes) or channels (image, mask) of the output: ``num_outputs``, or when None 1 (classes,
        mask) or the input's channels (image). A reconstruction has its input's channels, so an image model
        refuses any other count rather than build an output the caller did not ask for."""
        channels = input_shape[2]
        if num_outputs is None:
            return channels if self.output == "image" else 1
        count = check_int(self.name, "num_outputs", num_outputs, minimum=1)
        if self.output == "image" and count != channels:
            raise ConfigError(
                f"model '{self.name}' reconstructs its input, so it outputs the input's {channels} channel(s): "
                f"num_outputs={count} cannot be built; leave num_outputs out or give {channels}"
            )
        return count


#: Every model by its YAML / CLI name; defined here, beside ``register``, so this registry module imports no builder.
MODELS: Registry[ModelSpec] = Registry("model", package="runner.models")


def register(
    name: str,
    *,
    output: ModelOutput,
    features: Mapping[str, str] | None = None,
    min_size: SizeRule = 1,
    size_multiple: SizeRule = 1,
) -> Callable[[F], F]:
    """Register the decorated builder in ``MODELS`` under ``name``; returns it unchanged.

    ``output`` and ``features`` are the model's side of the task contract (see ``ModelSpec``)."""
    if output not in OUTPUTS:
        raise ValueError(f"model '{name}': output must be one of {', '.join(OUTPUTS)}, not {output!r}")

    def add(build: F) -> F:
        MODELS.register(name)(ModelSpec(name, build, output, dict(features or {}), min_size, size_multiple))
        return build

    return add


def check_input_shape(model: str, input_shape: Any) -> tuple[int, int, int]:
    """(height, width, channels) with positive sides and 1 (grayscale) or 3 (RGB) channels."""
    ok = (
        isinstance(input_shape, Sequence)
        and len(input_shape) == 3
        and all(_is_int(v) and v > 0 for v in input_shape)
        and input_shape[2] in (1, 3)
    )
    if not ok:
        raise ConfigError(
            f"model '{model}': input_shape must be (height, width, channels) with positive sides and 1 or 3 "
            f"channels; got {input_shape!r}"
        )
    height, width, channels = (int(v) for v in input_shape)
    return height, width, channels


def check_int(model: str, param: str, value: Any, minimum: int = 0) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(
            f"model '{model}': parameter '{param}' must be an integer >= {minimum}; got {value!r}"
        )
    return int(value)


def check_fraction(model: str, param: str, value: Any, *, below_one: bool = True) -> float:
    """A float in [0, 1) (a dropout rate) or [0, 1]."""
    top_ok = (value < 1) if below_one else (value <= 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and top_ok):
        upper = "1 (exclusive)" if below_one else "1"
        raise ConfigError(
            f"model '{model}': parameter '{param}' must be a number from 0 to {upper}; got {value!r}"
        )
    return float(value)


def check_number(model: str, param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"model '{model}': parameter '{param}' must be a number >= 0; got {value!r}")
    return float(value)


def check_choice(model: str, param: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(
            f"model '{model}': parameter '{param}' must be one of {', '.join(choices)}; got {value!r}"
        )
    return str(value)


def check_bool(model: str, param: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"model '{model}': parameter '{param}' must be true or false; got {value!r}")
    return value


def check_int_list(model: str, param: str, value: Any, *, length: int | None = None) -> list[int]:
    """A non-empty list of positive ints (of exactly ``length`` entries when given)."""
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and all(_is_int(v) and v > 0 for v in value)
        and (length is None or len(value) == length)
    )
    if not ok:
        what = f"a list of {length} positive integers" if length else "a non-empty list of positive integers"
        raise ConfigError(f"model '{model}': parameter '{param}' must be {what}; got {value!r}")
    return [int(v) for v in value]


def _is_int(value: Any) -> bool:
    # bool is an int subclass, and numpy ints are not ints: accept the latter, refuse the former.
    return not isinstance(value, bool) and hasattr(value, "__index__")


def _round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
