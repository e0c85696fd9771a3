"""The HDF5 cache: built once, reused, rebuilt on change, safe with two builders and a killed build, and every
kind of bad image skipped with a message naming the file."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_class_folders, write_image, write_mask
from PIL import Image

from runner.data import load_dataset, prepare
from runner.data.cache import build_cache
from runner.errors import DataError


def test_built_once_reused_and_rebuilt_when_a_file_changes(tmp_path: Path, cache_dir: Path) -> None:
    make_class_folders(tmp_path, {"a": 5, "b": 5})
    dataset = load_dataset(str(tmp_path))
    first = prepare(dataset, 32, progress=False)
    built_at = first.path.stat().st_mtime_ns
    again = prepare(load_dataset(str(tmp_path)), 32, progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == built_at
    assert len(list((cache_dir / "images").glob("*.h5"))) == 1

    other_size = prepare(dataset, 16, progress=False)
    assert other_size.path != first.path and other_size.images("train").shape[1:] == (16, 16, 1)

    write_image(tmp_path / "a" / "a-0.png", seed=99)
    os.utime(tmp_path / "a" / "a-0.png", ns=(1, 1))
    changed = load_dataset(str(tmp_path))
    assert changed.fingerprint != dataset.fingerprint
    assert prepare(changed, 32, progress=False).path != first.path


def test_cached_pixels_match_the_files(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"a": 4, "b": 4})
    cached = prepare(load_dataset(str(tmp_path)), 24, progress=False)
    for split in ("train", "val", "test"):
        for record, image in zip(cached.records(split), cached.images(split), strict=True):
            expected = np.asarray(Image.open(record.path).convert("L").resize((24, 24), Image.Resampling.BILINEAR))
            assert np.abs(image[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_rgb_cache_has_three_channels(tmp_path: Path) -> None:
    for i in range(6):
        write_image(tmp_path / "ab"[i % 2] / f"{i}.png", seed=i, mode="RGB")
    cached = prepare(load_dataset(str(tmp_path)), 20, channels=3, progress=False)
    assert cached.images("train").shape[-1] == 3
    with pytest.raises(DataError, match="channels must be 1"):
        build_cache(cached.dataset.records, 20, channels=2)


def _build_in_child(records, queue) -> None:
    path = build_cache(records, 48, progress=False)
    with h5py.File(path, "r") as h5:
        queue.put((str(path), h5.attrs["builder"].endswith(f":{os.getpid()}")))


def test_two_concurrent_builders_share_one_build(tmp_path: Path) -> None:
    for i in range(120):
        write_image(tmp_path / "ab"[i % 2] / f"{i}.png", seed=i, size=(256, 256))
    records = load_dataset(str(tmp_path)).records
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(records, queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert results[0][0] == results[1][0]
    assert sorted(built for _, built in results) == [False, True]  # one built it, the other waited and reused it
    assert not list(Path(results[0][0]).parent.glob(".*tmp-*"))


def test_killed_build_leaves_no_cache_and_the_next_run_rebuilds(tmp_path: Path, cache_dir: Path) -> None:
    for i in range(200):
        write_image(tmp_path / "ab"[i % 2] / f"{i}.png", seed=i, size=(512, 512))
    script = (f"from runner.data import load_dataset, prepare; "
              f"prepare(load_dataset({str(tmp_path)!r}), 64, progress=False)")
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "CXR_RUNNER_CACHE": str(cache_dir)})
    images = cache_dir / "images"
    deadline = time.monotonic() + 60
    while not list(images.glob(".*.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list(images.glob(".*.tmp-*")), "the build should have been killed while writing its staging file"
    assert not list(images.glob("*.h5")), "a killed build must not leave a cache file readers could open"
    cached = prepare(load_dataset(str(tmp_path)), 64, progress=False)
    assert len(cached.skipped) == 0 and cached.images("train").shape[0] > 0
    assert not list(images.glob(".*.tmp-*"))


def _bad_inputs(root: Path) -> dict[str, str]:
    """Files that cannot be decoded, each with the message the user must see."""
    folder = root / "pneumonia"
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image")
    write_image(folder / "truncated.png", size=(64, 64))
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(0).integers(0, 255, 400,
                                                                                                      np.uint8)))
    return {"zero.png": "is empty (0 bytes)", "text.png": "not an image Pillow can read",
            "truncated.png": "corrupt or truncated", "corrupt.jpg": "corrupt or truncated"}


def test_bad_images_are_skipped_with_a_message_or_fail_under_strict(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "set", {"normal": 6, "pneumonia": 6})
    expected = _bad_inputs(tmp_path / "set")
    tmp_path = tmp_path / "set"
    dataset = load_dataset(str(tmp_path))
    cached = prepare(dataset, 32, progress=False, strict=False)
    messages = {Path(p.path).name: p.message for p in cached.skipped}
    assert set(messages) == set(expected)
    for name, text in expected.items():
        assert messages[name].startswith(str(tmp_path / "pneumonia" / name)) and text in messages[name]
    served = sum(len(cached.records(s)) for s in ("train", "val", "test"))
    assert served == 12
    with pytest.raises(DataError, match=r"\(4 unreadable images in all\)"):
        prepare(dataset, 32, progress=False, strict=True)


def test_16_bit_and_rgba_are_converted_not_rejected(tmp_path: Path) -> None:
    ramp = (np.linspace(1000, 5000, 40 * 40).reshape(40, 40)).astype(np.uint16)
    (tmp_path / "a").mkdir()
    Image.fromarray(ramp).save(tmp_path / "a" / "sixteen.png")
    assert Image.open(tmp_path / "a" / "sixteen.png").mode.startswith("I")
    write_image(tmp_path / "b" / "rgba.png", mode="RGBA", size=(40, 40))
    write_image(tmp_path / "b" / "plain.png", size=(40, 40))
    write_image(tmp_path / "a" / "plain.png", size=(40, 40))
    dataset = load_dataset({"path": str(tmp_path), "split": {"train": 1.0, "val": 0.0, "test": 0.0}})
    cached = prepare(dataset, 40, progress=False)
    assert not cached.skipped
    images = dict(zip([Path(r.path).name + r.label for r in cached.records("train")], cached.images("train"),
                      strict=True))
    sixteen = images["sixteen.pnga"][..., 0].astype(int)
    assert sixteen.min() == 0 and sixteen.max() == 255  # scaled by its own range, not clipped to black/white
    assert np.all(np.diff(sixteen[:, 20]) >= 0)


def test_masks_cached_and_mismatched_mask_skipped(tmp_path: Path) -> None:
    for i in range(5):
        write_image(tmp_path / "images" / f"{i}.png", seed=i, size=(40, 40))
        write_mask(tmp_path / "masks" / f"{i}.png", size=(40, 40), box=(0, 0, 20, 40))
    write_mask(tmp_path / "masks" / "4.png", size=(80, 80))
    dataset = load_dataset({"path": str(tmp_path), "split": {"train": 1.0, "val": 0.0, "test": 0.0}})
    cached = prepare(dataset, 20, progress=False)
    assert [Path(p.path).name for p in cached.skipped] == ["4.png"]
    assert "mask is 80x80 but its image" in cached.skipped[0].message
    assert "masks must match their image's size" in cached.skipped[0].message
    masks = cached.masks("train")
    assert masks.shape == (4, 20, 20, 1)
    assert set(np.unique(masks)) == {0, 255}
    assert masks[:, :, :10].min() == 255 and masks[:, :, 10:].max() == 0


def test_progress_bar_counts_every_image_of_a_sizeable_build_and_stays_quiet_for_a_small_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stderr is not a terminal here (as in a Ray trial's log): a build of PROGRESS_MIN_IMAGES images or more
    leaves one bar line with the full count, a smaller one prints nothing."""
    from runner.data.cache import PROGRESS_MIN_IMAGES

    make_class_folders(tmp_path / "big", {"a": PROGRESS_MIN_IMAGES // 2 + 1, "b": PROGRESS_MIN_IMAGES // 2})
    make_class_folders(tmp_path / "small", {"a": 4, "b": 4})
    total = PROGRESS_MIN_IMAGES + 1
    build_cache(load_dataset(str(tmp_path / "big")).records, 16)
    shown = capsys.readouterr().err
    assert "caching 16px images: 100%" in shown and f"{total}/{total}" in shown, shown
    build_cache(load_dataset(str(tmp_path / "small")).records, 16)
    assert "caching" not in capsys.readouterr().err


def test_a_running_build_says_how_far_it_is_in_a_file_other_processes_read(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two blocks of images, then one image that is a named pipe nobody has written yet: the build blocks on
    it, after writing the two blocks. Meanwhile its progress file says so (a sweep's live view, in another
    process, reads it); once the pipe delivers a real PNG the build ends and the file is gone. A file left by
    a killed build is ignored once it has not changed for ``PROGRESS_STALE_S``."""
    import threading

    from runner.data import Record, cache

    monkeypatch.setattr(cache, "PROGRESS_EVERY_S", 0.0)  # every block is written, so the count is exact
    folder = make_class_folders(tmp_path / "x", {"a": cache.WRITE_BLOCK, "b": cache.WRITE_BLOCK})
    pipe = tmp_path / "zz-last.png"  # sorts after every other file: decoded last
    os.mkfifo(pipe)
    records = [*load_dataset(str(folder)).records, Record(str(pipe), "b")]
    total = 2 * cache.WRITE_BLOCK + 1
    build = threading.Thread(target=build_cache, args=(records, 32), daemon=True)
    build.start()
    deadline = time.monotonic() + 30
    while cache.builds_in_progress() != [cache.BuildProgress(32, 2 * cache.WRITE_BLOCK, total)]:
        assert time.monotonic() < deadline, cache.builds_in_progress()
        time.sleep(0.05)
    write_image(tmp_path / "real.png")
    with open(pipe, "wb") as writer:
        writer.write((tmp_path / "real.png").read_bytes())
    build.join(timeout=120)
    assert not build.is_alive() and cache.builds_in_progress() == []
    assert not list((cache_dir / "images").glob(f"*{cache.PROGRESS_SUFFIX}"))

    killed = cache_dir / "images" / f"killed.h5{cache.PROGRESS_SUFFIX}"
    killed.write_text('{"image_size": 64, "done": 10, "total": 20}')
    assert cache.builds_in_progress() == [cache.BuildProgress(64, 10, 20)]
    old = time.time() - cache.PROGRESS_STALE_S - 1
    os.utime(killed, (old, old))
    assert cache.builds_in_progress() == []
