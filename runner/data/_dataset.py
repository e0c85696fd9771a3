"""From a data spec (a path, ``demo``, or a mapping of options) to a split, fingerprinted ``DataSet``."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner import yamlfile
from runner.data._records import (
    MERGE_RULES,
    NO_FINDING,
    SPLITS,
    Ignored,
    Listing,
    Problem,
    Record,
    label_parts,
    merge_findings,
)
from runner.data.adapters._common import is_image_file, require_exists
from runner.data.adapters._registry import ADAPTERS
from runner.data.images import is_dicom_file
from runner.data.splits import ClassNeed, SplitConfig, assign_splits, check_split_classes
from runner.errors import ConfigError, DataError
from runner.overrides import deep_merge
from runner.paths import default_cache_dir

#: Options every layout accepts; they are applied after listing, the same way for every layout.
COMMON_OPTIONS: Mapping[str, Any] = {
    "classes": None, "label_map": None, "split": None, "strict": False, "allow_outside_root": False, "views": None,
    "merge_rows": None,
}
DETECTION_ORDER = ("siim_rle", "image_masks", "split_lists", "manifest", "class_folders")
BOOLEAN_OPTIONS = ("strict", "allow_outside_root")
#: Layout options naming a folder or a column that default to None (the rest default to their text).
NAME_OPTIONS = ("path_column", "label_column", "patient_column", "split_column", "source_column", "mask_column",
                "mask_root", "reader_column")
#: What may differ between two listings of one file (anything else is a conflict), checked in this order.
RECORD_FIELDS = ("label", "split", "patient_id", "mask_path", "mask_rle", "source")
#: How a task reads the raw labels of listed records: (records, data options) -> (labelled records, the data set's
#: classes, records left out and why). The default (``_apply_labels``) maps each label whole with ``label_map``
#: and keeps the ``classes`` asked for; a task whose labels hold several findings maps each finding instead.
LabelReader = Callable[[list[Record], Mapping[str, Any]], tuple[list[Record], tuple[str, ...], list[Ignored]]]


@dataclass(frozen=True)
class DataSpec:
    """Where a data set is and how to read it: the resolved form of ``--data`` or a YAML ``data:`` block."""

    layout: str
    path: str | None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class DataSet:
    """The records of one data set with their splits, and what was left out on the way."""

    spec: DataSpec
    root: Path
    records: list[Record]
    classes: tuple[str, ...]
    problems: list[Problem]
    fingerprint: str
    patient_ids_known: bool
    #: Files under the root not in the data set, with why; ``files_found`` counts every file under the root.
    ignored: list[Ignored] = field(default_factory=list)
    files_found: int = 0
    #: About the data set as a whole (duplicate rows removed): printed by ``data check`` and by a trial.
    warnings: list[str] = field(default_factory=list)
    #: What each split must hold for its task (``Task.split_needs``): checked after listing and again
    #: after decoding, which can lose images.
    split_needs: Mapping[str, Sequence[ClassNeed]] = field(default_factory=dict)

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, for summaries."""
        return {s: dict(Counter(r.label for r in self.split(s))) for s in SPLITS}


def detected_layout(path: Path) -> str | None:
    """The first layout, in ``DETECTION_ORDER``, whose adapter recognises ``path``; None for none."""
    return next((name for name in DETECTION_ORDER if ADAPTERS.get(name)().detect(path)), None)


def _detect_layout(path: Path) -> str:
    require_exists(path)
    found = detected_layout(path)
    if found is not None:
        return found
    hint = ""
    if path.is_dir() and any(is_image_file(child) for child in path.iterdir()):
        hint = ("; its images lie in it directly: for labels in their file names (Shenzhen's CHNCXR_0001_0.png) "
                "use layout: file_names with data.label_regex, else sort them into one folder per class")
    raise DataError(f"cannot tell the layout of {path}: pass a layout, one of {', '.join(ADAPTERS.names())}{hint}")


def spec_from_string(text: str) -> dict[str, Any]:
    """``demo``, a ``.yaml`` data-spec file, or a data path, as a mapping of data options."""
    if text == "demo":
        return {"layout": "demo"}
    if text.endswith((".yaml", ".yml")):
        return read_spec_file(Path(text))
    return {"path": text}


