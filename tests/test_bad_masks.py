"""Masks in every common binary encoding, EXIF orientation, degenerate images, byte-identical copies and
classes lost to decoding: each on real files written here, asserting the exact pixels or message."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, write_image
from PIL import Image, ImageOps

from runner.cli import main
from runner.data import load_dataset, prepare
from runner.data.check import degenerate_warning, duplicate_warning, empty_positive_warning, mask_summary
from runner.data.images import load_image, load_mask
from runner.errors import ConfigError, DataError
from runner.tasks import TASKS

SIZE = 32
WIDTH, HEIGHT = 48, 40


def _truth() -> np.ndarray:
    """A foreground with a thin line and a blob: a 1-px line is what a resize-then-threshold loses first."""
    truth = np.zeros((HEIGHT, WIDTH), bool)
    truth[6:20, 4:30] = True
    truth[30, :] = True
    truth[25:38, 40:46] = True
    return truth


def _expected(truth: np.ndarray, size: int = SIZE) -> np.ndarray:
    resized = Image.fromarray(truth.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized)


def _grey(values: np.ndarray, on: int, dtype=np.uint8) -> Image.Image:
    return Image.fromarray(np.where(values, on, 0).astype(dtype))


def _palette(truth: np.ndarray) -> Image.Image:
    image = Image.fromarray(truth.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    return image


def _red(truth: np.ndarray) -> Image.Image:
    pixels = np.zeros((*truth.shape, 3), np.uint8)
    pixels[truth, 0] = 255
    return Image.fromarray(pixels)


def _with_alpha(truth: np.ndarray, channels: int) -> Image.Image:
    """Foreground opaque white; a transparent white square (background by the rule) elsewhere."""
    pixels = np.zeros((*truth.shape, channels + 1), np.uint8)
    pixels[truth, :channels] = 255
    pixels[truth, channels] = 255
    pixels[0:4, 0:4, :channels] = 255  # coloured but fully transparent
    return Image.fromarray(pixels, mode="RGBA" if channels == 3 else "LA")


def _label_map(truth: np.ndarray) -> Image.Image:
    values = truth.astype(np.uint8)
    values[:, WIDTH // 2:] *= 2  # left lung 1, right lung 2
    return Image.fromarray(values)


ENCODINGS = {
    "zero_one": (lambda t: _grey(t, 1), "0/1 grey"),
    "zero_255": (lambda t: _grey(t, 255), "0/255 grey"),
    "boolean": (lambda t: Image.fromarray(t), "boolean"),
    "sixteen_bit_one": (lambda t: _grey(t, 1, np.uint16), "16-bit 0/1 grey"),
    "sixteen_bit_full": (lambda t: _grey(t, 65535, np.uint16), "16-bit 0/65535 grey"),
    "palette": (_palette, "palette"),
    "rgb_red": (_red, "RGB colour"),
    "rgba": (lambda t: _with_alpha(t, 3), "RGBA colour"),
    "grey_alpha": (lambda t: _with_alpha(t, 1), "grey + alpha"),
    "label_map": (_label_map, "grey 0..2"),
}


@pytest.mark.parametrize("name", ENCODINGS)
def test_mask_encoding_reads_its_foreground(name: str, tmp_path: Path) -> None:
    write, encoding = ENCODINGS[name]
    truth = _truth()
    path = tmp_path / f"{name}.png"
    write(truth).save(path)
    image_path = write_image(tmp_path / "image.png", size=(WIDTH, HEIGHT))
    _, info = load_image(str(image_path), SIZE)
    mask, read = load_mask(str(path), SIZE, info, str(image_path))
    assert read.encoding == encoding
    assert read.fraction == pytest.approx(truth.mean())
    assert mask.shape == (SIZE, SIZE, 1) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask[..., 0], _expected(truth))


def test_jpeg_mask_is_cut_at_half_range_not_at_its_compression_noise(tmp_path: Path) -> None:
    truth = _truth()
    path = tmp_path / "mask.jpg"
    _grey(truth, 255).save(path, quality=70)
    decoded = np.asarray(Image.open(path))
    assert 0 < decoded[~truth].max() < 128  # the noise a non-zero rule would count as foreground
    image_path = write_image(tmp_path / "image.png", size=(WIDTH, HEIGHT))
    mask, read = load_mask(str(path), SIZE, load_image(str(image_path), SIZE)[1], str(image_path))
    assert read.encoding == "JPEG grey above 127"
    assert read.fraction == pytest.approx((decoded > 127).mean())
    assert np.array_equal(mask[..., 0], _expected(decoded > 127))
    assert np.mean((decoded > 127) != truth) < 0.01


def _mask_set(root: Path, masks: dict[str, Image.Image], labels: dict[str, str] | None = None) -> Path:
    for i, (name, mask) in enumerate(masks.items()):
        write_image(root / "images" / f"{name}.png", seed=i, size=(WIDTH, HEIGHT))
        (root / "masks").mkdir(parents=True, exist_ok=True)
        mask.save(root / "masks" / f"{name}.png")
    if labels:
        rows = [f"{name}.png,{label},p{i}" for i, (name, label) in enumerate(labels.items())]
        lines = ["file,label,patient_id", *rows]
        (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def test_mask_threshold_option_sets_the_cut(tmp_path: Path) -> None:
    values = np.zeros((HEIGHT, WIDTH), np.uint8)
    values[5:15, 5:15] = 150
    values[20:30, 20:40] = 255
    _mask_set(tmp_path, {"a": Image.fromarray(values)})
    cached = prepare(load_dataset({"path": str(tmp_path), "mask_threshold": 200}), SIZE, progress=False)
    assert np.array_equal(cached.masks(None)[0, ..., 0], _expected(values > 200))
    assert cached.columns("mask_encoding")["mask_encoding"].tolist() == ["grey above 200"]
    default = prepare(load_dataset(str(tmp_path)), SIZE, progress=False)
    assert np.array_equal(default.masks(None)[0, ..., 0], _expected(values > 0))
    with pytest.raises(ConfigError, match=r"^data\.mask_threshold='high' must be a number >= 0"):
        prepare(load_dataset({"path": str(tmp_path), "mask_threshold": "high"}), SIZE, progress=False)


def test_check_says_how_masks_were_read_and_warns_on_empty_positives(tmp_path: Path) -> None:
    truth = _truth()
    masks = {"a": _grey(truth, 1), "b": _grey(truth, 1), "c": _red(truth), "d": _grey(np.zeros_like(truth), 255)}
    labels = {"a": "pneumothorax", "b": "normal", "c": "pneumothorax", "d": "pneumothorax"}
    _mask_set(tmp_path, masks, labels)
    cached = prepare(load_dataset({"path": str(tmp_path), "split": {"train": 1.0, "val": 0.0, "test": 0.0}}), SIZE,
                     progress=False)
    assert mask_summary(cached) == (f"masks: read 2 as 0/1 grey, 1 as RGB colour, 1 as empty grey; foreground "
                                    f"fraction train {100 * truth.mean() * 3 / 4:.1f}%")
    assert empty_positive_warning(cached.dataset, cached) == (
        f"1 images labelled positive (not 'normal') have an empty mask: {tmp_path / 'images' / 'd.png'}; check how "
        "the masks were read (the 'masks:' line, data.mask_threshold) or fix their labels")


def _tagged(image: Image.Image, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())
    return path


def _quadrants(width: int = 60, height: int = 30) -> np.ndarray:
    """Dark left half, bright right half, a white top-left corner: every rotation and flip looks different."""
    pixels = np.full((height, width), 40, np.uint8)
    pixels[:, width // 2:] = 200
    pixels[:8, :8] = 255
    return pixels


@pytest.mark.parametrize(("suffix", "orientation"), [(".jpg", 6), (".png", 8), (".png", 3)])
def test_exif_orientation_is_applied_to_images(tmp_path: Path, suffix: str, orientation: int) -> None:
    path = _tagged(Image.fromarray(_quadrants()), tmp_path / f"rotated{suffix}", orientation)
    pixels, info = load_image(str(path), SIZE)
    upright = ImageOps.exif_transpose(Image.open(path)).convert("L")
    expected = np.asarray(upright.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=int)
    assert (info.width, info.height) == upright.size == ((30, 60) if orientation in (6, 8) else (60, 30))
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 3
    if orientation == 6:  # 90 degrees clockwise: the dark left half is now on top, its corner at top right
        assert pixels[:12, :, 0].mean() < 80 < 160 < pixels[-12:, :, 0].mean()
        assert pixels[0, -1, 0] > 240 and pixels[0, 0, 0] < 80


def test_exif_orientation_is_applied_to_masks_and_sizes_are_compared_upright(tmp_path: Path) -> None:
    """A phone photo (stored 60x30, tagged rotate 90) whose mask was drawn on the upright 30x60 picture."""
    (tmp_path / "images").mkdir()
    image = _tagged(Image.fromarray(_quadrants()), tmp_path / "images" / "a.jpg", 6)
    truth = np.zeros((60, 30), bool)
    truth[:10, :] = True
    (tmp_path / "masks").mkdir()
    _grey(truth, 255).save(tmp_path / "masks" / "a.png")
    tagged_truth = np.rot90(truth, 1)  # stored sideways with the same tag: read back as ``truth``
    _tagged(_grey(np.ascontiguousarray(tagged_truth), 255), tmp_path / "masks" / "b.png", 6)
    shutil.copy(image, tmp_path / "images" / "b.jpg")
    one_split = {"path": str(tmp_path), "split": {"train": 1.0, "val": 0.0, "test": 0.0}}  # a copy: kept together
    cached = prepare(load_dataset(one_split), SIZE, progress=False)
    assert not cached.skipped
    masks = cached.masks(None)[..., 0]
    assert all(np.array_equal(m, _expected(truth)) for m in masks)
    assert cached.metadata()["width"].tolist() == [30, 30]


def test_degenerate_images_are_used_counted_and_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 3, "pneumonia": 3})
    Image.new("L", (1, 1), 128).save(tmp_path / "normal" / "dot.png")
    Image.new("L", (10, 50000), 128).save(tmp_path / "pneumonia" / "strip.png")
    write_image(tmp_path / "pneumonia" / "tall.png", size=(20, 400))  # wide enough, but 20:1
    write_image(tmp_path / "pneumonia" / "wide.png", size=(160, 16))  # 16 px and exactly 10:1: not flagged
    cached = prepare(load_dataset(str(tmp_path)), SIZE, progress=False)
    assert len(cached.valid_records()) == 10
    assert degenerate_warning(cached) == (
        f"3 degenerate images (under 16 px on a side or over 10:1), used but squashed to a square they show nothing: "
        f"{tmp_path / 'normal' / 'dot.png'} (1x1), {tmp_path / 'pneumonia' / 'strip.png'} (10x50000), "
        f"{tmp_path / 'pneumonia' / 'tall.png'} (20x400); remove or crop them")


def test_byte_identical_images_in_two_splits_are_refused(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2}, split=split, seed=len(split))
    original = tmp_path / "train" / "pneumonia" / "pneumonia-1.png"
    shutil.copy(original, tmp_path / "test" / "pneumonia" / "copy.png")
    with pytest.raises(DataError) as raised:
        prepare(load_dataset(str(tmp_path)), SIZE, progress=False)
    assert str(raised.value) == (
        f"{tmp_path / 'test' / 'pneumonia' / 'copy.png'} (test) and {original} (train) are byte-identical: the same "
        "image in two splits leaks it into evaluation (images with a copy in another split: 1): remove one "
        "copy, or give both the same patient_id so the split keeps them together")
    external = prepare(load_dataset(str(tmp_path)), SIZE, progress=False, whole=True)  # a test set used whole
    assert len(external.valid_records()) == 13


def test_byte_identical_images_in_one_split_are_a_counted_warning(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2}, split=split, seed=len(split))
    original = tmp_path / "train" / "normal" / "normal-0.png"
    shutil.copy(original, tmp_path / "train" / "normal" / "copy.png")
    shutil.copy(original, tmp_path / "train" / "pneumonia" / "copy.png")
    cached = prepare(load_dataset(str(tmp_path)), SIZE, progress=False)
    assert duplicate_warning(cached) == (
        f"2 images are byte-identical copies of another image in the same split, so they count twice in training "
        f"and metrics: {tmp_path / 'train' / 'normal' / 'copy.png'} = {original} = "
        f"{tmp_path / 'train' / 'pneumonia' / 'copy.png'}; remove the copies")


def test_a_class_whose_every_image_is_corrupt_is_an_error(tmp_path: Path, capsys) -> None:
    make_class_folders(tmp_path, {"normal": 3})
    for i in range(3):
        (tmp_path / "pneumonia").mkdir(exist_ok=True)
        (tmp_path / "pneumonia" / f"bad-{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    dataset = load_dataset(str(tmp_path))
    with pytest.raises(DataError, match=r"^.*: class 'pneumonia' has no usable image: none of its 3 images could be "
                                        r"decoded \(first: .*bad-0\.png: image starts like a PNG but is corrupt"):
        prepare(dataset, SIZE, progress=False)
    assert main(["data", "check", str(tmp_path), "--task", "pneumonia"]) == 2
    assert "class 'pneumonia' has no usable image" in capsys.readouterr().err


def test_a_split_that_lost_a_class_to_decoding_is_an_error_for_classification(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2}, split="train")
    make_class_folders(tmp_path, {"normal": 2, "pneumonia": 2}, split="val", seed=1)
    for path in (tmp_path / "val" / "pneumonia").iterdir():
        path.write_bytes(b"")
    assert prepare(load_dataset(str(tmp_path), split_needs=TASKS.get("pneumothorax").split_needs()), SIZE,
                   progress=False).skipped
    dataset = load_dataset(str(tmp_path), split_needs=TASKS.get("pneumonia").split_needs())
    with pytest.raises(DataError, match=r": split 'val' has no usable 'pneumonia' images: none of its 2 could "
                                        r"be decoded \(first: .*pneumonia-0\.png: image file is empty"):
        prepare(dataset, SIZE, progress=False)


def test_a_file_too_large_to_hold_is_hashed_in_chunks_to_the_same_hash(tmp_path: Path, monkeypatch) -> None:
    from runner.data import cache

    path = write_image(tmp_path / "a.png")
    data, in_memory = cache._read_and_hash(str(path))
    monkeypatch.setattr(cache, "IN_MEMORY_BYTES", 10)
    assert data == path.read_bytes() and cache._read_and_hash(str(path)) == (None, in_memory)
