"""DICOM in every layout, on real DICOM files written with pydicom: pixels against NumPy's own computation of
the DICOM grayscale pipeline, the tags a data set takes (patient ids, views, source candidates), the files that
are skipped and why, the cache key, and one real trial on a DICOM class folder with its patient ids hashed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from conftest import write_image, write_mask
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from runner.cli import main
from runner.data import load_dataset, prepare
from runner.data.cache import pixels_key
from runner.data.check import SOURCE_CANDIDATES, source_shortcut
from runner.data.images import ImageError, load_image
from runner.data.masks import decode_rle, encode_rle
from runner.errors import DataError

DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SIDE = 32  # images are SIDE x SIDE and read at SIDE px, so no resize stands between the file and the check


def write_dicom(path: Path, pixels: np.ndarray | None, *, sop_class: str = DX, preamble: bool = True,
                photometric: str = "MONOCHROME2", bits_stored: int = 12, **tags) -> Dataset:
    """A real DICOM file (explicit VR little endian, file meta, 128-byte preamble unless ``preamble=False``):
    ``pixels`` as 16-bit stored values (None: no Pixel Data element), ``tags`` set by keyword."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    if pixels is not None:
        frames = pixels.shape[0] if pixels.ndim == 3 else 1
        dataset.Rows, dataset.Columns = pixels.shape[-2:]
        if frames > 1:
            dataset.NumberOfFrames = frames
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits_stored, bits_stored - 1
        dataset.PixelRepresentation = 0
        dataset.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=preamble)
    return dataset


def stored_values(seed: int = 0, bits: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**bits, (SIDE, SIDE))


def decoded(path: Path, channels: int = 1) -> np.ndarray:
    pixels, info = load_image(str(path), SIDE, channels)
    assert (info.width, info.height, info.file_type) == (SIDE, SIDE, "dicom")
    return pixels[..., 0].astype(int) if channels == 1 else pixels


def percentile_window(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, (0.5, 99.5))
    return np.round(np.clip((values - low) / (high - low), 0, 1) * 255).astype(int)


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (VOI LUT Function LINEAR), onto 0..1, then 8 bits."""
    return np.round(np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255).astype(int)


# --- pixels ---------------------------------------------------------------------------------------------------

def test_twelve_bit_without_a_window_uses_the_percentile_window_over_its_whole_range(tmp_path: Path) -> None:
    values = stored_values()
    write_dicom(tmp_path / "a.dcm", values)
    assert np.array_equal(decoded(tmp_path / "a.dcm"), percentile_window(values))


def test_rescale_then_window_as_the_standard_defines_them(tmp_path: Path) -> None:
    values = stored_values(1)
    write_dicom(tmp_path / "w.dcm", values, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=1500,
                WindowWidth=3000)
    expected = linear_window(values * 2.0 - 1024, 1500, 3000)
    assert np.abs(decoded(tmp_path / "w.dcm") - expected).max() <= 1  # float rounding at .5 boundaries
    assert 0 < (expected == 0).mean() < 0.5 and 0 < (expected == 255).mean() < 0.5  # the window clips both ends


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    values = stored_values(2)
    write_dicom(tmp_path / "m2.dcm", values, WindowCenter=2048, WindowWidth=2048)
    write_dicom(tmp_path / "m1.dcm", values, WindowCenter=2048, WindowWidth=2048, photometric="MONOCHROME1")
    assert np.array_equal(decoded(tmp_path / "m1.dcm"), 255 - decoded(tmp_path / "m2.dcm"))
    assert np.abs(decoded(tmp_path / "m1.dcm") - (255 - linear_window(values, 2048, 2048))).max() <= 1


def test_voi_lut_sequence_wins_over_the_window(tmp_path: Path) -> None:
    values = stored_values(3)
    lut = np.round(65535 * (np.arange(4096) / 4095) ** 0.5).astype(np.uint16)  # a gamma curve, 16-bit out
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.tobytes()  # OW, little endian like the file
    write_dicom(tmp_path / "lut.dcm", values, VOILUTSequence=[item], WindowCenter=100, WindowWidth=10)
    expected = np.round(lut[values] / 65535 * 255).astype(int)
    assert np.abs(decoded(tmp_path / "lut.dcm") - expected).max() <= 1


def test_larger_images_are_shrunk_and_three_channels_are_grey_copies(tmp_path: Path) -> None:
    big = np.kron(stored_values(4), np.ones((4, 4), dtype=np.int64))  # 128 px of 4x4 blocks
    write_dicom(tmp_path / "big.dcm", big)
    pixels, info = load_image(str(tmp_path / "big.dcm"), SIDE, 3)
    assert (info.width, info.height) == (128, 128) and pixels.shape == (SIDE, SIDE, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert np.corrcoef(pixels[..., 0].ravel(), percentile_window(stored_values(4)).ravel())[0, 1] > 0.9


def test_rle_lossless_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    values = stored_values(5)
    dataset = write_dicom(tmp_path / "plain.dcm", values, WindowCenter=2000, WindowWidth=4000)
    dataset.compress(RLELossless)
    dataset.save_as(tmp_path / "rle.dcm")
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(decoded(tmp_path / "rle.dcm"), decoded(tmp_path / "plain.dcm"))


def test_jpeg2000_lossless_through_its_plugin(tmp_path: Path) -> None:
    dataset = write_dicom(tmp_path / "plain.dcm", stored_values(6))
    try:
        dataset.compress(JPEG2000Lossless)
    except (RuntimeError, NotImplementedError) as error:
        pytest.skip(f"no JPEG 2000 encoder here (install cxr-runner[dicom-compressed]): {error}")
    dataset.save_as(tmp_path / "j2k.dcm")
    assert np.array_equal(decoded(tmp_path / "j2k.dcm"), decoded(tmp_path / "plain.dcm"))


def _jpeg_ls_file() -> tuple[str, str]:
    """pydicom's own JPEG-LS lossless MR and the uncompressed original it was made from."""
    from pydicom.data import get_testdata_file

    return get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), get_testdata_file("MR_small.dcm")


