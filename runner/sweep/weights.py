"""``weights: auto``: ImageNet weights when this machine can load them, else training from scratch, said out
loud and recorded as the value actually used, so a sweep or a ``train`` runs offline and its results never
lie. It is resolved once, where the config is assembled (``runner.sweep.assemble.build_sweep`` for a sweep,
``runner.config.resolve_config`` for ``train``), so no trial ever sees ``auto``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.errors import ConfigError

AUTO = "auto"


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
            "trials train from scratch; set weights=imagenet to require them")
    return "none"


def resolve_auto_weights(values: Mapping[str, Any], models: Sequence[str], printer: Callable[[str], None]
                         ) -> dict[str, Any]:
    """``values`` (flat config keys, e.g. a sweep's ``fixed``) with ``weights: auto`` resolved for ``models``."""
    if values.get("weights") != AUTO:
        return dict(values)
    return {**values, "weights": auto_weights(models, printer)}
