"""Assembling a sweep: ``build_sweep`` turns a search space (a name, a YAML path or a mapping) and the command
line's choices into the one validated, typed ``SweepSpec`` a run uses. ``sweep``, ``sweep --dry-run``,
``sweep --resume``, the HTML report, the benchmarks and library code all call it, so a sweep means the same
thing wherever it is built.

Layers, each later one winning: the file < its profile < ``--quick`` < ``--set``. The file is read once and
each profile it declares is validated once (the chosen one with every layer, the others as written), so a
typo in any profile fails at load, before Ray starts.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import yamlfile
from runner.config import merge_layers, names_data_set
from runner.errors import ConfigError
from runner.overrides import deep_merge
from runner.sweep.space import SweepSpec, find_search_space, parse_spec

#: ``--profile auto`` (the default): the file's ``cpu`` profile when there is no GPU, else no profile.
AUTO_PROFILE = "auto"
#: ``--quick``: any sweep as a 2-trial, 1-epoch smoke run at 64 px without early stopping, FIFO, on a small
#: demo set (``QUICK_DEMO_IMAGES``) when it reads the demo data, on at most one GPU per trial.
QUICK = {"num_samples": 2, "scheduler": {"type": "fifo"},
         "fixed": {"epochs": 1, "early_stopping": 0, "image_size": 64, "bootstrap": 100}}
QUICK_DEMO_IMAGES = 120
#: The GPUs the profile choice counts: a number, a function asked only if the choice needs it, or None for
#: this machine's (``local_gpus``).
Gpus = float | Callable[[], float] | None


def build_sweep(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                profile: str | None = AUTO_PROFILE, quick: bool = False, *, gpus: Gpus = None,
                name: str | None = None, resolve_weights: bool = True,
                printer: Callable[[str], None] = print) -> SweepSpec:
    """The sweep a run uses, validated. Precedence, each later layer winning key by key (nested mappings
    merge): the file < its ``profile`` < ``--quick`` (``quick``) < ``--set`` (``overrides``), so
    ``--quick --set num_samples=4`` runs 4 trials.

    ``source``: a registered name (``./search_spaces/NAME.yaml``, else the shipped one), a YAML path, or a
    mapping of the file's keys (``name`` names it; default ``sweep``). ``profile``: a profile of the file,
    None for the file as written, or ``auto``: ``cpu`` when the file has one and ``gpus`` counts none (a
    function is only asked then, after the file is checked: the real run passes one that joins the Ray
    cluster); the profile applied is ``spec.profile``, which a resume passes back to rebuild the same trials.
    ``resolve_weights``: ``weights: auto`` becomes ``imagenet`` when the models' ImageNet weights load here
    (keras' cache or a download), else ``none`` with a warning through ``printer``; ``--dry-run`` leaves it."""
    raw, where, name = _read(source, name)
    profiles = _profiles(raw, where)
    candidates = _candidates(profile, profiles, where)
    for other in [None, *profiles]:
        if other not in candidates:
            _layered(raw, where, name, other, quick=False, overrides=None)  # a typo in any profile fails now
    variants = {candidate: _layered(raw, where, name, candidate, quick, overrides) for candidate in candidates}
    chosen = _chosen(variants, gpus, printer)
    spec = replace(variants[chosen], profile=chosen)
    if not resolve_weights:
        return spec
    from runner.sweep.weights import resolve_sweep_weights

    return resolve_sweep_weights(spec, printer)


def load_sweep(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
               profile: str | None = None) -> SweepSpec:
    """``build_sweep`` with nothing chosen for the caller: the file with ``profile`` (None: none) and
    ``overrides``, validated, no ``--quick``, ``weights: auto`` as written: a search space as its file says,
    which ``sweep --list`` shows and tests read."""
    return build_sweep(source, overrides, profile, resolve_weights=False)


def local_gpus() -> int:
    """The GPUs this machine shows, found without starting Ray (or TensorFlow): ``CUDA_VISIBLE_DEVICES`` when
    set, else ``nvidia-smi -L``; the GPUs a Ray started on this machine sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() not in ("", "-1")])
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()) if listed.returncode == 0 else 0


def _read(source: str | Path | Mapping[str, Any], name: str | None) -> tuple[dict[str, Any], str, str]:
    """(the file's keys, what errors call it, the sweep's name): read once; a copy, since layers merge into it."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source)), name or "sweep", name or "sweep"
    path = find_search_space(str(source)).path
    return copy.deepcopy(yamlfile.read_mapping(path, "search space")), str(path), name or path.stem


def _profiles(raw: Mapping[str, Any], where: str) -> Mapping[str, Mapping[str, Any]]:
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"{where}: 'profiles' must be a mapping, not {profiles!r}")
    for profile, block in profiles.items():
        if not isinstance(block, Mapping):
            raise ConfigError(f"{where}: profiles.{profile} must be a mapping of the keys it overrides, not {block!r}")
    if AUTO_PROFILE in profiles:
        raise ConfigError(f"{where}: profiles.{AUTO_PROFILE}: '{AUTO_PROFILE}' is what --profile takes to choose by "
                          "the GPUs: rename this profile")
    return profiles


