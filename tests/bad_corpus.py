"""The bad-input corpus: one small data set, config or search space per kind of bad input a user can hand the
runner, written as real files into a temporary folder every test session (the ``bad_corpus`` fixture of
``tests/test_bad_inputs.py``; never into the source tree). Each data-set item is a good two-class set with one
bad file added, so the test can tell "this file was skipped and named" from "the whole set failed".
"""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from conftest import make_class_folders, write_image, write_mask
from PIL import Image

GOOD_PER_CLASS = 8
HUGE_SIDE = 10_000

#: A valid tiny sweep; the search-space items each change one thing in it.
TINY_SWEEP = {
    "tasks": ["pneumonia"], "models": ["baseline"],
    "fixed": {"epochs": 1, "image_size": 32, "data": {"n": 60}},
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "num_samples": 2, "resources": {"cpu": 1, "gpu": 0, "workers": 0},
}


def _good_set(root: Path, classes: tuple[str, ...] = ("normal", "pneumonia")) -> Path:
    return make_class_folders(root, dict.fromkeys(classes, GOOD_PER_CLASS))


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _corrupt_huffman_table(jpeg: bytes) -> bytes:
    """A JPEG whose headers parse but whose Huffman table is garbage: Pillow opens it, decoding fails.
    (Garbage in the scan data alone would decode, silently, to noise: no decoder can tell.)"""
    data = bytearray(jpeg)
    start = data.index(b"\xff\xc4")
    length = int.from_bytes(data[start + 2:start + 4], "big")
    data[start + 4:start + 2 + length] = bytes((0xFF if i % 2 else 0x00) for i in range(length - 2))
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height``: how a decompression bomb looks before decoding."""
    data = bytearray(_png_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def _with_file(name: str, content: Callable[[], bytes]) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        _good_set(root)
        (root / "pneumonia" / name).write_bytes(content())
        return root
    return write


def _with_converted(name: str, pixels: Callable[[], np.ndarray]) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        _good_set(root)
        Image.fromarray(pixels()).save(root / "pneumonia" / name, compress_level=1)
        return root
    return write


def sixteen_bit_ramp(width: int = 48, height: int = 40) -> np.ndarray:
    """12 bits of signal in a 16-bit container, as CR/DR exports store it: 0..4095, left to right."""
    row = np.linspace(0, 4095, width).astype(np.uint16)
    return np.ascontiguousarray(np.broadcast_to(row, (height, width)))


def rgba_pixels() -> np.ndarray:
    rgb = np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    return np.dstack([rgb, np.full((40, 48), 128, np.uint8)])


def _masks_set(root: Path, bad: Callable[[Path], None]) -> Path:
    for i in range(2 * GOOD_PER_CLASS):
        write_image(root / "images" / f"{i}.png", seed=i)
        write_mask(root / "masks" / f"{i}.png", box=(5, 5, 20, 20) if i % 2 else None)
    bad(root)
    return root


def _missing_mask(root: Path) -> None:
    write_image(root / "images" / "unmasked.png", seed=99)


def _mask_of_another_size(root: Path) -> None:
    write_image(root / "images" / "odd.png", seed=98)
    write_mask(root / "masks" / "odd.png", size=(80, 80))


def _empty_class(root: Path) -> Path:
    (root / "covid").mkdir()
    return root


def _manifest(rows: list[str], header: str = "path,label,patient_id") -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        _good_set(root / "images")
        files = sorted((root / "images").rglob("*.png"))
        lines = [f"{f.relative_to(root)},{f.parent.name},p{i}" for i, f in enumerate(files)]
        if header != "path,label,patient_id":
            lines = [line.rsplit(",", 2)[0] for line in lines]
        write_image(root.parent / "outside.png", seed=97)
        (root / "manifest.csv").write_text("\n".join([header, *lines, *rows]) + "\n")
        return root / "manifest.csv"
    return write


def _sweep(**changes: object) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "sweep.yaml"
        path.write_text(yaml.safe_dump({**TINY_SWEEP, **changes}))
        return path
    return write


def _fixed(**values: object) -> dict:
    return {**TINY_SWEEP["fixed"], **values}


ITEMS: dict[str, Callable[[Path], Path]] = {
    # skipped with a counted warning naming the file
    "corrupt_jpeg": _with_file("corrupt.jpg", lambda: _corrupt_huffman_table(_jpeg_bytes())),
    "corrupt_jpeg_header": _with_file("header.jpg", lambda: _jpeg_bytes()[:20] + bytes(range(256)) * 2),
    "truncated_png": _with_file("truncated.png", lambda: _png_bytes()[:len(_png_bytes()) // 2]),
    "zero_byte": _with_file("empty.png", bytes),
    "text_as_png": _with_file("notes.png", lambda: b"patient notes, not an image\n"),
    "too_many_pixels": _with_file("large.png", lambda: _png_claiming(12_000, 9_000)),
    "decompression_bomb": _with_file("bomb.png", lambda: _png_claiming(30_000, 30_000)),
    "missing_mask": lambda root: _masks_set(root, _missing_mask),
    "mask_other_size": lambda root: _masks_set(root, _mask_of_another_size),
    # converted, not skipped
    "png_16bit": _with_converted("sixteen.png", sixteen_bit_ramp),
    "rgba_png": _with_converted("rgba.png", rgba_pixels),
    "huge_image": _with_converted("huge.png", lambda: sixteen_bit_ramp(HUGE_SIDE, HUGE_SIDE)),
    # one error naming the file or key
    "empty_class_folder": lambda root: _empty_class(_good_set(root)),
    "single_class": lambda root: _good_set(root, ("normal",)),
    "manifest_missing_column": _manifest([], header="path"),
    "manifest_unknown_label": _manifest(["images/normal/normal-0.png,pnuemonia,p99"]),
    "manifest_path_escape": _manifest(["../outside.png,normal,p98"]),
    "sweep_typo_key": _sweep(fixed=_fixed(epoch=2)),
    "sweep_typo_top_key": _sweep(num_sample=4),
    "sweep_empty_range": _sweep(space={"learning_rate": {"type": "float", "low": 1e-2, "high": 1e-3}}),
    "sweep_empty_choices": _sweep(space={"batch_size": {"type": "categorical", "choices": []}}),
    "sweep_negative_learning_rate": _sweep(fixed=_fixed(learning_rate=-0.001)),
    "sweep_negative_learning_rate_range": _sweep(space={"learning_rate": {"type": "float", "low": -0.1,
                                                                          "high": 0.1}}),
    "sweep_image_below_model_minimum": _sweep(models=["inception_v3"], fixed=_fixed(image_size=64)),
    "sweep_unknown_model": _sweep(models=["resnet50"]),
    "sweep_unknown_task": _sweep(tasks=["tuberculosis"]),
    # --- config: YAML as people write it, values Ray would assert on, paths of the wrong kind ---
    "yaml_exponent_floats": lambda root: _yaml_file(root, EXPONENT_SWEEP),
    "yaml_duplicate_block": lambda root: _yaml_file(root, EXPONENT_SWEEP + "fixed: {epochs: 2}\n"),
    "yaml_duplicate_nested_key": lambda root: _yaml_file(root, EXPONENT_SWEEP.replace(
        "image_size: 32", "image_size: 32\n  epochs: 3")),
    "yaml_list": lambda root: _yaml_file(root, "- tasks\n- models\n"),
    "yaml_not_utf8": lambda root: _yaml_file(root, "tasks: [pneumonia]\n", prefix=b"\xff\xfe"),
    "yaml_folder": lambda root: _folder(root / "sweep.yaml"),
    "sweep_grace_above_max_t": _sweep(scheduler={"type": "asha", "max_t": 3, "grace_period": 5}),
    "sweep_reduction_factor_one": _sweep(scheduler={"type": "asha", "reduction_factor": 1}),
    "sweep_no_resources": _sweep(resources={"cpu": 0, "gpu": 0, "workers": 0}),
    "sweep_negative_seed": _sweep(fixed=_fixed(seed=-1)),
    "sweep_negative_searcher_seed": _sweep(seed=-3),
    "sweep_batch_over_two_gpus": _sweep(resources={"cpu": 1, "gpu": 2, "workers": 0}, fixed=_fixed(batch_size=15)),
    "sweep_negative_concurrency": _sweep(max_concurrent_trials=-1),
    "sweep_zero_concurrency": _sweep(max_concurrent_trials=0),
    "sweep_bad_unchosen_profile": _sweep(profiles={"cpu": {"num_samples": 1}, "gpu": {"num_sample": 8}}),
    "sweep_missing_data_path": _sweep(data="/no/such/xray/folder"),
    "sweep_data_option_typo": _sweep(fixed=_fixed(data={"n": 60, "layot": "demo"})),
    "sweep_unknown_label_in_data": lambda root: _sweep(data=str(_good_set(root / "images", ("normal", "pnuemonia"))))(
        root),
    "sweep_record_truncated": lambda root: _truncated_record(root),
    # --- data and results: masks, orientation, content, records, splits, files, options, leaderboard, metric ---
    "mask_encodings": lambda root: _mask_encodings(root),
    "exif_rotated": _with_file("rotated.jpg", lambda: _exif_jpeg(6)),
    "degenerate_images": lambda root: _degenerate(root),
    "copy_across_splits": lambda root: _copy(_three_splits(root), "train/pneumonia/pneumonia-1.png",
                                             "test/pneumonia/copy.png"),
    "copy_within_split": lambda root: _copy(_three_splits(root), "train/normal/normal-0.png",
                                            "train/normal/copy.png"),
    "manifest_duplicate_row": _manifest(["./images/normal/normal-0.png,normal,p0"]),
    "manifest_two_labels": _manifest(["images/./normal/normal-3.png,pneumonia,p3"]),
    "split_lists_leak": lambda root: _split_lists(root, leak=True),
    "split_lists": lambda root: _split_lists(root, leak=False),
    "two_per_class": lambda root: make_class_folders(root, {"normal": 2, "pneumonia": 2}),
    "kaggle_folders": lambda root: _kaggle_folders(root),
    "class_all_corrupt": lambda root: _corrupt_class(_good_set(root, ("normal",))),
    "split_class_all_corrupt": lambda root: _empty_files(_three_splits(root), "val/pneumonia"),
    "manifest_semicolon": lambda root: _semicolon(_manifest([])(root)),
    "manifest_xlsx": lambda root: _workbook(root / "COVID.metadata.xlsx"),
    "manifest_symlink_loop": lambda root: _symlink_loop(_manifest(["images/loop/a.png,normal,p99"])(root)),
    "data_path_missing": lambda root: root / "no-such-folder",
    "good_class_folders": _good_set,
    "leaderboard_foreign_parquet": lambda root: _results_with_foreign_parquet(root),
    "results_is_a_file": lambda root: _text_file(root / "notes.txt"),
    "sweep_metric_mode_contradiction": _sweep(metric="val_loss", mode="max"),
    "sweep_metric_not_reported": _sweep(metric="val_f2"),
}


#: A hand-written search space: floats as people write them (``1e-4``, ``3E-2``), which YAML 1.1 reads as text.
EXPONENT_SWEEP = """tasks: [pneumonia]
models: [baseline]
fixed:
  epochs: 1
  image_size: 32
  learning_rate: 1e-3
  data: {n: 60}
