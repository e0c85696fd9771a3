"""The multi-label ``findings`` task (several findings per image, the NIH ChestX-ray14 / CheXpert shape): its label
layouts and uncertain-label policies, its split needs, its metrics against scikit-learn from a real trial's
``predictions.parquet``, its plots, its leaderboard row, ``data demo`` / ``data check``, and the demo's signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from runner import metrics
from runner.cli import main
from runner.config import make_config
from runner.data import NO_FINDING, Record, findings_label, label_parts, prepare, read_findings
from runner.data.check import shortcut_warnings
from runner.data.synthetic import DEMO_FINDINGS, write_demo
from runner.errors import ConfigError, DataError
from runner.leaderboard import load, row_from_result, write_row
from runner.tasks import TASKS, MultilabelTask, Split
from runner.trial import run_trial

TASK = TASKS.get("findings")
KEYS = TASK.keys


def _manifest(root: Path, header: list[str], rows: list[list[str]], seed: int = 0) -> Path:
    """``root/manifest.csv`` with a real image per row (first column: its file name)."""
    root.mkdir(parents=True, exist_ok=True)
    for index, row in enumerate(rows):
        write_image(root / row[0], seed=seed + index, size=(24, 24))
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root / "manifest.csv"


def _whole(dataset) -> Split:
    return Split("test", dataset.records, np.zeros((len(dataset.records), 8, 8, 1), np.uint8))


# ------------------------------------------------------------------------------------------------ labels


def test_findings_have_one_spelling() -> None:
    assert findings_label(["effusion", "cardiomegaly", "effusion"]) == "cardiomegaly|effusion"
    assert findings_label([], ["edema"]) == "edema?"
    assert findings_label(["edema"], ["edema", "atelectasis"]) == "atelectasis?|edema"
    assert findings_label([]) == NO_FINDING
    assert read_findings("atelectasis?|edema") == ({"edema"}, {"atelectasis"})
    assert read_findings(NO_FINDING) == (frozenset(), frozenset())
    assert label_parts("normal") == ("normal",) and label_parts(" a | b ") == ("a", "b")


NIH_MAP = {"Cardiomegaly": "cardiomegaly", "Effusion": "effusion", "Consolidation": "opacity", "Pneumonia": "opacity",
           "Pneumothorax": "pneumothorax", "*": None}


@pytest.mark.parametrize("separator", ["|", ";"])
def test_a_label_cell_listing_findings_with_a_separator(tmp_path: Path, separator: str) -> None:
    """NIH ChestX-ray14's ``Finding Labels``: findings mapped one by one (``null`` drops a finding, not the image),
    ``No Finding`` is none, and any order of one set is one label."""
    rows = [["a.png", "Effusion|Cardiomegaly", "p1"], ["b.png", "No Finding", "p2"],
            ["c.png", "Pneumonia|Hernia|Consolidation", "p3"], ["d.png", "Hernia", "p4"],
            ["e.png", "Cardiomegaly|Effusion|Pneumothorax", "p5"]]
    rows = [[name, labels.replace("|", separator), patient] for name, labels, patient in rows]
    csv_path = _manifest(tmp_path, ["Image Index", "Finding Labels", "Patient ID"], rows)
    dataset = TASK.load_data({"layout": "manifest", "path": str(csv_path), "path_column": "Image Index",
                              "label_column": "Finding Labels", "patient_column": "Patient ID",
                              "label_separator": separator, "label_map": NIH_MAP}, whole=True)
    labels = {Path(r.path).name: r.label for r in dataset.records}
    assert labels == {"a.png": "cardiomegaly|effusion", "b.png": NO_FINDING, "c.png": "opacity", "d.png": NO_FINDING,
                      "e.png": "cardiomegaly|effusion|pneumothorax"}
    assert dataset.classes == TASK.classes
    kept = TASK.load_data({**dataset.spec.options, "path": str(csv_path), "layout": "manifest",
                           "classes": ["Cardiomegaly", "effusion", "OPACITY", "pneumothorax"]}, whole=True)
    assert [r.label for r in kept.records] == [r.label for r in dataset.records]  # data.classes matches case aside


def test_nih_images_spread_over_numbered_folders_are_found_by_name(tmp_path: Path) -> None:
    """NIH's download keeps its images in ``images_001/images/`` ... while ``Data_Entry_2017.csv`` names each by
    file name alone: before, every row was a missing file and the data set 'had no usable images'. A name found
    in two folders is skipped naming both (which is meant cannot be told); a path with a folder is not searched."""
    labels = ["Cardiomegaly", "Effusion", "Consolidation", "Pneumothorax", "No Finding", "Cardiomegaly|Effusion"]
    rows = [[f"{i:08d}_000.png", labels[i % 6], str(i)] for i in range(12)]
    csv_path = _manifest(tmp_path, ["Image Index", "Finding Labels", "Patient ID"], rows)
    for i, (name, _, _) in enumerate(rows):  # _manifest wrote them beside the CSV: spread them as NIH does
        folder = tmp_path / f"images_{i // 5 + 1:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).rename(folder / name)
    write_image(tmp_path / "images_003" / "images" / "00000000_000.png", seed=99, size=(24, 24))  # a second copy
    with csv_path.open("a", newline="") as handle:
        csv.writer(handle).writerow(["images_001/images/missing.png", "Effusion", "12"])
    spec = {"layout": "manifest", "path": str(csv_path), "path_column": "Image Index", "label_column": "Finding Labels",
            "patient_column": "Patient ID", "label_separator": "|", "label_map": NIH_MAP}
    dataset = TASK.load_data(spec, whole=True)
    found = {Path(r.path).name: Path(r.path).parent.parent.name for r in dataset.records}
    assert found == {f"{i:08d}_000.png": f"images_{i // 5 + 1:03d}" for i in range(1, 12)}
    assert [w for w in dataset.warnings if "sub-folders" in w] == [
        f"11 listed Image Index values found in sub-folders of {tmp_path}, not in it (first: 00000001_000.png -> "
        "images_001/images/00000001_000.png)"]  # said, not done unseen
    problems = sorted(str(problem) for problem in dataset.problems)
    assert len(problems) == 2
    assert "manifest.csv:2) Image Index matches 2 files under" in problems[0]
    assert "images_001/images/00000000_000.png, images_003/images/00000000_000.png): keep one" in problems[0]
    assert problems[1].endswith("manifest.csv:14) file listed in the data set does not exist: fix the path or remove "
                                "its row")


def test_nih_official_split_lists_set_the_test_split(tmp_path: Path) -> None:
    """NIH ChestX-ray14 ships its patient-wise split as ``train_val_list.txt`` / ``test_list.txt``, which papers
    report on; there was no way to read it (a split column only). ``split_files`` gives each row its list's
    split: the test split is exactly the test list, validation is carved from train_val by patient, and the
    lists are files the data set uses."""
    labels = ["Cardiomegaly", "Effusion", "Consolidation", "Pneumothorax", "No Finding", "Cardiomegaly|Effusion"]
    rows = [[f"{p:08d}_{f:03d}.png", labels[(p + f) % 6], str(p)] for p in range(1, 41) for f in range(2)]
    csv_path = _manifest(tmp_path, ["Image Index", "Finding Labels", "Patient ID"], rows)
    test_list = {name for name, _, patient in rows if int(patient) > 30}
    (tmp_path / "test_list.txt").write_text("\n".join(sorted(test_list)) + "\n")
    (tmp_path / "train_val_list.txt").write_text("".join(f"{name}\n" for name, _, _ in rows if name not in test_list))
    spec = {"layout": "manifest", "path": str(csv_path), "path_column": "Image Index", "label_column": "Finding Labels",
            "patient_column": "Patient ID", "label_separator": "|", "label_map": NIH_MAP,
            "split_files": {"train": "train_val_list.txt", "Test": "test_list.txt"}}
    dataset = TASK.load_data(spec)
    split_of = {Path(r.path).name: r.split for r in dataset.records}
    assert {name for name, split in split_of.items() if split == "test"} == test_list
    assert {split_of[name] for name in split_of if name not in test_list} == {"train", "val"}
    patients = pd.DataFrame({"patient": [r.patient_id for r in dataset.records], "split": list(split_of.values())})
    assert (patients.groupby("patient")["split"].nunique() == 1).all()
    assert not [i for i in dataset.ignored if i.path.endswith(".txt")]
    with (tmp_path / "test_list.txt").open("a") as handle:
        handle.write("00000001_000.png\n")
    with pytest.raises(DataError, match=r"^00000001_000.png is listed in both the train and the test split_files"):
        TASK.load_data(spec)
    (tmp_path / "test_list.txt").write_text("\n".join(sorted(test_list - {"00000040_001.png"})))
    with pytest.raises(DataError, match=r"manifest.csv:81: 00000040_001.png is in none of the split_files "
                                        r"\(train_val_list.txt, test_list.txt; 1 such rows\)"):
        TASK.load_data(spec)
    for change, message in (({"split_column": "Patient ID"}, "data.split_column and data.split_files are two ways"),
                            ({"split_files": ["test_list.txt"]}, "data.split_files must map a split to a file")):
        with pytest.raises(ConfigError, match=f"^{message}"):
            TASK.load_data({**spec, **change})


def test_data_without_one_of_the_tasks_findings_says_the_task_needs_it(tmp_path: Path) -> None:
    """Before: "class 'opacity' has no images: ... drop it with data.classes", which cannot drop a finding the task
    models."""
    rows = [[f"{i}.png", ["Cardiomegaly", "Effusion", "Pneumothorax", "No Finding"][i % 4], str(i)] for i in range(8)]
    csv_path = _manifest(tmp_path, ["Image Index", "Finding Labels", "Patient ID"], rows)
    with pytest.raises(DataError, match=r"^no image holds the finding 'opacity' \(task 'findings' models cardiomegaly, "
                                        r"effusion, opacity, pneumothorax, each needs images\): map your data's name "
                                        r"for it with data.label_map, or register a task"):
        TASK.load_data({"layout": "manifest", "path": str(csv_path), "path_column": "Image Index",
                        "label_column": "Finding Labels", "label_separator": "|", "label_map": NIH_MAP}, whole=True)


CHEXPERT = ["Path", "Cardiomegaly", "Effusion", "Opacity", "Pneumothorax"]
CHEXPERT_ROWS = [["a.png", "1.0", "-1.0", "", "0.0"], ["b.png", "0", "1", "-1", "1"], ["c.png", "", "", "1", "-1"],
                 ["d.png", "-1", "0", "0", "0"]]


def _chexpert(tmp_path: Path, rows: list[list[str]] = CHEXPERT_ROWS) -> dict:
    path = _manifest(tmp_path, CHEXPERT, rows)
    return {"layout": "manifest", "path": str(path), "path_column": "Path", "label_columns": CHEXPERT[1:]}


@pytest.mark.parametrize(("policy", "y", "known"), [
    ("ignore", [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]],
     [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 1]]),
    ("zeros", [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]], [[1] * 4] * 4),
    ("ones", [[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]], [[1] * 4] * 4),
])
def test_chexpert_columns_and_each_uncertain_policy(tmp_path: Path, policy: str, y: list, known: list) -> None:
    """One column per finding: 1 present, 0 or blank absent, -1 uncertain (kept marked in the label; the task's
    ``uncertain`` policy decides: left out of loss and metrics, absent, or present). Column names match the
    task's findings whatever their case."""
    spec = _chexpert(tmp_path)
    dataset = TASK.load_data(spec, whole=True)
    assert [r.label for r in dataset.records] == ["cardiomegaly|effusion?", "effusion|opacity?|pneumothorax",
                                                  "opacity|pneumothorax?", "cardiomegaly?"]
    as_typed = TASK.load_data({**spec, "label_columns": ",".join(CHEXPERT[1:])}, whole=True)  # --set a,b,c
    assert [r.label for r in as_typed.records] == [r.label for r in dataset.records]
    params = TASK.bind_params({"uncertain": policy})
    targets, mask = TASK.targets(_whole(dataset), params)
    np.testing.assert_array_equal(targets, y)
    np.testing.assert_array_equal(mask, np.array(known, bool))
    _, packed, _ = TASK.training_arrays(_whole(dataset), params)
    np.testing.assert_array_equal(packed[:, 4:], np.array(known, np.float32))  # a left-out label weighs 0 in the loss


