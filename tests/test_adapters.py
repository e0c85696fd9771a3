"""Every layout adapter on files the tests write, and the errors a user sees for bad layouts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, write_image, write_mask

from runner.cli import main
from runner.data import ADAPTERS, load_dataset, parse_data_spec, prepare
from runner.data.adapters.class_folders import UNUSED_MASK
from runner.data.masks import decode_rle, encode_rle
from runner.errors import ConfigError, DataError


def _labels(dataset) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in dataset.records:
        counts[record.label] = counts.get(record.label, 0) + 1
    return counts


def test_registry_lists_every_layout() -> None:
    assert ADAPTERS.names() == ["class_folders", "demo", "file_names", "image_masks", "manifest", "siim_rle",
                                "split_lists"]


def test_class_folders_flat(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 6, "pneumonia": 4})
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    dataset = load_dataset(str(tmp_path))
    assert dataset.spec.layout == "class_folders"
    assert dataset.classes == ("normal", "pneumonia")
    assert _labels(dataset) == {"normal": 6, "pneumonia": 4}
    assert {r.split for r in dataset.records} == {"train", "val", "test"}


def test_class_folders_with_splits_keeps_them_and_merges_val(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 8, "pneumonia": 8}, split="train")
    make_class_folders(tmp_path, {"normal": 1, "pneumonia": 1}, split="val", seed=1)
    make_class_folders(tmp_path, {"normal": 3, "pneumonia": 3}, split="test", seed=2)
    kept = load_dataset(str(tmp_path))
    assert [len(kept.split(s)) for s in ("train", "val", "test")] == [16, 2, 6]
    merged = load_dataset({"path": str(tmp_path), "split": {"merge_val": True, "train": 0.6, "val": 0.2,
                                                             "test": 0.2}})
    assert len(merged.split("test")) == 6
    assert len(merged.split("val")) == 4  # 18 train+val images re-split 3:1
    assert len(merged.split("train")) == 14


def test_the_readmes_kaggle_patient_regex_reads_every_kind_of_kermany_name(tmp_path: Path) -> None:
    """README's ``patient_regex`` for Kaggle chest-xray-pneumonia: NORMAL2-IM-0927 is another patient than
    IM-0927, and a pneumonia patient's bacteria and virus images are one patient."""
    names = {"NORMAL": ["IM-0115-0001.jpeg", "IM-0115-0002.jpeg", "NORMAL2-IM-0115-0001.jpeg"],
             "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_virus_6.jpeg", "person23_bacteria_80.jpeg"]}
    for folder, files in names.items():
        for i, name in enumerate(files):
            write_image(tmp_path / "train" / folder / name, seed=i)
    dataset = load_dataset({"path": str(tmp_path), "patient_regex": r"^((?:NORMAL2-)?IM-\d+|person\d+)"})
    assert sorted(r.patient_id for r in dataset.records) == ["IM-0115", "IM-0115", "NORMAL2-IM-0115", "person1",
                                                           "person1", "person23"]


def test_a_download_one_folder_above_the_data_set_names_the_folder_to_pass(tmp_path: Path) -> None:
    """Kaggle's archive unpacks to chest_xray/{train,test,val}/ (beside a __MACOSX/ copy): pointed at the folder
    above, chest_xray looked like a class without images. Patient sub-folders in a class are not read, and the
    error says so rather than calling the class a data set."""
    make_class_folders(tmp_path / "archive" / "chest_xray", {"NORMAL": 3, "PNEUMONIA": 3}, split="train")
    (tmp_path / "archive" / "chest_xray" / "__MACOSX").mkdir()
    with pytest.raises(DataError, match=rf"^class folder {re.escape(str(tmp_path / 'archive' / 'chest_xray'))} has "
                                        r"no .* of its own but split folders \(__MACOSX, train\): it is the data "
                                        r"set: pass .*chest_xray as the data path$"):
        load_dataset(str(tmp_path / "archive"))
    make_class_folders(tmp_path / "by_patient" / "normal", {"patient1": 2, "patient2": 2})
    make_class_folders(tmp_path / "by_patient" / "pneumonia", {"patient3": 2})
    with pytest.raises(DataError, match=r"by_patient/normal has no .* of its own, only folders \(patient1, "
                                        r"patient2\), which class_folders does not read: move the images into the "
                                        r"class folder, or list them in a manifest CSV"):
        load_dataset(str(tmp_path / "by_patient"))


