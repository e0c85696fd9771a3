"""Patient-level splits: grouped, stratified, seeded, and strict about leaks in shipped splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from runner.data import Record
from runner.data.splits import SplitConfig, assign_splits, check_no_patient_leak
from runner.errors import ConfigError, DataError


def _records(n_patients: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_patients):
        label = ["normal", "pneumonia", "covid"][p % 3]
        for i in range(int(rng.integers(1, 5))):
            records.append(Record(path=f"/d/p{p}-{i}.png", label=label, patient_id=f"p{p}"))
    return records


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_patient_in_two_splits_and_ratios_roughly_kept(seed: int) -> None:
    records = _records(300, seed)
    split = assign_splits(records, SplitConfig(seed=seed))
    splits_of = {}
    for record in split:
        splits_of.setdefault(record.patient_id, set()).add(record.split)
    assert all(len(s) == 1 for s in splits_of.values())
    share = Counter(r.split for r in split)
    assert abs(share["train"] / len(split) - 0.7) < 0.05
    assert abs(share["val"] / len(split) - 0.15) < 0.05
    for label in ("normal", "pneumonia", "covid"):  # stratified: every label in every split in proportion
        of_label = [r for r in split if r.label == label]
        assert abs(sum(r.split == "test" for r in of_label) / len(of_label) - 0.15) < 0.07


def test_seeded_and_order_independent() -> None:
    records = _records(60)
    first = {r.path: r.split for r in assign_splits(records, SplitConfig(seed=5))}
    again = {r.path: r.split for r in assign_splits(list(reversed(records)), SplitConfig(seed=5))}
    other = {r.path: r.split for r in assign_splits(records, SplitConfig(seed=6))}
    assert first == again
    assert first != other


def test_images_without_patient_ids_are_their_own_group() -> None:
    records = [Record(path=f"/d/{i}.png", label="ab"[i % 2]) for i in range(40)]
    split = assign_splits(records, SplitConfig())
    assert Counter(r.split for r in split) == {"train": 28, "val": 6, "test": 6}


def test_tiny_data_still_gets_every_split() -> None:
    records = [Record(path=f"/d/{i}.png", label="ab"[i % 2]) for i in range(4)]
    assert {r.split for r in assign_splits(records, SplitConfig())} == {"train", "val", "test"}


def test_shipped_split_with_a_leaking_patient_names_it() -> None:
    records = [Record(path="/d/a.png", label="x", patient_id="P7", split="train"),
               Record(path="/d/b.png", label="x", patient_id="P7", split="test"),
               Record(path="/d/c.png", label="y", patient_id="P8", split="test")]
    with pytest.raises(DataError, match=r"patient 'P7' appears in splits test, train"):
        check_no_patient_leak(records)
    with pytest.raises(DataError, match=r"patient 'P7'"):
        assign_splits(records, SplitConfig())
    resplit = assign_splits(records, SplitConfig(use_given=False))
    assert len({r.split for r in resplit if r.patient_id == "P7"}) == 1


def test_missing_val_is_carved_from_train_by_patient() -> None:
    records = [Record(path=f"/d/{i}.png", label="ab"[i % 2], patient_id=f"p{i // 2}",
                      split="test" if i >= 40 else "train") for i in range(50)]
    split = assign_splits(records, SplitConfig())
    counts = Counter(r.split for r in split)
    assert counts["test"] == 10 and counts["val"] > 0 and counts["train"] + counts["val"] == 40
    check_no_patient_leak(split)


def test_partial_split_column_is_an_error() -> None:
    records = [Record(path="/d/a.png", label="x", split="train"), Record(path="/d/b.png", label="y")]
    with pytest.raises(DataError, match=r"/d/b.png has no split while others do"):
        assign_splits(records, SplitConfig())


def test_split_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"must be >= 0 and add up to 1"):
        SplitConfig.from_options({"train": 0.8, "val": 0.3, "test": 0.1})
    with pytest.raises(ConfigError, match=r"unknown split option 'ratio'"):
        SplitConfig.from_options({"ratio": 0.8})