def test_jpeg_ls_through_pylibjpeg_or_one_error_naming_the_extra() -> None:
    compressed, original = _jpeg_ls_file()
    from pydicom.pixels import get_decoder

    if get_decoder(pydicom.dcmread(compressed).file_meta.TransferSyntaxUID).is_available:
        assert np.array_equal(load_image(compressed, 64)[0], load_image(original, 64)[0])
    else:
        with pytest.raises(ImageError, match=r"cxr-runner\[dicom-compressed\]"):
            load_image(compressed, 64)


def test_a_missing_plugin_is_one_error_naming_the_file_and_the_extra() -> None:
    """A Python where the plugins cannot be imported (as on a plain install): the decode says what to install."""
    compressed, _ = _jpeg_ls_file()
    blocked = ("pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm")
    probe = (f"import sys\nsys.modules.update(dict.fromkeys({blocked!r}))\n"
             "from runner.data.images import load_image\n"
             f"load_image({compressed!r}, 64)\n")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    last = ran.stderr.strip().splitlines()[-1]
    assert ran.returncode == 1 and last == (
        f"runner.data.images.ImageError: {compressed}: DICOM pixel data is compressed as JPEG-LS Lossless Image "
        "Compression, whose decoder plugin is not installed: pip install 'cxr-runner[dicom-compressed]' (pylibjpeg, "
        "pylibjpeg-libjpeg, pylibjpeg-openjpeg)"), ran.stderr


# --- files that are not one radiograph ------------------------------------------------------------------------

def _unusable(folder: Path) -> dict[str, str]:
    """Each kind of unusable DICOM, by file name -> the reason it is skipped with."""
    write_dicom(folder / "report.dcm", None, sop_class=BASIC_TEXT_SR)
    write_dicom(folder / "empty-dx.dcm", None)
    write_dicom(folder / "cine.dcm", np.stack([stored_values(7), stored_values(8)]))
    write_dicom(folder / "whole.dcm", stored_values(9))
    (folder / "cut.dcm").write_bytes((folder / "whole.dcm").read_bytes()[:-300])
    (folder / "whole.dcm").unlink()
    (folder / "text.dcm").write_text("not a DICOM file at all, just a name\n" * 8)
    return {
        "report.dcm": "DICOM Basic Text SR Storage holds no image (no Pixel Data): remove it from the data set",
        "empty-dx.dcm": "DICOM Digital X-Ray Image Storage - For Presentation holds no image (no Pixel Data): "
                        "remove it from the data set",
        "cine.dcm": "multi-frame DICOM (2 frames): the runner reads single-frame radiographs; save the frame you "
                    "want as its own file, or remove it",
        "cut.dcm": "DICOM pixel data cannot be decoded (ValueError: The number of bytes of pixel data is less than "
                   "expected (1748 vs 2048 bytes)",
        "text.dcm": "not a DICOM file (no DICM header, no DICOM elements): replace or remove it, or rename it if it "
                    "is another image type",
    }


