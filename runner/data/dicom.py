"""DICOM radiographs: the few header tags a data set uses, and the pixels as a radiologist's viewer shows them.

Imported only once a DICOM file is met (``runner.data.images.is_dicom_file``), so PNG users never import pydicom.

**Tags** (``with_dicom_tags``, at listing: the header only, no pixel read): PatientID becomes the record's
``patient_id`` when the layout gave none (patient-grouped splits on a bare DICOM folder), ViewPosition its
``view`` (``data.views`` keeps some), InstitutionName, Manufacturer and the study year (StudyDate cut to its
year) its ``dicom`` info, which the shortcut check compares with the labels like ``source``. No other tag value
is kept; the pixel-relevant tags are kept only as a digest, for the cache key.

**Pixels** (``load_dicom``): the grayscale pipeline of DICOM PS3.4 N.2, on single-frame MONOCHROME1/2 images:

1. the stored values are decoded (compressed transfer syntaxes through pydicom's plugins) and shrunk to the
   target square as float32, then rounded back to integers: 12-16-bit data keeps its whole range, and no copy
   at full size is made beyond pydicom's own array;
2. the Modality LUT: RescaleSlope / RescaleIntercept, or a Modality LUT Sequence (``apply_modality_lut``);
3. the VOI LUT Sequence, else the first WindowCenter / WindowWidth with its VOILUTFunction (``apply_voi_lut``),
   whose output range maps to 0-255; with neither, the 0.5th-99.5th percentile of the image's values does
   (``PERCENTILE_WINDOW``: an "auto window" that ignores collimator black and burned-in text, which a min-max
   scaling would let take most of the 8 bits);
4. MONOCHROME1 (white = low values) is inverted, so bone is bright in every image;
5. rounded to uint8, which the cache stores for every image (16-bit PNGs and TIFFs too: scaled by their own
   range, since those are already windowed exports).

RGB and YBR files (secondary captures) come out of pydicom as RGB and are treated like an RGB PNG. A file
pydicom cannot parse, one without pixel data (a structured report, a presentation state), a multi-frame file,
another photometric interpretation and a compressed file whose decoder plugin is missing raise ``ImageError``
naming the file: the cache skips it with that reason like any unreadable image (``--strict``: an error).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing, get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from runner.data._records import DicomInfo, Record
from runner.data.images import DICOM_HEAD, MAX_PIXELS, ImageError, ImageInfo, has_dicom_magic, is_dicom_file, too_large

#: The window used when a file has neither a VOI LUT nor a window: these percentiles of its values map to 0-255.
PERCENTILE_WINDOW = (0.5, 99.5)
COMPRESSED_EXTRA = "pip install 'cxr-runner[dicom-compressed]' (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg)"
#: The tags whose values decide the pixels; kept only as a digest (``DicomInfo.pixel_tags``) for the cache key.
PIXEL_TAGS = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
              "HighBit", "PixelRepresentation", "NumberOfFrames", "RescaleSlope", "RescaleIntercept",
              "ModalityLUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence")
LUT_ITEM_TAGS = ("LUTDescriptor", "LUTData")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")
HEADER_WORKERS = 8  # header reads wait on the disk (a network mount) more than on Python


def _read(source: str | io.BytesIO, header_only: bool) -> Dataset:
    """The parsed file. ``force``: a ``.dcm`` without the 128-byte preamble (old ACR-NEMA style) still parses;
    pydicom's warnings about odd elements are not the user's to read, the errors below are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(source, stop_before_pixels=header_only, force=True)


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = str(dataset.get(keyword, "") or "").strip()
    return value or None


def _value_bytes(value: Any) -> bytes:
    """A tag value as bytes for the digest; a LUT sequence by its descriptors and data, in full."""
    if isinstance(value, DicomSequence):
        return b"".join(_value_bytes(item.get(keyword).value) if keyword in item else b"-"
                        for item in value for keyword in LUT_ITEM_TAGS)
    if isinstance(value, bytes):
        return value
    return repr(list(value) if isinstance(value, MultiValue) else value).encode()


def _syntax(dataset: Dataset) -> UID | None:
    return getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)


