"""Decoding one image (or mask) into a square uint8 array, whatever the file holds.

Radiographs arrive as 8-bit or 16-bit grayscale, RGB, RGBA or palette PNGs and JPEGs of any size. Each is
converted, not rejected: 16-bit is scaled by its own range, alpha is dropped. A file that cannot be decoded
raises ``ImageError`` with a message naming the file and saying what to do; the cache counts and skips it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from runner.errors import DataError

Image.MAX_IMAGE_PIXELS = 400_000_000  # 20,000 x 20,000: larger than any radiograph, small enough to stop bombs


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
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    return image.convert("L" if channels == 1 else "RGB")


def _open(path: str, what: str) -> Image.Image:
    if Path(path).stat().st_size == 0:
        raise ImageError(f"{path}: {what} file is empty (0 bytes): replace or remove it")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (wrong extension or not an image): "
                         "replace or remove it") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: {what} is corrupt or truncated ({error}): replace or remove it") from None
    return image


def load_image(path: str, size: int, channels: int = 1) -> tuple[np.ndarray, ImageInfo]:
    """(size, size, channels) uint8, squashed to a square like the notebooks did, plus the original's info."""
    image = _open(path, "image")
    info = ImageInfo(width=image.width, height=image.height, file_type=(image.format or "unknown").lower())
    if image.format == "JPEG":
        image.draft("L" if channels == 1 else "RGB", (size, size))  # decode at 1/2..1/8 scale: much faster
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
        pixels = _to_mode(image, channels).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: image is corrupt or truncated ({error}): replace or remove it") from None
    array = np.asarray(pixels, dtype=np.uint8)
    return array.reshape(size, size, channels), info


def load_mask(path: str, size: int, image_info: ImageInfo, image_path: str) -> np.ndarray:
    """(size, size, 1) uint8 0/255 mask; it must have the image's original size."""
    image = _open(path, "mask")
    if (image.width, image.height) != (image_info.width, image_info.height):
        raise ImageError(f"{path}: mask is {image.width}x{image.height} but its image {image_path} is "
                         f"{image_info.width}x{image_info.height}: masks must match their image's size")
    try:
        mask = image.convert("L").resize((size, size), Image.Resampling.NEAREST)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: mask is corrupt or truncated ({error}): replace or remove it") from None
    return np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8).reshape(size, size, 1)
