"""The records every layout adapter produces, and the contract adapters follow."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: The usual spellings of split names (folder names, a manifest's split column), compared case-folded.
SPLIT_NAMES: Mapping[str, str] = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "validate": "val",
    "dev": "val",
    "test": "test", "testing": "test",
}

#: A multi-label record (several findings per image: NIH ChestX-ray14, CheXpert) keeps ``Record.label`` one string,
#: so every check that compares, hashes or stores labels works unchanged: its findings sorted and joined by
#: ``LABEL_SEPARATOR``, an uncertain one (CheXpert's -1) marked by a trailing ``UNCERTAIN_MARK``, and ``NO_FINDING``
#: (NIH's own spelling) for an image with none, e.g. ``Edema?|Pleural Effusion``. The data layer counts a label
#: by its parts (``label_parts``: a record holds each class its label names); what a finding or an uncertain one
#: means for training is its task's business (``runner.tasks``).
LABEL_SEPARATOR = "|"
UNCERTAIN_MARK = "?"
NO_FINDING = "No Finding"


def label_parts(label: str) -> tuple[str, ...]:
    """The classes a label names: the label itself, or each finding of a multi-label one."""
    return tuple(part for part in (p.strip() for p in label.split(LABEL_SEPARATOR)) if part)


def findings_label(positive: Iterable[str], uncertain: Iterable[str] = ()) -> str:
    """The one spelling of a set of findings: sorted, each once, an uncertain one marked (a finding both
    certain and uncertain is certain), ``NO_FINDING`` for none; equal sets give equal labels."""
    certain = set(positive)
    parts = certain | {f"{name}{UNCERTAIN_MARK}" for name in set(uncertain) - certain}
    return LABEL_SEPARATOR.join(sorted(parts)) or NO_FINDING


def read_findings(label: str) -> tuple[frozenset[str], frozenset[str]]:
    """(certain, uncertain) findings of a multi-label label, as written by ``findings_label``."""
    parts = [part for part in label_parts(label) if part != NO_FINDING]
    uncertain = frozenset(p[:-1].strip() for p in parts if p.endswith(UNCERTAIN_MARK))
    return frozenset(p for p in parts if not p.endswith(UNCERTAIN_MARK)), uncertain


#: How ``data.merge_rows`` combines the readings of one image (a row per reader: VinDr-CXR's three radiologists)
#: into one set of findings: present if any reader marks it, or if more than half of them do.
MERGE_RULES = ("any", "majority")


def merge_findings(readings: Sequence[str], rule: str) -> str:
    """One label from several readings of one image by ``rule`` (``MERGE_RULES``): a finding is present if
    ``any`` reading or more than half of them (``majority``; a tie is absent) mark it present, uncertain if not,
    but as many mark it present or uncertain."""
    reads = [read_findings(label) for label in readings]
    present = Counter(name for certain, _ in reads for name in certain)
    marked = present + Counter(name for certain, uncertain in reads for name in uncertain - certain)
    needed = 1 if rule == "any" else len(reads) // 2 + 1
    return findings_label([name for name, votes in present.items() if votes >= needed],
                          [name for name, votes in marked.items() if votes >= needed])


@dataclass(frozen=True)
class DicomInfo:
    """The DICOM header facts a record keeps (``runner.data.dicom.read_tags``): where and how the image was
    acquired, for the shortcut check, and what decides its pixels, for the cache key. No other tag value is
    kept (PHI policy in the README): the study date is cut to its year, PatientID goes to ``patient_id``."""

    institution: str | None = None
    manufacturer: str | None = None
    study_year: str | None = None
    transfer_syntax: str = ""
    #: A digest of the pixel-relevant tags (photometric interpretation, bits, rescale, window, LUTs, size).
    pixel_tags: str = ""


@dataclass(frozen=True)
class Record:
    """One image of a data set, before any pixel is read.

    Adapters only list files: decoding happens once, in the cache, so listing a data set of 100,000 images
    stays cheap and every problem with a pixel is found (and counted) in one place.
    """

    path: str
    label: str
    patient_id: str | None = None
    split: str | None = None
    mask_path: str | None = None
    mask_rle: str | None = None
    source: str | None = None
    #: The DICOM ViewPosition (PA, AP, LL, ...): ``data.views`` keeps some; None for other files.
    view: str | None = None
    dicom: DicomInfo | None = None
    #: Where the record was listed (``manifest.csv:7``, a folder): for messages only, not part of its identity.
    where: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file; skipped with a counted warning, or an error under ``strict``.
    ``message`` may already name the file (a decoder's error is a complete line): it is not named twice."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message if self.message.startswith(self.path) else f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Ignored:
    """A file under the data root that is not part of the data set, and why (DICOM, not an image, ...)."""

    path: str
    reason: str


@dataclass
class Listing:
    """What an adapter returns: the records it could list, the files it had to leave out (``problems``), the
    files under the root it does not read (``ignored``, so every file is accounted for), how many files it
    found in all, and warnings about the listing as a whole (duplicate rows)."""

    records: list[Record]
    problems: list[Problem]
    root: Path
    ignored: list[Ignored] = field(default_factory=list)
    files_found: int = 0
    warnings: list[str] = field(default_factory=list)


class DataAdapter(ABC):
    """One on-disk layout (class folders, a CSV manifest, ...).

    Contract: ``list_records`` returns every image it can find as a ``Record`` with an absolute ``path`` and
    a raw ``label`` (label mapping and class filtering are applied afterwards, the same way for every layout)
    and ``where`` it was listed; it never decodes pixels; a file it cannot use goes into ``problems`` with a
    message saying what to do; every other file under its root that it does not read goes into ``ignored``
    with the reason (``adapters._common.account_files``); a layout that is wrong as a whole raises
    ``DataError``. ``options`` lists the adapter's own keys and their
    defaults; any other key in a data spec is rejected before ``list_records`` is called.
    """

    name: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}

    def detect(self, path: Path) -> bool:
        """True when ``path`` looks like this layout; used when a data spec names no layout."""
        return False

    @abstractmethod
    def list_records(self, path: Path, options: Mapping[str, Any], cache_dir: Path) -> Listing:
        """List the records under ``path``; ``options`` holds every key of the spec, defaults filled in."""