space:
  learning_rate: {type: float, low: 1e-4, high: 3E-2, log: true}
num_samples: 2
resources: {cpu: 1, gpu: 0, workers: 0}
"""
TRUNCATED_SWEEP_ID = "tiny-20250101-000000-abcd"


def _yaml_file(root: Path, text: str, prefix: bytes = b"") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_bytes(prefix + text.encode())
    return root / "sweep.yaml"


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _truncated_record(root: Path) -> Path:
    """A results folder whose sweep record was cut short mid-write (a full disk, a killed non-atomic writer)."""
    record = root / "sweeps" / f"{TRUNCATED_SWEEP_ID}.json"
    record.parent.mkdir(parents=True)
    record.write_text('{\n  "sweep_id": "' + TRUNCATED_SWEEP_ID + '",\n  "name": "ti')
    return root


# --- data and results helpers ---

#: Mask encodings of the ``mask_encodings`` item: file stem -> how ``data check`` must say it was read. Each
#: foreground is another box (so each count differs) plus a 1-px line, drawn on a 64 x 64 image: the size
#: ``data check`` caches at, so the cached mask is the file's foreground pixel for pixel.
MASK_SIDE = 64
MASK_ENCODINGS = {"zero_one": "0/1 grey", "rgb_red": "RGB colour", "palette": "palette",
                  "sixteen_bit": "16-bit 0/1 grey", "boolean": "boolean", "jpeg": "JPEG grey above 127"}
EMPTY_POSITIVE = "empty-positive.png"
NORMAL_MASKS = 8


def mask_truth(index: int) -> np.ndarray:
    truth = np.zeros((MASK_SIDE, MASK_SIDE), bool)
    truth[4:20 + 3 * index, 6:30] = True
    truth[50, :] = True
    return truth


def _encoded_mask(name: str, truth: np.ndarray) -> Image.Image:
    if name == "zero_one":
        return Image.fromarray(truth.astype(np.uint8))
    if name == "rgb_red":
        pixels = np.zeros((*truth.shape, 3), np.uint8)
        pixels[truth, 0] = 255
        return Image.fromarray(pixels)
    if name == "palette":
        image = Image.fromarray(truth.astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
        return image
    if name == "jpeg":  # saved as masks/jpeg.jpg: compression noise near 0 and 255
        return Image.fromarray(truth.astype(np.uint8) * 255)
    if name == "sixteen_bit":
        return Image.fromarray(truth.astype(np.uint16))
    return Image.fromarray(truth)  # boolean: mode "1"


def _mask_encodings(root: Path) -> Path:
    """An image_masks set: one positive image per mask encoding, normals with empty masks, and one image
    labelled pneumothorax (manifest.csv) whose mask is empty."""
    (root / "masks").mkdir(parents=True)
    empty = np.zeros((MASK_SIDE, MASK_SIDE), np.uint8)
    for i, name in enumerate(MASK_ENCODINGS):
        write_image(root / "images" / f"{name}.png", seed=200 + i, size=(MASK_SIDE, MASK_SIDE))
        if name == "jpeg":
            _encoded_mask(name, mask_truth(i)).save(root / "masks" / "jpeg.jpg", quality=70)
        else:
            _encoded_mask(name, mask_truth(i)).save(root / "masks" / f"{name}.png")
    for i in range(NORMAL_MASKS):
        write_image(root / "images" / f"normal-{i}.png", seed=300 + i, size=(MASK_SIDE, MASK_SIDE))
        Image.fromarray(empty).save(root / "masks" / f"normal-{i}.png")
    write_image(root / "images" / EMPTY_POSITIVE, seed=399, size=(MASK_SIDE, MASK_SIDE))
    Image.fromarray(empty).save(root / "masks" / EMPTY_POSITIVE)
    (root / "manifest.csv").write_text(f"file,label\n{EMPTY_POSITIVE},pneumothorax\n")
    return root


def exif_quadrants() -> np.ndarray:
    """Stored 60 x 30: dark left half, bright right half, a white top-left corner (every rotation differs)."""
    pixels = np.full((30, 60), 40, np.uint8)
    pixels[:, 30:] = 200
    pixels[:8, :8] = 255
    return pixels


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(exif_quadrants()).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _degenerate(root: Path) -> Path:
    _good_set(root)
    Image.new("L", (1, 1), 128).save(root / "normal" / "dot.png")
    Image.new("L", (10, 50_000), 128).save(root / "pneumonia" / "strip.png")
    return root


def _three_splits(root: Path, per_class: int = 3) -> Path:
    for seed, split in enumerate(("train", "val", "test")):  # other pixels per split: no copies between them
        make_class_folders(root, {"normal": per_class, "pneumonia": per_class}, split=split, seed=seed + 1)
    return root


def _copy(root: Path, source: str, target: str) -> Path:
    shutil.copy(root / source, root / target)
    return root


def _empty_files(root: Path, folder: str) -> Path:
    for path in (root / folder).iterdir():
        path.write_bytes(b"")
    return root


def _corrupt_class(root: Path) -> Path:
    for i in range(3):
        (root / "pneumonia").mkdir(exist_ok=True)
        (root / "pneumonia" / f"bad-{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return root


def _split_lists(root: Path, leak: bool) -> Path:
    """train/val/test.txt over a0..a11 (even: normal, odd: pneumonia); with ``leak`` test.txt lists a2 again."""
    for i in range(12):
        write_image(root / f"a{i}.png", seed=400 + i)
    lines = {split: [f"a{i}.png {'pneumonia' if i % 2 else 'normal'}" for i in range(start, start + 4)]
             for split, start in (("train", 0), ("val", 4), ("test", 8))}
    if leak:
        lines["test"].append("a2.png normal")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def _kaggle_folders(root: Path) -> Path:
    """The Kaggle chest-xray-pneumonia shape: Train/valid/Test, upper-case classes, and files it does not read."""
    for seed, split in enumerate(("Train", "valid", "Test")):
        make_class_folders(root, {"NORMAL": 3, "PNEUMONIA": 3}, split=split, seed=10 + seed)
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint16) * 1000, (40, 1))).save(root / "Train" / "NORMAL" /
                                                                                 "sixteen.tif")
    (root / "Train" / "NORMAL" / "scan.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (root / "Test" / "PNEUMONIA" / "notes.txt").write_text("reader notes")
    return root


def _workbook(path: Path) -> Path:
    """An Excel workbook (a zip of XML parts) where a CSV manifest belongs, as public sets ship their metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as workbook:
        workbook.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        workbook.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData/></worksheet>")
    return path


def _semicolon(csv: Path) -> Path:
    csv.write_text(csv.read_text().replace(",", ";"))
    return csv


def _symlink_loop(csv: Path) -> Path:
    folder = csv.parent / "images" / "loop"
    folder.mkdir()
    (folder / "a.png").symlink_to(folder / "b.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    return csv


def _text_file(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("not a folder")
    return path


GOOD_TRIAL_ID = "good-1"


def _results_with_foreign_parquet(root: Path) -> Path:
    """A results folder with one leaderboard row written by the runner and another tool's Parquet beside it."""
    import pandas as pd
    from test_leaderboard import make_result

    from runner import leaderboard

    row = leaderboard.row_from_result(make_result("binary", GOOD_TRIAL_ID), sweep_id="s1", sweep_name="demo_sweep")
    good = Path(leaderboard.write_row(root, row))
    pd.DataFrame({"patient": ["p1", "p2"], "score": [0.1, 0.9]}).to_parquet(good.parent / "other-tool.parquet")
    return root


def write_corpus(root: Path) -> dict[str, Path]:
    """Every item, freshly written under ``root``: name -> the path to hand the runner."""
    shutil.rmtree(root, ignore_errors=True)
    return {name: write(root / name) for name, write in ITEMS.items()}