def test_unusable_dicoms_raise_one_line_each(tmp_path: Path) -> None:
    for name, reason in _unusable(tmp_path).items():
        with pytest.raises(ImageError) as raised:
            load_image(str(tmp_path / name), SIDE)
        assert str(raised.value).startswith(f"{tmp_path / name}: {reason}"), str(raised.value)


def _patients_folder(root: Path, per_class: int = 6, images: int = 2,
                     tags_of_class: dict[str, dict[str, str]] | None = None, **tags: str) -> Path:
    """A bare DICOM class folder: ``per_class`` patients per class, ``images`` radiographs each, told apart
    only by their PatientID (file names are UIDs, as PACS exports name them), with a name and a birth date that
    must never leave the machine."""
    for index, label in enumerate(("normal", "pneumonia")):
        for patient in range(per_class):
            for image in range(images):
                seed = index * 1000 + patient * 10 + image
                write_dicom(root / label / f"1.2.3.{seed}.dcm", stored_values(seed), PatientID=f"PAT-{label}-{patient}",
                            PatientName="Doe^Jane", PatientBirthDate="19700101",
                            **{**tags, **(tags_of_class or {}).get(label, {})})
    return root


def test_data_check_on_a_dicom_folder_skips_each_unusable_file_with_its_reason(tmp_path: Path, capsys) -> None:
    root = _patients_folder(tmp_path / "data", tags_of_class={"normal": {"Manufacturer": "Acme"},
                                                             "pneumonia": {"Manufacturer": "Initech"}})
    reasons = _unusable(root / "normal")
    write_dicom(root / "pneumonia" / "1.2.840.99", stored_values(11), PatientID="PAT-pneumonia-0")  # no suffix
    assert main(["data", "check", str(root), "--task", "pneumonia"]) == 0
    out = capsys.readouterr().out
    assert "files: 30 found, 30 used, 0 ignored" in out
    assert "image sizes: 32x32 to 32x32 px (dicom)" in out
    assert "dicom: 29 images, 25 with a patient id; views none 29; 0 institutions, 2 manufacturers, no study dates" \
        in out  # text.dcm is no DICOM; the unusable ones have no PatientID
    assert ("warning: each class comes from its own manufacturer (normal: Acme; pneumonia: Initech): a model "
            "can learn the manufacturer instead of the disease") in out
    assert "5 files skipped:" in out
    for name, reason in reasons.items():
        assert f"  {root / 'normal' / name}: {reason}" in out
    assert "no patient ids" not in out  # the five unusable files have none, but skipped files cannot leak


def test_strict_makes_an_unusable_dicom_an_error(tmp_path: Path) -> None:
    root = _patients_folder(tmp_path / "data")
    write_dicom(root / "normal" / "report.dcm", None, sop_class=BASIC_TEXT_SR)
    dataset = load_dataset({"path": str(root), "strict": True}, expected_classes=("normal", "pneumonia"))
    with pytest.raises(DataError, match=r"report\.dcm: DICOM Basic Text SR Storage holds no image .* \(1 unreadable "
                                        r"images in all\)"):
        prepare(dataset, SIDE)


# --- tags -----------------------------------------------------------------------------------------------------

def test_patient_id_groups_the_split_of_a_bare_dicom_folder(tmp_path: Path) -> None:
    dataset = load_dataset(str(_patients_folder(tmp_path, images=3)))
    assert dataset.patient_ids_known
    assert {r.patient_id for r in dataset.records} == {f"PAT-{c}-{p}" for c in ("normal", "pneumonia")
                                                       for p in range(6)}
    splits_of: dict[str, set[str]] = {}
    for record in dataset.records:
        splits_of.setdefault(record.patient_id, set()).add(record.split)
    assert all(len(splits) == 1 for splits in splits_of.values())
    assert {r.split for r in dataset.records} == {"train", "val", "test"}


