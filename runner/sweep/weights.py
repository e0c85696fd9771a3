"""``weights: auto``: ImageNet weights when this machine can load them, else training from scratch, said out
loud and recorded as the value actually used, so a sweep runs offline and its leaderboard never lies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runner.errors import ConfigError


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


def resolve_auto_weights(fixed: dict, models: Sequence[str], printer: Callable[[str], None]) -> dict:
    if fixed.get("weights") != "auto":
        return fixed
    problem = imagenet_loadable(models)
    if problem is None:
        return {**fixed, "weights": "imagenet"}
    printer(f"warning: weights: auto -> none (ImageNet weights unavailable: {problem.split(';')[0]}); "
            "trials train from scratch; set weights=imagenet to require them")
    return {**fixed, "weights": "none"}