def test_chexpert_as_shipped_paths_from_the_folder_above_and_patients_from_the_path(tmp_path: Path) -> None:
    """CheXpert's ``CheXpert-v1.0-small/train.csv`` lists ``CheXpert-v1.0-small/train/patient00001/study1/...``
    (relative to the folder above it) and has no patient column. Before, every row was a missing file, and with
    that fixed every study was its own patient, so one patient's studies fell into train and test. Now the error
    names the ``image_root`` that reads them, and ``patient_regex`` takes the patient id from the listed path."""
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(1, 41):
        for study in (1, 2, 3):
            listed = f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/view1_frontal.jpg"
            write_image(tmp_path / listed, seed=patient * 3 + study, size=(24, 24))
            rows.append([listed, *rng.choice(["1.0", "0.0", "", "-1.0"], 4, p=[0.45, 0.3, 0.15, 0.1])])
    folder = tmp_path / "CheXpert-v1.0-small"
    with (folder / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([CHEXPERT, *rows])
    spec = {"layout": "manifest", "path": str(folder / "train.csv"), "path_column": "Path",
            "label_columns": CHEXPERT[1:]}
    with pytest.raises(DataError, match=r"train.csv: no listed file is under .*CheXpert-v1.0-small, but the first is "
                                        r"under .* \(CheXpert-v1.0-small/train/patient00001/study1/"
                                        r"view1_frontal.jpg\): set data.image_root: ..$"):
        TASK.load_data(spec)
    dataset = TASK.load_data({**spec, "image_root": "..", "patient_regex": r"patient\d+"})
    assert len(dataset.records) == len(rows) and dataset.patient_ids_known
    assert {r.patient_id for r in dataset.records} == {f"patient{p:05d}" for p in range(1, 41)}
    splits_of = pd.DataFrame({"patient": [Path(r.path).parts[-3] for r in dataset.records],
                              "split": [r.split for r in dataset.records]}).groupby("patient")["split"].nunique()
    assert (splits_of == 1).all() and len(splits_of) == 40  # each patient's studies in one split
    with pytest.raises(ConfigError, match=r"^data.patient_column and data.patient_regex are two ways"):
        TASK.load_data({**spec, "image_root": "..", "patient_regex": "patient", "patient_column": "Path"})


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"rows": [*CHEXPERT_ROWS[:2], ["c.png", "", "yes", "1", "0"]]}, DataError,
     r"manifest.csv:4: column 'Effusion' holds 'yes': a label column holds 1 \(present\), 0 or blank \(absent\) "
     r"or -1 \(uncertain\)"),
    ({"rows": [*CHEXPERT_ROWS[:2], ["c.png", "2", "0", "1", "0"]]}, DataError, r"manifest.csv:4: column 'Cardiomegaly' "
                                                                               r"holds '2'"),
    ({"options": {"label_columns": ["Cardiomegaly", "Edema"]}}, DataError,
     r"manifest.csv has no column 'Edema' for label_columns: its columns are Path, Cardiomegaly"),
    ({"options": {"label_separator": "|"}}, ConfigError, r"data.label_columns and data.label_separator are two ways"),
    ({"options": {"label_columns": [1, 2]}}, ConfigError, r"data.label_columns must be a list of column names"),
    ({"options": {"label_columns": None, "label_separator": ""}}, ConfigError,
     r"data.label_separator must be a non-empty string such as '\|', got ''"),
])
def test_bad_label_columns_are_one_error_naming_file_row_and_column(tmp_path: Path, change: dict, error: type,
                                                                   message: str) -> None:
    spec = {**_chexpert(tmp_path, change.get("rows", CHEXPERT_ROWS)), **change.get("options", {})}
    with pytest.raises(error, match=message):
        TASK.load_data(spec, whole=True)


