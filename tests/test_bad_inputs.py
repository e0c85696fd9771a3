"""Every kind of bad input, from ``tests/data/bad/`` (written by ``bad_corpus``), gets its documented
behaviour (README, "What happens with bad input"): an unusable file is skipped with a counted warning naming
it (an error under ``strict``); a 16-bit, RGBA or huge image is converted; anything else is one error line
naming the file or key and what to do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_corpus import HUGE_SIDE, rgba_pixels, write_corpus
from PIL import Image

from runner.cli import main
from runner.data import load_dataset, prepare
from runner.data.images import load_image
from runner.errors import ConfigError, DataError
from runner.sweep.space import load_sweep


@pytest.fixture(scope="session")
def bad_corpus() -> dict[str, Path]:
    return write_corpus()


def _task_of(item: str) -> str:
    return "pneumothorax" if "mask" in item else "pneumonia"


def _load(path: Path, task: str, **options):
    from runner.task import TASKS

    spec = {"path": str(path), **options}
    definition = TASKS.get(task)
    return load_dataset(spec, expected_classes=definition.expected_classes,
                        need_two_classes=definition.need_two_classes)


SKIPPED = {
    "corrupt_jpeg": ("pneumonia/corrupt.jpg", "image is corrupt or truncated (broken data stream"),
    "corrupt_jpeg_header": ("pneumonia/header.jpg", "image starts like a JPEG but is corrupt or truncated"),
    "truncated_png": ("pneumonia/truncated.png", "image is corrupt or truncated (image file is truncated)"),
    "zero_byte": ("pneumonia/empty.png", "image file is empty (0 bytes): replace or remove it"),
    "text_as_png": ("pneumonia/notes.png", "not an image Pillow can read (wrong extension or not an image)"),
    "too_many_pixels": ("pneumonia/large.png", "image is 12000x9000, above the limit of 100,000,000 pixels"),
    "decompression_bomb": ("pneumonia/bomb.png", "image is over 200,000,000 pixels, above the limit of "
                                                 "100,000,000 pixels"),
    "missing_mask": ("images/unmasked.png", "no mask for this image: add masks/unmasked.png or remove the image"),
    "mask_other_size": ("images/odd.png", "mask is 80x80 but its image"),
}


@pytest.mark.parametrize("item", SKIPPED)
def test_unusable_file_is_skipped_counted_and_named(item: str, bad_corpus: dict[str, Path], capsys) -> None:
    relative, text = SKIPPED[item]
    root = bad_corpus[item]
    dataset = _load(root, _task_of(item))
    cached = prepare(dataset, 32, progress=False)
    skipped = dataset.problems + cached.skipped
    assert [p.path for p in skipped] == [str(root / relative)]
    assert str(skipped[0]).startswith(str(root / relative)) and text in str(skipped[0])
    assert sum(len(cached.records(s)) for s in ("train", "val", "test")) == len(dataset.records) - len(cached.skipped)

    assert main(["data", "check", str(root), "--task", _task_of(item)]) == 0
    out = capsys.readouterr().out
    assert "1 files skipped:" in out and f"  {skipped[0]}" in out
    with pytest.raises(DataError, match=re.escape(text)):
        prepare(_load(root, _task_of(item), strict=True), 32, progress=False)


def test_16_bit_png_is_scaled_by_its_range_not_clipped(bad_corpus: dict[str, Path]) -> None:
    """12 bits of signal in 16: clipping to 8 bits would give all-white, a >> 8 shift nearly all-black."""
    pixels, info = load_image(str(bad_corpus["png_16bit"] / "pneumonia" / "sixteen.png"), 48)
    row = pixels[20, :, 0].astype(int)
    assert (info.width, info.height) == (48, 40)
    assert row.min() == 0 and row.max() == 255 and np.all(np.diff(row) >= 0)
    assert not _load(bad_corpus["png_16bit"], "pneumonia").problems


def test_rgba_png_becomes_the_grayscale_of_its_colours(bad_corpus: dict[str, Path]) -> None:
    pixels, _ = load_image(str(bad_corpus["rgba_png"] / "pneumonia" / "rgba.png"), 48)
    expected = np.asarray(Image.fromarray(rgba_pixels()[..., :3]).convert("L").resize((48, 48), Image.BILINEAR))
    assert np.abs(pixels[..., 0].astype(int) - expected.astype(int)).max() <= 1
    dataset = _load(bad_corpus["rgba_png"], "pneumonia")
    assert not prepare(dataset, 32, progress=False).skipped


def test_huge_image_is_decoded_with_at_most_one_copy_in_memory(bad_corpus: dict[str, Path], capsys) -> None:
    """A 10,000 x 10,000 16-bit PNG is 200 MB decoded. Converting it before shrinking took 2.5 GB (float64
    copies); shrinking first in its own mode keeps the peak near the decoded size. Measured in a fresh process
    (peak resident memory is per process)."""
    path = bad_corpus["huge_image"] / "pneumonia" / "huge.png"
    probe = ("import resource, sys\nfrom runner.data.images import load_image\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             f"pixels, info = load_image({str(path)!r}, 64)\n"
             "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
             "print(peak // 1024, info.width, info.height, pixels.min(), pixels.max())\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    peak_mb, width, height, low, high = map(int, run.stdout.split())
    decoded_mb = HUGE_SIDE * HUGE_SIDE * 2 / 2**20
    assert (width, height, low, high) == (HUGE_SIDE, HUGE_SIDE, 0, 255)
    assert peak_mb < 1.5 * decoded_mb, f"decoding took {peak_mb} MB for a {decoded_mb:.0f} MB image"
    assert main(["data", "check", str(bad_corpus["huge_image"]), "--task", "pneumonia"]) == 0
    assert "to 10000x10000 px" in capsys.readouterr().out


DATA_ERRORS = {
    "empty_class_folder": r"^class folder {root}/covid has no \.png/\.jpg/\.jpeg/\.tif/\.tiff images: add images or "
                          r"remove the folder$",
    "single_class": r"^{root}: class 'pneumonia' has no images: add images of it or drop it with data\.classes$",
    "manifest_missing_column": r"^{root}/manifest\.csv has no label column \(looked for label\): set label_column "
                               r"to one of path$",
    "manifest_unknown_label": r"^{root}/images/normal/normal-0\.png: label 'pnuemonia' is not one of normal, "
                              r"pneumonia \(1 such images\): map it with data\.label_map",
    "manifest_path_escape": r"^{root}/manifest\.csv:18: path '\.\./outside\.png' escapes the data root {root}: fix "
                            r"the path, or set allow_outside_root: true",
}


@pytest.mark.parametrize("item", DATA_ERRORS)
def test_bad_data_set_is_one_error_naming_the_file(item: str, bad_corpus: dict[str, Path]) -> None:
    root = bad_corpus[item].parent if item.startswith("manifest") else bad_corpus[item]
    with pytest.raises(DataError) as error:
        _load(bad_corpus[item], "pneumonia")
    assert re.search(DATA_ERRORS[item].format(root=re.escape(str(root))), str(error.value)), str(error.value)
    assert "\n" not in str(error.value)


def test_escaping_manifest_path_loads_when_allowed(bad_corpus: dict[str, Path]) -> None:
    dataset = _load(bad_corpus["manifest_path_escape"], "pneumonia", allow_outside_root=True)
    assert str(bad_corpus["manifest_path_escape"].parents[1] / "outside.png") in {r.path for r in dataset.records}


SWEEP_ERRORS = {
    "sweep_typo_key": "key 'epoch' is not a setting of task 'pneumonia' with model 'baseline': choose from "
                      "augment, batch_size",
    "sweep_typo_top_key": "unknown key 'num_sample' (did you mean 'num_samples'?): choose from checkpoint_every, data",
    "sweep_empty_range": "'space.learning_rate' is not a valid float range (`low <= high` must hold",
    "sweep_empty_choices": "'space.batch_size' is not a valid categorical range (choices must be a non-empty list)",
    "sweep_negative_learning_rate": "fixed (task 'pneumonia', model 'baseline'): learning_rate=-0.001 must be a "
                                    "number > 0",
    "sweep_negative_learning_rate_range": "space.learning_rate = -0.1 (task 'pneumonia', model 'baseline'): "
                                          "learning_rate=-0.1 must be a number > 0",
    "sweep_image_below_model_minimum": "fixed (task 'pneumonia', model 'inception_v3'): image_size=64 does not "
                                       "fit: model 'inception_v3' needs images of at least 75x75 pixels",
    "sweep_unknown_model": "unknown model 'resnet50' in models: choose from baseline",
    "sweep_unknown_task": "unknown task 'tuberculosis' in tasks: choose from anomaly, covid, pneumonia",
}


@pytest.mark.parametrize("item", SWEEP_ERRORS)
def test_bad_search_space_fails_on_load_naming_file_and_key(item: str, bad_corpus: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as error:
        load_sweep(str(bad_corpus[item]))
    assert str(error.value).startswith(f"{bad_corpus[item]}: ") and SWEEP_ERRORS[item] in str(error.value)


@pytest.mark.parametrize("item", ["sweep_typo_key", "sweep_image_below_model_minimum", "sweep_unknown_model"])
def test_sweep_command_prints_one_error_line_before_ray_starts(item: str, bad_corpus: dict[str, Path],
                                                               tmp_path: Path, capsys) -> None:
    assert main(["sweep", str(bad_corpus[item]), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad_corpus[item]}: ") and SWEEP_ERRORS[item] in err
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "pneumonia", "--model", "resnet50"], "error: unknown model 'resnet50': choose one of baseline"),
    (["--task", "tuberculosis", "--model", "baseline"], "error: unknown task 'tuberculosis': choose one of anomaly"),
    (["--task", "pneumonia", "--model", "baseline", "--set", "learning_rate=-0.001"],
     "error: learning_rate=-0.001 must be a number > 0"),
    (["--task", "covid", "--model", "inception_v3", "--set", "image_size=64"],
     "error: image_size=64 does not fit: model 'inception_v3' needs images of at least 75x75 pixels"),
])
def test_train_command_exits_2_with_one_error_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["train", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err
    assert not any(tmp_path.iterdir())


def test_the_real_command_exits_2_without_a_traceback(bad_corpus: dict[str, Path], tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(bad_corpus["sweep_negative_learning_rate"]),
                          "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (f"error: {bad_corpus['sweep_negative_learning_rate']}: "
                                                   f"{SWEEP_ERRORS['sweep_negative_learning_rate']}")