def test_a_data_set_whose_labels_are_in_a_csv_is_pointed_to_the_manifest(tmp_path: Path) -> None:
    """VinDr-CXR unpacks to annotations/*.csv beside train/ and test/ folders of images: read as class folders
    it has none, and the error names the CSV and the manifest layout. Images directly in a split folder (no
    class folders) are named as such."""
    root = tmp_path / "vindr"
    for split in ("train", "test"):
        write_image(root / split / f"{split}1.png", seed=1)
    with pytest.raises(DataError, match=rf"^{re.escape(str(root))} has no class folders: .* \(or ROOT/<split>/"
                                        rf"<class>/\*\.png\); {re.escape(str(root / 'test'))} holds images but no "
                                        r"class folders: sort them into one folder per class, or list them"):
        load_dataset(str(root))
    (root / "annotations").mkdir()
    (root / "annotations" / "image_labels_train.csv").write_text("image_id,rad_id,Cardiomegaly\ntrain1,R1,1\n")
    with pytest.raises(DataError, match=r"has no class folders: .*; it holds CSV files \(annotations/image_labels_"
                                        r"train\.csv\): for labels in a CSV, pass the CSV as the data path, or "
                                        r"write a data spec with layout: manifest"):
        load_dataset(str(root))


def test_file_names_reads_labels_from_names_and_never_a_sub_folder(tmp_path: Path) -> None:
    """Shenzhen and Montgomery name each image ``CHNCXR_0001_0.png`` (``_1``: tuberculosis), in one flat folder.
    Montgomery keeps lung masks of the same names in ``ManualMask/leftMask/`` beside it: pointed at the set's
    root, the error names the folder to pass, and a sub-folder's images are never read. A name the pattern does
    not match is accounted for with the reason."""
    root = tmp_path / "MontgomerySet" / "CXR_png"
    names = [f"MCUCXR_{i:04d}_{i % 2}.png" for i in range(8)]
    for i, name in enumerate(names):
        write_image(root / name, seed=i)
        write_mask(root.parent / "ManualMask" / "leftMask" / name)
    write_image(root / "Thumbs.png", seed=99)
    with pytest.raises(DataError, match=r"cannot tell the layout of .*CXR_png: pass a layout, .*; its images lie in "
                                        r"it directly: for labels in their file names .* use layout: file_names"):
        load_dataset(str(root))
    write_image(root / "old" / names[0], seed=0)
    spec = {"layout": "file_names", "path": str(root), "label_regex": r"_(\d)\.png$",
            "patient_regex": r"MCUCXR_(\d+)", "label_map": {0: "normal", 1: "pneumonia"}}
    dataset = load_dataset(spec)
    assert {Path(r.path).name: (r.label, r.patient_id) for r in dataset.records} == {
        name: (("normal", "pneumonia")[i % 2], f"{i:04d}") for i, name in enumerate(names)}
    reasons = {Path(i.path).relative_to(root).as_posix(): i.reason for i in dataset.ignored}
    assert reasons["Thumbs.png"] == r"file name does not match data.label_regex '_(\d)\.png$'"
    assert reasons[f"old/{names[0]}"] == "image in a sub-folder (file_names reads the folder's own images)"
    with pytest.raises(DataError, match=rf"{re.escape(str(root.parent))} has no .* of its own \(file_names reads a "
                                        rf"folder's own images, not its sub-folders'\): CXR_png/ holds 9: pass "
                                        rf"{re.escape(str(root))} as the data path"):
        load_dataset({**spec, "path": str(root.parent)})
    with pytest.raises(ConfigError, match=r"^layout file_names reads each label from its file name: set "
                                          r"data.label_regex"):
        load_dataset({"layout": "file_names", "path": str(root)})
    with pytest.raises(ConfigError, match=re.escape("data.label_regex '_(\\d\\.png' is not a valid regular "
                                                    "expression")):
        load_dataset({**spec, "label_regex": r"_(\d\.png"})
    with pytest.raises(DataError, match=r"no file name in .* matches data.label_regex '_TB_' \(first: MCUCXR_0000_0"):
        load_dataset({**spec, "label_regex": "_TB_"})