@pytest.mark.parametrize(("cell", "message"), [
    ("['effusion', opacity]", r"manifest.csv:3: label \"\['effusion', opacity\]\" looks like a list but is not one "
                              r"of quoted names"),
    ("No Finding|effusion", r"manifest.csv:3: label 'No Finding\|effusion' says 'No Finding' and names findings"),
    ("effusion|Hernia", r"manifest.csv:3: finding 'Hernia' is not one of cardiomegaly, effusion, opacity, "
                        r"pneumothorax \(1 images hold it\): map it with data.label_map \(null drops it\)"),
])
def test_bad_separated_labels_name_the_row(tmp_path: Path, cell: str, message: str) -> None:
    path = _manifest(tmp_path, ["path", "label"], [["a.png", "cardiomegaly|opacity|pneumothorax"], ["b.png", cell]])
    with pytest.raises(DataError, match=message):
        TASK.load_data({"layout": "manifest", "path": str(path), "label_separator": "|"}, whole=True)


PADCHEST_MAP = {"normal": None, "pleural effusion": "effusion", "consolidation": "opacity", "infiltrates": "opacity",
                "cardiomegaly": "cardiomegaly", "pneumothorax": "pneumothorax", "*": None}


def test_padchest_label_cells_written_as_lists_are_read_as_their_items(tmp_path: Path) -> None:
    """PadChest writes its Labels as Python lists (``['pleural effusion', 'kyphosis']``, ``['normal']``) in a
    gzipped CSV, with a few rows unlabelled. Split on ``,`` those gave ``['pleural effusion'``, which
    ``"*": null`` dropped without a word: every image came out a negative. Now each cell's items are its
    findings (as ``json`` reads the cell here), and an unlabelled row is skipped, naming its line."""
    rng = np.random.default_rng(5)
    names = [name for name in PADCHEST_MAP if name != "*"] + ["kyphosis", "chronic changes"]
    rows = []
    for i in range(40):
        image = f"{i // 3}/2165{i:04d}.png"
        write_image(tmp_path / image, seed=i, size=(24, 24))
        picked = ["normal"] if i % 5 == 0 else [str(n) for n in rng.choice(names[1:], size=1 + i % 3, replace=False)]
        rows.append({"ImageID": Path(image).name, "PatientID": f"pt{i // 2}", "Labels": str(picked)})
    rows[7]["Labels"] = ""
    pd.DataFrame(rows).to_csv(tmp_path / "PADCHEST_labels.csv.gz", index=False)
    dataset = TASK.load_data({"layout": "manifest", "path": str(tmp_path / "PADCHEST_labels.csv.gz"),
                              "path_column": "ImageID", "patient_column": "PatientID", "label_column": "Labels",
                              "label_separator": ",", "label_map": PADCHEST_MAP}, whole=True)
    expected = {}
    for row in rows:
        if row["Labels"]:
            mapped = {PADCHEST_MAP.get(name) for name in json.loads(row["Labels"].replace("'", '"'))} - {None}
            expected[Path(row["ImageID"]).stem] = "|".join(sorted(mapped)) or NO_FINDING
    assert {Path(r.path).stem: r.label for r in dataset.records} == expected
    assert len({label for label in expected.values()}) > 5, "the cells hold a variety of findings"
    assert [p.message for p in dataset.problems] == ["empty Labels: list the findings, or write 'No Finding' for none"]
    assert dataset.problems[0].path.endswith("PADCHEST_labels.csv.gz:9")


