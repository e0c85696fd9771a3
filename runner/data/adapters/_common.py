"""Helpers shared by the layout adapters."""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.data._records import IMAGE_SUFFIXES, Ignored, Problem
from runner.data.images import DICOM_SUFFIXES, is_dicom_file
from runner.errors import DataError

IMAGE_KINDS = "/".join(IMAGE_SUFFIXES) + " images or DICOM files"
NOT_AN_IMAGE_REASON = f"not an image file ({'/'.join(IMAGE_SUFFIXES)} or DICOM)"
#: Delimiters a spreadsheet may have saved a "CSV" with; the adapters read comma CSVs unless told otherwise.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def is_image_file(path: Path) -> bool:
    """An image by its suffix, or a DICOM file by its suffix or, extension-less, by its content."""
    if not path.is_file() or path.name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(str(path))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


class ImageFinder:
    """A listed image by name, directly in ``root``, else anywhere below it: SIIM-ACR nests each DICOM in
    ``<study>/<series>/``, NIH ChestX-ray14 spreads its images over ``images_001/images/`` to
    ``images_012/images/`` while its CSV names the file alone. ``root`` is walked once, on the first name not found
    directly. A name without an image suffix is tried with each of ``suffixes`` (an ImageId, RSNA's patientId);
    ``what`` names the column the name came from, in the problems. What was found below is counted
    (``warnings``): the listing said where each file is, and a namesake in a sub-folder must not stand in unseen."""

    def __init__(self, root: Path, suffixes: Sequence[str], what: str) -> None:
        self.root = root
        self.suffixes = tuple(suffixes)
        self.what = what
        self._below: dict[str, list[str]] | None = None
        self._found_below: list[tuple[str, str]] = []

    def _index(self) -> dict[str, list[str]]:
        if self._below is None:
            self._below = {}
            for path in sorted(self.root.rglob("*")):
                if path.parent != self.root and is_image_file(path):
                    self._below.setdefault(path.name, []).append(str(path.relative_to(self.root)))
        return self._below

    def find(self, name: str, where: str) -> str | Problem:
        """The image's path relative to the root, or the problem naming what was looked for: none, or several
        (which is the listed one cannot be told)."""
        named = Path(name).suffix.lower() in (*IMAGE_SUFFIXES, *DICOM_SUFFIXES)  # a.png is a.png, not a.png.dcm
        names = [name] if named else [name + suffix for suffix in self.suffixes]
        direct = next((each for each in names if (self.root / each).is_file()), None)
        if direct is not None:
            return direct
        below = [found for each in names for found in self._index().get(each, [])]
        if len(below) == 1:
            self._found_below.append((name, below[0]))
            return below[0]
        if below:
            return Problem(str(self.root / below[0]), f"({where}) {self.what} matches {len(below)} files under "
                                                      f"{self.root} ({', '.join(below[:3])}): keep one")
        wanted = names[0] if len(names) == 1 else f"{name} with suffix {'/'.join(s for s in self.suffixes if s)}"
        return Problem(str(self.root / names[0]), f"({where}) {wanted} does not exist in or below {self.root}: fix "
                                                  f"the {self.what} or image_root, or remove its rows")

    def warnings(self) -> list[str]:
        """One line for the names found in sub-folders, if any: how many, and the first."""
        if not self._found_below:
            return []
        name, found = self._found_below[0]
        return [f"{len(self._found_below)} listed {self.what} values found in sub-folders of {self.root}, not in it "
                f"(first: {name} -> {found})"]


def is_csv(path: Path) -> bool:
    """A CSV file, or one gzipped as MIMIC-CXR ships its metadata (``mimic-cxr-2.0.0-split.csv.gz``)."""
    return path.is_file() and path.name.lower().endswith((".csv", ".csv.gz"))