def pixel_tags_digest(dataset: Dataset) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(_syntax(dataset) or "").encode())
    for keyword in PIXEL_TAGS:
        digest.update(b"\t" + (_value_bytes(dataset[keyword].value) if keyword in dataset else b"-"))
    return digest.hexdigest()


def _study_year(dataset: Dataset) -> str | None:
    """StudyDate cut to its year: enough to tell acquisition periods apart, and no longer a date of care."""
    date = _text(dataset, "StudyDate") or ""
    return date[:4] if date[:4].isdigit() else None


def _tagged(record: Record) -> Record:
    try:
        header = _read(record.path, header_only=True)
    except Exception:  # pydicom raises a dozen types on a damaged file; the cache reports it
        return record
    if "SOPClassUID" not in header:  # parsed, but nothing DICOM in it: the cache reports it
        return record
    info = DicomInfo(institution=_text(header, "InstitutionName"), manufacturer=_text(header, "Manufacturer"),
                     study_year=_study_year(header),
                     transfer_syntax=str(_syntax(header) or ""),
                     pixel_tags=pixel_tags_digest(header))
    view = _text(header, "ViewPosition")
    return replace(record, patient_id=record.patient_id or _text(header, "PatientID"),
                   view=view.upper() if view else None, dicom=info)


def with_dicom_tags(records: Sequence[Record]) -> list[Record]:
    """Each DICOM record with its patient id (unless the layout gave one), view and ``dicom`` info from its
    header; other records, and DICOMs whose header cannot be read (the cache says why), as they are."""
    with ThreadPoolExecutor(HEADER_WORKERS) as pool:
        return list(pool.map(lambda r: _tagged(r) if is_dicom_file(r.path) else r, records))


def decoder_plugins(transfer_syntaxes: Sequence[str]) -> str:
    """The decoder plugins available here for each compressed transfer syntax: part of the cache key, so a
    file cached as 'plugin missing' is decoded again once the plugin is installed."""
    found = []
    for syntax in sorted(set(transfer_syntaxes)):
        uid = UID(syntax)
        if syntax and uid.is_compressed:
            try:
                plugins = ",".join(get_decoder(uid).available_plugins) or "none"
            except NotImplementedError:
                plugins = "none"
            found.append(f"{syntax}={plugins}")
    return ";".join(found)


def _one_line(error: Exception) -> str:
    """A pydicom error as part of one line (a decode failure lists each plugin's reason on its own line)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _has_magic(path: str, data: bytes | None) -> bool:
    if data is None:
        with open(path, "rb") as handle:
            data = handle.read(DICOM_HEAD)
    return has_dicom_magic(data)


def _parse(path: str, data: bytes | None) -> Dataset:
    if (len(data) if data is not None else os.path.getsize(path)) == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes): replace or remove it")
    try:
        return _read(io.BytesIO(data) if data is not None else path, header_only=False)
    except Exception as error:  # struct, EOF, value, type errors...: all mean a damaged file
        raise ImageError(f"{path}: DICOM file is corrupt or truncated ({_one_line(error)}): replace or remove "
                         "it") from None


def _check_image(path: str, dataset: Dataset, magic: bool) -> None:
    """Refuse what is not one decodable radiograph, before any pixel is decoded."""
    if "PixelData" not in dataset:
        if "SOPClassUID" not in dataset:
            raise ImageError(f"{path}: DICOM file is corrupt or truncated (no SOP class and no pixel data after "
                             "the DICM header): replace or remove it" if magic else
                             f"{path}: not a DICOM file (no DICM header, no DICOM elements): replace or remove it, "
                             "or rename it if it is another image type")
        raise ImageError(f"{path}: DICOM {UID(dataset.SOPClassUID).name} holds no image (no Pixel Data): remove it "
                         "from the data set")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(f"{path}: multi-frame DICOM ({frames} frames): the runner reads single-frame radiographs; "
                         "save the frame you want as its own file, or remove it")
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if rows * columns > MAX_PIXELS:
        raise too_large(path, "image", f"{columns}x{rows}")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in MONOCHROME + COLOUR:
        raise ImageError(f"{path}: DICOM photometric interpretation '{photometric}' is not supported (MONOCHROME1, "
                         "MONOCHROME2, RGB, YBR): convert the image")


def _pixels(path: str, dataset: Dataset) -> np.ndarray:
    """The stored values; a compressed syntax without its decoder plugin is one error saying what to install."""
    syntax = _syntax(dataset)
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise ImageError(f"{path}: DICOM pixel data is compressed as {syntax.name}, which pydicom cannot decode: "
                             "convert the file to an uncompressed or JPEG transfer syntax") from None
        if not decoder.is_available:
            raise ImageError(f"{path}: DICOM pixel data is compressed as {syntax.name}, whose decoder plugin is not "
                             f"installed: {COMPRESSED_EXTRA}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dataset.pixel_array
    except Exception as error:  # truncated data, a broken codestream, inconsistent tags...
        raise ImageError(f"{path}: DICOM pixel data cannot be decoded ({_one_line(error)}): replace or remove "
                         "it") from None


def _shrunk_values(pixels: np.ndarray, size: int) -> np.ndarray:
    """Stored values resized to ``size`` x ``size`` (bilinear, in float32), rounded back to the integers the LUTs
    index with. Same size: returned exactly (Pillow copies)."""
    resized = Image.fromarray(pixels.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR,
                                                                 reducing_gap=2.0)
    return np.rint(np.asarray(resized)).astype(np.int64)


def _voi_range(dataset: Dataset) -> tuple[float, float] | None:
    """The output range of the file's VOI transform (what maps to black and white), or None without one. The
    order is ``apply_voi_lut``'s: a VOI LUT Sequence (0 to 2^bits - 1 of its descriptor), else the window
    (its output for the lowest and highest inputs, which pydicom's range rules decide)."""
    lut = dataset.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") and lut[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        with np.errstate(over="ignore"):
            low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset)
        return float(low), float(high)
    return None