def _candidates(profile: str | None, profiles: Mapping[str, Any], where: str) -> list[str | None]:
    """The profiles the run may use: with ``auto``, ``cpu`` (if the file has one) or none."""
    if profile == AUTO_PROFILE:
        return [None, "cpu"] if "cpu" in profiles else [None]
    if profile is not None and profile not in profiles:
        raise ConfigError(f"{where}: unknown profile '{profile}': choose from {', '.join(profiles) or 'none'}")
    return [profile]


def _chosen(variants: Mapping[str | None, SweepSpec], gpus: Gpus, printer: Callable[[str], None]) -> str | None:
    """The one candidate, or with ``auto``'s two: ``cpu`` when ``gpus`` counts none."""
    if len(variants) == 1:
        return next(iter(variants))
    count = gpus() if callable(gpus) else local_gpus() if gpus is None else gpus
    if count:
        return None
    where = "in the Ray cluster" if callable(gpus) else "on this machine"
    printer(f"no GPU {where}: using the search space's 'cpu' profile (--profile to choose another)")
    return "cpu"


def _layered(raw: Mapping[str, Any], where: str, name: str, profile: str | None, quick: bool,
             overrides: Mapping[str, Any] | None) -> SweepSpec:
    """The file < ``profile`` < ``--quick`` < ``overrides``, validated; errors name the profile."""
    layered = merge_layers(raw, raw["profiles"][profile]) if profile else raw
    layered = merge_layers(_quick(layered) if quick else layered, overrides or {})
    source = f"{where} (profile '{profile}')" if profile else where
    return replace(parse_spec(layered, name, source), source=where)


def _quick(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``--quick`` over the file and its profile: ``QUICK``, the searched image size dropped (the fixed 64 px
    holds; a model's own sizes keep their smallest), at most one GPU per trial, and demo data cut to
    ``QUICK_DEMO_IMAGES`` images (a data set of the user's is kept). A block of the wrong type is left for
    ``parse_spec`` to name."""
    blocks = ("fixed", "space", "per_model", "scheduler", "resources")
    if not all(isinstance(raw.get(block) or {}, Mapping) for block in blocks):
        return dict(raw)
    shrunk = deep_merge(raw, QUICK)
    fixed, data = shrunk["fixed"], shrunk["fixed"].get("data")
    if raw.get("data") is None and (data is None or (isinstance(data, Mapping) and not names_data_set(data))):
        fixed["data"] = {**(data or {}), "n": QUICK_DEMO_IMAGES}
    shrunk["space"] = {key: value for key, value in (raw.get("space") or {}).items() if key != "image_size"}
    shrunk["per_model"] = {model: _smallest_image_size(params)
                           for model, params in (raw.get("per_model") or {}).items()}
    resources = dict(raw.get("resources") or {})
    if isinstance(resources.get("gpu"), int | float):
        resources["gpu"] = min(resources["gpu"], 1)
    shrunk["resources"] = resources
    return shrunk


def _smallest_image_size(params: Any) -> Any:
    """A model's own image sizes (``per_model``), which a file sets because the model needs them (InceptionV3:
    75 px and up), cut to the smallest; a malformed one is left for ``parse_spec`` to name."""
    size = params.get("image_size") if isinstance(params, Mapping) else None
    if not isinstance(size, Mapping):
        return params
    choices = size.get("choices") if size.get("type") == "categorical" else [size.get("low")]
    if not isinstance(choices, list) or not choices or not all(isinstance(c, int) for c in choices):
        return params
    return {**params, "image_size": {"type": "categorical", "choices": [min(choices)]}}
