"""Procedural chest-X-ray-like images: the embedded demo data set and the data of most tests.

The product has to run end to end with no download and the tests need data with a known answer, so this
module draws frontal radiograph look-alikes (body, lungs, ribs, heart, spine) with a controlled,
*spatial* disease signal: pneumonia and covid change where the lungs are bright, not how bright the whole
image is, because every image also gets a random exposure (brightness, contrast, gamma) large enough that
global statistics cannot tell the classes apart. A model that does well here has learnt to look at the
lungs, which is what the pipeline is meant to exercise.

Besides one class per image (``DEMO_CLASSES``), the demo paints several findings per image (``DEMO_FINDINGS``,
the multi-label ``findings`` task): pneumonia-like opacity, a pleural effusion, an enlarged heart (drawn from the
patient's own anatomy, so every image of that patient has it) and a pneumothorax, each present or not
independently of the others.

Everything is drawn from ``np.random.default_rng`` generators handed in or seeded from the arguments, so
the same call writes byte-identical files; only numpy, scipy and Pillow are used so that generating data
never imports TensorFlow.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from runner.data._records import findings_label
from runner.errors import DataError

DEMO_CLASSES: tuple[str, ...] = ("covid", "normal", "pneumonia")
DEMO_FINDINGS: tuple[str, ...] = ("cardiomegaly", "effusion", "opacity", "pneumothorax")

# Scales every disease signal. Calibrated so that a 4-block CNN at 64 px reaches a validation F1 of about
# 0.9-0.95 on normal vs pneumonia in 5 epochs from ~500 images: high enough to show learning, low enough
# that the leaderboard still separates good settings from bad ones.
_LESION_GAIN = 4.0
_MIN_SEVERITY = 0.3
_MAX_SEVERITY = 1.4
_SUBTLE_FRACTION = 0.1  # cases drawn almost invisible, so no model gets a perfect score
_CONSOLIDATION = 0.4  # brightening of fully consolidated lung: about as bright as the heart
_GROUND_GLASS = 0.28  # ground glass stays hazy: vessels and ribs remain visible through it

_MIN_SIZE = 32
_REFERENCE_SIZE = 128  # blur widths are tuned at this size and scaled with the image
_MAX_IMAGES_PER_PATIENT = 4
_PNEUMOTHORAX = "pneumothorax"
_FINDING_PREVALENCE = 0.35  # each finding, independently: about 18% of images show none of the four
_ENLARGED_HEART = (1.45, 1.25)  # cardiomegaly: heart width and height scaled (cardiothoracic ratio above 0.5)
_FLUID = 0.3  # brightening of lung filled by an effusion: like soft tissue, denser than ground glass


@dataclass(frozen=True)
class _Anatomy:
    """Body proportions shared by all images of one patient (in units of the half image width)."""

    body_ax: float
    lung_cx: float
    lung_cy: float
    lung_ax: float
    lung_ay: float
    heart_dx: float
    heart_cy: float
    heart_ax: float
    heart_ay: float
    rib_spacing: float
    rib_phase: float
    rib_curve: float
    tissue: float


@dataclass(frozen=True)
class _Pose:
    """How the patient stood in front of the detector for one image."""

    angle: float
    dx: float
    dy: float
    scale: float


@dataclass(frozen=True)
class _Look:
    """Exposure and detector noise of one image; the nuisance that hides global differences."""

    contrast: float
    brightness: float
    gamma: float
    noise: float


@dataclass(frozen=True)
class _Lung:
    """One lung in its own normalised coordinates: ``r`` is 1 on its outline, ``lx * side > 0`` is lateral."""

    r: np.ndarray
    lx: np.ndarray
    ly: np.ndarray
    soft: np.ndarray
    side: int


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    return _Anatomy(
        body_ax=rng.uniform(0.84, 0.94),
        lung_cx=rng.uniform(0.37, 0.42),
        lung_cy=rng.uniform(-0.1, 0.0),
        lung_ax=rng.uniform(0.26, 0.31),
        lung_ay=rng.uniform(0.56, 0.66),
        heart_dx=rng.uniform(0.1, 0.18),
        heart_cy=rng.uniform(0.32, 0.42),
        heart_ax=rng.uniform(0.3, 0.38),
        heart_ay=rng.uniform(0.2, 0.27),
        rib_spacing=rng.uniform(0.105, 0.13),
        rib_phase=rng.uniform(0.0, 1.0),
        rib_curve=rng.uniform(0.3, 0.5),
        tissue=rng.uniform(0.38, 0.46),
    )


def _draw_pose(rng: np.random.Generator) -> _Pose:
    return _Pose(
        angle=math.radians(rng.uniform(-5.0, 5.0)),
        dx=rng.uniform(-0.05, 0.05),
        dy=rng.uniform(-0.05, 0.05),
        scale=rng.uniform(0.92, 1.08),
    )


def _draw_look(rng: np.random.Generator) -> _Look:
    return _Look(
        contrast=rng.uniform(0.75, 1.3),
        brightness=rng.uniform(-0.12, 0.12),
        gamma=math.exp(rng.uniform(math.log(0.75), math.log(1.35))),
        noise=rng.uniform(0.012, 0.035),
    )


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1]; cached because every image of a data set has the same size."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    v, u = np.meshgrid(axis, axis, indexing="ij")
    u.flags.writeable = False
    v.flags.writeable = False
    return u, v


def _anatomical_coords(size: int, pose: _Pose) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels to body coordinates, so the pose moves the whole anatomy (and its masks) rigidly."""
    u, v = _pixel_grid(size)
    cos, sin = math.cos(pose.angle), math.sin(pose.angle)
    du, dv = u - pose.dx, v - pose.dy
    x = (cos * du + sin * dv) / pose.scale
    y = (-sin * du + cos * dv) / pose.scale
    return x, y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _lung(x: np.ndarray, y: np.ndarray, anatomy: _Anatomy, side: int) -> _Lung:
    """An ellipse whose lateral lower corner reaches further down, like a costophrenic angle."""
    lx = (x - side * anatomy.lung_cx) / anatomy.lung_ax
    ly = (y - anatomy.lung_cy) / anatomy.lung_ay
    lateral = np.clip(lx * side, 0.0, 1.0)
    stretch = np.where(ly > 0, 1.0 + 0.25 * lateral, 1.0)
    r = np.sqrt(lx**2 + (ly / stretch) ** 2)
    return _Lung(r=r, lx=lx, ly=ly, soft=_sigmoid((1.0 - r) / 0.04), side=side)