VINDR = ["Aortic enlargement", "Cardiomegaly", "Consolidation", "Lung Opacity", "Pleural effusion", "Pneumothorax"]
VINDR_MAP = {"Aortic enlargement": None, "Consolidation": "opacity", "Lung Opacity": "opacity",
             "Pleural effusion": "effusion"}


def _vindr(root: Path, images: int = 30) -> tuple[Path, Path, pd.DataFrame]:
    """VinDr-CXR as PhysioNet ships it: ``train/<image_id>.dicom``, ``annotations/image_labels_train.csv`` (a row
    per image and radiologist, a 0/1 column per finding, ``No finding`` last) and the Kaggle competition's
    ``train.csv`` (a row per finding and radiologist, ``No finding`` for none, a box each). Three readers per
    image, two for every fifth (a tie is possible), each missing some of the image's findings. Returns both CSVs
    and the readings, one row per image and reader with a 0/1 column per finding."""
    from test_dicom import write_dicom

    rng = np.random.default_rng(0)
    readings = []
    for i in range(images):
        image_id = f"{i:032x}"
        write_dicom(root / "train" / f"{image_id}.dicom", rng.integers(0, 4096, (24, 24)))
        truth = rng.random(len(VINDR)) < 0.35
        for reader in range(2 if i % 5 == 0 else 3):
            seen = truth & (rng.random(len(VINDR)) < 0.7)
            readings.append({"image_id": image_id, "rad_id": f"R{reader + 1 + i % 4}",
                             **{name: int(mark) for name, mark in zip(VINDR, seen, strict=True)}})
    frame = pd.DataFrame(readings)
    (root / "annotations").mkdir()
    columns = root / "annotations" / "image_labels_train.csv"
    frame.assign(**{"No finding": (frame[VINDR].sum(axis=1) == 0).astype(int)}).to_csv(columns, index=False)
    boxes = [{"image_id": r["image_id"], "class_name": name, "rad_id": r["rad_id"], "x_min": 1, "y_min": 2,
              "x_max": 9, "y_max": 8} for r in readings for name in [n for n in VINDR if r[n]] or ["No finding"]]
    pd.DataFrame(boxes).sample(frac=1, random_state=0).to_csv(root / "train.csv", index=False)  # any row order
    return columns, root / "train.csv", frame


def _merged(readings: pd.DataFrame, majority: bool) -> dict[str, str]:
    """Each image's findings from its readings, computed apart from the runner: a reader marks a task finding if
    it marked any VinDr finding mapped onto it; present if any reader, or more than half of them, marked it."""
    marks = pd.DataFrame({"image_id": readings["image_id"], "cardiomegaly": readings["Cardiomegaly"],
                          "effusion": readings["Pleural effusion"], "pneumothorax": readings["Pneumothorax"],
                          "opacity": readings[["Consolidation", "Lung Opacity"]].max(axis=1)})
    per_image = marks.groupby("image_id")
    votes, readers = per_image.sum(), per_image.size()
    present = votes.gt(readers // 2, axis=0) if majority else votes > 0
    return {image: "|".join(name for name in sorted(present.columns) if row[name]) or NO_FINDING
            for image, row in present.iterrows()}


def test_vindr_readers_rows_merge_into_one_image_by_any_or_majority(tmp_path: Path) -> None:
    """VinDr-CXR lists each image once per radiologist. Before, every such image was a conflict ("keep one row
    with the right one"), and its box file's ``No finding`` was read as a finding. Both of its files now give,
    per image, the findings any reader or most readers marked, as pandas computes them from the readings; a
    reader's several rows (one per box) are one vote, and a tie is absent."""
    columns, boxes, readings = _vindr(tmp_path)
    by_columns = {"layout": "manifest", "path": str(columns), "path_column": "image_id", "image_root": "../train",
                  "label_columns": VINDR, "label_map": VINDR_MAP}
    by_boxes = {"layout": "manifest", "path": str(boxes), "path_column": "image_id", "image_root": "train",
                "label_column": "class_name", "label_separator": "|", "label_map": VINDR_MAP}
    with pytest.raises(DataError, match=r"is listed twice with conflicting labels .* keep one row with the right one "
                                        r"\(several readers' findings of one image, as in VinDr-CXR, merge with "
                                        r"data.merge_rows: any or majority\)"):
        TASK.load_data(by_columns, whole=True)
    for majority in (False, True):
        expected = _merged(readings, majority)
        merge = {"merge_rows": "majority", "reader_column": "rad_id"} if majority else {"merge_rows": "any"}
        for spec in (by_columns, by_boxes):
            dataset = TASK.load_data({**spec, **merge}, whole=True)
            assert {Path(r.path).stem: r.label for r in dataset.records} == expected
            read = len(readings) if majority or spec is by_columns else len(pd.read_csv(boxes))  # a row each
            assert f"{read} readings merged into 30 images (data.merge_rows: {merge['merge_rows']})" \
                in dataset.warnings
    (tmp_path / "train" / "notes.txt").write_text("not an image")  # the CSV's folder is annotations/: counted too
    listed = TASK.load_data({**by_columns, "merge_rows": "any"}, whole=True)
    assert listed.files_found == 32 and [Path(i.path).name for i in listed.ignored] == ["notes.txt"]
    two_readers = readings.groupby("image_id").filter(lambda image: len(image) == 2)
    assert (two_readers.groupby("image_id")[VINDR].sum() == 1).any(axis=None)  # a tie, which is absent
    assert _merged(readings, True) != _merged(readings, False)
    with pytest.raises(ConfigError, match=r"^data.merge_rows: majority counts readers: name the column that says who "
                                          r"read each row with data.reader_column \(VinDr-CXR: rad_id\)"):
        TASK.load_data({**by_boxes, "merge_rows": "majority"}, whole=True)  # a row per box is not a reader


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"merge_rows": "all"}, ConfigError, r"^data.merge_rows must be one of any, majority \(or null\), got 'all'$"),
    ({"label_columns": ["Cardiomegaly", "No finding"]}, ConfigError,
     r"^data.label_columns names 'No finding', which is the absence of the other findings"),
    ({"label_columns": None, "label": None, "reader_column": "rad_id"}, ConfigError,
     r"^data.reader_column unites each reader's rows of findings: it needs data.label_separator"),
    ({"reader_column": "reader"}, DataError, r"image_labels_train.csv has no column 'reader' for reader"),
    ({"merge_rows": "any", "patient_column": "rad_id"}, DataError,
     r"is listed twice with conflicting patient ids 'R1' \(.*image_labels_train.csv:2\) and 'R2'"),
])
def test_bad_reader_options_are_one_error(tmp_path: Path, options: dict, error: type, message: str) -> None:
    """Merged readers still disagree on nothing else: rows of one image that name two patients stay an error."""
    columns, _, _ = _vindr(tmp_path, images=12)
    spec = {"layout": "manifest", "path": str(columns), "path_column": "image_id", "image_root": "../train",
            "label_columns": VINDR, "label_map": VINDR_MAP, **options}
    with pytest.raises(error, match=message):
        TASK.load_data({k: v for k, v in spec.items() if v is not None}, whole=True)


