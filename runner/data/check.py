"""``runner data check``: what a data set holds, what is wrong with it, and whether its classes can be told
apart without looking at the lungs.

The shortcut check exists because many published COVID-19 models learned the hospital, not the disease: each
class came from another source, and image size or intensity alone separated them (DeGrave et al. 2021,
Nature Machine Intelligence). A warning here is stored with every trial's results later.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner import storage
from runner.data._dataset import DataSet
from runner.data._records import SPLITS, Problem, Record, label_parts
from runner.data.adapters._common import part_of_name
from runner.data.cache import CachedData
from runner.errors import StorageError

SHORTCUT_AUC = 0.9
#: Bump when the shortcut checks change what they find, so memos written by the old checks are not reused.
SHORTCUT_VERSION = 1
CHECK_IMAGE_SIZE = 64
#: Degenerate images: below this many pixels on a side, or longer than this ratio, squashing them to a square
#: gives a picture of nothing (a 1x1 image becomes flat grey, a 10x50000 strip a smear). They are still used,
#: because they decode; data check names them so they can be removed or cropped.
MIN_SIDE = 16
MAX_ASPECT = 10.0
NAMED = 3  # files named in a warning; the count says how many more
#: How public sets name a patient in their file names, for ``data check`` to suggest a ``data.patient_regex``
#: when every image without an id fits one (and it groups them: a set of one image per patient needs none).
PATIENT_NAMING: tuple[tuple[str, str], ...] = (
    ("Kermany's pediatric set (IM-0115-0001.jpeg, NORMAL2-IM-0588-0001.jpeg, person1_bacteria_1.jpeg)",
     r"((?:NORMAL2-)?IM-\d+|person\d+)"),
    ("NIH ChestX-ray14 (00000001_000.png)", r"^(\d{8})_\d{3}\."),
)


@dataclass
class CheckReport:
    """The findings of a data check; ``errors`` make the command exit non-zero."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = list(self.lines)
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"error: {e}" for e in self.errors]
        return "\n".join(out)


#: What the source check compares with the labels, by the name its warning uses: the layout's ``source``, and
#: the DICOM acquisition tags (InstitutionName, Manufacturer, StudyDate's year: ``DicomInfo``).
SOURCE_CANDIDATES: Mapping[str, Callable[[Record], str | None]] = {
    "source": lambda r: r.source,
    "institution": lambda r: r.dicom.institution if r.dicom else None,
    "manufacturer": lambda r: r.dicom.manufacturer if r.dicom else None,
    "study year": lambda r: r.dicom.study_year if r.dicom else None,
}


def source_shortcut(records: Sequence[Record], what: str = "source") -> str | None:
    """A warning when every class comes from its own set of sources, so the source alone predicts the label;
    ``what`` names one of ``SOURCE_CANDIDATES``."""
    source_of = SOURCE_CANDIDATES[what]
    sources: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if source_of(record):
            sources[record.label].add(source_of(record))
    if len(sources) < 2 or len(sources) != len({r.label for r in records}):
        return None
    labels = sorted(sources)
    overlap = any(sources[a] & sources[b] for i, a in enumerate(labels) for b in labels[i + 1:])
    if overlap:
        return None
    described = "; ".join(f"{label}: {', '.join(sorted(sources[label]))}" for label in labels)
    return (f"each class comes from its own {what} ({described}): a model can learn the {what} "
            "instead of the disease (DeGrave et al. 2021); mix sources within classes or test on an external set")


def data_sets_below(folder: Path, reads_masks: bool) -> list[tuple[Path, str]]:
    """(sub-folder, layout) for each sub-folder of ``folder`` that is a data set of its own, when ``folder``
    holds several (``data demo --out DIR`` writes one per layout); else []. Read as one data set, such a
    folder looks like class folders whose classes have no images, which hides what to do. Split-named
    sub-folders (``train/``, ``val/``) are parts of one data set, and sub-folders that only look like class
    folders are not enough to tell, so at least one must be another layout (a manifest, images + masks...).
    For a task that does not read masks, images + masks is a class folder too (the COVID-19 Radiography
    Database's ``<class>/images/`` beside ``<class>/masks/``): its own error (a label to map) is the useful one."""
    from runner.data._dataset import detected_layout
    from runner.data._records import SPLIT_NAMES

    if not folder.is_dir():
        return []
    found = [(child, detected_layout(child)) for child in sorted(folder.iterdir())
             if child.is_dir() and not child.name.startswith(".") and child.name.casefold() not in SPLIT_NAMES]
    found = [(child, layout) for child, layout in found if layout is not None]
    class_like = {"class_folders"} if reads_masks else {"class_folders", "image_masks"}
    return found if any(layout not in class_like for _, layout in found) else []