def test_class_folders_patient_regex(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "normal" / f"IM-000{i}-0001.png", seed=i)
        write_image(tmp_path / "normal" / f"IM-000{i}-0002.png", seed=10 + i)
        write_image(tmp_path / "pneumonia" / f"person{i}_virus_1.png", seed=20 + i)
    dataset = load_dataset({"path": str(tmp_path), "patient_regex": r"(IM-\d+|person\d+)"})
    assert sorted({r.patient_id for r in dataset.records}) == ["IM-0000", "IM-0001", "IM-0002", "person0",
                                                               "person1", "person2"]
    assert dataset.patient_ids_known


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3})
    (tmp_path / "pneumonia").mkdir()
    with pytest.raises(DataError, match=r"class folder .*pneumonia has no .png/.jpg/.jpeg/.tif/.tiff images"):
        load_dataset(str(tmp_path))


def test_single_class_is_an_error_for_classification(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3})
    with pytest.raises(DataError, match=r"only one class \(normal\) found"):
        load_dataset(str(tmp_path), need_two_classes=True)


def _manifest(tmp_path: Path, rows: list[str], header: str = "path,label,patient_id") -> Path:
    csv = tmp_path / "data.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_manifest_columns_patients_and_splits(tmp_path: Path) -> None:
    rows = []
    for i in range(6):
        write_image(tmp_path / "img" / f"{i}.png", seed=i)
        rows.append(f"img/{i}.png,{'pneumonia' if i % 2 else 'normal'},p{i // 2},{['train', 'val', 'test'][i // 2]}")
    dataset = load_dataset(str(_manifest(tmp_path, rows, "file,label,patient_id,split")))
    assert dataset.spec.layout == "manifest"
    assert [(Path(r.path).name, r.patient_id, r.split) for r in dataset.records][:2] == [
        ("0.png", "p0", "train"), ("1.png", "p0", "train")]


def test_manifest_covid_metadata_style(tmp_path: Path) -> None:
    """covid-chestxray-dataset's metadata.csv: findings mapped (exact, then globs), views filtered."""
    findings = ["COVID-19", "No Finding", "Pneumonia/Bacterial", "Pneumonia/Viral/COVID-19", "Tuberculosis",
                "COVID-19"]
    views = ["PA", "AP", "PA", "AP", "PA", "L"]
    rows = []
    for i, (finding, view) in enumerate(zip(findings, views, strict=True)):
        write_image(tmp_path / "images" / f"x{i}.jpg", seed=i)
        rows.append(f"{i},x{i}.jpg,{finding},{view}")
    csv = _manifest(tmp_path, rows, "patientid,filename,finding,view")
    spec = {"path": str(csv), "path_column": "filename", "label_column": "finding", "image_root": "images",
            "filters": {"view": ["PA", "AP"]},
            "label_map": {"COVID-19": "covid", "No Finding": "normal", "Pneumonia/Viral/COVID-19": "covid",
                          "Pneumonia/*": "pneumonia", "Tuberculosis": None}}
    dataset = load_dataset(spec, expected_classes=("covid", "normal", "pneumonia"))
    assert sorted((Path(r.path).name, r.label, r.patient_id) for r in dataset.records) == [
        ("x0.jpg", "covid", "0"), ("x1.jpg", "normal", "1"), ("x2.jpg", "pneumonia", "2"), ("x3.jpg", "covid", "3")]


def test_manifest_missing_file_is_skipped_or_strict_error(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / f"{i}.png", seed=i)
    csv = _manifest(tmp_path, [f"{i}.png,{'ab'[i % 2]},p{i}" for i in range(4)] + ["gone.png,a,p9"])
    dataset = load_dataset(str(csv))
    assert len(dataset.records) == 4
    assert "gone.png: (" in str(dataset.problems[0]) and "does not exist" in str(dataset.problems[0])
    with pytest.raises(DataError, match=r"gone.png: .*does not exist.*1 problems in all"):
        load_dataset({"path": str(csv), "strict": True})


