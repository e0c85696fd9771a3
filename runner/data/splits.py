"""Train / val / test splits that never put one patient in two splits.

Chest X-ray sets hold several images per patient; an image-level split lets a model recognise the patient
instead of the disease and inflates test metrics. So records are grouped by patient, each group gets the
label most of its images carry, and whole groups are dealt to splits within each label (stratified).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from runner.data._records import SPLITS, Record
from runner.errors import ConfigError, DataError


@dataclass(frozen=True)
class SplitConfig:
    """``train``/``val``/``test`` ratios and the seed; ``use_given`` keeps splits the data set ships,
    ``merge_val`` folds a shipped val split into train first (the Kaggle pneumonia set's val has 16 images)."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    use_given: bool = True
    merge_val: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> SplitConfig:
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"data.split must be a mapping such as {{train: 0.8, val: 0.1, test: 0.1}}, got "
                              f"{options!r}")
        options = dict(options or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown split option '{unknown[0]}': choose from {', '.join(sorted(known))}")
        for key, value in options.items():
            _check_type(key, value)
        config = cls(**options)
        ratios = config.ratios()
        if any(r < 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
            raise ConfigError(f"split ratios {ratios} must be >= 0 and add up to 1")
        if ratios["train"] == 0:
            raise ConfigError("split ratio train must be above 0")
        return config

    def ratios(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _check_type(key: str, value: Any) -> None:
    """``split.train=abc`` fails here, naming the key, not as a TypeError deep in the split arithmetic."""
    if key in ("use_given", "merge_val"):
        wanted, ok = "true or false", isinstance(value, bool)
    elif key == "seed":
        wanted, ok = "an integer >= 0", isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        wanted, ok = "a number", isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"data.split.{key} must be {wanted}, got {value!r}")


@dataclass(frozen=True)
class ClassNeed:
    """A split needs at least one image of ``label``, or with ``other_than``, of any class but ``label``
    (the anomaly task's val and test need some abnormal image, whichever). Each task says what its splits
    need (``Task.split_needs``); this module only checks it."""

    label: str
    other_than: bool = False

    def met_by(self, labels: set[str]) -> bool:
        return bool(labels - {self.label}) if self.other_than else self.label in labels

    def describe(self) -> str:
        return f"images of a class other than '{self.label}'" if self.other_than else f"'{self.label}' images"


def check_split_classes(records: Sequence[Record], needs: Mapping[str, Sequence[ClassNeed]]) -> None:
    """After splitting, a split holding images but missing a class its task needs is an error saying what
    to do (an entirely empty split is reported where it is used)."""
    for split, split_needs in needs.items():
        labels = {r.label for r in records if r.split == split}
        unmet = next((n for n in split_needs if labels and not n.met_by(labels)), None)
        if unmet is not None:
            groups = {group_key(r) for r in records if unmet.met_by({r.label})}
            if not groups:  # not a split's bad luck: the data set has none, under this label
                found = sorted({r.label for r in records})
                rename = "" if unmet.other_than else (f", or map a label to it with data.label_map (e.g. "
                                                      f"{{{found[0]}: {unmet.label}}})")
                raise DataError(f"the data set has no {unmet.describe()}, which split '{split}' needs (its labels: "
                                f"{', '.join(found)}): add some{rename}")
            raise DataError(f"split '{split}' has no {unmet.describe()} ({len(groups)} patient groups of them in "
                            f"the data set): add more images of that class, change the data.split ratios, or "
                            "give the split yourself (a split column, train/val/test folders or list files)")


def group_key(record: Record) -> str:
    """Records of one patient share a key; a record with no patient id is its own group."""
    return f"patient:{record.patient_id}" if record.patient_id else f"image:{record.path}"


def check_no_patient_leak(records: Sequence[Record]) -> None:
    """A user-given split with one patient in two splits is an error naming the patient."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.patient_id and record.split:
            splits_of[record.patient_id].add(record.split)
    for patient, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            raise DataError(f"patient '{patient}' appears in splits {', '.join(sorted(splits))}: a patient's images "
                            "must all be in one split; fix the split or set split.use_given: false to re-split")


def deal_groups(records: Sequence[Record], ratios: Mapping[str, float], seed: int) -> dict[str, str]:
    """Group key -> split, dealing shuffled patient groups within each label to the most under-filled split."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[group_key(record)].append(record)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key in sorted(groups):
        label = Counter(r.label for r in groups[key]).most_common(1)[0][0]
        by_label[label].append(key)
    rng = np.random.default_rng(seed)
    wanted = [s for s in ratios if ratios[s] > 0]
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        keys = by_label[label]
        order = rng.permutation(len(keys))
        total = sum(len(groups[k]) for k in keys)
        filled = dict.fromkeys(wanted, 0)
        for dealt, index in enumerate(order):
            key = keys[index]
            split = max(_open_splits(filled, len(keys) - dealt), key=lambda s: ratios[s] * total - filled[s])
            assignment[key] = split
            filled[split] += len(groups[key])
    _fill_empty_splits(assignment, groups, wanted)
    return assignment


def _open_splits(filled: Mapping[str, int], left: int) -> list[str]:
    """The splits the next group of a label may go to: any, unless only as many groups are left as splits
    still without the label, which then get one each, so a label with a group per split is in every split."""
    empty = [s for s, n in filled.items() if n == 0]
    return empty if empty and left <= len(empty) else list(filled)


def _fill_empty_splits(assignment: dict[str, str], groups: Mapping[str, list[Record]], wanted: list[str]) -> None:
    """On tiny data the per-label deal can leave a split with nothing; give it the smallest group of the
    fullest split, so every split asked for exists whenever there are enough patients."""
    for split in wanted:
        sizes = Counter(assignment.values())
        if sizes[split] or len(assignment) < len(wanted):
            continue
        donor = max(wanted, key=lambda s: sizes[s])
        key = min((k for k, s in assignment.items() if s == donor), key=lambda k: (len(groups[k]), k))
        assignment[key] = split


def _resplit(records: list[Record], ratios: Mapping[str, float], seed: int) -> list[Record]:
    assignment = deal_groups(records, ratios, seed)
    return [replace(r, split=assignment[group_key(r)]) for r in records]


def assign_splits(records: list[Record], config: SplitConfig) -> list[Record]:
    """Every record with a split: shipped splits are kept (and checked for leaks), missing ones are carved out
    of train by patient; with no shipped split the whole set is split by patient."""
    given = [r for r in records if r.split]
    if not config.use_given or not given:
        return _resplit([replace(r, split=None) for r in records], config.ratios(), config.seed)
    if len(given) != len(records):
        missing = next(r for r in records if not r.split)
        raise DataError(f"{missing.path} has no split while others do: give every image a split, or set "
                        "split.use_given: false")
    if config.merge_val:
        records = [replace(r, split="train") if r.split == "val" else r for r in records]
    check_no_patient_leak(records)
    present = {r.split for r in records}
    missing_splits = [s for s in SPLITS if s not in present and s != "train"]
    if not missing_splits:
        return records
    train = [r for r in records if r.split == "train"]
    share = {s: config.ratios()[s] for s in ("train", *missing_splits)}
    total = sum(share.values())
    carved = _resplit(train, {s: v / total for s, v in share.items()}, config.seed)
    return [r for r in records if r.split != "train"] + carved
