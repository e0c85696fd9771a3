"""Decoding one image (or mask) into a square uint8 array, whatever the file holds.

Radiographs arrive as 8-bit or 16-bit grayscale, RGB, RGBA or palette PNGs and JPEGs of any size, or as DICOM
(``runner.data.dicom``, which owns its pixel pipeline). Each is converted, not rejected: 16-bit is scaled by its
own range, alpha is dropped. A file that cannot be decoded
raises ``ImageError`` with a message naming the file and saying what to do; the cache counts and skips it.

Memory stays bounded whatever the size: a JPEG is decoded at 1/2 to 1/8 scale (``draft``), any other image is
shrunk in its own mode before it is converted, so nothing is copied at full size (a 10,000 x 10,000 16-bit
PNG converted first would take 800 MB as float64). Images above ``MAX_PIXELS`` are refused unread.

An EXIF Orientation tag (phones, some scanners) is applied, to images after shrinking (the square is rotated,
never the full-size image) and to masks before resizing; the width and height recorded are the oriented ones.
Masks are binarised at full size by ``runner.data.masks.binarise``, whatever their encoding.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from runner.data._records import IMAGE_SUFFIXES
from runner.data.masks import MaskRead, binarise
from runner.errors import DataError

MAX_PIXELS = 100_000_000  # 10,000 x 10,000: five times the largest radiographs, small enough to stop bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own check (an error above twice this) stays on as a backstop
#: More than 8 bits per pixel (16-bit PNGs, 32-bit integer or float TIFFs): scaled to 8 bits by their own range.
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
#: Modes Pillow resizes directly: shrinking in these first means no full-size copy is ever made.
NATIVE_RESIZE_MODES = ("L", "RGB", *HIGH_DEPTH_MODES)
SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
DICOM_SUFFIXES = (".dcm", ".dicom")
#: DICOM PS3.10: a 128-byte preamble, then ``DICM``; the bytes a file must start with to be told by content.
DICOM_HEAD = 132
ORIENTATION_TAG = 0x0112
#: EXIF Orientation -> the transpose that shows the image upright (what ``ImageOps.exif_transpose`` does).
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


class ImageError(DataError):
    """An image or mask file that cannot be used."""


@dataclass(frozen=True)
class ImageInfo:
    """What the shortcut check needs from the original file (before resizing)."""

    width: int
    height: int
    file_type: str


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """8-bit L (channels=1) or RGB (channels=3) from any Pillow mode."""
    if image.mode in HIGH_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    return image.convert("L" if channels == 1 else "RGB")


def is_dicom_file(path: str, head: bytes | None = None) -> bool:
    """A DICOM file by its name (``.dcm``, ``.dicom``) or, when the name has no image suffix, by its first 132
    bytes (``head``, read here when not given): extension-less and UID-named files are how PACS exports and
    the SIIM-ACR original ship. A file named ``.png`` or ``.jpg`` is taken for what its name says."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    if head is None:
        try:
            with open(path, "rb") as handle:
                head = handle.read(DICOM_HEAD)
        except OSError:
            return False
    return has_dicom_magic(head)


def has_dicom_magic(head: bytes) -> bool:
    return head[DICOM_HEAD - 4:DICOM_HEAD] == b"DICM"


def _signature(head: bytes) -> str | None:
    """JPEG or PNG when the file starts like one: a file that does, yet cannot be opened, is corrupt."""
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _head(path: str, data: bytes | None) -> bytes:
    if data is not None:
        return data[:8]
    with open(path, "rb") as handle:
        return handle.read(8)