def test_a_manifest_whose_every_file_is_missing_names_the_first_one(tmp_path: Path) -> None:
    """Before: 'no usable images left: check the path, label_map and classes options', with no file named."""
    csv = _manifest(tmp_path, ["a.png,normal,p1", "b.png,pneumonia,p2"])
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}: no usable images left \(2 listed files "
                                        rf"skipped, the first: {re.escape(str(tmp_path / 'a.png'))}: .*a.png does not "
                                        r"exist in or below .*\): check the path, label_map and classes options$"):
        load_dataset(str(csv))


def test_a_manifest_naming_images_without_a_suffix_finds_them_by_stem(tmp_path: Path) -> None:
    """RSNA Pneumonia's labels CSV names each image by ``patientId`` (``stage_2_train_images/<patientId>.dcm``),
    one row per box: each row finds its file, the repeated rows are kept once, and a stem held by two files is
    skipped naming both."""
    for i, name in enumerate(["p1", "p2", "p3", "p4"]):
        write_image(tmp_path / "images" / f"{name}.png", seed=i)
    write_image(tmp_path / "images" / "a" / "twice.png", seed=8)
    write_image(tmp_path / "images" / "b" / "twice.jpg", seed=9)
    csv = _manifest(tmp_path, ["p1,0", "p2,1", "p2,1", "p3,0", "p4,1", "twice,1"], header="patientId,Target")
    dataset = load_dataset({"path": str(csv), "path_column": "patientId", "label_column": "Target",
                            "image_root": "images", "label_map": {"0": "normal", "1": "pneumonia"}})
    assert sorted(Path(r.path).name for r in dataset.records) == ["p1.png", "p2.png", "p3.png", "p4.png"]
    assert dataset.warnings == ["1 duplicate rows removed (first: data.csv line 4 repeats line 3)"]
    (problem,) = dataset.problems
    assert "patientId matches 2 files under" in str(problem) and "(a/twice.png, b/twice.jpg)" in str(problem)


def test_manifest_path_escaping_root_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "outside.png")
    inner = tmp_path / "set"
    for i in range(2):
        write_image(inner / f"{i}.png", seed=i)
    csv = inner / "m.csv"
    csv.write_text("path,label\n0.png,a\n1.png,b\n../outside.png,a\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(csv))}:4: path '../outside.png' escapes the data root"):
        load_dataset(str(csv))
    allowed = load_dataset({"path": str(csv), "allow_outside_root": True})
    assert len(allowed.records) == 3


def test_lists_written_on_windows_read_their_backslash_paths(tmp_path: Path) -> None:
    """A manifest or split list saved on Windows names ``images\\a.png``: every row was a missing file. Now read
    with ``/`` (CRLF line ends, upper-case suffixes, non-ASCII names and a space in the folder alike), unless a file
    of the literal name exists; a Windows or another machine's absolute path is one error saying what to write."""
    root = tmp_path / "my data"
    names = ["Ärztin_1.PNG", "img 2.png", "sub\\literal.png", "x3.JPG"]
    for i, name in enumerate(names):
        write_image(root / ("images" if "literal" not in name else "") / name, seed=i)
    listed = ["images\\Ärztin_1.PNG", "images\\img 2.png", "sub\\literal.png", "images/x3.JPG"]
    rows = "".join(f"{path},{'normal' if i % 2 else 'pneumonia'}\r\n" for i, path in enumerate(listed))
    (root / "manifest.csv").write_text("path,label\r\n" + rows, encoding="utf-8")
    dataset = load_dataset(str(root / "manifest.csv"))
    found = sorted(Path(r.path).relative_to(root.resolve()).as_posix() for r in dataset.records)
    assert found == ["images/img 2.png", "images/x3.JPG", "images/Ärztin_1.PNG", "sub\\literal.png"]
    (root / "train.txt").write_text("images\\Ärztin_1.PNG pneumonia\r\nimages\\x3.JPG normal\r\n")
    split_list = load_dataset({"layout": "split_lists", "path": str(root)})
    assert [Path(r.path).name for r in split_list.records] == ["Ärztin_1.PNG", "x3.JPG"]
    for path, message in (("C:\\Users\\al\\x.png", r"path 'C:\\Users\\al\\x.png' is a Windows absolute path, which "
                                                    r"names no file here: write paths relative"),
                          ("/home/al/x.png", r"path '/home/al/x.png' is outside the data root .* and does not exist: "
                                             r"write paths relative to the list's folder \(or to image_root\)")):
        (root / "other.csv").write_text(f"path,label\n{path},normal\n")
        with pytest.raises(DataError, match=rf"other.csv:2: {message}"):
            load_dataset(str(root / "other.csv"))