def spec_options(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """A data spec as a mapping of options. A mapping whose ``path`` is a data-spec file is that file's options
    with the mapping's other keys over them: a sweep's ``data: {path: vindr.yaml, merge_rows: majority}``, the
    one way to adjust a spec file from ``--set``, since ``data=vindr.yaml`` beside ``data.merge_rows=...`` would
    set ``data`` both as a value and as a group."""
    if isinstance(spec, str):
        return spec_from_string(spec)
    path = spec.get("path")
    if isinstance(path, str) and path.endswith((".yaml", ".yml")):
        return deep_merge(read_spec_file(Path(path)), {k: v for k, v in spec.items() if k != "path"})
    return dict(spec)


def parse_data_spec(spec: str | Mapping[str, Any] | DataSpec, layout: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> DataSpec:
    """Accept ``demo``, a data path, a ``.yaml`` file holding a data block, or a mapping with ``layout``,
    ``path`` and options. A missing layout is detected from the files."""
    if isinstance(spec, DataSpec):
        spec = {"layout": spec.layout, "path": spec.path, **spec.options}
    options = deep_merge(spec_options(spec), overrides or {})  # --set split.train=0.9 keeps the rest of the split block
    _check_common_types(options)
    path = options.pop("path", None)
    chosen = layout or options.pop("layout", None)
    options.pop("layout", None)
    if chosen is None:
        if path is None:
            raise ConfigError("the data spec has neither a path nor a layout: set data.path or data.layout")
        chosen = _detect_layout(Path(path))
    adapter = ADAPTERS.get(chosen)
    allowed = {**COMMON_OPTIONS, **adapter.options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown data option '{unknown[0]}' for layout '{chosen}': choose from "
                          f"{', '.join(sorted(allowed))}")
    _check_text_options(options, adapter.options)
    _check_layout_types(options)
    return DataSpec(layout=chosen, path=None if path is None else str(path), options={**allowed, **options})


def _check_text_options(options: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Folder and column names (a layout's text options, and a manifest's columns, which default to None) are
    text: a YAML number is its digits (PadChest's image folder ``0``), anything else one error naming the key,
    rather than a ``TypeError`` from joining a path to ``5.5``."""
    for key in [k for k, default in defaults.items() if isinstance(default, str) or k in NAME_OPTIONS]:
        value = options.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            options[key] = str(value)
        elif value is not None and not isinstance(value, str):
            raise ConfigError(f"data.{key} must be a folder or column name, got {value!r}: quote it in YAML")


def _check_common_types(options: dict[str, Any]) -> None:
    """Each option of the wrong type is one error naming the key, before any file is read; ``classes`` given
    as ``normal,pneumonia`` (as ``--set`` writes it) becomes a list, never a string split into letters."""
    SplitConfig.from_options(options.get("split"))
    label_map = options.get("label_map")
    if label_map is not None:
        if not isinstance(label_map, Mapping):
            raise ConfigError(f"data.label_map must be a mapping of label -> class (or null to drop), got "
                              f"{label_map!r}: e.g. label_map: {{NORMAL: normal, PNEUMONIA: pneumonia}}")
        options["label_map"] = _label_map_of_strings(label_map)
    merge = options.get("merge_rows")
    if merge is not None and merge not in MERGE_RULES:
        raise ConfigError(f"data.merge_rows must be one of {', '.join(MERGE_RULES)} (or null), got {merge!r}")
    _check_names(options, "classes", "class names", "[normal, pneumonia]")
    _check_names(options, "views", "DICOM ViewPosition values", "[PA, AP]")
    for key in BOOLEAN_OPTIONS:
        if key in options and not isinstance(options[key], bool):
            raise ConfigError(f"data.{key} must be true or false, got {options[key]!r}")


def _label_map_of_strings(label_map: Mapping[Any, Any]) -> dict[str, str | None]:
    """A label map keyed by the labels as a CSV cell spells them: an integer key (RSNA's ``Target``, written
    ``{0: normal, 1: pneumonia}`` in YAML) is its digits. A float or yes/no key is refused, since YAML turns
    ``1.0``, ``1.50`` or ``yes`` into values whose spelling is not the cell's."""
    strings: dict[str, str | None] = {}
    for key, value in label_map.items():
        text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(text, str) or not (value is None or isinstance(value, str)):
            raise ConfigError(f"data.label_map entry {key!r}: {value!r} must map a label to a class name or "
                              "null: quote decimal numbers and yes/no in YAML")
        if text in strings:
            raise ConfigError(f"data.label_map maps the label '{text}' twice, once as a number: keep one")
        strings[text] = value
    return strings


def _check_names(options: dict[str, Any], key: str, what: str, example: str) -> None:
    """A list of names, or ``a,b`` as ``--set`` writes it (made a list, never a string split into letters)."""
    names = options.get(key)
    if isinstance(names, str):
        options[key] = [n.strip() for n in names.split(",") if n.strip()]
    elif names is not None and (not isinstance(names, list | tuple)
                                or not all(isinstance(n, str) and n for n in names)):
        raise ConfigError(f"data.{key} must be a list of {what}, got {names!r}: e.g. {key}: {example}")


def _check_layout_types(options: dict[str, Any]) -> None:
    _check_regex(options, "patient_regex", "(IM-\\d+|person\\d+)")
    _check_regex(options, "label_regex", "_(\\d)\\.png$")
    if options.get("patient_regex") is not None:
        _refuse_both(options, "patient_column", "patient_regex", "patient ids")
    delimiter = options.get("delimiter")
    if delimiter is not None and not (isinstance(delimiter, str) and len(delimiter) == 1):
        raise ConfigError(f"data.delimiter must be one character such as ';', got {delimiter!r}")
    _check_label_options(options)
    _check_split_files(options)
    _check_join(options)


def _check_regex(options: Mapping[str, Any], key: str, example: str) -> None:
    pattern = options.get(key)
    if pattern is None:
        return
    if not isinstance(pattern, str):
        raise ConfigError(f"data.{key} must be a regular expression string, got {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"data.{key} '{pattern}' is not a valid regular expression ({error}): fix it, e.g. "
                          f"{example}") from None


def _refuse_both(options: Mapping[str, Any], one: str, other: str, what: str) -> None:
    """Two options that say the same thing another way, both given (``one``: a non-empty column or list;
    ``other``: set at all): one error, rather than one silently winning."""
    if options.get(one) and options.get(other) is not None:
        raise ConfigError(f"data.{one} and data.{other} are two ways to give {what}: set one")


def _check_split_files(options: dict[str, Any]) -> None:
    """A manifest's ``split_files``: split name -> a file listing that split's images (NIH ChestX-ray14's
    ``train_val_list.txt`` / ``test_list.txt``), and not beside a ``split_column``, which would say it twice."""
    files = options.get("split_files")
    if files is None:
        return
    if not isinstance(files, Mapping) or not files or not all(isinstance(k, str) and isinstance(v, str) and v
                                                             for k, v in files.items()):
        raise ConfigError(f"data.split_files must map a split to a file listing its images, got {files!r}: e.g. "
                          "split_files: {train: train_val_list.txt, test: test_list.txt}")
    _refuse_both(options, "split_column", "split_files", "the split")


def _check_join(options: dict[str, Any]) -> None:
    """A manifest's ``join``: one ``{csv: FILE, key: COLUMN}`` or a list of them, each ``key`` made a list of
    column names (``key: [subject_id, study_id]``), before any file is read."""
    joins = options.get("join")
    if joins is None:
        return
    example = "join: [{csv: mimic-cxr-2.0.0-chexpert.csv.gz, key: [subject_id, study_id]}]"
    entries = [joins] if isinstance(joins, Mapping) else joins
    if not isinstance(entries, list | tuple) or not entries:
        raise ConfigError(f"data.join must be a list of {{csv: FILE, key: COLUMNS}}, got {joins!r}: e.g. {example}")
    checked = []
    for entry in entries:
        key = entry.get("key") if isinstance(entry, Mapping) else None
        key = [key] if isinstance(key, str) else key
        if (not isinstance(entry, Mapping) or set(entry) != {"csv", "key"} or not isinstance(entry["csv"], str)
                or not entry["csv"] or not isinstance(key, list | tuple) or not key
                or not all(isinstance(name, str) and name for name in key)):
            raise ConfigError(f"data.join entry {entry!r} must be {{csv: FILE, key: COLUMN or [COLUMNS]}} (the CSV "
                              f"relative to the manifest's folder, the columns both share): e.g. {example}")
        checked.append({"csv": entry["csv"], "key": list(key)})
    options["join"] = checked


def _check_label_options(options: dict[str, Any]) -> None:
    """A manifest's multi-label options: ``label_separator`` a string, ``label_columns`` a list of column names
    (``A,B``, as ``--set`` writes it, is two), not both."""
    separator = options.get("label_separator")
    if separator is not None and not (isinstance(separator, str) and separator):
        raise ConfigError(f"data.label_separator must be a non-empty string such as '|', got {separator!r}")
    columns = options.get("label_columns")
    if isinstance(columns, str):
        columns = options["label_columns"] = [name.strip() for name in columns.split(",") if name.strip()]
    if columns is not None and (not isinstance(columns, list | tuple) or not columns
                                or not all(isinstance(c, str) and c for c in columns)):
        raise ConfigError(f"data.label_columns must be a list of column names, got {columns!r}: e.g. label_columns: "
                          "[Atelectasis, Cardiomegaly, Edema]")
    _refuse_both(options, "label_columns", "label_separator", "several findings per image")
    no_finding = next((c for c in columns or () if c.casefold() == NO_FINDING.casefold()), None)
    if no_finding is not None:
        raise ConfigError(f"data.label_columns names '{no_finding}', which is the absence of the other findings, not "
                          "one of them: leave it out")
    _check_reader_options(options, multilabel=columns is not None or separator is not None)


def _check_reader_options(options: dict[str, Any], multilabel: bool) -> None:
    """``reader_column`` unites one reader's rows of findings (VinDr-CXR's box file: a row per finding), so it
    needs findings; ``majority`` counts readers, which only ``reader_column`` can tell apart from a reader's
    several rows: without it, two findings of one reader would count as two votes against each other."""
    reader = options.get("reader_column")
    if reader is not None and not (isinstance(reader, str) and reader):
        raise ConfigError(f"data.reader_column must be a column name, got {reader!r}")
    if reader and not multilabel:
        raise ConfigError("data.reader_column unites each reader's rows of findings: it needs data.label_separator "
                          "or data.label_columns (several findings per image)")
    if options.get("merge_rows") == "majority" and not reader:
        raise ConfigError("data.merge_rows: majority counts readers: name the column that says who read each row "
                          "with data.reader_column (VinDr-CXR: rad_id), or use merge_rows: any")


def read_spec_file(path: Path) -> dict[str, Any]:
    """A data spec file's options: the file itself, or its ``data:`` block; a relative path is relative to it."""
    loaded = yamlfile.read_file(path, "data spec file")
    block = loaded.get("data", loaded) if isinstance(loaded, dict) else None
    if not isinstance(block, dict) or not block:
        raise ConfigError(f"data spec file {path} must hold a mapping of data options (layout, path, ...)")
    if block.get("path") and not Path(block["path"]).is_absolute():
        block["path"] = str(path.parent / block["path"])
    return block


def map_label(raw: str, label_map: Mapping[str, Any]) -> str | None:
    """Exact keys win; then glob patterns (``Pneumonia/*``) in the order written. ``null`` drops the row."""
    if raw in label_map:
        return label_map[raw]
    for pattern, mapped in label_map.items():
        if fnmatch.fnmatchcase(raw, pattern):
            return mapped
    return raw


def _apply_labels(records: list[Record], options: Mapping[str, Any], expected: Sequence[str] | None,
                  known: Sequence[str] = ()) -> tuple[list[Record], tuple[str, ...], list[Ignored]]:
    if options["merge_rows"]:
        raise ConfigError("data.merge_rows merges several readers' findings of one image: it needs a multi-label "
                          "task (findings); for a task with one class per image, keep one row per image")
    label_map = options["label_map"] or {}
    mapped, dropped = [], []
    for record in records:
        label = map_label(record.label, label_map)
        if label is not None and label != "":
            mapped.append(replace(record, label=str(label)))
        else:
            dropped.append(Ignored(record.path, f"label '{record.label}' dropped by data.label_map" if record.label
                                   else "empty label cell"))
    wanted = options["classes"] or expected
    mapped = _match_case(mapped, wanted or known)
    if wanted:
        unknown = [r for r in mapped if r.label not in wanted]
        if unknown and not options["classes"]:
            first = unknown[0]
            others = sorted({r.label for r in unknown} - {first.label})
            also = f"; labels {', '.join(repr(label) for label in others)} too" if others else ""
            raise DataError(f"{first.path}: label '{first.label}' is not one of {', '.join(wanted)} "
                            f"({len(unknown)} such images{also}): map it with data.label_map or keep only some "
                            "classes with data.classes")
        dropped += [Ignored(r.path, f"label '{r.label}' not in data.classes") for r in unknown]
        mapped = [r for r in mapped if r.label in wanted]
    classes = tuple(wanted) if wanted else tuple(sorted({r.label for r in mapped}))
    return mapped, classes, dropped


def drop_duplicates(records: Sequence[Record], merge: str | None = None, *, findings: bool = False
                    ) -> tuple[list[Record], list[str]]:
    """One record per file (by resolved path). A file listed twice alike is kept once with a counted warning;
    listed with two labels (or splits, patients, masks) it is an error naming both places, since either
    could be the mistake, and one file in two splits is image-level leakage. ``merge`` (``data.merge_rows``,
    ``findings`` labels only) first gives every row of a file the findings its rows agree on by that rule, so
    readers who disagree are one image, while rows that disagree on its split or patient stay an error."""
    if merge:
        records = _merged_findings(records, merge)
    first: dict[str, Record] = {}
    kept, repeats = [], []
    for record in records:
        earlier = first.setdefault(record.path, record)
        if earlier is record:
            kept.append(record)
        elif earlier == record:
            repeats.append((record, earlier))
        else:
            raise _conflict(earlier, record, findings)
    if not repeats:
        return kept, []
    if merge:
        return kept, [f"{len(records)} readings merged into {len(kept)} images (data.merge_rows: {merge})"]
    again, original = repeats[0]
    return kept, [f"{len(repeats)} duplicate rows removed (first: {_repeat(again.where, original.where)})"]


def _merged_findings(records: Sequence[Record], rule: str) -> list[Record]:
    """Each record with its file's findings merged by ``rule`` over all the file's rows (``merge_findings``)."""
    readings: dict[str, list[str]] = {}
    for record in records:
        readings.setdefault(record.path, []).append(record.label)
    merged = {path: merge_findings(labels, rule) for path, labels in readings.items()}
    return [replace(record, label=merged[record.path]) for record in records]


def _repeat(again: str | None, original: str | None) -> str:
    """``manifest.csv line 7 repeats line 2`` when both are lines of one file, else both places in full."""
    again_file, _, again_line = (again or "").rpartition(":")
    original_file, _, original_line = (original or "").rpartition(":")
    if again_file and again_file == original_file and again_line.isdigit() and original_line.isdigit():
        return f"{Path(again_file).name} line {again_line} repeats line {original_line}"
    return f"{again} repeats {original}"


def _conflict(earlier: Record, later: Record, findings: bool = False) -> DataError:
    name = next(f for f in RECORD_FIELDS if getattr(earlier, f) != getattr(later, f))
    one, other = getattr(earlier, name), getattr(later, name)
    if name == "split":
        return DataError(f"{later.path} is in two splits, {one} ({earlier.where}) and {other} ({later.where}): "
                         "one image in two splits leaks it into its own evaluation (image-level leakage); keep "
                         "one row")
    readers = (" (several readers' findings of one image, as in VinDr-CXR, merge with data.merge_rows: any or "
               "majority)") if findings and name == "label" else ""
    return DataError(f"{later.path} is listed twice with conflicting {name.replace('_', ' ')}s '{one}' "
                     f"({earlier.where}) and '{other}' ({later.where}): keep one row with the right one{readers}")


def _match_case(records: list[Record], wanted: Sequence[str]) -> list[Record]:
    """Kaggle's folders are NORMAL/PNEUMONIA, the tasks' classes normal/pneumonia: a label that matches a
    class name but for case is that class (an exact label_map entry still wins, being applied first)."""
    by_folded = {name.casefold(): name for name in wanted}
    return [r if r.label in wanted or r.label.casefold() not in by_folded
            else replace(r, label=by_folded[r.label.casefold()]) for r in records]


def _check_classes(records: list[Record], classes: tuple[str, ...], root: Path, need_two: bool,
                   problems: Sequence[Problem]) -> None:
    counts = Counter(part for r in records for part in label_parts(r.label))
    if not records:  # with files skipped, the first reason is likely what to fix
        skipped = f" ({len(problems)} listed files skipped, the first: {problems[0]})" if problems else ""
        raise DataError(f"{root}: no usable images left{skipped}: check the path, label_map and classes options")
    for name in classes:
        if counts[name] == 0:
            raise DataError(f"{root}: class '{name}' has no images: add images of it or drop it with data.classes")
    if need_two and len(counts) < 2:
        raise DataError(f"{root}: only one class ({next(iter(counts))}) found; a classification task needs at least "
                        "two: add the other class or use the anomaly task")


def fingerprint_records(records: Sequence[Record]) -> str:
    """A hash of what decides the data a model sees: files (path, size, mtime), labels, masks and splits.

    Any change to a file, a label or the split gives a new fingerprint, hence a new cache and a new value in
    the leaderboard, so results from different data never compare silently.
    """
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        stat = os.stat(record.path)
        mask_stat = os.stat(record.mask_path) if record.mask_path else None
        mask_part = f"{record.mask_path}:{mask_stat.st_size}:{mask_stat.st_mtime_ns}" if mask_stat else ""
        line = "\t".join([record.path, str(stat.st_size), str(stat.st_mtime_ns), record.label,
                          record.split or "", record.patient_id or "", mask_part, record.mask_rle or ""])
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _with_dicom_tags(records: list[Record]) -> list[Record]:
    """DICOM records with their patient id, view and acquisition tags (``runner.data.dicom``); pydicom is
    imported only when the data set holds a DICOM file."""
    if not any(is_dicom_file(r.path) for r in records):
        return records
    from runner.data.dicom import with_dicom_tags

    return with_dicom_tags(records)


def _keep_views(records: list[Record], views: Sequence[str] | None, root: Path) -> tuple[list[Record], list[Ignored]]:
    """The records whose DICOM ViewPosition is one of ``data.views`` (case-folded); the rest are ignored, each
    with its view. Nothing left is an error listing the views found."""
    if not views:
        return records, []
    wanted = {v.upper() for v in views}
    kept = [r for r in records if r.view in wanted]
    if not kept:
        found = sorted(Counter(r.view or "none" for r in records).items(), key=lambda vn: (-vn[1], vn[0]))
        raise DataError(f"{root}: no image has a view in data.views ({', '.join(views)}); the views found are "
                        f"{', '.join(f'{v} {n}' for v, n in found)}: check data.views")
    dropped = [Ignored(r.path, f"view {r.view} not in data.views" if r.view else "no ViewPosition tag (data.views)")
               for r in records if r.view not in wanted]
    return kept, dropped


def _raise_if_strict(problems: list[Problem], strict: bool) -> None:
    if strict and problems:
        raise DataError(f"{problems[0]} ({len(problems)} problems in all; without --strict they are skipped)")


def load_dataset(spec: str | Mapping[str, Any] | DataSpec, *, expected_classes: Sequence[str] | None = None,
                 need_two_classes: bool = False, split_needs: Mapping[str, Sequence[ClassNeed]] | None = None,
                 cache_dir: Path | None = None, read_labels: LabelReader | None = None,
                 known_classes: Sequence[str] = ()) -> DataSet:
    """List, label, filter and split a data set. Reads no pixels: the cache does that once, in ``prepare``.

    ``expected_classes`` are the task's classes: a label outside them is an error unless the spec's own
    ``classes`` option narrows the data set on purpose. ``split_needs`` (the task's ``Task.split_needs``)
    are the classes each split must hold after splitting; without it (no task known) any split is accepted.
    ``read_labels`` (``LabelReader``) replaces the default reading of labels for a task whose labels mean more.
    ``known_classes``: class names a label takes but for case where any label is allowed (``expected_classes``
    None): the anomaly task's ``normal`` in Kaggle's ``NORMAL`` folder.
    """
    resolved = parse_data_spec(spec)
    options = resolved.options
    adapter = ADAPTERS.get(resolved.layout)()
    listing: Listing = adapter.list_records(Path(resolved.path) if resolved.path else None, options,
                                            cache_dir or default_cache_dir())
    _raise_if_strict(listing.problems, bool(options["strict"]))
    viewed, other_views = _keep_views(_with_dicom_tags(listing.records), options["views"], listing.root)
    labelled, classes, dropped = (read_labels(viewed, options) if read_labels
                                  else _apply_labels(viewed, options, expected_classes, known_classes))
    records, warnings = drop_duplicates(labelled, options["merge_rows"], findings=read_labels is not None)
    _check_classes(records, classes, listing.root, need_two_classes, listing.problems)
    split_config = SplitConfig.from_options(options["split"])
    records = assign_splits(records, split_config)
    check_split_classes(records, split_needs or {})
    return DataSet(spec=resolved, root=listing.root, records=records, classes=classes, problems=listing.problems,
                   fingerprint=fingerprint_records(records),
                   patient_ids_known=all(r.patient_id for r in records),
                   ignored=listing.ignored + other_views + dropped,
                   files_found=listing.files_found, warnings=listing.warnings + warnings,
                   split_needs=dict(split_needs or {}))
