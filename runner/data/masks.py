"""Masks: mask files in any common binary encoding, and run-length-encoded masks as SIIM-ACR ships them.

A mask file's foreground is every pixel that is not zero, whatever the encoding: 0/1 and 0/255 grey, boolean,
16-bit (0/1 or 0/65535), RGB/RGBA in any non-black colour (a fully transparent pixel is background), grey +
alpha, and palette files by the colour of each index (non-black, not transparent). Thresholding at 127 would
read a 0/1 or a pure-red mask as empty. Label maps (0/1/2 for left and right lung) are foreground wherever
non-zero. JPEG masks are the exception: compression leaves noise near 0 and 255, so their foreground is
above 127 (half the 8-bit range; a JPEG cannot keep a 0/1 mask anyway). ``mask_threshold`` (an
``image_masks`` option) sets the cut for every file instead: foreground = value above it, in the file's own
units (colour files: the largest channel).

SIIM's first release used *relative* RLE (each start is an offset from the end of the previous run); its
second stage, like most Kaggle segmentation sets, used *absolute* 1-based starts. Both run down columns
(column-major), which is why the decoded array is transposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from runner.errors import ConfigError, DataError

RLE_FORMATS = ("relative", "absolute")
LOSSY_FORMATS = ("JPEG", "MPO")
LOSSY_CUT = 127
#: Modes read as one grey value per pixel; any other mode (CMYK, YCbCr, ...) is read as RGB colour.
GREY_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "F")
COLOUR_NAMES = {"RGB": "RGB colour", "RGBA": "RGBA colour", "LA": "grey + alpha", "P": "palette", "PA": "palette"}


@dataclass(frozen=True)
class MaskRead:
    """How one mask was read: its encoding in words (for ``data check``) and its foreground fraction at full
    size."""

    encoding: str
    fraction: float


def parse_threshold(value: Any) -> float | None:
    """The ``mask_threshold`` option: None (non-zero, JPEG above 127) or a number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"data.mask_threshold={value!r} must be a number >= 0 (foreground = mask value above it) "
                          "or null (any non-zero value; JPEG above 127)")
    return float(value)


def _values(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """One value per pixel (grey, or the largest colour channel) and, where the mode has one, the opacity."""
    if image.mode in GREY_MODES:
        return np.asarray(image), None
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # a palette index counts by its colour, its transparency included
    elif image.mode not in ("RGB", "RGBA", "LA"):
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if image.mode in ("RGBA", "LA"):
        return pixels[..., :-1].max(axis=-1), pixels[..., -1] > 0
    return pixels.max(axis=-1), None


def _grey_name(values: np.ndarray, foreground: np.ndarray) -> str:
    """``0/1 grey``, ``0/255 grey``, ``16-bit 0/65535 grey``, ``grey 0..2`` (several values), ``empty grey``."""
    depth = f"{values.dtype.itemsize * 8}-bit " if values.dtype.itemsize > 1 else ""
    top = values.max()
    if top == 0:
        return f"empty {depth}grey"
    top_text = f"{top:g}" if values.dtype.kind == "f" else str(int(top))
    two_valued = np.count_nonzero(values == top) == np.count_nonzero(foreground)
    return f"{depth}0/{top_text} grey" if two_valued else f"{depth}grey 0..{top_text}"


def _encoding(mode: str, values: np.ndarray, foreground: np.ndarray, grey_by_values: bool) -> str:
    if mode not in GREY_MODES:
        return COLOUR_NAMES.get(mode, "RGB colour")
    return _grey_name(values, foreground) if grey_by_values else "grey"


def binarise(image: Image.Image, threshold: float | None = None) -> tuple[np.ndarray, MaskRead]:
    """Full-size boolean foreground of a mask file (see the module docstring for the rule) and how it was read."""
    if image.mode == "1":
        foreground = np.asarray(image, dtype=bool)
        return foreground, MaskRead("boolean", float(foreground.mean()))
    values, opaque = _values(image)
    lossy = image.format in LOSSY_FORMATS
    cut = threshold if threshold is not None else LOSSY_CUT if lossy else 0
    foreground = values > cut
    if opaque is not None:
        foreground &= opaque
    name = _encoding(image.mode, values, foreground, grey_by_values=not lossy and threshold is None)
    if lossy:
        name = f"JPEG {name}"
    if lossy or threshold is not None:
        name = f"{name} above {cut:g}"
    return foreground, MaskRead(name, float(foreground.mean()))


def is_empty_rle(encoded: str) -> bool:
    return encoded.strip() in ("", "-1")


def decode_rle(encoded: str, width: int, height: int, rle_format: str = "relative") -> np.ndarray:
    """A (height, width) uint8 mask (0/255) from one or more RLE strings joined by ``|``."""
    flat = np.zeros(width * height, dtype=np.uint8)
    for part in encoded.split("|"):
        if is_empty_rle(part):
            continue
        numbers = np.asarray(part.split(), dtype=np.int64)
        if numbers.size % 2:
            raise DataError(f"RLE '{part[:40]}...' has an odd number of values: it must be start/length pairs")
        starts, lengths = numbers[0::2], numbers[1::2]
        if rle_format == "relative":
            starts = starts + np.concatenate([[0], np.cumsum(starts[:-1] + lengths[:-1])])
        else:
            starts = starts - 1
        if starts.size and (starts.min() < 0 or (starts + lengths).max() > flat.size):
            raise DataError(f"RLE runs past a {width}x{height} image: check rle_format ({', '.join(RLE_FORMATS)})")
        for start, length in zip(starts, lengths, strict=True):
            flat[start:start + length] = 255
    return flat.reshape(width, height).T


def encode_rle(mask: np.ndarray, rle_format: str = "relative") -> str:
    """The inverse of ``decode_rle`` for one mask; ``-1`` for an empty mask (used by tests and the demo)."""
    flat = (np.asarray(mask).T.reshape(-1) > 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not starts.size:
        return "-1"
    lengths = ends - starts
    if rle_format == "relative":
        previous_end = np.concatenate([[0], ends[:-1]])
        starts = starts - previous_end
    else:
        starts = starts + 1
    return " ".join(f"{s} {n}" for s, n in zip(starts, lengths, strict=True))