def test_manifest_errors_name_the_column(tmp_path: Path) -> None:
    csv = _manifest(tmp_path, ["a.png"], header="image")
    with pytest.raises(DataError, match=r"has no path column \(looked for path, file, filename\)"):
        load_dataset(str(csv))
    csv = _manifest(tmp_path, ["a.png,x"], header="path,finding")
    with pytest.raises(DataError, match=r"has no label column"):
        load_dataset(str(csv))
    with pytest.raises(DataError, match=r"has no column 'diagnosis' for label"):
        load_dataset({"path": str(csv), "label_column": "diagnosis"})


def test_unknown_label_names_the_file(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / f"{i}.png", seed=i)
    csv = _manifest(tmp_path, ["0.png,normal,a", "1.png,pneumonia,b", "2.png,Effusion,c"])
    with pytest.raises(DataError, match=r"2.png: label 'Effusion' is not one of normal, pneumonia"):
        load_dataset(str(csv), expected_classes=("normal", "pneumonia"))
    narrowed = load_dataset({"path": str(csv), "classes": ["normal", "pneumonia"]})
    assert len(narrowed.records) == 2


def test_kaggle_upper_case_folders_match_the_task_classes(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"NORMAL": 3, "PNEUMONIA": 2})
    dataset = load_dataset(str(tmp_path), expected_classes=("normal", "pneumonia"))
    assert dataset.classes == ("normal", "pneumonia") and _labels(dataset) == {"normal": 3, "pneumonia": 2}


def test_covid_qu_ex_reads_split_class_images_and_names_its_lung_masks(tmp_path: Path) -> None:
    """COVID-QU-Ex keeps ``<Split>/<class>/images/`` beside ``lung masks/`` (and ``infection masks/``): its masks
    were "image outside the class folders"; they are masks beside the images, and said so."""
    root = tmp_path / "Lung Segmentation Data"
    for split_index, split in enumerate(("Train", "Val", "Test")):
        for class_index, name in enumerate(("COVID-19", "Non-COVID", "Normal")):
            for i in range(2):
                stem = f"{name}_{split}_{i}.png"
                write_image(root / split / name / "images" / stem, seed=split_index * 100 + class_index * 10 + i)
                write_mask(root / split / name / "lung masks" / stem)
                write_mask(root / split / name / "infection masks" / stem)
    dataset = load_dataset({"path": str(root), "label_map": {"COVID-19": "covid", "Non-COVID": "pneumonia"}},
                           expected_classes=("covid", "normal", "pneumonia"))
    assert {(r.split, r.label) for r in dataset.records} == {(s, c) for s in ("train", "val", "test")
                                                             for c in ("covid", "normal", "pneumonia")}
    assert {Path(i.path).parent.name: i.reason for i in dataset.ignored} == {
        "lung masks": UNUSED_MASK, "infection masks": UNUSED_MASK}


def _radiography_database(root: Path) -> Path:
    """The COVID-19 Radiography Database's shape: ``<class>/images/`` beside ``<class>/masks/`` (lung masks)."""
    for index, (name, count) in enumerate({"COVID": 3, "Normal": 4, "Viral Pneumonia": 3, "Lung_Opacity": 2}.items()):
        for i in range(count):
            write_image(root / name / "images" / f"{name}-{i + 1}.png", seed=index * 100 + i)
            write_mask(root / name / "masks" / f"{name}-{i + 1}.png")
    return root


