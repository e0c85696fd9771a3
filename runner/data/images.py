"""Decoding one image (or mask) into a square uint8 array, whatever the file holds.

Radiographs arrive as 8-bit or 16-bit grayscale, RGB, RGBA or palette PNGs and JPEGs of any size. Each is
converted, not rejected: 16-bit is scaled by its own range, alpha is dropped. A file that cannot be decoded
raises ``ImageError`` with a message naming the file and saying what to do; the cache counts and skips it.

Memory stays bounded whatever the size: a JPEG is decoded at 1/2 to 1/8 scale (``draft``), any other image is
shrunk in its own mode before it is converted, so nothing is copied at full size (a 10,000 x 10,000 16-bit
PNG converted first would take 800 MB as float64). Images above ``MAX_PIXELS`` are refused unread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from runner.errors import DataError

MAX_PIXELS = 100_000_000  # 10,000 x 10,000: five times the largest radiographs, small enough to stop bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own check (an error above twice this) stays on as a backstop
#: More than 8 bits per pixel (16-bit PNGs, 32-bit integer or float TIFFs): scaled to 8 bits by their own range.
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
#: Modes Pillow resizes directly: shrinking in these first means no full-size copy is ever made.
NATIVE_RESIZE_MODES = ("L", "RGB", *HIGH_DEPTH_MODES)
SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


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


def _signature(path: str) -> str | None:
    """JPEG or PNG when the file starts like one: a file that does, yet cannot be opened, is corrupt."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _open(path: str, what: str) -> Image.Image:
    if Path(path).stat().st_size == 0:
        raise ImageError(f"{path}: {what} file is empty (0 bytes): replace or remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:
            raise ImageError(f"{path}: {what} starts like a {kind} but is corrupt or truncated (its header cannot "
                             "be read): replace or remove it") from None
        raise ImageError(f"{path}: not an image Pillow can read (wrong extension or not an image): "
                         "replace or remove it") from None
    except Image.DecompressionBombError:
        raise _too_large(path, what, f"over {2 * MAX_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: {what} is corrupt or truncated ({error}): replace or remove it") from None
    if image.width * image.height > MAX_PIXELS:
        raise _too_large(path, what, f"{image.width}x{image.height}")
    return image


def _too_large(path: str, what: str, size: str) -> ImageError:
    return ImageError(f"{path}: {what} is {size}, above the limit of {MAX_PIXELS:,} pixels (10,000 x 10,000), so it "
                      "is not decoded: downscale it or remove it")


def _shrink(image: Image.Image, size: int) -> Image.Image:
    """``size`` x ``size`` in the image's own mode where Pillow can resize it, before any conversion copies
    it. 16-bit modes cannot use ``reducing_gap`` (Pillow's ``reduce`` refuses them)."""
    if image.mode not in NATIVE_RESIZE_MODES:
        return image
    gap = None if image.mode.startswith("I;16") else 2.0
    return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=gap)


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
        pixels = _to_mode(_shrink(image, size), channels).resize((size, size), Image.Resampling.BILINEAR,
                                                                  reducing_gap=2.0)
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