def test_a_row_without_its_reader_is_skipped_naming_the_column(tmp_path: Path) -> None:
    """With ``reader_column``, a blank reader cell would make one more 'reader' of every blank row of an image
    and shift its majority: the row is skipped, naming the column, as a row without a path is."""
    columns, _, readings = _vindr(tmp_path, images=12)
    text = columns.read_text().splitlines()
    text[1] = text[1].replace(f",{readings['rad_id'].iloc[0]},", ",,", 1)
    columns.write_text("\n".join(text) + "\n")
    dataset = TASK.load_data({"layout": "manifest", "path": str(columns), "path_column": "image_id",
                              "image_root": "../train", "label_columns": VINDR, "label_map": VINDR_MAP,
                              "reader_column": "rad_id", "merge_rows": "majority"}, whole=True)
    (problem,) = dataset.problems
    assert str(problem).endswith("image_labels_train.csv:2: empty rad_id: fill it in or remove the row")
    assert len(dataset.records) == 12


MIMIC = ["Cardiomegaly", "Consolidation", "Lung Opacity", "Pleural Effusion", "Pneumothorax"]
MIMIC_SPEC = {"layout": "manifest", "path": "mimic-cxr-2.0.0-split.csv.gz", "path_column": "dicom_id",
              "image_root": "files", "patient_column": "subject_id", "split_column": "split",
              "join": [{"csv": "mimic-cxr-2.0.0-chexpert.csv.gz", "key": ["subject_id", "study_id"]},
                       {"csv": "mimic-cxr-2.0.0-metadata.csv.gz", "key": "dicom_id"}],
              "filters": {"ViewPosition": ["PA", "AP"]}, "label_columns": MIMIC,
              "label_map": {"Pleural Effusion": "effusion", "Consolidation": "opacity", "Lung Opacity": "opacity"}}


def _mimic(root: Path, subjects: int = 12) -> dict[str, pd.DataFrame]:
    """MIMIC-CXR-JPG as PhysioNet ships it: ``files/p10/p<subject>/s<study>/<dicom_id>.jpg`` and three gzipped
    CSVs: the image list with the official split (``validate``, not ``val``), the CheXpert labels per study
    (1.0 / 0.0 / -1.0 / blank), and the metadata with each image's view. Two studies per subject, two images
    per study (one lateral); the last study has no label row, as a few in the real file do not."""
    rng = np.random.default_rng(3)
    images, labels, views = [], [], []
    for s in range(subjects):
        subject = 10000000 + s
        split = ("train", "train", "validate", "test")[s % 4]
        for k in range(2):
            study = 50000000 + 10 * s + k
            labels.append({"subject_id": subject, "study_id": study, **{
                name: rng.choice(["1.0", "0.0", "", "-1.0"], p=[0.35, 0.35, 0.2, 0.1]) for name in MIMIC}})
            for view in ("PA" if s % 2 else "AP", "LATERAL"):
                dicom = f"{subject:x}-{study:x}-{view}"
                write_image(root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg",
                            seed=len(images), size=(24, 24))
                images.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split})
                views.append({"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": view})
    frames = {"split": pd.DataFrame(images), "chexpert": pd.DataFrame(labels[:-1]), "metadata": pd.DataFrame(views)}
    for name, frame in frames.items():
        frame.to_csv(root / f"mimic-cxr-2.0.0-{name}.csv.gz", index=False)  # gzip, by the suffix
    return frames