def test_class_folders_read_a_class_from_its_images_folder_beside_its_masks(tmp_path: Path, capsys) -> None:
    """Before: every class folder held no image (only images/ and masks/), so class_folders refused it and
    data check called the root four data sets; read as image_masks it would be four one-class sets."""
    root = _radiography_database(tmp_path / "COVID-19_Radiography_Dataset")
    mapped = {"COVID": "covid", "Normal": "normal", "Viral Pneumonia": "pneumonia", "Lung_Opacity": None}
    dataset = load_dataset({"path": str(root), "label_map": mapped}, expected_classes=("covid", "normal", "pneumonia"))
    assert _labels(dataset) == {"covid": 3, "normal": 4, "pneumonia": 3}
    assert {Path(r.path).parent.name for r in dataset.records} == {"images"}  # never a mask as an image
    reasons = {(Path(i.path).parent.name, i.reason) for i in dataset.ignored}
    assert reasons == {("masks", "mask beside a class's images/ folder (class_folders reads the images only)"),
                       ("images", "label 'Lung_Opacity' dropped by data.label_map")}
    assert dataset.files_found == 24 and len(dataset.ignored) == 14
    assert main(["data", "check", str(root), "--task", "covid"]) == 2  # the labels to map, not 'four data sets'
    assert capsys.readouterr().err == (
        f"error: {root / 'Lung_Opacity' / 'images' / 'Lung_Opacity-1.png'}: label 'Lung_Opacity' is not one of "
        "covid, normal, pneumonia (5 such images; labels 'Viral Pneumonia' too): map it with data.label_map or keep "
        "only some classes with data.classes\n")  # COVID and Normal are the task's covid and normal
    assert main(["data", "check", str(root), "--task", "pneumothorax"]) == 2  # masks wanted: one set per folder
    assert "holds 4 data sets, one per sub-folder" in capsys.readouterr().err


def test_a_list_file_in_a_windows_code_page_or_a_folder_is_one_error(tmp_path: Path) -> None:
    """A split list (or a manifest's ``split_files`` list) saved in cp1252 was a UnicodeDecodeError traceback; a
    folder named as a ``split_files`` list was said not to exist."""
    for i in range(4):
        write_image(tmp_path / "imgs" / f"r\u00e9sum\u00e9{i}.png", seed=i)
    lines = "".join(f"imgs/r\u00e9sum\u00e9{i}.png a\n" for i in range(4))
    (tmp_path / "train.txt").write_bytes(lines.encode("cp1252"))
    with pytest.raises(DataError, match=r"^split list .*train.txt is not UTF-8 text \(invalid continuation byte\): "
                                        r"save it as UTF-8$"):
        load_dataset(str(tmp_path))
    (tmp_path / "train.txt").unlink()
    csv = _manifest(tmp_path, [f"imgs/r\u00e9sum\u00e9{i}.png,a,p{i}" for i in range(4)])
    (tmp_path / "test.txt").write_bytes("r\u00e9sum\u00e90.png\n".encode("cp1252"))
    (tmp_path / "train_list.txt").write_text("".join(f"r\u00e9sum\u00e9{i}.png\n" for i in range(1, 4)))
    for listed, message in (("test.txt", r"test list .*test.txt is not UTF-8 text"),
                            ("imgs", r"test list .*imgs is a folder, not a list file: name the .txt file")):
        with pytest.raises(DataError, match=rf"^data.split_files: {message}"):
            load_dataset({"path": str(csv), "split_files": {"train": "train_list.txt", "test": listed}})


