"""Bad records at listing time: rows listed twice, one file with two labels or in two splits, splits that
cannot hold the task's classes, files a layout does not read (each accounted for, with its reason), data
options of the wrong type, and messages that must say what is really wrong (README, "What happens with bad
input"). Real files, no pixels decoded except where ``data check`` runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, write_image, write_mask
from PIL import Image

from runner.cli import main
from runner.data import load_dataset, parse_data_spec
from runner.errors import ConfigError, DataError
from runner.overrides import parse_overrides
from runner.tasks import TASKS

BINARY = TASKS.get("pneumonia").split_needs()
ANOMALY = TASKS.get("anomaly").split_needs()


def _manifest(root: Path, rows: list[str], header: str = "file,label,patient_id", name: str = "manifest.csv",
              images: int = 6) -> Path:
    """``images`` normal and pneumonia images under root/img, and a manifest of ``rows``."""
    for i in range(images):
        write_image(root / "img" / f"n{i}.png", seed=i)
        write_image(root / "img" / f"p{i}.png", seed=100 + i)
    csv = root / name
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def _good_rows(images: int = 6) -> list[str]:
    return [f"img/n{i}.png,normal,pn{i}" for i in range(images)] + [f"img/p{i}.png,pneumonia,pp{i}"
                                                                   for i in range(images)]


# --- duplicates and conflicts ---

def test_exact_duplicate_rows_are_removed_with_a_counted_warning(tmp_path: Path) -> None:
    rows = _good_rows()
    csv = _manifest(tmp_path, [rows[0], *rows[1:], rows[0], "./img/p1.png,pneumonia,pp1"])
    dataset = load_dataset(str(csv))
    assert len(dataset.records) == 12
    assert dataset.warnings == ["2 duplicate rows removed (first: manifest.csv line 14 repeats line 2)"]


def test_same_file_with_two_labels_is_an_error_naming_both(tmp_path: Path) -> None:
    csv = _manifest(tmp_path, [*_good_rows(), "img/./n3.png,pneumonia,pn3"])
    with pytest.raises(DataError) as error:
        load_dataset(str(csv))
    assert str(error.value) == (f"{tmp_path}/img/n3.png is listed twice with conflicting labels 'normal' "
                                f"({csv}:5) and 'pneumonia' ({csv}:14): keep one row with the right one")


def test_symlinked_file_in_two_class_folders_is_a_label_conflict(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 4, "pneumonia": 4})
    (tmp_path / "pneumonia" / "alias.png").symlink_to(tmp_path / "normal" / "normal-1.png")
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path}/normal/normal-1.png is listed twice with conflicting labels 'normal' "
            f"({tmp_path}/normal/normal-1.png) and 'pneumonia' ({tmp_path}/pneumonia/alias.png)")):
        load_dataset(str(tmp_path))


def test_same_image_in_two_split_lists_is_image_level_leakage(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / f"a{i}.png", seed=i)
    (tmp_path / "train.txt").write_text("a0.png normal\na1.png pneumonia\na2.png normal\n")
    (tmp_path / "test.txt").write_text("a3.png pneumonia\na2.png normal\n")
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path))
    assert str(error.value) == (f"{tmp_path}/a2.png is in two splits, train ({tmp_path}/train.txt:3) and test "
                                f"({tmp_path}/test.txt:2): one image in two splits leaks it into its own "
                                "evaluation (image-level leakage); keep one row")


def test_repeated_siim_row_is_one_region_not_two(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.png", size=(8, 8))
    (tmp_path / "rle.csv").write_text("ImageId,EncodedPixels\na,1 3\na,1 3\na,10 2\nb,-1\nb,-1\nc,-1\n")
    dataset = load_dataset(str(tmp_path / "rle.csv"))
    by_name = {Path(r.path).stem: r.mask_rle for r in dataset.records}
    assert by_name == {"a": "relative:1 3|10 2", "b": "relative:", "c": "relative:"}
    assert dataset.warnings == ["2 duplicate rows removed (first: rle.csv line 3 repeats line 2)"]


def test_image_masks_manifest_with_two_labels_for_one_image_is_an_error(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_image(tmp_path / "images" / f"{name}.png")
        write_mask(tmp_path / "masks" / f"{name}.png")
    (tmp_path / "manifest.csv").write_text("file,label,patient_id\na.png,normal,p1\nb.png,covid,p2\n"
                                           "images/a.png,covid,p1\n")
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path))
    assert str(error.value) == (f"{tmp_path}/manifest.csv: a.png is listed twice with conflicting label 'normal' "
                                "(line 2) and 'covid' (line 4): keep one row with the right one")


def test_data_check_prints_the_duplicate_warning(tmp_path: Path, capsys) -> None:
    rows = _good_rows()
    csv = _manifest(tmp_path, [*rows, rows[4]])
    assert main(["data", "check", str(csv), "--task", "pneumonia"]) == 0
    assert "warning: 1 duplicate rows removed (first: manifest.csv line 14 repeats line 6)" in capsys.readouterr().out


# --- splits that cannot hold the classes ---

def test_two_images_per_class_cannot_fill_three_splits(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2})
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path), expected_classes=("normal", "pneumonia"), split_needs=BINARY)
    assert str(error.value) == ("split 'train' has no 'normal' images (2 patient groups of them in the data set): "
                                "add more images of that class, change the data.split ratios, or give the split "
                                "yourself (a split column, train/val/test folders or list files)")
    assert len(load_dataset(str(tmp_path)).records) == 4  # no task known: accepted as before


def test_three_groups_per_class_put_every_class_in_every_split(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3, "pneumonia": 3})
    dataset = load_dataset(str(tmp_path), expected_classes=("normal", "pneumonia"), split_needs=BINARY)
    assert dataset.counts() == {s: {"normal": 1, "pneumonia": 1} for s in ("train", "val", "test")}


def test_given_split_without_a_class_is_an_error(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3, "pneumonia": 3}, split="train")
    make_class_folders(tmp_path, {"normal": 2}, split="test", seed=1)
    with pytest.raises(DataError, match=r"^split 'test' has no 'pneumonia' images \(3 patient groups"):
        load_dataset(str(tmp_path), expected_classes=("normal", "pneumonia"), split_needs=BINARY)


def test_anomaly_val_and_test_need_an_abnormal_image(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 9, "pneumonia": 1})
    with pytest.raises(DataError, match=r"^split '(val|test)' has no images of a class other than 'normal' "
                                        r"\(1 patient groups"):
        load_dataset(str(tmp_path), need_two_classes=True, split_needs=ANOMALY)
    assert TASKS.get("pneumothorax").split_needs() == {}


def test_the_anomaly_task_reads_kaggles_upper_case_normal_folder_as_its_normal_class(tmp_path: Path) -> None:
    """Kaggle's chest_xray has NORMAL/ and PNEUMONIA/. The anomaly task takes any label, so its labels were
    kept as written, and no image was ``normal``: the error said a split lacked normal images (0 of them)."""
    make_class_folders(tmp_path, {"NORMAL": 6, "PNEUMONIA": 3, "COVID19": 3})
    dataset = TASKS.get("anomaly").load_data(str(tmp_path))
    assert dataset.classes == ("COVID19", "normal", "pneumonia")
    assert {s: counts["normal"] for s, counts in dataset.counts().items()} == {"train": 4, "val": 1, "test": 1}


def test_a_data_set_without_the_normal_label_says_to_map_one(tmp_path: Path, capsys) -> None:
    make_class_folders(tmp_path, {"Healthy": 6, "Sick": 6})
    assert main(["data", "check", str(tmp_path), "--task", "anomaly"]) == 2
    assert capsys.readouterr().err == (
        "error: the data set has no 'normal' images, which split 'train' needs (its labels: Healthy, Sick): add "
        "some, or map a label to it with data.label_map (e.g. {Healthy: normal})\n")
    assert main(["data", "check", str(tmp_path), "--task", "anomaly", "--set", "label_map={Healthy: normal}"]) == 0


def test_data_check_refuses_splits_missing_a_class(tmp_path: Path, capsys) -> None:
    make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2})
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia"]) == 2
    assert "error: split 'train' has no 'normal' images" in capsys.readouterr().err


def test_small_demo_still_loads_for_every_task_kind() -> None:
    for needs in (BINARY, ANOMALY):
        dataset = load_dataset({"layout": "demo", "n": 60, "size": 32}, split_needs=needs)
        assert {s: sorted(c) for s, c in dataset.counts().items()} == {
            s: ["normal", "pneumonia"] for s in ("train", "val", "test")}


# --- every file accounted for ---

def _sixteen_bit_tiff(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint16) * 1000, (40, 1))).save(path)


def _kaggle_like(root: Path) -> Path:
    for seed, split in enumerate(("Train", "valid", "Test")):  # other pixels per split: no leak between them
        make_class_folders(root, {"NORMAL": 3, "PNEUMONIA": 3}, split=split, seed=seed)
    _sixteen_bit_tiff(root / "Train" / "NORMAL" / "sixteen.tif")
    (root / "Train" / "NORMAL" / "scan.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (root / "Test" / "PNEUMONIA" / "notes.txt").write_text("reader notes")
    (root / "Test" / ".DS_Store").write_bytes(b"\0\0")
    write_image(root / "stray.png")
    return root


def test_kaggle_folders_any_case_and_valid_are_splits_and_every_file_is_accounted(tmp_path: Path) -> None:
    root = _kaggle_like(tmp_path)
    dataset = load_dataset(str(root), expected_classes=("normal", "pneumonia"), split_needs=BINARY)
    assert dataset.counts() == {"train": {"normal": 5, "pneumonia": 3}, "val": {"normal": 3, "pneumonia": 3},
                                "test": {"normal": 3, "pneumonia": 3}}
    assert str(root / "Train" / "NORMAL" / "sixteen.tif") in {r.path for r in dataset.records}
    assert dataset.files_found == 23
    assert sorted((Path(i.path).relative_to(root).as_posix(), i.reason) for i in dataset.ignored) == [
        ("Test/.DS_Store", "hidden file or folder"),
        ("Test/PNEUMONIA/notes.txt", "not an image file (.png/.jpg/.jpeg/.tif/.tiff or DICOM)"),
        ("stray.png", "image outside the class folders (ROOT/<class>/ or ROOT/<split>/<class>/)"),
    ]


def test_data_check_counts_every_file_and_decodes_the_tiff(tmp_path: Path, capsys) -> None:
    root = _kaggle_like(tmp_path)
    assert main(["data", "check", str(root), "--task", "pneumonia"]) == 0
    out = capsys.readouterr().out
    assert ("files: 23 found, 20 used, 3 ignored (by reason: 1 hidden file or folder, 1 image outside the class "
            "folders") in out
    assert f"1 files skipped:\n  {root}/Train/NORMAL/scan.dcm: DICOM file is corrupt or truncated" in out
    assert "tiff" in out  # the 16-bit TIFF decoded, its type in the sizes line


def test_manifest_accounts_for_unlisted_and_dropped_files(tmp_path: Path) -> None:
    rows = [*_good_rows()[:-1], "img/p5.png,covid,px"]
    (tmp_path / "img" / "sub").mkdir(parents=True)
    (tmp_path / "img" / "sub" / "loop.png").symlink_to(tmp_path / "img" / "sub" / "loop.png")
    csv = _manifest(tmp_path, rows, images=7)
    dataset = load_dataset({"path": str(csv), "classes": ["normal", "pneumonia"]})
    ignored = sorted((Path(i.path).name, i.reason) for i in dataset.ignored)
    assert ignored == [("loop.png", "broken or looping symlink"),
                       ("n6.png", "image not listed in manifest.csv (or filtered out)"),
                       ("p5.png", "label 'covid' not in data.classes"),
                       ("p6.png", "image not listed in manifest.csv (or filtered out)")]
    assert dataset.files_found == 16 and len(dataset.records) == 11


# --- option types, before anything is read ---

OPTION_ERRORS = {
    "split.train=abc": "data.split.train must be a number, got 'abc'",
    "split=0.8": "data.split must be a mapping such as {train: 0.8, val: 0.1, test: 0.1}, got 0.8",
    "split.use_given=maybe": "data.split.use_given must be true or false, got 'maybe'",
    "split.seed=-1": "data.split.seed must be an integer >= 0, got -1",  # before: NumPy's ValueError, traceback
    "label_map=normal": "data.label_map must be a mapping of label -> class (or null to drop), got 'normal'",
    "label_map.NORMAL=1": "data.label_map entry 'NORMAL': 1 must map a label to a class name or null",
    "classes=[1, 2]": "data.classes must be a list of class names, got [1, 2]",
    "strict=yes please": "data.strict must be true or false, got 'yes please'",
    "patient_regex=(IM-": "data.patient_regex '(IM-' is not a valid regular expression (missing ), unterminated "
                          "subpattern at position 0)",
}


@pytest.mark.parametrize("override", OPTION_ERRORS)
def test_option_of_the_wrong_type_is_one_error_naming_the_key(override: str, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "not-there"  # nothing is read: the option error comes before the missing path
    with pytest.raises(ConfigError, match=f"^{re.escape(OPTION_ERRORS[override])}"):
        parse_data_spec({"path": str(missing), "layout": "class_folders"}, overrides=parse_overrides([override]))
    assert main(["data", "check", str(missing), "--task", "pneumonia", "--layout", "class_folders", "--set",
                 override]) == 2
    assert capsys.readouterr().err.startswith(f"error: {OPTION_ERRORS[override]}")


@pytest.mark.parametrize(("override", "message"), [
    ("image_root=5.5", "data.image_root must be a folder or column name, got 5.5: quote it in YAML"),
    ("path_column=[a, b]", "data.path_column must be a folder or column name, got ['a', 'b']"),
    ("image_folder={a: 1}", "data.image_folder must be a folder or column name, got {'a': 1}"),
])
def test_a_folder_or_column_name_of_the_wrong_type_is_one_error(override: str, message: str, tmp_path: Path) -> None:
    """Before: ``TypeError: unsupported operand type(s) for /: 'PosixPath' and 'float'``, a traceback."""
    layout = "image_masks" if override.startswith("image_folder") else "manifest"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        parse_data_spec({"path": str(tmp_path / "not-there"), "layout": layout}, overrides=parse_overrides([override]))


def test_a_number_as_a_folder_name_is_its_digits_and_a_row_with_extra_cells_names_its_line(tmp_path: Path) -> None:
    """PadChest keeps its images in folders ``0`` to ``54``: ``image_root: 0`` (a YAML integer) is the folder
    ``0``. A row with more cells than the header (a cell holding an unquoted comma) was an ``AttributeError``
    traceback; now one error naming the line, while empty trailing cells (``a.png,normal,,``) are nothing."""
    for i in range(8):
        write_image(tmp_path / "0" / f"{i}.png", seed=i)
    lines = ["path,label", *(f"{i}.png,{label},," for i, label in enumerate(["normal", "pneumonia"] * 4))]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset({"path": str(tmp_path / "manifest.csv"), "image_root": 0})
    assert sorted(Path(r.path).relative_to(tmp_path).as_posix() for r in dataset.records) == [
        f"0/{i}.png" for i in range(8)]
    (tmp_path / "manifest.csv").write_text("\n".join([*lines, "8.png,pneumonia, lobar,"]) + "\n")
    with pytest.raises(DataError, match=r"manifest.csv:10: 4 cells, but the header names 2: quote the cells that "
                                        r"hold the delimiter ',', or fix the line$"):
        load_dataset({"path": str(tmp_path / "manifest.csv"), "image_root": 0})


@pytest.mark.parametrize(("entries", "error"), [
    ("{0: normal, 1: pneumonia}", None),
    ('{"0": normal, 1: pneumonia}', None),
    ("{1.0: pneumonia, 0: normal}", "data.label_map entry 1.0: 'pneumonia' must map a label to a class name or null: "
                                    "quote decimal numbers and yes/no in YAML"),
    ("{yes: pneumonia, 0: normal}", "data.label_map entry True: 'pneumonia'"),
    ('{1: pneumonia, "1": normal, 0: normal}', "data.label_map maps the label '1' twice, once as a number: keep one"),
])
def test_a_yaml_label_map_keyed_by_integers_reads_the_cells_digits(entries: str, error: str | None,
                                                                   tmp_path: Path) -> None:
    """RSNA's ``Target`` is 0 / 1, and ``{0: normal, 1: pneumonia}`` is how YAML users write that map: it was
    refused ("quote numbers"). An integer key now means its digits; a float or yes/no key, whose YAML value no
    longer spells the cell, is still refused."""
    for i in range(4):
        write_image(tmp_path / f"p{i}.png", seed=i)
    (tmp_path / "labels.csv").write_text("patientId,Target\n" + "".join(f"p{i},{t}\n" for i, t in enumerate("0101")))
    (tmp_path / "data.yaml").write_text(f"layout: manifest\npath: labels.csv\npath_column: patientId\n"
                                        f"label_column: Target\nlabel_map: {entries}\n")
    if error:
        with pytest.raises(ConfigError, match=f"^{re.escape(error)}"):
            load_dataset(str(tmp_path / "data.yaml"))
        return
    dataset = load_dataset(str(tmp_path / "data.yaml"))
    assert [(Path(r.path).name, r.label) for r in dataset.records] == [
        ("p0.png", "normal"), ("p1.png", "pneumonia"), ("p2.png", "normal"), ("p3.png", "pneumonia")]


def test_classes_as_a_string_is_a_list_never_letters() -> None:
    assert parse_data_spec({"layout": "demo", "classes": "normal"}).options["classes"] == ["normal"]
    spec = parse_data_spec({"layout": "demo"}, overrides=parse_overrides(["classes=normal, pneumonia"]))
    assert spec.options["classes"] == ["normal", "pneumonia"]


# --- messages that say what is wrong ---

def test_missing_data_path_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"^data path {re.escape(str(tmp_path / 'nope'))} does not exist"):
        load_dataset(str(tmp_path / "nope"))


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_or_tab_csv_names_the_delimiter_and_loads_with_the_option(delimiter: str, name: str,
                                                                            tmp_path: Path) -> None:
    rows = [r.replace(",", delimiter) for r in _good_rows()]
    csv = _manifest(tmp_path, rows, header=delimiter.join(["file", "label", "patient_id"]))
    with pytest.raises(DataError, match=f"^{re.escape(str(csv))}: the header .* looks {name}-delimited "
                                        f"\\({re.escape(repr(delimiter))}\\), not ',': save it as a comma-separated "
                                        f"CSV or set the data option delimiter: {re.escape(repr(delimiter))}$"):
        load_dataset(str(csv))
    assert len(load_dataset({"path": str(csv), "delimiter": delimiter}).records) == 12


def test_symlink_loop_in_a_manifest_row_is_that_row_skipped(tmp_path: Path) -> None:
    csv = _manifest(tmp_path, [*_good_rows(), "img/a.png,normal,px"])
    os.symlink(tmp_path / "img" / "b.png", tmp_path / "img" / "a.png")
    os.symlink(tmp_path / "img" / "a.png", tmp_path / "img" / "b.png")
    dataset = load_dataset(str(csv))
    assert len(dataset.records) == 12
    assert [p.path for p in dataset.problems] == [str(tmp_path / "img" / "a.png")]
    assert f"({csv}:14) cannot follow the path (" in str(dataset.problems[0])
    assert str(dataset.problems[0]).endswith("fix the symlink or remove its row")


def test_a_set_override_inside_the_split_block_keeps_its_other_keys() -> None:
    """``--set split.seed=5`` changes the seed, not the whole block: the ratios given in the spec stay."""
    spec = parse_data_spec({"layout": "demo", "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 3}},
                           overrides=parse_overrides(["split.seed=5"]))
    assert spec.options["split"] == {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 5}
