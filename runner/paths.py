"""The runner's state folder on this machine: decoded-image caches, the demo data set, and the Optuna studies of
sweeps whose results are on an object store.

A leaf module (standard library only), so the data cache and the sweep's study code both read the folder from
here without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that moves the state folder; the sweep driver passes it on to Ray's workers.
CACHE_ENV = "CXR_RUNNER_CACHE"


def default_cache_dir() -> Path:
    """``$CXR_RUNNER_CACHE`` or ``~/.cache/cxr-runner``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "cxr-runner")).expanduser()