def test_split_lists_two_and_four_columns(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for i in range(4):
            write_image(tmp_path / "imgs" / f"{split}{i}.png", seed=i)
    (tmp_path / "train.txt").write_text("\n".join(f"imgs/train{i}.png {'ab'[i % 2]}" for i in range(4)) + "\n")
    (tmp_path / "test.txt").write_text("# comment\n" + "\n".join(f"imgs/test{i}.png {'ab'[i % 2]}" for i in range(4)))
    dataset = load_dataset(str(tmp_path))
    assert dataset.spec.layout == "split_lists"
    train, val = dataset.split("train"), dataset.split("val")
    assert len(dataset.split("test")) == 4 and (len(train), len(val)) == (2, 2)  # no val.txt: val comes from train
    assert sorted(r.label for r in val) == sorted(r.label for r in train) == ["a", "b"]  # each class in both
    assert {Path(r.path).name for r in [*train, *val]} == {f"train{i}.png" for i in range(4)}

    (tmp_path / "train.txt").write_text("\n".join(f"P{i} imgs/train{i}.png {'ab'[i % 2]} src" for i in range(4)))
    (tmp_path / "test.txt").write_text("P9 imgs/test0.png a src\nbroken line\n")
    covidx = load_dataset({"path": str(tmp_path), "columns": "patient_id path label source"})
    assert {r.patient_id for r in covidx.records} >= {"P0", "P9"}
    assert "expected 4 fields" in str(covidx.problems[0])


def test_image_masks_with_manifest_and_problems(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / "images" / f"{i}.png", seed=i)
        write_mask(tmp_path / "masks" / f"{i}.png", box=(5, 5, 20, 20) if i % 2 else None)
    write_image(tmp_path / "images" / "lonely.png")
    write_mask(tmp_path / "masks" / "orphan.png")
    dataset = load_dataset(str(tmp_path))
    assert dataset.spec.layout == "image_masks"
    assert sorted(r.label for r in dataset.records) == ["normal", "normal", "pneumothorax", "pneumothorax"]
    messages = sorted(str(p) for p in dataset.problems)
    assert "lonely.png: no mask for this image" in messages[0]
    assert "orphan.png: mask without an image" in messages[1]

    (tmp_path / "manifest.csv").write_text("file,label,patient_id\n" + "".join(f"{i}.png,x{i % 2},p{i}\n"
                                                                               for i in range(4)))
    with_manifest = load_dataset(str(tmp_path))
    assert sorted(r.patient_id for r in with_manifest.records) == ["p0", "p1", "p2", "p3"]
    assert {r.label for r in with_manifest.records} == {"x0", "x1"}


def test_image_masks_reads_other_folder_names_and_kaggles_mixed_mask_names(tmp_path: Path) -> None:
    """Kaggle's Shenzhen + Montgomery lung masks: ``CXR_png/`` and ``masks/``, Shenzhen's masks named
    ``CHNCXR_0001_0_mask.png``, Montgomery's ``MCUCXR_0001_0.png``, and images without a mask (and a ``test/``
    folder of images without any). Before, only ``images/`` + ``masks/`` read, and other names needed a
    manifest; now the folders are options and one ``mask_suffix`` pairs both kinds of name."""
    root = tmp_path / "Lung Segmentation"
    pairs = {"MCUCXR_0001_0.png": "MCUCXR_0001_0.png", "MCUCXR_0002_1.png": "MCUCXR_0002_1.png",
             "CHNCXR_0001_0.png": "CHNCXR_0001_0_mask.png", "CHNCXR_0002_1.png": "CHNCXR_0002_1_mask.png"}
    for i, (image, mask) in enumerate(pairs.items()):
        write_image(root / "CXR_png" / image, seed=i)
        write_mask(root / "masks" / mask)
    write_image(root / "CXR_png" / "CHNCXR_0003_1.png", seed=9)
    write_image(root / "test" / "CHNCXR_0100_0.png", seed=10)
    with pytest.raises(DataError, match=r"Lung Segmentation needs images/ and masks/ folders for the image_masks "
                                        r"layout: name others with data.image_folder and data.mask_folder"):
        load_dataset({"layout": "image_masks", "path": str(root)})
    dataset = load_dataset({"layout": "image_masks", "path": str(root), "image_folder": "CXR_png",
                            "mask_suffix": "_mask"})
    assert {Path(r.path).name: Path(r.mask_path).name for r in dataset.records} == pairs
    assert [str(p).split(": ", 1)[1] for p in dataset.problems] == [
        "no mask for this image: add masks/CHNCXR_0003_1_mask.png or remove the image"]
    assert {(Path(i.path).name, i.reason) for i in dataset.ignored} == {
        ("CHNCXR_0100_0.png", "image outside CXR_png/ and masks/")}


@pytest.mark.parametrize("rle_format", ["relative", "absolute"])
def test_rle_round_trip(rle_format: str) -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((30, 20), np.uint8)
    mask[rng.random(mask.shape) > 0.7] = 255
    encoded = encode_rle(mask, rle_format)
    assert np.array_equal(decode_rle(encoded, width=20, height=30, rle_format=rle_format), mask)
    assert encode_rle(np.zeros((4, 4))) == "-1"


def test_rle_known_values() -> None:
    """SIIM's relative RLE runs down columns: '1 2 3 1' on a 3x3 image sets flat 1,2 and 6 (column-major)."""
    decoded = decode_rle("1 2 3 1", width=3, height=3)
    expected = np.zeros(9, np.uint8)
    expected[[1, 2, 6]] = 255
    assert np.array_equal(decoded, expected.reshape(3, 3).T)
    with pytest.raises(DataError, match="odd number of values"):
        decode_rle("1 2 3", 3, 3)
    with pytest.raises(DataError, match="runs past a 3x3 image"):
        decode_rle("5 20", 3, 3)


def test_siim_rle_csv_decoded_by_the_cache(tmp_path: Path) -> None:
    masks = {}
    rows = ["ImageId, EncodedPixels"]
    for i in range(4):
        write_image(tmp_path / "png" / f"1.2.{i}.png", seed=i, size=(32, 32))
        mask = np.zeros((32, 32), np.uint8)
        if i % 2:
            mask[4:12, 8:30] = 255
            mask[20:28, 2:6] = 255
            rows += [f"1.2.{i}, {encode_rle(mask[:16])}".replace(encode_rle(mask[:16]), encode_rle(
                np.vstack([mask[:16], np.zeros((16, 32), np.uint8)]))),
                     f"1.2.{i}, {encode_rle(np.vstack([np.zeros((16, 32), np.uint8), mask[16:]]))}"]
        else:
            rows.append(f"1.2.{i}, -1")
        masks[f"1.2.{i}.png"] = mask
    csv = tmp_path / "train-rle.csv"
    csv.write_text("\n".join(rows) + "\n")
    dataset = load_dataset({"path": str(csv), "image_root": "png", "split": {"train": 1.0, "val": 0.0,
                                                                             "test": 0.0}})
    assert dataset.spec.layout == "siim_rle"
    assert sorted(r.label for r in dataset.records) == ["normal", "normal", "pneumothorax", "pneumothorax"]
    cached = prepare(dataset, image_size=32, progress=False)
    for record, cached_mask in zip(cached.records("train"), cached.masks("train"), strict=True):
        assert np.array_equal(cached_mask[..., 0], masks[Path(record.path).name])


def test_spec_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown data layout 'folders': choose one of class_folders, demo"):
        parse_data_spec({"layout": "folders", "path": "."})
    with pytest.raises(ConfigError, match=r"unknown data option 'label_col' for layout 'manifest'"):
        parse_data_spec({"layout": "manifest", "path": "x.csv", "label_col": "y"})
    with pytest.raises(DataError, match=r"data path /no/such/dir does not exist"):
        load_dataset({"layout": "class_folders", "path": "/no/such/dir"})


def test_spec_from_yaml_file(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "set", {"a": 3, "b": 3})
    spec_file = tmp_path / "data.yaml"
    spec_file.write_text("data:\n  layout: class_folders\n  path: set\n  split: {seed: 3}\n")
    dataset = load_dataset(str(spec_file))
    assert dataset.root == tmp_path / "set" and len(dataset.records) == 6


def test_shared_real_images_load_by_folder_and_manifest(shared_data: Path) -> None:
    by_manifest = load_dataset(str(shared_data / "kermany-subset"), expected_classes=("normal", "pneumonia"))
    by_folder = load_dataset({"layout": "class_folders", "path": str(shared_data / "kermany-subset")})
    assert len(by_manifest.records) == len(by_folder.records) == 1200
    assert by_manifest.patient_ids_known and not by_folder.patient_ids_known
    lungs = load_dataset(str(shared_data / "lungseg"))
    lungs_manifest = load_dataset({"path": str(shared_data / "lungseg" / "manifest.csv"), "image_root": "images",
                                   "mask_root": "masks"})
    assert len(lungs.records) == len(lungs_manifest.records) == 240
    assert all(r.mask_path for r in lungs_manifest.records)