def test_a_layout_patient_id_wins_over_the_dicom_one(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", stored_values(), PatientID="FROM-TAG")
    write_dicom(tmp_path / "b.dcm", stored_values(1), PatientID="FROM-TAG-B")
    (tmp_path / "manifest.csv").write_text("path,label,patient_id\na.dcm,normal,from-csv\nb.dcm,pneumonia,\n")
    dataset = load_dataset({"path": str(tmp_path / "manifest.csv"), "split": {"train": 1.0, "val": 0.0,
                                                                                "test": 0.0}})
    assert sorted(r.patient_id for r in dataset.records) == ["FROM-TAG-B", "from-csv"]


def test_views_keep_some_view_positions_and_name_the_rest(tmp_path: Path) -> None:
    for i, view in enumerate(["PA", "PA", "AP", "ll", None] * 4):
        label = ("normal", "pneumonia")[i % 2]
        write_dicom(tmp_path / label / f"{i}.dcm", stored_values(i), PatientID=f"P{i}",
                    **({"ViewPosition": view} if view else {}))
    everything = load_dataset(str(tmp_path))
    assert {r.view for r in everything.records} == {"AP", "LL", "PA", None}
    kept = load_dataset({"path": str(tmp_path), "views": "pa,LL"})  # as --set data.views=pa,LL writes it
    assert {r.view for r in kept.records} == {"PA", "LL"} and len(kept.records) == 12
    reasons = sorted({i.reason for i in kept.ignored})
    assert reasons == ["no ViewPosition tag (data.views)", "view AP not in data.views"]
    with pytest.raises(DataError, match=r"no image has a view in data\.views \(RL\); the views found are PA 8, AP 4, "
                                        r"LL 4, none 4: check data\.views"):
        load_dataset({"path": str(tmp_path), "views": ["RL"]})


def test_institutions_and_study_years_are_source_candidates_of_the_shortcut_check(tmp_path: Path) -> None:
    root = _patients_folder(tmp_path, tags_of_class={
        "normal": {"InstitutionName": "General Hospital", "StudyDate": "20170304", "Manufacturer": "Acme"},
        "pneumonia": {"InstitutionName": "Children's Hospital", "StudyDate": "20180910", "Manufacturer": "Acme"}})
    records = load_dataset(str(root)).records
    found = {what: source_shortcut(records, what) for what in SOURCE_CANDIDATES}
    assert found["institution"] == (
        "each class comes from its own institution (normal: General Hospital; pneumonia: Children's Hospital): a "
        "model can learn the institution instead of the disease (DeGrave et al. 2021); mix sources within classes "
        "or test on an external set")
    assert found["study year"].startswith("each class comes from its own study year (normal: 2017; pneumonia: 2018)")
    assert found["manufacturer"] is None and found["source"] is None  # shared; none given
    assert {r.dicom.study_year for r in records} == {"2017", "2018"}  # the year only: no date of care is kept


# --- every layout ---------------------------------------------------------------------------------------------

def test_manifest_and_split_lists_read_dicom_paths(tmp_path: Path) -> None:
    rows = []
    for i in range(8):
        write_dicom(tmp_path / "img" / f"{i}.dcm", stored_values(i), PatientID=f"P{i // 2}")
        rows.append(f"img/{i}.dcm,{('normal', 'pneumonia')[i % 2]},{('train', 'val', 'test', 'train')[i // 2]}")
    (tmp_path / "manifest.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    manifest = load_dataset(str(tmp_path / "manifest.csv"))
    assert len(manifest.records) == 8 and manifest.patient_ids_known
    lists = tmp_path / "lists"
    for split, indices in {"train": (0, 1, 6, 7), "val": (2, 3), "test": (4, 5)}.items():
        (lists / split).mkdir(parents=True)
        (lists / f"{split}.txt").write_text("".join(f"../img/{i}.dcm {('normal', 'pneumonia')[i % 2]}\n"
                                                    for i in indices))
    split_lists = load_dataset({"path": str(lists), "allow_outside_root": True})
    assert [len(split_lists.split(s)) for s in ("train", "val", "test")] == [4, 2, 2]
    cached = prepare(split_lists, SIDE)
    assert not cached.skipped and set(cached.metadata()["file_type"]) == {"dicom"}


def test_image_masks_with_dicom_images(tmp_path: Path) -> None:
    for i in range(6):
        write_dicom(tmp_path / "images" / f"case{i}.dcm", stored_values(i), PatientID=f"P{i}")
        write_mask(tmp_path / "masks" / f"case{i}.png", size=(SIDE, SIDE), box=(2, 2, 10 + i, 12) if i % 2 else None)
    dataset = load_dataset(str(tmp_path))
    cached = prepare(dataset, SIDE)
    assert dataset.spec.layout == "image_masks" and not cached.skipped
    assert cached.masks(None).shape == (6, SIDE, SIDE, 1)


def test_siim_acr_original_nested_dicoms_with_rle(tmp_path: Path) -> None:
    """``train-rle.csv`` (header ``ImageId, EncodedPixels``) beside ``dicom-images-train/<study>/<series>/``."""
    masks, lines = {}, ["ImageId, EncodedPixels"]
    for i in range(6):
        image_id = f"1.2.276.0.7230010.3.1.4.{i}"
        write_dicom(tmp_path / "dicom-images-train" / f"1.2.{i}" / f"1.3.{i}" / f"{image_id}.dcm", stored_values(i),
                    PatientID=f"P{i}")
        mask = np.zeros((SIDE, SIDE), np.uint8)
        if i % 2:
            mask[3:9 + i, 5:20] = 255
        masks[image_id] = mask
        lines.append(f"{image_id}, {encode_rle(mask)}")
    (tmp_path / "train-rle.csv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset({"path": str(tmp_path / "train-rle.csv"), "image_root": "dicom-images-train"})
    assert dataset.spec.layout == "siim_rle" and dataset.patient_ids_known
    cached = prepare(dataset, SIDE)
    for record, mask in zip(cached.records(None), cached.masks(None), strict=True):
        expected = masks[Path(record.path).stem]
        assert np.array_equal(mask[..., 0], expected)
        assert np.array_equal(mask[..., 0], decode_rle(encode_rle(expected), SIDE, SIDE))


def test_a_dicom_class_folder_caches_the_pixels_a_png_of_them_would(tmp_path: Path) -> None:
    for i in range(4):
        label = ("normal", "pneumonia")[i % 2]
        write_dicom(tmp_path / "dicom" / label / f"{i}.dcm", stored_values(i))
        png = tmp_path / "png" / label / f"{i}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(percentile_window(stored_values(i)).astype(np.uint8)).save(png)
    whole = {"train": 1.0, "val": 0.0, "test": 0.0}
    from_dicom = prepare(load_dataset({"path": str(tmp_path / "dicom"), "split": whole}), SIDE)
    from_png = prepare(load_dataset({"path": str(tmp_path / "png"), "split": whole}), SIDE)
    assert np.array_equal(from_dicom.images("train"), from_png.images("train"))


# --- the cache ------------------------------------------------------------------------------------------------

def test_the_cache_key_covers_the_pixel_tags_even_when_size_and_mtime_stay(tmp_path: Path) -> None:
    path = tmp_path / "normal" / "a.dcm"
    write_dicom(path, stored_values(), WindowCenter=1500, WindowWidth=3000)
    write_image(tmp_path / "pneumonia" / "b.png")
    stat = path.stat()
    before = pixels_key(load_dataset(str(tmp_path)).records, SIDE, 1)
    write_dicom(path, stored_values(), WindowCenter=1600, WindowWidth=3000)  # same length, another window
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert pixels_key(load_dataset(str(tmp_path)).records, SIDE, 1) != before


# --- a trial ---------------------------------------------------------------------------------------------------

def test_a_dicom_folder_trains_and_its_patient_ids_leave_only_hashed(tmp_path: Path, cache_dir: Path) -> None:
    from runner.config import make_config
    from runner.trial import run_trial

    root = _patients_folder(tmp_path / "data", per_class=8, InstitutionName="General Hospital")
    config = make_config({"task": "pneumonia", "model": "baseline", "image_size": SIDE, "epochs": 1,
                          "bootstrap": 10, "plots": False, "data": {"path": str(root)}})
    trial = run_trial(config, tmp_path / "results" / "trials", verbose=False)
    assert trial.result["data"]["counts"]["train"] > 0 and trial.result["metrics"]["test"]["n"] > 0
    salt = (tmp_path / "results" / "patient_salt").read_text().strip()
    predictions = pd.read_parquet(trial.directory / "predictions.parquet")
    raw = {f"PAT-{c}-{p}" for c in ("normal", "pneumonia") for p in range(8)}
    hashed = {hashlib.blake2b(p.encode(), key=bytes.fromhex(salt), digest_size=8).hexdigest(): p for p in raw}
    assert set(predictions["patient_id"]) <= set(hashed) and len(set(predictions["patient_id"])) > 2
    for folder in (trial.directory, cache_dir):
        for file in (f for f in folder.rglob("*") if f.is_file()):
            content = file.read_bytes()
            assert not any(text.encode() in content for text in [*raw, "Doe^Jane", "19700101"]), file
