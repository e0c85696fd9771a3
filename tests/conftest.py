"""Shared fixtures: real image files written by the tests, a private cache directory per test, a private home
for the session (Ray writes its token there), and the team's real radiographs when they are beside the repo."""

from __future__ import annotations

import os
import site
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: What a test session may not change: the user's own Ray token, and a data folder in the source tree.
OUTSIDE_THE_TESTS = (Path.home() / ".ray" / "auth_token", Path(__file__).resolve().parent / "data")


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40), mode: str = "L",
                brightness: int = 0) -> Path:
    """A small real image file (PNG or JPEG by suffix) with random content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    pixels = np.clip(rng.integers(0, 200, shape) + brightness, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (48, 40), box: tuple[int, int, int, int] | None = (5, 5, 20, 20)
               ) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    if box:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(path)
    return path


def make_class_folders(root: Path, classes: dict[str, int], split: str | None = None, seed: int = 0) -> Path:
    for index, (name, count) in enumerate(classes.items()):
        folder = root / split / name if split else root / name
        for i in range(count):
            write_image(folder / f"{name}-{i}.png", seed=seed * 1000 + index * 100 + i)
    return root


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own cache so tests never share (or depend on) decoded images."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CXR_RUNNER_CACHE", str(path))
    return path


def _stat(path: Path) -> tuple[int, int] | None:
    """(modification time, mode), or None if absent: what writing, replacing or chmod-ing ``path`` changes."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_mtime_ns, found.st_mode


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary ``HOME`` for the whole session, its subprocesses and the Ray processes it starts: Ray
    writes its auth token to ``~/.ray/auth_token`` and the runner chmods it, which must not touch the user's.
    User-installed packages stay importable in subprocesses (``PYTHONUSERBASE``). At the end, the session
    fails if it changed anything in ``OUTSIDE_THE_TESTS``."""
    before = {path: _stat(path) for path in OUTSIDE_THE_TESTS}
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONUSERBASE", os.environ.get("PYTHONUSERBASE", site.getuserbase()))
        patch.setenv("HOME", str(home))
        yield home
    changed = [str(path) for path in OUTSIDE_THE_TESTS if _stat(path) != before[path]]
    assert not changed, f"the test session changed {changed}: tests write under tmp_path and the private home"


@pytest.fixture
def shared_data() -> Path:
    """The real radiographs in ``../shared/data``. Where they are absent (a clone without the team's folder)
    the test skips, saying where they come from; in CI (``CI`` set, as ``.ci/run`` does) it fails, so the
    real-data tests can never be skipped there unnoticed."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    where = (f"real radiographs expected at {SHARED_DATA}: the team's shared/ folder beside the repo (a Kermany "
             "pneumonia subset and lung-mask pairs; sources and licences in shared/data/README.md)")
    if os.environ.get("CI"):
        pytest.fail(f"{where}; CI must have it")
    pytest.skip(where)