def _open(path: str, what: str, data: bytes | None = None) -> Image.Image:
    """Open ``path``, or ``data`` (its bytes, already read to hash them) naming ``path`` in errors."""
    if (len(data) if data is not None else Path(path).stat().st_size) == 0:
        raise ImageError(f"{path}: {what} file is empty (0 bytes): replace or remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data) if data is not None else path)
    except UnidentifiedImageError:
        kind = _signature(_head(path, data))
        if kind:
            raise ImageError(f"{path}: {what} starts like a {kind} but is corrupt or truncated (its header cannot "
                             "be read): replace or remove it") from None
        raise ImageError(f"{path}: not an image Pillow can read (wrong extension or not an image): "
                         "replace or remove it") from None
    except Image.DecompressionBombError:
        raise too_large(path, what, f"over {2 * MAX_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: {what} is corrupt or truncated ({error}): replace or remove it") from None
    if image.width * image.height > MAX_PIXELS:
        raise too_large(path, what, f"{image.width}x{image.height}")
    return image


def too_large(path: str, what: str, size: str) -> ImageError:
    return ImageError(f"{path}: {what} is {size}, above the limit of {MAX_PIXELS:,} pixels (10,000 x 10,000), so it "
                      "is not decoded: downscale it or remove it")


def _shrink(image: Image.Image, size: int) -> Image.Image:
    """``size`` x ``size`` in the image's own mode where Pillow can resize it, before any conversion copies
    it. 16-bit modes cannot use ``reducing_gap`` (Pillow's ``reduce`` refuses them)."""
    if image.mode not in NATIVE_RESIZE_MODES:
        return image
    gap = None if image.mode.startswith("I;16") else 2.0
    return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=gap)


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transpose the file's EXIF Orientation asks for; None when upright, untagged or the EXIF is unreadable."""
    try:
        return ORIENTATIONS.get(image.getexif().get(ORIENTATION_TAG, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return None


def _oriented_size(size: tuple[int, int], turn: Image.Transpose | None) -> tuple[int, int]:
    swaps = turn in (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90,
                     Image.Transpose.ROTATE_270)
    return (size[1], size[0]) if swaps else size


def _load_pixels(image: Image.Image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image.load()


def load_image(path: str, size: int, channels: int = 1, data: bytes | None = None) -> tuple[np.ndarray, ImageInfo]:
    """(size, size, channels) uint8, squashed to a square like the notebooks did, upright (EXIF orientation
    applied), plus the original's oriented info. ``data``: the file's bytes when the caller already read them."""
    if is_dicom_file(path, None if data is None else data[:DICOM_HEAD]):
        from runner.data.dicom import load_dicom  # pydicom (0.4 s to import) only once a DICOM file is met

        return load_dicom(path, size, channels, data)
    image = _open(path, "image", data)
    original = image.size  # before ``draft`` shrinks it
    if image.format == "JPEG":
        image.draft("L" if channels == 1 else "RGB", (size, size))  # decode at 1/2..1/8 scale: much faster
    try:
        _load_pixels(image)
        turn = _orientation(image)  # after load: a PNG's eXIf chunk may follow its pixels
        pixels = _to_mode(_shrink(image, size), channels).resize((size, size), Image.Resampling.BILINEAR,
                                                                  reducing_gap=2.0)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: image is corrupt or truncated ({error}): replace or remove it") from None
    if turn is not None:
        pixels = pixels.transpose(turn)
    info = ImageInfo(*_oriented_size(original, turn), file_type=(image.format or "unknown").lower())
    array = np.asarray(pixels, dtype=np.uint8)
    return array.reshape(size, size, channels), info


def load_mask(path: str, size: int, image_info: ImageInfo, image_path: str, threshold: float | None = None,
              ) -> tuple[np.ndarray, MaskRead]:
    """(size, size, 1) uint8 0/255 mask, upright, binarised at full size (so a thin or 0/1 mask survives the
    resize), and how it was read; it must have its image's oriented size."""
    image = _open(path, "mask")
    try:
        _load_pixels(image)
        turn = _orientation(image)
        width, height = _oriented_size(image.size, turn)
        if (width, height) != (image_info.width, image_info.height):
            raise ImageError(f"{path}: mask is {width}x{height} but its image {image_path} is "
                             f"{image_info.width}x{image_info.height}: masks must match their image's size")
        foreground, read = binarise(image, threshold)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: mask is corrupt or truncated ({error}): replace or remove it") from None
    mask = Image.fromarray(np.multiply(foreground, 255, dtype=np.uint8))
    if turn is not None:
        mask = mask.transpose(turn)
    resized = mask.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8).reshape(size, size, 1), read
