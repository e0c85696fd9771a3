"""``weights: auto``: ImageNet weights when this machine can load them, else training from scratch, said out
loud and recorded as the value actually used, so a sweep or a ``train`` runs offline and its results never
lie. It is resolved once, where the config is assembled (``runner.sweep.assemble.build_sweep`` for a sweep,
``runner.config.resolve_config`` for ``train``), so no trial ever sees ``auto``.

Freezing layers of a randomly initialised backbone only keeps them random: when ``auto`` falls back to
``none``, ``frozen_layers`` is pinned to 0 (``unfrozen``), taken out of the search, and recorded as used
(``hp_frozen_layers``); with ImageNet weights, or a weights file, nothing changes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError

if TYPE_CHECKING:
    from runner.sweep.space import SweepSpec

AUTO = "auto"
FROZEN = "frozen_layers"


def imagenet_loadable(models: Sequence[str]) -> str | None:
    """None when every model's ImageNet weights load (from keras' cache or a download); else the reason."""
    from runner.models import MODELS, create_model

    for model in models:
        if "weights" not in MODELS.get(model).defaults():
            continue
        try:
            create_model(model, input_shape=(96, 96, 1), weights="imagenet")
        except ConfigError as error:
            return str(error)
    return None


def auto_weights(models: Sequence[str], printer: Callable[[str], None]) -> str:
    """What ``weights: auto`` means for these models here: ``imagenet``, or ``none`` with a warning."""
    problem = imagenet_loadable(models)
    if problem is None:
        return "imagenet"
    printer(f"warning: weights: auto -> none (ImageNet weights unavailable: {problem.split(';')[0]}); "
            "trials train randomly initialised backbones from scratch, with frozen_layers 0 (frozen random "
            "layers would never learn); set weights=imagenet to require them")
    return "none"


def resolve_auto_weights(values: Mapping[str, Any], models: Sequence[str], printer: Callable[[str], None]
                         ) -> dict[str, Any]:
    """``values`` (flat config keys: a sweep's ``fixed``, a trial's model parameters) with ``weights: auto``
    resolved for ``models``, and ``frozen_layers`` 0 when that means ``none``."""
    if values.get("weights") != AUTO:
        return dict(values)
    weights = auto_weights(models, printer)
    return {**values, "weights": weights, **({FROZEN: 0} if weights == "none" else {})}


def resolve_sweep_weights(spec: SweepSpec, printer: Callable[[str], None]) -> SweepSpec:
    """The sweep with ``weights: auto`` resolved (``resolve_auto_weights`` on its ``fixed``); when that gave
    ``none``, ``frozen_layers`` is no longer searched either (``space``, ``per_model``): the pinned 0 is every
    trial's. Every model of such a sweep takes ``weights``, so each takes ``frozen_layers`` too."""
    fixed = resolve_auto_weights(spec.fixed, spec.models, printer)
    if not (spec.fixed.get("weights") == AUTO and fixed["weights"] == "none"):
        return replace(spec, fixed=fixed)
    return replace(spec, fixed=fixed, space={k: v for k, v in spec.space.items() if k != FROZEN},
                   per_model={model: {k: v for k, v in params.items() if k != FROZEN}
                              for model, params in spec.per_model.items()})
