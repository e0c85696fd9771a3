"""The synthetic demo data: reproducible files, the layouts the loaders expect, and a spatial class signal.

The learnability checks use a linear model on a few hundred tiny images instead of a CNN so the file stays
fast and deterministic; the CNN calibration of the difficulty is done once by hand, not on every run.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score

from runner.data.synthetic import DEMO_CLASSES, render_chest, write_demo
from runner.errors import DataError


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img)


@pytest.mark.parametrize("masks", [False, True])
def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path, masks: bool) -> None:
    kwargs = {"n": 12, "size": 32, "classes": DEMO_CLASSES, "masks": masks}
    write_demo(tmp_path / "a", seed=5, **kwargs)
    write_demo(tmp_path / "b", seed=5, **kwargs)
    write_demo(tmp_path / "c", seed=6, **kwargs)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    images = [k for k in a if k.endswith(".png") and not k.startswith("masks")]
    masks_written = [k for k in a if k.startswith("masks/")]
    assert len(images) == 12 and len(masks_written) == (12 if masks else 0)
    assert len(a) == len(images) + len(masks_written) + 1 and "manifest.csv" in a  # nothing else is written
    assert a != c
    assert not any(a[k] == c.get(k) for k in images)  # empty masks may well coincide, images never


def test_render_chest_is_deterministic_and_only_pneumothorax_has_a_mask() -> None:
    first, no_mask = render_chest(np.random.default_rng(3), "covid", 40)
    again, _ = render_chest(np.random.default_rng(3), "covid", 40)
    assert first.dtype == np.uint8 and first.shape == (40, 40)
    assert no_mask is None
    np.testing.assert_array_equal(first, again)
    _, mask = render_chest(np.random.default_rng(3), "normal", 40, pneumothorax=True)
    assert mask is not None and mask.dtype == np.uint8 and mask.shape == (40, 40)
    assert set(np.unique(mask)) == {0, 255}


def test_anatomy_seed_not_the_generator_sets_the_body() -> None:
    """Images of one patient share anatomy_seed; the generator still varies pose, exposure and noise."""
    base, _ = render_chest(np.random.default_rng(4), "normal", 64, anatomy_seed=7)
    same, _ = render_chest(np.random.default_rng(4), "normal", 64, anatomy_seed=7)
    other_body, _ = render_chest(np.random.default_rng(4), "normal", 64, anatomy_seed=8)
    other_shot, _ = render_chest(np.random.default_rng(5), "normal", 64, anatomy_seed=7)
    np.testing.assert_array_equal(base, same)
    assert not np.array_equal(base, other_body)
    assert not np.array_equal(base, other_shot)


def test_classification_layout(tmp_path: Path) -> None:
    manifest = write_demo(tmp_path, n=61, seed=1, size=32, classes=DEMO_CLASSES)
    assert manifest == tmp_path / "manifest.csv"
    assert manifest.read_text(encoding="utf-8").splitlines()[0] == "file,label,patient_id"
    rows = _rows(manifest)
    assert len(rows) == 61
    assert Counter(r["label"] for r in rows) == {"covid": 21, "normal": 20, "pneumonia": 20}
    for r in rows:
        assert r["file"].split("/")[0] == r["label"]
        assert re.fullmatch(r"demo-p\d{5}", r["patient_id"])
        assert _pixels(tmp_path / r["file"]).shape == (32, 32)
    assert len(list(tmp_path.rglob("*.png"))) == 61

    labels_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        labels_of[r["patient_id"]].add(r["label"])
    per_patient = Counter(r["patient_id"] for r in rows)
    assert all(len(labels) == 1 for labels in labels_of.values())
    assert max(per_patient.values()) > 1 and len(per_patient) < 61 / 1.5
    assert all(1 <= k <= 4 for k in per_patient.values())


def test_segmentation_layout_and_masks(tmp_path: Path) -> None:
    rows = _rows(write_demo(tmp_path, n=40, seed=2, size=48, masks=True))
    assert len(rows) == 40
    assert {r["label"] for r in rows} == {"pneumothorax", "normal"}
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(r["file"] for r in rows)
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == sorted(r["file"] for r in rows)

    darker = []
    for r in rows:
        image = _pixels(tmp_path / "images" / r["file"])
        mask = _pixels(tmp_path / "masks" / r["file"])
        assert mask.shape == image.shape == (48, 48)
        assert set(np.unique(mask)) <= {0, 255}
        inside = mask > 0
        assert inside.any() == (r["label"] == "pneumothorax")
        if inside.any():
            # The same spot of the other lung (a mirror image) is healthy lung of the same patient.
            darker.append(image[inside[:, ::-1]].mean() - image[inside].mean())
    assert 0.3 <= len(darker) / len(rows) <= 0.7
    assert np.mean(darker) > 5
    assert np.mean(np.array(darker) > 0) > 0.8


def test_pneumothorax_changes_the_image_only_around_its_mask() -> None:
    """Drawn last from the same generator, the pneumothorax leaves the rest of the image unchanged."""
    for seed in range(5):
        healthy, _ = render_chest(np.random.default_rng(seed), "normal", 64)
        sick, mask = render_chest(np.random.default_rng(seed), "normal", 64, pneumothorax=True)
        assert mask is not None
        inside = mask > 0
        near = binary_dilation(inside, iterations=3)
        np.testing.assert_array_equal(sick[~near], healthy[~near])
        assert sick[inside].astype(float).mean() < healthy[inside].astype(float).mean()


@pytest.fixture(scope="module")
def binary_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """300 normal/pneumonia images at 32 px, downsampled to 16 px: (pixels, is_pneumonia, patient ids)."""
    root = tmp_path_factory.mktemp("demo")
    rows = _rows(write_demo(root, n=300, seed=11, size=32))
    small = [Image.open(root / r["file"]).resize((16, 16), Image.BILINEAR) for r in rows]
    pixels = np.stack([np.asarray(img, np.float32).ravel() for img in small])
    labels = np.array([r["label"] == "pneumonia" for r in rows])
    return pixels, labels, [r["patient_id"] for r in rows]


def test_class_signal_is_learnable(binary_set: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    pixels, labels, patients = binary_set
    # Per-image standardisation removes the random exposure; what is left is where the lungs are bright.
    z = (pixels - pixels.mean(1, keepdims=True)) / pixels.std(1, keepdims=True)
    model = LogisticRegression(C=0.05, max_iter=2000)
    accuracy = cross_val_score(model, z, labels, cv=GroupKFold(5), groups=patients).mean()
    assert accuracy > 0.75


def test_global_intensity_alone_does_not_separate_classes(
    binary_set: tuple[np.ndarray, np.ndarray, list[str]],
) -> None:
    pixels, labels, patients = binary_set
    features = np.stack([pixels.mean(1), pixels.std(1)], axis=1)
    auc = cross_val_score(
        LogisticRegression(), features, labels, cv=GroupKFold(5), groups=patients, scoring="roc_auc"
    ).mean()
    assert auc < 0.85


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("normal", "flu")}, "unknown demo class 'flu': choose from covid, normal, pneumonia"),
        ({"n": 2, "classes": DEMO_CLASSES}, "demo set of n=2 images cannot cover its 3 classes: pass n >= 3"),
        ({"n": 1, "masks": True}, "demo set of n=1 images cannot cover its 2 classes: pass n >= 2"),
        ({"size": 16}, "demo image size 16 is too small: pass a size of at least 32"),
        ({"classes": ()}, "no demo classes given: choose from covid, normal, pneumonia"),
        ({"seed": -1}, "demo seed -1 is negative: pass a seed of 0 or more"),
        (
            {"classes": ("normal", "normal")},
            "demo classes normal, normal name a class twice: list each class once",
        ),
    ],
)
def test_bad_arguments_raise_data_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError) as caught:
        write_demo(tmp_path / "out", **kwargs)
    assert str(caught.value) == message
    assert not (tmp_path / "out").exists()


def test_render_chest_rejects_unknown_label() -> None:
    with pytest.raises(DataError, match="unknown demo class 'flu': choose from covid, normal, pneumonia"):
        render_chest(np.random.default_rng(0), "flu", 64)