def _smooth_noise(noise: np.ndarray, sigma_px: float) -> np.ndarray:
    """Low-pass noise rescaled to unit spread, so its amplitude does not depend on the blur width."""
    smooth = gaussian_filter(noise, sigma_px, mode="reflect")
    return smooth / (smooth.std() + 1e-6)


def _body(x: np.ndarray, y: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Soft tissue of the torso and neck: what the lungs are carved out of."""
    torso = np.abs(x / anatomy.body_ax) ** 2.6 + np.abs((y - 0.45) / 1.3) ** 2.6
    neck = np.abs(x / 0.2) ** 4 + np.abs((y + 1.1) / 0.4) ** 4
    return np.maximum(_sigmoid((1.0 - torso) / 0.06), _sigmoid((1.0 - neck) / 0.1))


def _ribs(x: np.ndarray, y: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Posterior ribs bend down laterally and anterior ones up, giving the familiar crossing bands."""
    ax = np.abs(x)
    posterior = (y - anatomy.rib_curve * ax**2) / anatomy.rib_spacing + anatomy.rib_phase
    anterior = (y + 0.6 * anatomy.rib_curve * ax**2) / (1.3 * anatomy.rib_spacing) + anatomy.rib_phase
    bands = 0.09 * ((1 + np.cos(2 * np.pi * posterior)) / 2) ** 6
    bands += 0.035 * ((1 + np.cos(2 * np.pi * anterior)) / 2) ** 4
    extent = _sigmoid((0.62 - y) / 0.04) * _sigmoid((y + 0.78) / 0.04) * _sigmoid((0.8 - ax) / 0.05)
    clavicle = 0.1 * np.exp(-(((y + 0.72 - 0.18 * ax) / 0.03) ** 2)) * _sigmoid((0.55 - ax) / 0.04)
    return bands * extent * _sigmoid((ax - 0.06) / 0.02) + clavicle


def _mediastinum(x: np.ndarray, y: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Central shadow, heart bulging to the image right (patient's left) and spine with vertebrae."""
    band = 0.22 * np.exp(-((x / 0.12) ** 4)) * _sigmoid((y + 0.8) / 0.05)
    hx = (x - anatomy.heart_dx) / anatomy.heart_ax
    hy = (y - anatomy.heart_cy) / anatomy.heart_ay
    heart = 0.17 * _sigmoid((1.0 - np.sqrt(hx**2 + hy**2)) / 0.08)
    spine = 0.1 * np.exp(-((x / 0.06) ** 2)) * (1.0 + 0.35 * np.cos(2 * np.pi * y / 0.095))
    return band + heart + spine * _sigmoid((y + 0.95) / 0.05)


def _lung_markings(lungs: Sequence[_Lung], noise: np.ndarray, scale: float) -> np.ndarray:
    """Fine vessel texture, stronger near the hila; a pneumothorax is recognised by its absence."""
    texture = _smooth_noise(noise, 0.9 * scale)
    weight = sum(
        lung.soft * (0.5 + np.exp(-((lung.lx * lung.side + 0.8) ** 2 + lung.ly**2) / 0.5)) for lung in lungs
    )
    return 0.028 * texture * weight


def _blobs(
    x: np.ndarray,
    y: np.ndarray,
    centres: Sequence[tuple[float, float]],
    sigmas: Sequence[float],
    amps: Sequence[float],
) -> np.ndarray:
    out = np.zeros_like(x)
    for (bx, by), sigma, amp in zip(centres, sigmas, amps, strict=True):
        out += amp * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma**2))
    return out


def _lung_point(anatomy: _Anatomy, side: int, lx: float, ly: float) -> tuple[float, float]:
    """Body coordinates of a point given in one lung's normalised frame (lx > 0 is lateral)."""
    return side * (anatomy.lung_cx + lx * anatomy.lung_ax), anatomy.lung_cy + ly * anatomy.lung_ay


def _severity(rng: np.random.Generator) -> float:
    """How visible one case is; the mildest are near invisible, which keeps a perfect score out of reach."""
    subtle = rng.random() < _SUBTLE_FRACTION
    return rng.uniform(0.02, 0.15) if subtle else rng.uniform(_MIN_SEVERITY, _MAX_SEVERITY)


def _opacity(density: np.ndarray) -> np.ndarray:
    """Fluid replacing air saturates at soft-tissue density instead of turning the lung white."""
    return 1.0 - np.exp(-density)


def _pneumonia(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    anatomy: _Anatomy,
    lungs: Sequence[_Lung],
    noise: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Patchy consolidation: bright, blurred, irregular blobs in the lower zones of one or both lungs."""
    severity = _severity(rng)
    sides = [int(s) for s in rng.choice([-1, 1], size=rng.integers(1, 3), replace=False)]
    n = int(rng.integers(2, 6))
    centres = [
        _lung_point(anatomy, sides[i % len(sides)], rng.uniform(-0.6, 0.6), rng.uniform(0.05, 0.75))
        for i in range(n)
    ]
    blobs = _blobs(x, y, centres, rng.uniform(0.08, 0.15, n), rng.uniform(0.6, 1.0, n))
    patchy = np.clip(0.6 + 0.4 * _smooth_noise(noise, 2.5 * scale), 0.0, None)
    inside = sum(lung.soft for lung in lungs)
    return _CONSOLIDATION * _opacity(_LESION_GAIN * severity * blobs * patchy) * inside


def _covid(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    anatomy: _Anatomy,
    lungs: Sequence[_Lung],
    noise: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Bilateral peripheral ground glass: faint, wide haze hugging the outer edge of both lungs."""
    severity = _severity(rng)
    centres: list[tuple[float, float]] = []
    for side in (-1, 1):
        for _ in range(int(rng.integers(1, 4))):
            centres.append(_lung_point(anatomy, side, rng.uniform(0.6, 0.9), rng.uniform(-0.5, 0.6)))
    n = len(centres)
    blobs = _blobs(x, y, centres, rng.uniform(0.1, 0.17, n), rng.uniform(0.6, 1.0, n))
    haze = np.clip(0.7 + 0.3 * _smooth_noise(noise, 4.0 * scale), 0.0, None)
    inside = sum(lung.soft for lung in lungs)
    return _GROUND_GLASS * _opacity(_LESION_GAIN * severity * blobs * haze) * inside


def _effusion(rng: np.random.Generator, lungs: Sequence[_Lung]) -> np.ndarray:
    """Fluid in the lower lung of one or both sides: homogeneous, its upper edge a meniscus that climbs towards
    the chest wall, filling the costophrenic angle (blunted); the deeper, the more severe."""
    severity = min(_severity(rng), 1.2)
    sides = {int(s) for s in rng.choice([-1, 1], size=rng.integers(1, 3), replace=False)}
    fluid = np.zeros_like(lungs[0].r)
    for lung in lungs:
        if lung.side in sides:
            lateral = np.clip(lung.lx * lung.side, 0.0, 1.0)
            surface = 1.0 - 0.45 * severity - 0.35 * lateral**2
            fluid += _sigmoid((lung.ly - surface) / 0.05) * lung.soft
    return _FLUID * fluid


def _enlarged_heart(anatomy: _Anatomy) -> _Anatomy:
    """Cardiomegaly: the same patient with a heart wide enough to fill more than half of the chest."""
    return replace(anatomy, heart_ax=anatomy.heart_ax * _ENLARGED_HEART[0],
                   heart_ay=anatomy.heart_ay * _ENLARGED_HEART[1])


def _pneumothorax(rng: np.random.Generator, lungs: Sequence[_Lung]) -> tuple[np.ndarray, np.ndarray]:
    """A rim of air along the apical-lateral edge of one lung, deepest towards a random apex-side angle.

    Returns the region and the thin visceral pleural line bordering it on the lung side, the sign a
    reader looks for.
    """
    lung = lungs[int(rng.integers(0, 2))]
    depth = rng.uniform(0.25, 0.5)
    tilt = rng.uniform(0.4, 0.9)  # 0: purely apical, 1: purely lateral
    dir_x, dir_y = math.sin(tilt * math.pi / 2), -math.cos(tilt * math.pi / 2)
    cos_angle = (lung.lx * lung.side * dir_x + lung.ly * dir_y) / (lung.r + 1e-6)
    weight = np.clip((cos_angle - 0.05) / 0.95, 0.0, 1.0) ** 0.7
    region = (lung.r < 1.0) & (weight > 0.1) & (lung.r > 1.0 - depth * weight)
    while not region.any():  # tiny images: widen the rim until it covers at least one pixel
        depth *= 1.5
        region = (lung.r < 1.0) & (weight > 0.1) & (lung.r > 1.0 - depth * weight)
    line = (np.abs(lung.r - (1.0 - depth * weight)) < 0.04) & (weight > 0.1) & ~region
    return region, line


def render_chest(
    rng: np.random.Generator,
    label: str,
    size: int,
    *,
    pneumothorax: bool = False,
    anatomy_seed: int | None = None,
    findings: Collection[str] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (image uint8 (size,size), mask uint8 (size,size) with 0/255 or None when no pneumothorax is drawn).

    ``anatomy_seed`` fixes the body proportions so that several images of one fake patient look alike while
    pose, exposure, noise and lesions still vary with ``rng``. The pneumothorax is drawn last, so the same
    ``rng`` state with and without it gives the same image outside the affected rim. ``findings`` (of
    ``DEMO_FINDINGS``) are painted on top of ``label``'s picture; without them every image is as before.
    """
    if label not in DEMO_CLASSES:
        raise DataError(f"unknown demo class '{label}': choose from {', '.join(DEMO_CLASSES)}")
    unknown = sorted(set(findings) - set(DEMO_FINDINGS))
    if unknown:
        raise DataError(f"unknown demo finding '{unknown[0]}': choose from {', '.join(DEMO_FINDINGS)}")
    if size < _MIN_SIZE:
        raise DataError(f"demo image size {size} is too small: pass a size of at least {_MIN_SIZE}")
    anatomy = _draw_anatomy(rng if anatomy_seed is None else np.random.default_rng(anatomy_seed))
    if "cardiomegaly" in findings:
        anatomy = _enlarged_heart(anatomy)
    pose = _draw_pose(rng)
    look = _draw_look(rng)
    texture_noise, patch_noise, pixel_noise = rng.standard_normal((3, size, size), dtype=np.float32)
    scale = size / _REFERENCE_SIZE

    x, y = _anatomical_coords(size, pose)
    lungs = [_lung(x, y, anatomy, side) for side in (-1, 1)]
    air = sum(lung.soft for lung in lungs)
    image = 0.05 + anatomy.tissue * _body(x, y, anatomy) - 0.27 * air
    image += _ribs(x, y, anatomy) + _mediastinum(x, y, anatomy)
    markings = _lung_markings(lungs, texture_noise, scale)

    if label == "pneumonia" or "opacity" in findings:
        image += _pneumonia(rng, x, y, anatomy, lungs, patch_noise, scale)
    elif label == "covid":
        image += _covid(rng, x, y, anatomy, lungs, patch_noise, scale)
    if "effusion" in findings:
        image += _effusion(rng, lungs)

    mask = None
    if pneumothorax or _PNEUMOTHORAX in findings:
        region, line = _pneumothorax(rng, lungs)
        markings = np.where(region, 0.0, markings)
        image += 0.04 * line - 0.09 * region
        mask = region.astype(np.uint8) * 255
    image += markings

    image = gaussian_filter(image.astype(np.float32), 0.5 * scale)
    return _expose(image, look, pixel_noise), mask


def _expose(image: np.ndarray, look: _Look, noise: np.ndarray) -> np.ndarray:
    """Random exposure then detector noise, so global intensity carries no class information."""
    exposed = np.clip(image * look.contrast + look.brightness, 0.0, 1.0) ** look.gamma
    noisy = np.clip(exposed + look.noise * noise, 0.0, 1.0)
    return np.rint(noisy * 255.0).astype(np.uint8)


def _is_findings_set(classes: Sequence[str], masks: bool) -> bool:
    """Classes that are all demo findings ask for a multi-label set (several findings per image)."""
    return bool(classes) and not masks and set(classes) <= set(DEMO_FINDINGS)


def _check_args(n: int, seed: int, size: int, classes: Sequence[str], masks: bool) -> None:
    for c in classes:
        if c not in DEMO_CLASSES and not _is_findings_set(classes, masks):
            raise DataError(f"unknown demo class '{c}': choose from {', '.join(DEMO_CLASSES)}")
    if not classes:
        raise DataError(f"no demo classes given: choose from {', '.join(DEMO_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise DataError(f"demo classes {', '.join(classes)} name a class twice: list each class once")
    n_groups = 2 if masks else len(classes)
    if n < n_groups:
        raise DataError(f"demo set of n={n} images cannot cover its {n_groups} classes: pass n >= {n_groups}")
    if size < _MIN_SIZE:
        raise DataError(f"demo image size {size} is too small: pass a size of at least {_MIN_SIZE}")
    if seed < 0:
        raise DataError(f"demo seed {seed} is negative: pass a seed of 0 or more")


def _patients(rng: np.random.Generator, counts: dict[str, int]) -> list[tuple[str, int]]:
    """(label, number of images) per fake patient, shuffled so patient numbers do not give the label away."""
    patients: list[tuple[str, int]] = []
    for label, count in counts.items():
        left = count
        while left > 0:
            k = min(left, int(rng.integers(1, _MAX_IMAGES_PER_PATIENT + 1)))
            patients.append((label, k))
            left -= k
    order = rng.permutation(len(patients))
    return [patients[i] for i in order]


def _balanced_counts(n: int, labels: Sequence[str]) -> dict[str, int]:
    base, extra = divmod(n, len(labels))
    return {label: base + (i < extra) for i, label in enumerate(labels)}


def _save_png(path: Path, pixels: np.ndarray) -> None:
    # Pillow writes no time or text chunks unless asked, so equal pixels give equal bytes.
    Image.fromarray(pixels).save(path, format="PNG")


def write_demo(
    out_dir: Path,
    *,
    n: int = 600,
    seed: int = 0,
    size: int = 128,
    classes: Sequence[str] = ("normal", "pneumonia"),
    masks: bool = False,
) -> Path:
    """Write n images as real PNG files and return the path of the manifest.csv written.

    Real files in the same layouts as user data (class folders, or images/ + masks/) mean the demo goes
    through exactly the loading code a user's data set does. Each image's generator is seeded from
    (seed, patient, image), so a file depends only on the arguments, never on write order.
    Segmentation sets contain normal lungs, about half of the patients with a pneumothorax; ``classes``
    is then only validated. ``classes`` that are all ``DEMO_FINDINGS`` give a multi-label set instead
    (``_write_findings``).
    """
    classes = tuple(classes)
    _check_args(n, seed, size, classes, masks)
    out_dir = Path(out_dir)
    if _is_findings_set(classes, masks):
        return _write_findings(out_dir, n=n, seed=seed, size=size, findings=classes)
    labels = (_PNEUMOTHORAX, "normal") if masks else classes
    patients = _patients(np.random.default_rng(seed), _balanced_counts(n, labels))

    if masks:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    else:
        for label in classes:
            (out_dir / label).mkdir(parents=True, exist_ok=True)

    rows: list[tuple[str, str, str]] = []
    for number, (label, count) in enumerate(patients, start=1):
        patient_id = f"demo-p{number:05d}"
        anatomy_seed = int(np.random.SeedSequence([seed, number, 0]).generate_state(1)[0])
        for k in range(1, count + 1):
            rng = np.random.default_rng([seed, number, k])
            name = f"{patient_id}-{k}.png"
            if masks:
                image, mask = render_chest(
                    rng, "normal", size, pneumothorax=label == _PNEUMOTHORAX, anatomy_seed=anatomy_seed
                )
                _save_png(out_dir / "images" / name, image)
                _save_png(out_dir / "masks" / name, np.zeros_like(image) if mask is None else mask)
                rows.append((name, label, patient_id))
            else:
                image, _ = render_chest(rng, label, size, anatomy_seed=anatomy_seed)
                _save_png(out_dir / label / name, image)
                rows.append((f"{label}/{name}", label, patient_id))

    return _write_manifest(out_dir, rows)


def _write_manifest(out_dir: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("file", "label", "patient_id"))
        writer.writerows(rows)
    return manifest


def _write_findings(out_dir: Path, *, n: int, seed: int, size: int, findings: Sequence[str]) -> Path:
    """``images/*.png`` and a manifest whose ``label`` lists each image's findings (``cardiomegaly|effusion``,
    ``No Finding``): the NIH ChestX-ray14 layout. Cardiomegaly is the patient's (their anatomy); the others are
    drawn per image, each with probability ``_FINDING_PREVALENCE``."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    patients = _patients(np.random.default_rng(seed), {"findings": n})
    per_image = [f for f in findings if f != "cardiomegaly"]
    rows: list[tuple[str, str, str]] = []
    for number, (_, count) in enumerate(patients, start=1):
        patient_id = f"demo-p{number:05d}"
        seeds = np.random.SeedSequence([seed, number, 0])
        anatomy_seed = int(seeds.generate_state(1)[0])
        enlarged = "cardiomegaly" in findings and np.random.default_rng(seeds).random() < _FINDING_PREVALENCE
        for k in range(1, count + 1):
            rng = np.random.default_rng([seed, number, k])
            shown = {f for f, p in zip(per_image, rng.random(len(per_image)), strict=True) if p < _FINDING_PREVALENCE}
            shown |= {"cardiomegaly"} if enlarged else set()
            name = f"{patient_id}-{k}.png"
            image, _ = render_chest(rng, "normal", size, anatomy_seed=anatomy_seed, findings=shown)
            _save_png(out_dir / "images" / name, image)
            rows.append((f"images/{name}", findings_label(shown), patient_id))
    return _write_manifest(out_dir, rows)