def _percentile_range(values: np.ndarray) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(values, PERCENTILE_WINDOW))
    return (low, high) if high > low else (float(values.min()), float(values.max()))


def grey_levels(dataset: Dataset, values: np.ndarray) -> np.ndarray:
    """Stored values -> uint8 display levels: Modality LUT, VOI (or the percentile window), MONOCHROME1
    inverted."""
    values = apply_modality_lut(values, dataset)
    window = _voi_range(dataset)
    if window is not None:
        values = apply_voi_lut(values, dataset)
    low, high = window or _percentile_range(values)
    unit = np.clip((values - low) / (high - low), 0.0, 1.0) if high != low else np.zeros(values.shape)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return np.round(unit * 255.0).astype(np.uint8)


def _colour(pixels: np.ndarray, size: int, channels: int) -> Image.Image:
    if pixels.dtype != np.uint8:  # 16-bit colour: scaled by its own range, like a 16-bit PNG
        low, high = float(pixels.min()), float(pixels.max())
        pixels = np.round((pixels - low) * (255.0 / (high - low)) if high > low else np.zeros(pixels.shape))
    rgb = Image.fromarray(pixels.astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb.convert("L" if channels == 1 else "RGB")


def load_dicom(path: str, size: int, channels: int = 1, data: bytes | None = None) -> tuple[np.ndarray, ImageInfo]:
    """(size, size, channels) uint8 of a single-frame DICOM image and its original size (``load_image``'s
    contract); ``data``: the file's bytes when the caller already read them."""
    dataset = _parse(path, data)
    try:
        _check_image(path, dataset, _has_magic(path, data))
    except (ValueError, TypeError) as error:  # a number tag holding text ('1A'): pydicom reads it, int() cannot
        raise ImageError(f"{path}: DICOM image tags are invalid ({_one_line(error)}): fix the tags or remove the "
                         "file") from None
    pixels = _pixels(path, dataset)
    if pixels.ndim == 3:  # colour (rows, columns, 3)
        image = _colour(pixels, size, channels)
    else:
        try:
            levels = grey_levels(dataset, _shrunk_values(pixels, size))
        except (ValueError, NotImplementedError, AttributeError, IndexError) as error:
            raise ImageError(f"{path}: DICOM rescale, window or LUT tags cannot be applied ({error}): fix the tags or "
                             "remove the file") from None
        grey = Image.fromarray(levels)
        image = grey if channels == 1 else grey.convert("RGB")
    info = ImageInfo(width=int(dataset.Columns), height=int(dataset.Rows), file_type="dicom")
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels), info
