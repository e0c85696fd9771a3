"""Run-length-encoded masks as SIIM-ACR ships them.

SIIM's first release used *relative* RLE (each start is an offset from the end of the previous run); its
second stage, like most Kaggle segmentation sets, used *absolute* 1-based starts. Both run down columns
(column-major), which is why the decoded array is transposed.
"""

from __future__ import annotations

import numpy as np

from runner.errors import DataError

RLE_FORMATS = ("relative", "absolute")


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
