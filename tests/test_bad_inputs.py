"""Every kind of bad input, from the corpus ``bad_corpus`` writes to a temporary folder, gets its documented
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
from runner.data import prepare
from runner.data.images import load_image
from runner.errors import ConfigError, DataError
from runner.sweep.assemble import load_sweep


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("bad"))


def _task_of(item: str) -> str:
    return "pneumothorax" if "mask" in item else "pneumonia"


def _load(path: Path, task: str, **options):
    from runner.tasks import TASKS

    return TASKS.get(task).load_data({"path": str(path), **options})


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
    "empty_class_folder": r"^class folder {root}/covid has no \.png/\.jpg/\.jpeg/\.tif/\.tiff images or DICOM files: "
                          r"add images or remove the folder$",
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
    "sweep_unknown_task": "unknown task 'tuberculosis' in tasks: choose from anomaly, covid, findings, pneumonia",
}


@pytest.mark.parametrize("item", SWEEP_ERRORS)
def test_bad_search_space_fails_on_load_naming_file_and_key(item: str, bad_corpus: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as error:
        load_sweep(str(bad_corpus[item]))
    assert str(error.value).startswith(f"{bad_corpus[item]}: ") and SWEEP_ERRORS[item] in str(error.value)


@pytest.mark.parametrize("item", ["sweep_typo_key", "sweep_image_below_model_minimum", "sweep_unknown_model"])
def test_sweep_command_prints_one_error_line_before_ray_starts(item: str, bad_corpus: dict[str, Path],
                                                               tmp_path: Path, capfd) -> None:
    assert main(["sweep", str(bad_corpus[item]), "--results", str(tmp_path)]) == 2
    shown = capfd.readouterr()  # the sweep console writes to file descriptor 1 itself
    err = shown.err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad_corpus[item]}: ") and SWEEP_ERRORS[item] in err
    assert not (tmp_path / "tune").exists()
    assert not list(tmp_path.glob("sweeps/*.log"))  # a refused sweep leaves no log
    assert "log:" not in shown.out  # and names none


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


# --- data and results: every other class of bad data, end to end through the command line ---

#: case ("item" or "item:variant") -> (task, --set values, exit code, lines: each a regex for one whole line of
#: the output, where {path} is the item's path and {root} its folder). Exit 0: the lines are in stdout, no error
#: line; exit 2: stderr is exactly the one line.
CHECKS = {
    "mask_encodings": ("pneumothorax", [], 0, [
        r"warning: 1 images labelled positive \(not 'normal'\) have an empty mask: {root}/images/empty-positive\.png; "
        r"check how the masks were read \(the 'masks:' line, data\.mask_threshold\) or fix their labels"]),
    "exif_rotated": ("pneumonia", [], 0, [r"image sizes: 30x40 to 48x60 px \(jpeg, png\)"]),  # upright: 30 wide
    "degenerate_images": ("pneumonia", [], 0, [
        r"files: 18 found, 18 used, 0 ignored",
        r"warning: 2 degenerate images \(under 16 px on a side or over 10:1\), used but squashed to a square they "
        r"show nothing: {root}/normal/dot\.png \(1x1\), {root}/pneumonia/strip\.png \(10x50000\); remove or crop "
        r"them"]),
    "copy_across_splits": ("pneumonia", [], 2, [
        r"error: {root}/test/pneumonia/copy\.png \(test\) and {root}/train/pneumonia/pneumonia-1\.png \(train\) are "
        r"byte-identical: the same image in two splits leaks it into evaluation \(images with a copy in another "
        r"split: 1\): remove one copy, or give both the same patient_id so the split keeps them together"]),
    "copy_within_split": ("pneumonia", [], 0, [
        r"warning: 1 images are byte-identical copies of another image in the same split, so they count twice in "
        r"training and metrics: {root}/train/normal/copy\.png = {root}/train/normal/normal-0\.png; remove the copies"]),
    "manifest_duplicate_row": ("pneumonia", [], 0, [
        r"files: 17 found, 17 used, 0 ignored",
        r"warning: 1 duplicate rows removed \(first: manifest\.csv line 18 repeats line 2\)"]),
    "manifest_two_labels": ("pneumonia", [], 2, [
        r"error: {root}/images/normal/normal-3\.png is listed twice with conflicting labels 'normal' "
        r"\({path}:5\) and 'pneumonia' \({path}:18\): keep one row with the right one"]),
    "split_lists_leak": ("pneumonia", [], 2, [
        r"error: {root}/a2\.png is in two splits, train \({root}/train\.txt:3\) and test \({root}/test\.txt:5\): one "
        r"image in two splits leaks it into its own evaluation \(image-level leakage\); keep one row"]),
    "split_lists": ("pneumonia", [], 0, [rf"  {s:5s}      4 images,    no patient ids: normal 2, pneumonia 2"
                                         for s in ("train", "val", "test")]),
    "two_per_class": ("pneumonia", [], 2, [
        r"error: split '(train|val|test)' has no '(normal|pneumonia)' images \(2 patient groups of them in the data "
        r"set\): add more images of that class, change the data\.split ratios, or give the split yourself \(a split "
        r"column, train/val/test folders or list files\)"]),
    "kaggle_folders": ("pneumonia", [], 0, [
        r"  train      7 images,    no patient ids: normal 4, pneumonia 3",  # Train/NORMAL/sixteen.tif is the 4th
        r"  val        6 images,    no patient ids: normal 3, pneumonia 3",  # valid/
        r"image sizes: 48x40 to 48x40 px \(png, tiff\)",
        r"files: 21 found, 20 used, 1 ignored \(by reason: 1 not an image file \(\.png/\.jpg/\.jpeg/\.tif/\.tiff or "
        r"DICOM\)\)",
        r"  ignored, not an image file \(\.png/\.jpg/\.jpeg/\.tif/\.tiff or DICOM\): {root}/Test/PNEUMONIA/notes\.txt",
        r"  {root}/Train/NORMAL/scan\.dcm: DICOM file is corrupt or truncated \(no SOP class and no pixel data after "
        r"the DICM header\): replace or remove it"]),
    "class_all_corrupt": ("pneumonia", [], 2, [
        r"error: {root}: class 'pneumonia' has no usable image: none of its 3 images could be decoded \(first: "
        r"{root}/pneumonia/bad-0\.png: image starts like a PNG but is corrupt or truncated .*\); replace them, or "
        r"drop the class with data\.classes"]),
    "split_class_all_corrupt": ("pneumonia", [], 2, [
        r"error: {root}: split 'val' has no usable 'pneumonia' images: none of its 3 could be decoded \(first: "
        r"{root}/val/pneumonia/pneumonia-0\.png: image file is empty \(0 bytes\): replace or remove it\); replace "
        r"them, or re-split \(data\.split\) so every split keeps one"]),
    "split_class_all_corrupt:anomaly": ("anomaly", [], 2, [
        r"error: {root}: split 'val' has no usable images of a class other than 'normal': none of its 3 could be "
        r"decoded \(first: {root}/val/pneumonia/pneumonia-0\.png: .*"]),
    "manifest_semicolon": ("pneumonia", [], 2, [
        r"error: {path}: the header 'path;label;patient_id' looks semicolon-delimited \(';'\), not ',': save it as a "
        r"comma-separated CSV or set the data option delimiter: ';'"]),
    "manifest_xlsx": ("covid", [], 2, [
        r"error: {path} is a spreadsheet workbook, not a CSV: save it as CSV UTF-8 \(comma-separated\) and pass the "
        r"\.csv"]),
    "manifest_semicolon:delimiter": ("pneumonia", ["delimiter=;"], 0, [r"files: 17 found, 17 used, 0 ignored"]),
    "manifest_symlink_loop": ("pneumonia", [], 0, [
        r"1 files skipped:",
        r"  {root}/images/loop/a\.png: \({path}:18\) cannot follow the path \(Symlink loop from .*\): fix the "
        r"symlink or remove its row"]),
    "data_path_missing": ("pneumonia", [], 2, [r"error: data path {path} does not exist: check the path .*"]),
    "good_class_folders:split": ("pneumonia", ["split.train=abc"], 2, [
        r"error: data\.split\.train must be a number, got 'abc'"]),
    "good_class_folders:label_map": ("pneumonia", ["label_map=normal"], 2, [
        r"error: data\.label_map must be a mapping of label -> class \(or null to drop\), got 'normal'.*"]),
    "good_class_folders:patient_regex": ("pneumonia", ["patient_regex=(IM-"], 2, [
        r"error: data\.patient_regex '\(IM-' is not a valid regular expression \(missing \), unterminated "
        r"subpattern at position 0\).*"]),
}


#: The CHECKS cases that skip a file (a symlink loop, a DICOM header without an image); the others skip none.
SKIPPING = ("manifest_symlink_loop", "kaggle_folders")


@pytest.mark.parametrize("case", CHECKS)
def test_data_check_reads_or_refuses_each_bad_data_set(case: str, bad_corpus: dict[str, Path], capsys) -> None:
    task, sets, code, lines = CHECKS[case]
    path = bad_corpus[case.split(":")[0]]
    root = path if path.is_dir() else path.parent
    assert main(["data", "check", str(path), "--task", task, *(f"--set={s}" for s in sets)]) == code
    out, err = capsys.readouterr()
    expected = [re.compile(line.format(path=re.escape(str(path)), root=re.escape(str(root)))) for line in lines]
    if code == 2:
        assert out == "" and err.count("\n") == 1 and expected[0].fullmatch(err.rstrip("\n")), err
    else:
        assert err == "" and "\nerror: " not in out and ("files skipped:" in out) == (case in SKIPPING)
        for line in expected:
            assert any(line.fullmatch(printed) for printed in out.splitlines()), (line.pattern, out)


def _cached(path: Path, task: str):
    from runner.tasks import TASKS

    return prepare(TASKS.get(task).load_data(str(path)), 64, progress=False)


def test_masks_in_every_encoding_give_their_foreground_and_check_says_how(bad_corpus: dict[str, Path],
                                                                         capsys) -> None:
    from bad_corpus import EMPTY_POSITIVE, MASK_ENCODINGS, NORMAL_MASKS, mask_truth

    root = bad_corpus["mask_encodings"]
    assert main(["data", "check", str(root), "--task", "pneumothorax"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("masks: read "))
    read = dict(reversed(part.split(" as ", 1)) for part in line.removeprefix("masks: read ").split(";")[0].split(", "))
    assert read == {"empty grey": str(NORMAL_MASKS + 1), **dict.fromkeys(MASK_ENCODINGS.values(), "1")}, line
    cached = _cached(root, "pneumothorax")  # 64 px: the size data check cached at, and the masks' own
    by_name = {Path(r.path).name: m[..., 0] for r, m in zip(cached.records(None), cached.masks(None), strict=True)}
    fractions = dict(zip((Path(r.path).name for r in cached.valid_records()),
                         cached.columns("mask_fraction")["mask_fraction"], strict=True))
    decoded = np.asarray(Image.open(root / "masks" / "jpeg.jpg"))
    assert 0 < decoded[~mask_truth(list(MASK_ENCODINGS).index("jpeg"))].max() < 128  # noise a non-zero rule counts
    for i, name in enumerate(MASK_ENCODINGS):
        truth = decoded > 127 if name == "jpeg" else mask_truth(i)
        assert np.count_nonzero(by_name[f"{name}.png"]) == np.count_nonzero(truth), name
        assert np.array_equal(by_name[f"{name}.png"], truth.astype(np.uint8) * 255), name
        assert fractions[f"{name}.png"] == pytest.approx(truth.mean()), name
    assert not by_name[EMPTY_POSITIVE].any() and fractions[EMPTY_POSITIVE] == 0
    assert {Path(r.path).name: r.label for r in cached.valid_records()}[EMPTY_POSITIVE] == "pneumothorax"


def test_exif_rotated_image_is_decoded_upright(bad_corpus: dict[str, Path]) -> None:
    """Orientation 6 (rotate 90 degrees clockwise to view): the stored dark left half is the upright top, the
    white top-left corner the upright top right."""
    from bad_corpus import exif_quadrants

    cached = _cached(bad_corpus["exif_rotated"], "pneumonia")
    names = [Path(r.path).name for r in cached.valid_records()]
    index = names.index("rotated.jpg")
    metadata = cached.metadata()
    assert (metadata["width"][index], metadata["height"][index]) == (30, 60)
    pixels = dict(zip((Path(r.path).name for r in cached.records(None)), cached.images(None), strict=True))
    pixels = pixels["rotated.jpg"][..., 0].astype(int)
    assert pixels[:24, :40].mean() < 60 and pixels[-24:].mean() > 180 and pixels[0, -1] > 230 and pixels[0, 0] < 60
    upright = Image.fromarray(np.ascontiguousarray(np.rot90(exif_quadrants(), -1))).resize((64, 64), Image.BILINEAR)
    assert np.abs(pixels - np.asarray(upright, dtype=int)).mean() < 4


def test_leaderboard_skips_a_foreign_parquet_naming_it_and_lists_the_good_rows(bad_corpus: dict[str, Path],
                                                                               capsys) -> None:
    from bad_corpus import GOOD_TRIAL_ID

    results = bad_corpus["leaderboard_foreign_parquet"]
    with pytest.warns(UserWarning) as caught:
        assert main(["leaderboard", "--results", str(results)]) == 0
    assert [str(w.message) for w in caught] == [
        f"skipping leaderboard file {results}/leaderboard/s1/other-tool.parquet: not a leaderboard row: no column "
        "schema_version, sweep_id, sweep_name, trial_id, status, error, task, model; move it out of the leaderboard "
        "folder"]
    out = capsys.readouterr().out
    assert re.search(rf"^ +1 +demo_sweep +{GOOD_TRIAL_ID} +completed +pneumonia ", out, re.M), out
    assert out.rstrip().endswith("1 of 1 trials")



@pytest.mark.parametrize("argv", [["leaderboard", "--results"], ["data", "demo", "--out"]])
def test_a_file_given_as_the_results_folder_is_one_argparse_error(argv: list[str], bad_corpus: dict[str, Path],
                                                                  capsys) -> None:
    file = bad_corpus["results_is_a_file"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, str(file)])
    assert exit_.value.code == 2 and file.read_text() == "not a folder"
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: argument {argv[-1]}: {file} is a file, not a folder: give a folder (it is created if missing)")

SWEEP_METRIC_ERRORS = {
    "sweep_metric_mode_contradiction": r"mode max contradicts metric 'val_loss', which is better when lower: set "
                                       r"mode: min, or leave mode out",
    "sweep_metric_not_reported": r"metric 'val_f2' is not a validation metric every trial of pneumonia reports: "
                                 r"choose objective \(each task's own\) or one of val_loss, val_accuracy, .*",
}


@pytest.mark.parametrize("item", SWEEP_METRIC_ERRORS)
def test_sweep_metric_it_would_not_optimise_is_one_error_in_dry_run(item: str, bad_corpus: dict[str, Path],
                                                                   capsys) -> None:
    path = bad_corpus[item]
    assert main(["sweep", str(path), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and re.fullmatch(f"error: {re.escape(str(path))}: {SWEEP_METRIC_ERRORS[item]}",
                                                 err.rstrip("\n")), err
    assert "dry run: every check passed" not in out