def test_mimic_cxr_jpg_as_shipped_joins_study_labels_and_views_onto_its_images(tmp_path: Path) -> None:
    """MIMIC-CXR-JPG labels studies, not images, and keeps views in a third file: ``join`` gives each image
    row its study's labels and its view, read as pandas merges the three files; the official split's
    ``validate`` is val; an image whose study has no label row is skipped, naming the row."""
    frames = _mimic(tmp_path)
    dataset = TASK.load_data({**MIMIC_SPEC, "path": str(tmp_path / MIMIC_SPEC["path"])}, whole=True)
    merged = (frames["split"].merge(frames["chexpert"], on=["subject_id", "study_id"])
              .merge(frames["metadata"], on=["dicom_id", "subject_id", "study_id"]))
    merged = merged[merged["ViewPosition"].isin(["PA", "AP"])].fillna("")
    marks = {"cardiomegaly": ["Cardiomegaly"], "effusion": ["Pleural Effusion"], "pneumothorax": ["Pneumothorax"],
             "opacity": ["Consolidation", "Lung Opacity"]}

    def expected(row: pd.Series) -> str:
        present = [name for name, columns in marks.items() if any(row[c] == "1.0" for c in columns)]
        unsure = [name for name, columns in marks.items() if name not in present
                  and any(row[c] == "-1.0" for c in columns)]
        return findings_label(present, unsure)

    read = {Path(r.path).stem: (r.label, r.split, r.patient_id) for r in dataset.records}
    assert read == {row["dicom_id"]: (expected(row), {"validate": "val"}.get(row["split"], row["split"]),
                                      str(row["subject_id"])) for _, row in merged.iterrows()}
    unlabelled = frames["split"].merge(frames["chexpert"], how="left", indicator=True, on=["subject_id", "study_id"])
    assert (unlabelled["_merge"] == "left_only").sum() == len(dataset.problems) == 2
    assert all("no row in mimic-cxr-2.0.0-chexpert.csv.gz with subject_id=10000011, study_id=50000111: add it, or "
               "filter the row out" in p.message for p in dataset.problems)


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"join": [{"csv": "mimic-cxr-2.0.0-chexpert.csv.gz", "key": "subject_id"}]}, DataError,
     r"mimic-cxr-2.0.0-chexpert.csv.gz:3 has the subject_id=10000000 of line 2: join on columns that name one row"),
    ({"join": [{"csv": "mimic-cxr-2.0.0-chexpert.csv.gz", "key": "study"}]}, DataError,
     r"^data.join: the manifest has no column 'study' to join on: its columns are dicom_id, study_id"),
    ({"join": [{"csv": "labels.csv", "key": "study_id"}]}, DataError, r"^data.join: .*labels.csv does not exist"),
    ({"join": {"csv": "mimic-cxr-2.0.0-chexpert.csv.gz"}}, ConfigError,
     r"^data.join entry .* must be \{csv: FILE, key: COLUMN or \[COLUMNS\]\}"),
    ({"join": "mimic-cxr-2.0.0-chexpert.csv.gz"}, ConfigError, r"^data.join must be a list of \{csv: FILE, key"),
])
def test_bad_joins_are_one_error(tmp_path: Path, change: dict, error: type, message: str) -> None:
    _mimic(tmp_path, subjects=4)
    with pytest.raises(error, match=message):
        TASK.load_data({**MIMIC_SPEC, "path": str(tmp_path / MIMIC_SPEC["path"]), **change}, whole=True)