def read_csv_rows(csv_path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV with header names stripped (SIIM's header is ``ImageId, EncodedPixels``); a ``.gz`` file is
    read through gzip, as it is downloaded."""
    opener = gzip.open if csv_path.suffix.lower() == ".gz" else open
    try:
        with opener(csv_path, "rt", newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True, delimiter=delimiter)
            if reader.fieldnames is None:
                raise DataError(f"{csv_path} is empty: a manifest needs a header row and one row per image")
            _check_delimiter(reader.fieldnames, delimiter, csv_path)
            rows = []
            for row in reader:
                extra = row.pop(None, None)
                if extra and any(cell.strip() for cell in extra):  # unquoted delimiters: columns would shift
                    raise DataError(f"{csv_path}:{reader.line_num}: {len(reader.fieldnames) + len(extra)} "
                                    f"cells, but the header names {len(reader.fieldnames)}: quote the cells that hold "
                                    f"the delimiter {delimiter!r}, or fix the line")
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path} is not a UTF-8 text CSV ({error.reason}): save it as CSV UTF-8") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{csv_path} is not a whole gzip file ({error or 'cut short'}): download it again, or "
                        "name the unpacked .csv") from None
    return rows


def read_list_lines(path: Path, what: str) -> list[str]:
    """The lines of a list file (a split list, NIH's ``test_list.txt``): one error where it is a folder or not
    UTF-8 text (a list saved in a Windows code page), not a traceback."""
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a list file: name the .txt file that lists the images")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{what} {path} is not UTF-8 text ({error.reason}): save it as UTF-8") from None


def _check_delimiter(header: list[str], delimiter: str, csv_path: Path) -> None:
    """A one-column header holding another delimiter is a spreadsheet's semicolon (or tab) CSV: say so,
    rather than report a missing ``label`` column in a header that plainly has one."""
    if len(header) != 1:
        return
    for other, name in OTHER_DELIMITERS.items():
        if other != delimiter and other in header[0]:
            raise DataError(f"{csv_path}: the header '{header[0]}' looks {name}-delimited ({other!r}), not "
                            f"{delimiter!r}: save it as a comma-separated CSV or set the data option "
                            f"delimiter: {other!r}")


def pick_column(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                csv_path: Path, required: bool = True) -> str | None:
    """The column to read ``what`` from: the one configured, else the first candidate present."""
    columns = list(columns)
    if wanted:
        if wanted not in columns:
            raise DataError(f"{csv_path} has no column '{wanted}' for {what}: its columns are {', '.join(columns)}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    if required:
        raise DataError(
            f"{csv_path} has no {what} column (looked for {', '.join(candidates)}): "
            f"set {what.replace(' ', '_')}_column to one of {', '.join(columns)}"
        )
    return None


def with_slashes(root: Path, listed: str) -> str:
    """A path as a list written on Windows gives it (``images\\a.png``), with ``/``: unless a file of that
    literal name exists, since a backslash is a legal character in a POSIX file name. A Windows absolute path
    (``C:\\...``) is left as written, for ``resolve_inside`` to refuse."""
    if "\\" in listed and not WINDOWS_ABSOLUTE.match(listed) and not (root / listed).exists():
        return listed.replace("\\", "/")
    return listed


def resolve_inside(root: Path, relative: str, allow_outside: bool, where: str) -> tuple[Path | None, Problem | None]:
    """``root/relative``, or a Problem when the file is missing. A path that escapes ``root`` (``..``, an
    absolute path, a symlink out) is an error naming ``where`` (the list file and line) unless the user allowed
    it: a manifest is data, often from someone else, and must not point the runner at ``/etc/passwd``.
    """
    if WINDOWS_ABSOLUTE.match(relative):
        raise DataError(f"{where}: path '{relative}' is a Windows absolute path, which names no file here: write "
                        "paths relative to the list's folder (or to image_root)")
    relative = with_slashes(root, relative)
    try:
        candidate = (root / relative).resolve()
    except (RuntimeError, OSError) as error:  # a symlink loop: RuntimeError before Python 3.13, OSError after
        return None, Problem(str(root / relative), f"({where}) cannot follow the path ({error}): fix the "
                                                   "symlink or remove its row")
    if not allow_outside and not candidate.is_relative_to(root.resolve()):
        if not candidate.exists():  # another machine's absolute path
            raise DataError(f"{where}: path '{relative}' is outside the data root {root} and does not exist: write "
                            "paths relative to the list's folder (or to image_root)")
        raise DataError(f"{where}: path '{relative}' escapes the data root {root}: fix the path, or set "
                        "allow_outside_root: true if files outside it are intended")
    if not candidate.is_file():
        return None, Problem(str(candidate), f"({where}) file listed in the data set does not exist: fix the path "
                                             "or remove its row")
    return candidate, None


def part_of_name(name: str, pattern: str | None) -> str | None:
    """What the user's regex finds in a file name or a listed path (its first group, or the whole match): a
    patient id (``patient_regex``: CheXpert's ``.../patient00001/study1/view1_frontal.jpg``) or a label
    (``file_names``' ``label_regex``: Shenzhen's ``CHNCXR_0001_0.png``); None where it does not match."""
    if not pattern:
        return None
    match = re.search(pattern, name)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


def require_root(path: Path | None, layout: str) -> Path:
    if path is None:
        raise DataError(f"layout '{layout}' needs a path: pass --data PATH")
    require_exists(path)
    return path


def require_exists(path: Path) -> None:
    """A data path that is there, and not a spreadsheet: public sets ship their metadata as Excel workbooks (the
    COVID-19 Radiography Database's ``COVID.metadata.xlsx``), which read as CSV text give a nonsense header."""
    if not path.exists():
        raise DataError(f"data path {path} does not exist: check the path (relative paths are from the current "
                        "directory)")
    if path.is_file() and path.suffix.lower() in SPREADSHEET_SUFFIXES:
        raise DataError(f"{path} is a spreadsheet workbook, not a CSV: save it as CSV UTF-8 (comma-separated) and "
                        "pass the .csv")


def _reason_ignored(path: str, unused_image_reason: str) -> str:
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1].lower()
    if name.startswith("."):
        return "hidden file or folder"
    if os.path.islink(path) and not os.path.exists(path):
        return "broken or looping symlink"
    if suffix in IMAGE_SUFFIXES + DICOM_SUFFIXES:
        return unused_image_reason
    return NOT_AN_IMAGE_REASON


def _outermost_folders(paths: Iterable[Path]) -> list[str]:
    """The folders (a file's own folder) that hold all of ``paths``, none inside another."""
    folders = sorted({os.path.dirname(real) if os.path.isfile(real) else real
                      for real in (os.path.realpath(p) for p in paths)}, key=len)
    kept: list[str] = []
    for folder in folders:
        if not any(folder == top or folder.startswith(top.rstrip(os.sep) + os.sep) for top in kept):
            kept.append(folder)
    return kept


def account_files(root: Path, used: Iterable[str | Path], unused_image_reason: str, also: Iterable[Path] = ()
                  ) -> tuple[int, list[Ignored]]:
    """How many files lie under ``root`` (and ``also``: folders outside it the layout reads from, a manifest's
    ``image_root: ../train``), and each one the layout does not read with the reason, so nothing is left out
    without a word (a ``valid/`` folder, a stray image). Names only: no file is opened (an extension-less DICOM
    left out is counted as not an image).
    A hidden folder counts as one entry and is not walked (``.git`` would swamp the summary)."""
    used_paths = {os.path.realpath(p) for p in used}
    found, ignored = 0, []
    for top in _outermost_folders([root, *also]):
        found += _account_folder(top, used_paths, unused_image_reason, ignored)
    return found, ignored


def _account_folder(top: str, used_paths: set[str], unused_image_reason: str, ignored: list[Ignored]) -> int:
    found = 0
    for folder, dirs, files in os.walk(top):
        hidden = sorted(d for d in dirs if d.startswith("."))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in hidden + sorted(files):
            path = os.path.join(folder, name)
            found += 1
            if path not in used_paths and os.path.realpath(path) not in used_paths:
                ignored.append(Ignored(path, _reason_ignored(path, unused_image_reason)))
    return found


def option_columns(options: Mapping[str, Any]) -> dict[str, str | None]:
    return {key: options.get(key) for key in options if key.endswith("_column")}