def several_data_sets_error(folder: Path, task: str, found: Sequence[tuple[Path, str]]) -> str:
    """The one error line of ``data check`` on a folder of several data sets: each sub-folder to check."""
    listed = ", ".join(f"{child} ({layout})" for child, layout in found)
    return (f"{folder} holds {len(found)} data sets, one per sub-folder, not one: run python -m runner data check "
            f"SUB-FOLDER --task {task} on one of {listed}")


def metadata_features(metadata: dict[str, np.ndarray]) -> np.ndarray:
    """Original width, height, aspect, mean and std intensity and file type: nothing about the lungs."""
    width = metadata["width"].astype(float)
    height = metadata["height"].astype(float)
    types = sorted(set(metadata["file_type"]))
    one_hot = np.stack([metadata["file_type"] == t for t in types], axis=1).astype(float)
    return np.column_stack([width, height, width / np.maximum(height, 1), metadata["mean"], metadata["std"], one_hot])


def metadata_shortcut_auc(features: np.ndarray, labels: Sequence[str], groups: Sequence[str],
                          seed: int = 0) -> float | None:
    """Cross-validated (grouped by patient) macro one-vs-rest ROC AUC of a small tree model on metadata."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    smallest = int(np.bincount(y).min()) if len(classes) > 1 else 0
    folds = min(5, smallest, len(set(groups)))
    if len(classes) < 2 or folds < 2:
        return None
    model = HistGradientBoostingClassifier(max_iter=50, max_depth=3, min_samples_leaf=5, random_state=seed)
    scores = cross_val_predict(model, features, y, groups=list(groups), cv=GroupKFold(folds),
                               method="predict_proba")
    if len(classes) == 2:
        return float(roc_auc_score(y, scores[:, 1]))
    return float(roc_auc_score(y, scores, multi_class="ovr", average="macro"))


def _metadata_auc(cached: CachedData, valid: Sequence[Record]) -> float | None:
    """``metadata_shortcut_auc`` of the data set's classes; with several classes per image (multi-label
    findings) each class against the images without it, not every combination as a class of its own, and the
    highest counts: metadata that gives one finding away (portable films and effusions) is a shortcut."""
    features = metadata_features(cached.metadata())
    groups = [r.patient_id or r.path for r in valid]
    parts = [label_parts(r.label) for r in valid]
    if all(len(p) == 1 for p in parts):
        return metadata_shortcut_auc(features, [p[0] for p in parts], groups)
    aucs = [metadata_shortcut_auc(features, [str(name in p) for p in parts], groups) for name in cached.dataset.classes]
    return max((auc for auc in aucs if auc is not None), default=None)


def shortcut_warnings(cached: CachedData) -> list[str]:
    """Both shortcut checks on a cached data set (labels of valid images only), computed once per data set.

    The metadata model's grouped cross-validation costs seconds (2-5 s on 2 cores for 400 images), and every
    trial of a sweep stores the same warnings, so the first caller writes them beside the cache file and
    later trials (and ``data check``) read them back. The cache file's name fixes the pixels and the metadata
    (``pixels_key``); the memo's key adds what else the checks read: each valid image's path, label, patient
    and source candidates, so a relabelled or re-split data set is checked again."""
    key = _shortcut_key(cached.valid_records())
    memo = _shortcut_memo(cached.path)
    if key not in memo:
        memo[key] = _shortcut_checks(cached)
        _write_memo(cached.path, memo)
    return list(memo[key])


def _shortcut_key(valid: Sequence[Record]) -> str:
    digest = hashlib.sha256(f"v{SHORTCUT_VERSION}:{SHORTCUT_AUC}\n".encode())
    for record in valid:
        sources = "\t".join(str(source_of(record)) for source_of in SOURCE_CANDIDATES.values())
        digest.update(f"{record.path}\t{record.label}\t{record.patient_id}\t{sources}\n".encode())
    return digest.hexdigest()[:24]


def _memo_path(cache_file: Path) -> Path:
    return cache_file.with_name(f"{cache_file.name}.shortcuts.json")


def _shortcut_memo(cache_file: Path) -> dict[str, list[str]]:
    """The memo beside a cache file; unreadable or missing is empty (the checks then just run again)."""
    try:
        found = json.loads(_memo_path(cache_file).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_memo(cache_file: Path, memo: dict[str, list[str]]) -> None:
    """Written as every results file is (``storage.write_text``: whole, fsynced, renamed into place), so a trial
    never reads half a file; when two trials write at once the later one wins and the other's entry is
    computed again next time. A read-only cache folder only loses the saving."""
    with contextlib.suppress(StorageError):
        storage.write_text(str(_memo_path(cache_file)), json.dumps(memo))


def _shortcut_checks(cached: CachedData) -> list[str]:
    valid = cached.valid_records()
    warnings = [w for w in (source_shortcut(valid, what) for what in SOURCE_CANDIDATES) if w]
    auc = _metadata_auc(cached, valid)
    if auc is not None and auc >= SHORTCUT_AUC:
        warnings.append(f"image metadata alone (size, aspect, mean/std intensity, file type) separates the classes "
                        f"with ROC AUC {auc:.2f}: the classes may differ by acquisition, not disease; check sources "
                        "and preprocessing (DeGrave et al. 2021)")
    return warnings


def _size_range(metadata: dict[str, np.ndarray]) -> str:
    if not len(metadata["width"]):
        return "none"
    return (f"{metadata['width'].min()}x{metadata['height'].min()} to "
            f"{metadata['width'].max()}x{metadata['height'].max()} px "
            f"({', '.join(sorted(set(metadata['file_type'])))})")


def dicom_summary(dataset: DataSet) -> str | None:
    """What the DICOM headers gave: views (``data.views`` keeps some) and how many values of each source
    candidate (their values appear only in a shortcut warning)."""
    tagged = [r for r in dataset.records if r.dicom]
    if not tagged:
        return None
    views = Counter(r.view or "none" for r in tagged).most_common()
    years = sorted({r.dicom.study_year for r in tagged if r.dicom.study_year})
    counts = [f"{len({r.dicom.institution for r in tagged if r.dicom.institution})} institutions",
              f"{len({r.dicom.manufacturer for r in tagged if r.dicom.manufacturer})} manufacturers",
              f"study years {years[0]}-{years[-1]}" if years else "no study dates"]
    return (f"dicom: {len(tagged)} images, {sum(1 for r in tagged if r.patient_id)} with a patient id; views "
            f"{', '.join(f'{v} {n}' for v, n in views)}; {', '.join(counts)}")


def _first_files(paths: Sequence[str]) -> str:
    more = f" and {len(paths) - NAMED} more" if len(paths) > NAMED else ""
    return ", ".join(paths[:NAMED]) + more


def degenerate_warning(cached: CachedData) -> str | None:
    """Images too small or too elongated to mean anything once squashed to a square."""
    metadata = cached.metadata()
    found = [f"{r.path} ({w}x{h})" for r, w, h in zip(cached.valid_records(), metadata["width"], metadata["height"],
                                                       strict=True)
             if min(w, h) < MIN_SIDE or max(w, h) > MAX_ASPECT * max(min(w, h), 1)]
    if not found:
        return None
    return (f"{len(found)} degenerate images (under {MIN_SIDE} px on a side or over {MAX_ASPECT:g}:1), used but "
            f"squashed to a square they show nothing: {_first_files(found)}; remove or crop them")


def duplicate_warning(cached: CachedData) -> str | None:
    """Byte-identical files within one split (across splits ``prepare`` already refused them)."""
    groups = cached.byte_identical()
    if not groups:
        return None
    copies = sum(len(group) - 1 for group in groups)
    pairs = [" = ".join(r.path for r in group) for group in groups]
    return (f"{copies} images are byte-identical copies of another image in the same split, so they count twice in "
            f"training and metrics: {_first_files(pairs)}; remove the copies")


def mask_summary(cached: CachedData) -> str | None:
    """How the masks were read (encoding counts) and their mean foreground fraction per split."""
    if not cached.has_masks:
        return None
    columns = cached.columns("mask_encoding", "mask_fraction")
    encodings = Counter(columns["mask_encoding"]).most_common()
    read = ", ".join(f"{n} as {name}" for name, n in encodings)
    splits = np.array([r.split for r in cached.valid_records()], dtype=object)
    fractions = ", ".join(f"{split} {100 * columns['mask_fraction'][splits == split].mean():.1f}%" for split in SPLITS
                          if np.any(splits == split))
    return f"masks: read {read}; foreground fraction {fractions}"


def empty_positive_warning(dataset: DataSet, cached: CachedData) -> str | None:
    """Images labelled positive (any label but the layout's ``negative_label``) whose mask has no foreground:
    a mask read in the wrong encoding, or a wrong label, trains the model that the finding is not there."""
    if not cached.has_masks:
        return None
    negative = dataset.spec.options.get("negative_label", "normal")
    fractions = cached.columns("mask_fraction")["mask_fraction"]
    empty = [r.path for r, f in zip(cached.valid_records(), fractions, strict=True) if r.label != negative and f == 0]
    if not empty:
        return None
    return (f"{len(empty)} images labelled positive (not '{negative}') have an empty mask: {_first_files(empty)}; "
            "check how the masks were read (the 'masks:' line, data.mask_threshold) or fix their labels")


def _problem_summary(kind: str, problems: Sequence[Problem]) -> list[str]:
    lines = [f"{len(problems)} {kind}:"] if problems else []
    lines += [f"  {p}" for p in problems[:20]]
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more")
    return lines


def file_accounting(dataset: DataSet, examples: int = 3) -> list[str]:
    """Every file under the root, used or not: ``files: N found, M used, K ignored (by reason: ...)`` and a
    few examples per reason, so a ``valid/`` folder or a pile of DICOMs is never left out without a word."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for item in dataset.ignored:
        by_reason[item.reason].append(item.path)
    used = dataset.files_found - len(dataset.ignored)
    reasons = sorted(by_reason, key=lambda r: (-len(by_reason[r]), r))
    counts = ", ".join(f"{len(by_reason[r])} {r}" for r in reasons)
    lines = [f"files: {dataset.files_found} found, {used} used, {len(dataset.ignored)} ignored"
             + (f" (by reason: {counts})" if reasons else "")]
    for reason in reasons:
        paths = by_reason[reason]
        more = f" ... and {len(paths) - examples} more" if len(paths) > examples else ""
        lines.append(f"  ignored, {reason}: {', '.join(paths[:examples])}{more}")
    return lines


def _patients(records: Sequence[Record]) -> str:
    """A split's patients as counted; images without an id are said to be so, not counted as 0 patients (the
    split treats each as a patient of its own)."""
    patients = {r.patient_id for r in records if r.patient_id}
    unknown = sum(1 for r in records if not r.patient_id)
    if not patients and unknown:
        return "   no patient ids"
    return f"{len(patients):5d} patients" + (f" + {unknown} images without an id" if unknown else "")


def patient_id_warning(records: Sequence[Record]) -> str:
    """Images without a patient id each count as a patient of their own, whether the data set ships its splits
    (Kermany's train/test folders) or they are drawn here: a patient's two images can then sit in two splits,
    and no check can see it. Where the file names follow a public set's naming, the warning gives the regex
    and the patients it finds, so the fix is one option."""
    missing = [Path(r.path).name for r in records if not r.patient_id]
    how_many = (f"any of the {len(records)} images" if len(missing) == len(records)
                else f"{len(missing)} of {len(records)} images")
    text = (f"no patient ids for {how_many}: each counts as a patient of its own, so one patient's images can be "
            "in two splits unseen (a leak); add a patient_id column or data.patient_regex")
    for naming, pattern in PATIENT_NAMING:
        ids = [part_of_name(name, pattern) for name in missing]
        if all(ids) and len(set(ids)) < len(ids):
            return (f"{text}: the file names follow the naming of {naming}: data.patient_regex: '{pattern}' "
                    f"finds {len(set(ids))} patients in them")
    return text


def check_dataset(dataset: DataSet, cached: CachedData, strict: bool = False) -> CheckReport:
    """Summarise and check a loaded, cached data set."""
    report = CheckReport()
    report.lines.append(f"data: {dataset.root} (layout {dataset.spec.layout}), fingerprint {dataset.fingerprint[:16]}")
    report.lines.append(f"classes: {', '.join(dataset.classes)}")
    for split in SPLITS:
        labels = cached.labels(split)
        counts = Counter(part for label in labels for part in label_parts(label))
        per_class = ", ".join(f"{c} {counts.get(c, 0)}" for c in sorted(counts)) or "empty"
        report.lines.append(f"  {split:5s} {len(labels):6d} images, {_patients(cached.records(split))}: {per_class}")
        if not labels:
            report.errors.append(f"split '{split}' is empty: add data or change the split ratios")
    report.lines.append(f"image sizes: {_size_range(cached.metadata())}")
    report.lines += [line for line in [dicom_summary(dataset)] if line]
    report.lines += file_accounting(dataset)
    report.warnings += dataset.warnings
    report.lines += [line for line in [mask_summary(cached)] if line]
    used = cached.records(None)  # a skipped file without an id cannot leak: warn only of the images trained on
    if not all(r.patient_id for r in used):
        report.warnings.append(patient_id_warning(used))
    skipped = dataset.problems + cached.skipped
    report.lines += _problem_summary("files skipped", skipped)
    if skipped and strict:
        report.errors.append(f"{len(skipped)} files could not be used (--strict)")
    report.warnings += [w for w in (empty_positive_warning(dataset, cached), degenerate_warning(cached),
                                    duplicate_warning(cached)) if w]
    report.warnings += shortcut_warnings(cached)
    return report