def test_joined_files_that_disagree_skip_the_row_and_a_cut_gzip_is_one_error(tmp_path: Path) -> None:
    """A shared column (subject_id) that the two files give differently is the row's problem, naming both
    places; a gzipped CSV cut short by a broken download is one error saying to fetch it again."""
    frames = _mimic(tmp_path, subjects=4)
    metadata = frames["metadata"].copy()
    metadata.loc[0, "subject_id"] = 19999999
    metadata.to_csv(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    dataset = TASK.load_data({**MIMIC_SPEC, "path": str(tmp_path / MIMIC_SPEC["path"])}, whole=True)
    assert [p.message for p in dataset.problems if "disagree" in p.message] == [
        "subject_id is '10000000' here but '19999999' in mimic-cxr-2.0.0-metadata.csv.gz:2: the two files disagree; "
        "fix one"]
    whole = (tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz").read_bytes()
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"mimic-cxr-2.0.0-metadata.csv.gz is not a whole gzip file .*: download it "
                                        r"again, or name the unpacked .csv"):
        TASK.load_data({**MIMIC_SPEC, "path": str(tmp_path / MIMIC_SPEC["path"])}, whole=True)


def test_a_key_written_another_way_in_the_joined_csv_is_named_with_the_fix(tmp_path: Path) -> None:
    """A labels file saved by pandas with subject_id as floats (``10000000.0``) matches no image row: the
    join stays exact (``007`` and ``7`` may be two patients), but every row's problem shows how the joined
    CSV writes its key, so the user sees why at once rather than 'add it'."""
    frames = _mimic(tmp_path, subjects=4)
    labels = frames["chexpert"].astype({"subject_id": float})
    labels.to_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    with pytest.raises(DataError, match=r"split.csv.gz:2: no row in mimic-cxr-2.0.0-chexpert.csv.gz with "
                                        r"subject_id=10000000, study_id=50000000; line 2 there has "
                                        r"subject_id=10000000.0, study_id=50000000: write the key the same way in "
                                        r"both files"):
        TASK.load_data({**MIMIC_SPEC, "path": str(tmp_path / MIMIC_SPEC["path"])}, whole=True)


def test_merging_rows_needs_a_multi_label_task(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["path", "label"], [["a.png", "normal"], ["b.png", "pneumonia"]])
    with pytest.raises(ConfigError, match=r"^data.merge_rows merges several readers' findings of one image: it needs "
                                          r"a multi-label task \(findings\)"):
        TASKS.get("pneumonia").load_data({"path": str(path), "merge_rows": "any"}, whole=True)


def test_each_split_needs_a_positive_and_a_negative_of_every_finding(tmp_path: Path) -> None:
    """The split-needs check asks the labels finding by finding: here val's only effusion is uncertain."""
    rows = []
    for split, labels in (("train", ["cardiomegaly|effusion", "opacity|pneumothorax", NO_FINDING]),
                          ("val", ["cardiomegaly|effusion?", "opacity|pneumothorax", NO_FINDING]),
                          ("test", ["cardiomegaly|effusion", "opacity|pneumothorax", NO_FINDING])):
        rows += [[f"{split}{i}.png", label, split] for i, label in enumerate(labels)]
    path = _manifest(tmp_path, ["path", "label", "split"], rows)
    with pytest.raises(DataError, match=r"split 'val' has no images with 'effusion' \(2 patient groups of them"):
        TASK.load_data({"path": str(path)})
    rows[3][1] = "cardiomegaly|effusion"
    path = _manifest(tmp_path, ["path", "label", "split"], rows)
    assert {r.split for r in TASK.load_data({"path": str(path)}).records} == {"train", "val", "test"}


def test_a_finding_name_that_would_break_labels_or_metric_keys_fails_at_registration() -> None:
    for classes, message in ((("a|b", "c"), "cannot contain '|'"), (("macro", "b"), "collide with the averages"),
                             (("Pleural Effusion", "pleural effusion"), "same metric key twice"),
                             (("a",), "two findings at least")):
        with pytest.raises(ValueError, match=message):
            MultilabelTask(name="bad", classes=classes)


def test_the_loss_leaves_out_unknown_labels_and_balances_each_finding() -> None:
    """Weights travel in ``y_true`` after the targets: a weight-0 entry cannot move the loss, and balanced weights
    give each finding's positives and negatives the same total weight."""
    import keras

    loss = TASK.loss(TASK.bind_params({}))
    scores = keras.ops.convert_to_tensor([[0.9, 0.2, 0.6, 0.3]])
    weights = [[1.0, 0.0, 1.0, 1.0]]
    one = float(loss(keras.ops.convert_to_tensor([[1.0, 0.0, 1.0, 0.0] + weights[0]]), scores)[0])
    other = float(loss(keras.ops.convert_to_tensor([[1.0, 1.0, 1.0, 0.0] + weights[0]]), scores)[0])
    expected = -(np.log(0.9) + np.log(0.6) + np.log(0.7)) / 4
    assert one == pytest.approx(other) == pytest.approx(expected, rel=1e-5)
    labels = ["cardiomegaly", "cardiomegaly|effusion", NO_FINDING, "opacity|pneumothorax", "effusion?", "pneumothorax"]
    split = Split("train", [Record(f"{i}.png", label) for i, label in enumerate(labels)], np.zeros((6, 8, 8, 1)))
    _, packed, _ = TASK.training_arrays(split, TASK.bind_params({"label_weights": "balanced"}))
    y, w = packed[:, :4], packed[:, 4:]
    np.testing.assert_allclose((w * y).sum(axis=0), (w * (1 - y)).sum(axis=0))
    assert w[4, 1] == 0  # the uncertain effusion is left out


# -------------------------------------------------------------------------------------- demo and data check


def test_the_shortcut_check_asks_finding_by_finding(tmp_path: Path) -> None:
    """Every effusion image is a JPEG, every other one a PNG: metadata gives that one finding away, which the
    check must see (each finding against the rest), not drown among the combinations of findings."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        shown = [finding for finding in DEMO_FINDINGS if rng.random() < 0.4]
        rows.append([f"{i}.jpg" if "effusion" in shown else f"{i}.png", findings_label(shown)])
    dataset = TASK.load_data({"path": str(_manifest(tmp_path, ["path", "label"], rows))}, whole=True)
    warnings = shortcut_warnings(prepare(dataset, 32, cache_dir=tmp_path / "cache", whole=True))
    assert any("image metadata alone" in warning for warning in warnings), warnings



def test_data_demo_writes_the_findings_set_and_data_check_counts_each_finding(tmp_path: Path, capsys) -> None:
    assert main(["data", "demo", "--out", str(tmp_path), "--n", "90", "--size", "32"]) == 0
    assert "findings" in capsys.readouterr().out
    with (tmp_path / "findings" / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90 and all(set(read_findings(r["label"])[0]) <= set(DEMO_FINDINGS) for r in rows)
    assert main(["data", "check", str(tmp_path / "findings"), "--task", "findings"]) == 0
    out = capsys.readouterr().out
    assert "classes: cardiomegaly, effusion, opacity, pneumothorax" in out
    shown = {name: 0 for name in (*DEMO_FINDINGS, NO_FINDING)}
    for line in out.splitlines():
        if line.strip().startswith(("train ", "val ", "test ")):
            for part in line.split(": ", 1)[1].split(", "):
                name, _, count = part.rpartition(" ")
                shown[name] += int(count)
    assert shown == {name: sum(name in label_parts(r["label"]) for r in rows) for name in shown}


def test_demo_findings_are_reproducible_and_learnable(tmp_path: Path) -> None:
    """Same seed, same bytes; each painted finding is visible to a linear model on 32 px pixels (the CNN's
    learning is the trial test's), the pneumothorax rim least (as on real radiographs)."""
    manifest = write_demo(tmp_path / "a", n=240, seed=3, size=48, classes=DEMO_FINDINGS)
    write_demo(tmp_path / "b", n=240, seed=3, size=48, classes=DEMO_FINDINGS)
    assert manifest.read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    assert (tmp_path / "a" / rows[5]["file"]).read_bytes() == (tmp_path / "b" / rows[5]["file"]).read_bytes()
    pixels = np.stack([np.asarray(Image.open(tmp_path / "a" / r["file"]).resize((32, 32)), float).ravel() / 255
                       for r in rows])
    groups = [r["patient_id"] for r in rows]
    auc = {}
    for finding in DEMO_FINDINGS:
        y = np.array([finding in read_findings(r["label"])[0] for r in rows], int)
        assert 0.2 < y.mean() < 0.5
        scores = cross_val_predict(LogisticRegression(C=0.05, max_iter=2000), pixels, y, groups=groups,
                                   cv=GroupKFold(4), method="predict_proba")[:, 1]
        auc[finding] = roc_auc_score(y, scores)
    assert min(auc["cardiomegaly"], auc["effusion"], auc["opacity"]) > 0.8 and auc["pneumothorax"] > 0.5, auc
    cardiomegaly = {p: {"cardiomegaly" in read_findings(r["label"])[0] for r in rows if r["patient_id"] == p}
                    for p in groups}
    assert all(len(states) == 1 for states in cardiomegaly.values())  # the patient's heart, in every image


# ------------------------------------------------------------------------------------------- a real trial


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory):
    """One real tiny trial on the demo findings set (baseline model, 32 px, 2 epochs), shared by the tests below."""
    out = tmp_path_factory.mktemp("findings-trial")
    config = make_config({"task": "findings", "model": "baseline", "image_size": 32, "epochs": 2, "batch_size": 16,
                          "bootstrap": 100, "data": {"n": 160, "size": 48}, "cache_dir": str(out / "cache")})
    return run_trial(config, out / "trials", verbose=False)


def _rows(trial, split: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    predictions = pd.read_parquet(trial.directory / "predictions.parquet")
    rows = predictions[predictions["split"] == split]
    return (rows, np.stack([rows[f"target_{k}"] for k in KEYS], axis=1),
            np.stack([rows[f"score_{k}"] for k in KEYS], axis=1))


def test_a_trial_writes_per_finding_metrics_and_plots(trial) -> None:
    result = json.loads((trial.directory / "result.json").read_text())
    assert result["monitor"] == "val_auc_macro" and result["data"]["classes"] == list(DEMO_FINDINGS)
    assert result["plot_error"] is None and result["plots"] == ["training_curves.png", "roc_pr.png", "gradcam.png"]
    assert all((trial.directory / name).stat().st_size > 10_000 for name in result["plots"])
    assert len(result["history"]["val_auc_macro"]) == 2
    val, test = result["metrics"]["val"], result["metrics"]["test"]
    for key in KEYS:
        assert {f"auc_{key}", f"pr_auc_{key}", f"f1_{key}"} <= set(val)
        assert {f"threshold_{key}", f"f1_tuned_{key}"} <= set(test) - set(val)  # tuned on val, applied to test
    for average in ("auc_macro", "auc_micro", "pr_auc_macro", "pr_auc_micro"):
        assert 0 <= test[f"{average}_ci_low"] <= test[f"{average}_ci_high"] <= 1
    assert 0 <= val["auc_macro"] <= 1


def test_trial_metrics_match_scikit_learn_from_predictions(trial) -> None:
    """Every headline figure recomputed from ``predictions.parquet`` with scikit-learn; each threshold is the
    F1-best one on the validation rows (the demo has no uncertain labels: every target is 0 or 1)."""
    found = trial.metrics["test"]
    _, y, s = _rows(trial, "test")
    _, y_val, s_val = _rows(trial, "val")
    assert set(np.unique(y)) == {0, 1}
    for j, key in enumerate(KEYS):
        assert found[f"auc_{key}"] == pytest.approx(roc_auc_score(y[:, j], s[:, j]))
        assert found[f"pr_auc_{key}"] == pytest.approx(average_precision_score(y[:, j], s[:, j]))
        threshold = found[f"threshold_{key}"]
        assert threshold == metrics.tune_threshold(y_val[:, j], s_val[:, j], "f1")
        best_on_val = max(f1_score(y_val[:, j], s_val[:, j] >= t) for t in np.unique(s_val[:, j]))
        assert f1_score(y_val[:, j], s_val[:, j] >= threshold) == pytest.approx(best_on_val)
        assert found[f"f1_tuned_{key}"] == pytest.approx(f1_score(y[:, j], s[:, j] >= threshold))
        assert found[f"f1_{key}"] == pytest.approx(f1_score(y[:, j], s[:, j] >= 0.5))
    thresholds = np.array([found[f"threshold_{key}"] for key in KEYS])
    assert found["auc_macro"] == pytest.approx(roc_auc_score(y, s, average="macro"))
    assert found["auc_micro"] == pytest.approx(roc_auc_score(y, s, average="micro"))
    assert found["pr_auc_macro"] == pytest.approx(average_precision_score(y, s, average="macro"))
    assert found["pr_auc_micro"] == pytest.approx(average_precision_score(y, s, average="micro"))
    assert found["f1_tuned_macro"] == pytest.approx(f1_score(y, s >= thresholds, average="macro"))
    assert found["f1_tuned_micro"] == pytest.approx(f1_score(y, s >= thresholds, average="micro"))
    assert trial.metrics["val"]["auc_macro"] == pytest.approx(roc_auc_score(y_val, s_val, average="macro"))


def test_left_out_labels_are_left_out_of_every_metric() -> None:
    """With ``uncertain: ignore`` an uncertain label counts nowhere: the metrics equal scikit-learn's on the known
    labels of each finding, and the micro average pools only known entries."""
    rng = np.random.default_rng(1)
    labels = [findings_label(rng.choice(DEMO_FINDINGS, rng.integers(0, 3), replace=False),
                             rng.choice(DEMO_FINDINGS, rng.integers(0, 2), replace=False)) for _ in range(60)]
    split = Split("test", [Record(f"{i}.png", label) for i, label in enumerate(labels)], np.zeros((60, 8, 8, 1)))
    scores = rng.random((60, 4))
    params = TASK.bind_params({})
    found = TASK.evaluate(split, scores, params)
    states = TASK.prediction_columns(split, scores)
    target = np.stack([states[f"target_{k}"] for k in KEYS], axis=1)
    known = target >= 0
    assert not known.all()
    for j, key in enumerate(KEYS):
        assert found[f"auc_{key}"] == pytest.approx(roc_auc_score(target[known[:, j], j], scores[known[:, j], j]))
    assert found["auc_micro"] == pytest.approx(roc_auc_score(target[known], scores[known]))


def test_the_leaderboard_row_has_the_sweep_metric(trial, tmp_path: Path) -> None:
    row = row_from_result(trial.result, sweep_id="findings-1", sweep_name="findings", sweep_metric="val_auc_macro",
                          sweep_mode="max")
    write_row(tmp_path, row)
    board = load(tmp_path)
    assert board.loc[0, "val_auc_macro"] == pytest.approx(trial.metrics["val"]["auc_macro"])
    assert board.loc[0, "test_f1_tuned_macro"] == pytest.approx(trial.metrics["test"]["f1_tuned_macro"])
    assert board.loc[0, "hp_label_weights"] == "none" and board.loc[0, "hp_uncertain"] == "ignore"
