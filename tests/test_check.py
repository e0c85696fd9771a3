"""``runner data check``: the summary, the exit code, and the shortcut warnings."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, write_image

from runner.cli import main
from runner.data import Record, prepare
from runner.data.check import metadata_shortcut_auc, shortcut_warnings, source_shortcut
from runner.tasks import TASKS


def test_check_prints_counts_and_exits_zero(tmp_path: Path, capsys) -> None:
    make_class_folders(tmp_path, {"normal": 12, "pneumonia": 12})
    (tmp_path / "pneumonia" / "broken.png").write_text("nope")
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia"]) == 0
    out = capsys.readouterr().out
    assert "classes: normal, pneumonia" in out
    assert "train     17 images" in out
    assert "1 files skipped:" in out and "broken.png: not an image Pillow can read" in out
    assert "warning: no patient ids" in out
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia", "--strict"]) == 1


def test_check_counts_patients_and_says_which_images_have_no_id(tmp_path: Path, capsys) -> None:
    """Images without a patient id were counted as '0 patients', though each is split as a patient of its own:
    the line now says there are no ids, or how many images lack one beside the patients counted."""
    make_class_folders(tmp_path, {"normal": 12, "pneumonia": 12})
    images = sorted((tmp_path / "normal").iterdir()) + sorted((tmp_path / "pneumonia").iterdir())
    ids = ["" if i % 4 == 0 else f"P{i // 2}" for i in range(len(images))]
    (tmp_path / "manifest.csv").write_text("path,label,patient_id\n" + "".join(
        f"{p.relative_to(tmp_path)},{p.parent.name},{patient}\n" for p, patient in zip(images, ids, strict=True)))
    assert main(["data", "check", str(tmp_path / "manifest.csv"), "--task", "pneumonia"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " images, " in line]
    found = [re.search(r" images, +(\d+) patients(?: \+ (\d+) images without an id)?: ", line) for line in lines]
    assert len(lines) == 3 and all(found), lines
    assert sum(int(match.group(2) or 0) for match in found) == ids.count("")
    assert sum(int(match.group(1)) for match in found) == len(set(ids) - {""})
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia", "--layout", "class_folders"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " images, " in line]
    assert len(lines) == 3 and all(" images,    no patient ids: " in line for line in lines), lines


KERMANY = {  # split -> class folder -> patients, each with two images (Kaggle's chest_xray naming)
    "train": {"NORMAL": ["IM-0115", "IM-0117", "NORMAL2-IM-0588", "NORMAL2-IM-0115"],
              "PNEUMONIA": ["person1_bacteria", "person3_virus", "person7_bacteria", "person8_virus"]},
    "val": {"NORMAL": ["IM-0120", "IM-0122"], "PNEUMONIA": ["person20_bacteria", "person21_virus"]},
    "test": {"NORMAL": ["IM-0001", "IM-0003"], "PNEUMONIA": ["person100_bacteria", "person101_virus"]},
}


def test_check_of_kermany_names_the_patient_regex_its_file_names_need(tmp_path: Path, capsys) -> None:
    """Kaggle's pediatric set has no patient column, but its file names carry the patient (``IM-0115-0001``,
    ``person1_bacteria_1``; ``NORMAL2-IM-0115`` is another series than ``IM-0115``): data check suggests the
    regex with the patients it finds, no longer says the shipped splits are drawn one image per patient, and
    the regex it suggests, given back, groups the images into those patients."""
    images = 0
    for split, classes in KERMANY.items():
        for folder, patients in classes.items():
            for n, patient in enumerate(patients):
                for k in (1, 2):
                    name = f"{patient}-000{k}" if "IM-" in patient else f"{patient}_{10 * n + k}"
                    images += 1
                    write_image(tmp_path / split / folder / f"{name}.jpeg", seed=images)
    patients = sum(len(p) for classes in KERMANY.values() for p in classes.values())
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia"]) == 0
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if "warning: no patient ids" in line]
    regex = r"((?:NORMAL2-)?IM-\d+|person\d+)"
    assert warning.endswith(f"no patient ids for any of the {images} images: each counts as a patient of its "
                            "own, so one patient's images can be in two splits unseen (a leak); add a patient_id "
                            "column or data.patient_regex: the file names follow the naming of Kermany's pediatric "
                            "set (IM-0115-0001.jpeg, NORMAL2-IM-0588-0001.jpeg, person1_bacteria_1.jpeg): "
                            f"data.patient_regex: '{regex}' finds {patients} patients in them"), warning
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia", f"--set=data.patient_regex={regex}"]) == 0
    out = capsys.readouterr().out
    assert "no patient ids" not in out
    assert [int(n) for n in re.findall(r" images, +(\d+) patients: ", out)] == [
        sum(len(p) for p in KERMANY[split].values()) for split in ("train", "val", "test")]


def test_check_takes_data_options_with_or_without_the_data_prefix(tmp_path: Path, capsys) -> None:
    """``train`` and ``sweep`` write data options ``--set data.KEY=V``; ``data check`` took only ``KEY=V`` and
    called ``data`` an unknown option, so a line copied from a sweep command could not check its data."""
    make_class_folders(tmp_path, {"normal": 12, "pneumonia": 12, "covid": 12})
    outputs = []
    for prefix in ("", "data."):
        assert main(["data", "check", str(tmp_path), "--task", "pneumonia", f"--set={prefix}classes=normal,pneumonia",
                     f"--set={prefix}split.train=0.5", "--set=split.val=0.25", "--set=split.test=0.25"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "classes: normal, pneumonia\n  train     12 images" in outputs[0]  # the classes and ratios given, each
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia", "--set=data=demo"]) == 2
    assert "--set data='demo': data check takes the data path as its argument" in capsys.readouterr().err


def test_check_of_a_folder_of_data_sets_names_the_sub_folders_to_check(tmp_path: Path, capsys) -> None:
    """``data demo --out DIR`` writes one data set per layout; checking DIR itself names them, and a named one
    checks cleanly. A class-folder root with an empty class keeps its own error."""
    demo = tmp_path / "demo"
    assert main(["data", "demo", "--out", str(demo), "--n", "30", "--size", "32"]) == 0
    result = subprocess.run([sys.executable, "-m", "runner", "data", "check", str(demo), "--task", "pneumonia"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (
        f"error: {demo} holds 3 data sets, one per sub-folder, not one: run python -m runner data check SUB-FOLDER "
        f"--task pneumonia on one of {demo / 'classification'} (manifest), {demo / 'findings'} (manifest), "
        f"{demo / 'segmentation'} (image_masks)\n")
    capsys.readouterr()
    assert main(["data", "check", str(demo / "classification"), "--task", "covid"]) == 0

    make_class_folders(tmp_path / "plain", {"normal": 3, "pneumonia": 3})
    (tmp_path / "plain" / "effusion").mkdir()
    empty = subprocess.run([sys.executable, "-m", "runner", "data", "check", str(tmp_path / "plain"), "--task",
                            "pneumonia"], capture_output=True, text=True)
    assert "class folder" in empty.stderr and "has no .png" in empty.stderr, empty.stderr


def test_check_errors_are_one_line(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3, "effusion": 3})
    result = subprocess.run([sys.executable, "-m", "runner", "data", "check", str(tmp_path), "--task", "pneumonia"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "label 'effusion' is not one of normal, pneumonia" in result.stderr
    bad_task = subprocess.run([sys.executable, "-m", "runner", "data", "check", str(tmp_path), "--task", "tb"],
                              capture_output=True, text=True)
    assert bad_task.stderr.strip() == ("error: unknown task 'tb': choose one of anomaly, covid, findings, pneumonia, "
                                       "pneumothorax")


def test_source_shortcut() -> None:
    confounded = [Record(path=f"{i}", label=label, source=source) for i, (label, source) in
                  enumerate([("covid", "cohen"), ("covid", "cohen"), ("normal", "kermany"), ("normal", "nih")])]
    warning = source_shortcut(confounded)
    assert warning and "each class comes from its own source (covid: cohen; normal: kermany, nih)" in warning
    mixed = [*confounded, Record(path="x", label="normal", source="cohen")]
    assert source_shortcut(mixed) is None


def test_metadata_shortcut_fires_on_image_size(tmp_path: Path, capsys) -> None:
    """Classes told apart by image size alone: the classic confound of merged COVID-19 data sets."""
    for i in range(20):
        write_image(tmp_path / "normal" / f"n{i}.png", seed=i, size=(64, 64))
        write_image(tmp_path / "pneumonia" / f"p{i}.jpg", seed=100 + i, size=(96, 80))
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia"]) == 0
    assert "image metadata alone (size, aspect, mean/std intensity, file type) separates the classes" in \
        capsys.readouterr().out


def test_shortcut_checks_run_once_per_data_set_and_again_after_relabelling(tmp_path: Path) -> None:
    """Every trial stores the shortcut warnings; the first caller leaves them beside the cache file and later
    ones read them back, unless what the checks read (labels, patients, sources) changed."""
    for i in range(20):
        write_image(tmp_path / "data" / "normal" / f"n{i}.png", seed=i, size=(64, 64))
        write_image(tmp_path / "data" / "pneumonia" / f"p{i}.jpg", seed=100 + i, size=(96, 80))
    dataset = TASKS.get("pneumonia").load_data({"path": str(tmp_path / "data")}, whole=True)
    cached = prepare(dataset, 32, cache_dir=tmp_path / "cache", whole=True)
    found = shortcut_warnings(cached)
    assert any("image metadata alone" in warning for warning in found), found
    memo_file = cached.path.with_name(f"{cached.path.name}.shortcuts.json")
    assert list(json.loads(memo_file.read_text()).values()) == [found]
    memo_file.write_text(json.dumps({key: ["read from the memo"] for key in json.loads(memo_file.read_text())}))
    assert shortcut_warnings(cached) == ["read from the memo"]  # not computed again
    shuffled = [dataclasses.replace(r, label="normal" if i % 2 else "pneumonia") for i, r in enumerate(dataset.records)]
    relabelled = prepare(dataclasses.replace(dataset, records=shuffled), 32, cache_dir=tmp_path / "cache", whole=True)
    assert relabelled.path == cached.path  # the same decoded pixels
    checked_again = shortcut_warnings(relabelled)
    assert checked_again != ["read from the memo"] and len(json.loads(memo_file.read_text())) == 2
    assert not any("image metadata alone" in warning for warning in checked_again)  # labels no longer follow size


def test_metadata_auc_near_chance_without_a_confound() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    labels = ["ab"[i % 2] for i in range(200)]
    auc = metadata_shortcut_auc(features, labels, [str(i) for i in range(200)])
    assert auc is not None and auc < 0.7


@pytest.mark.slow  # decodes the 1,680 real radiographs, four data checks
def test_check_passes_on_the_shared_real_images(shared_data: Path, capsys) -> None:
    kermany = shared_data / "kermany-subset"
    assert main(["data", "check", str(kermany), "--task", "pneumonia"]) == 0
    assert main(["data", "check", str(kermany), "--task", "pneumonia", "--layout", "class_folders"]) == 0
    assert main(["data", "check", str(shared_data / "lungseg"), "--task", "pneumothorax"]) == 0
    assert main(["data", "check", str(shared_data / "lungseg" / "manifest.csv"), "--task", "pneumothorax",
                 "--set", "image_root=images", "--set", "mask_root=masks"]) == 0
    out = capsys.readouterr().out
    assert "train    840 images" in out and "image sizes: 224x224 to 224x224 px (png)" in out
