"""The sweep record: where one sweep lives and how to resume it (``<results>/sweeps/<sweep_id>.json``).

Its own module because the driver (``run``), the Optuna study (``study``) and the ``stop:`` rules
(``stopping``) all read it, and the driver imports the other two.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runner import storage
from runner.errors import ConfigError, CxrError


@dataclass(frozen=True)
class SweepRun:
    """Where one sweep lives: ``<results>/sweeps/<sweep_id>.json`` records how to resume it."""

    sweep_id: str
    name: str
    results: str
    storage: str
    source: str
    overrides: dict[str, Any]
    profile: str | None
    quick: bool = False
    mlflow: str | None = None
    #: When the sweep first started (ISO 8601, UTC): ``stop.time_budget_s`` counts from here across resumes.
    started_at: str | None = None
    #: ``{"rule": "patience", "reason": "..."}`` once ``stop:`` ended the sweep early; ``--resume`` refuses it.
    stopped: dict[str, str] | None = None
    #: The directory the sweep started in: ``--resume`` reads its relative paths (the space file, ``--set
    #: data=images``, a space's ``./search_spaces``) from there, wherever it is run from.
    workdir: str | None = None
    #: SHA-256 of the search-space file when the sweep started: ``--resume`` refuses a file changed since.
    space_digest: str | None = None

    @property
    def trials_dir(self) -> str:
        return storage.join(self.results, "trials", self.sweep_id)

    @property
    def train_storage(self) -> str:
        """Ray Train's runs of this sweep's trials (``resources.workers: 1``)."""
        return storage.join(self.storage, self.sweep_id, "train")

    def start_directory(self, printer: Callable[[str], None]) -> contextlib.AbstractContextManager:
        """Where the sweep is rebuilt (``--resume``, ``confirm``): the directory it started in, so a command
        run from elsewhere reads the same space file and data as the trials before it (a relative
        ``data=images`` would name another folder, or none). A record whose directory is not here (another
        machine) is rebuilt from the current one, with a line saying so."""
        if self.workdir is None or Path(self.workdir) == Path.cwd():
            return contextlib.nullcontext()
        if not Path(self.workdir).is_dir():
            printer(f"note: sweep {self.sweep_id} started in {self.workdir}, which is not here (another machine, "
                    "or removed): its relative paths (space file, data) are read from the current directory")
            return contextlib.nullcontext()
        printer(f"reading the sweep's relative paths from {self.workdir}, where it started")
        return contextlib.chdir(self.workdir)

    def check_space_unchanged(self) -> None:
        """A resume or ``confirm`` rebuilds the sweep from its file (in ``start_directory``): a file edited since
        the start would give the trials still to run, or the confirmation runs, other fixed values, data or
        resources than the trials before them, under one sweep id."""
        from runner.sweep.space import space_digest

        if self.space_digest is not None and space_digest(self.source) != self.space_digest:
            raise CxrError(f"search space {self.source} has changed since sweep {self.sweep_id} started: the trials "
                           "run now would not match the ones before them; put the file back as it was, or start a "
                           "new sweep")

    def save(self) -> None:
        """Writes the record atomically (``storage.write_text``): a crash mid-write keeps the old record."""
        storage.write_text(storage.join(self.results, "sweeps", f"{self.sweep_id}.json"),
                           json.dumps(asdict(self), indent=2))


def new_sweep_id(name: str) -> str:
    return f"{name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def find_sweep(results: str, name: str, sweep_id: str | None) -> SweepRun:
    """The sweep to resume: ``sweep_id``, or the newest sweep called ``name`` in ``results``."""
    folder = storage.join(results, "sweeps")
    if sweep_id:
        location = storage.join(folder, f"{sweep_id}.json")
        if not storage.is_file(location):
            raise ConfigError(f"no sweep '{sweep_id}' in {folder}: check --results and the id")
    else:
        found = sorted((mtime, path) for path, mtime in storage.list_files(folder, ".json")
                       if path.rsplit("/", 1)[-1].startswith(f"{name}-"))
        if not found:
            raise ConfigError(f"no sweep named '{name}' to resume in {folder}")
        location = found[-1][1]
    return _parse_record(storage.read_bytes(location) or b"", location)


def _parse_record(data: bytes, location: str) -> SweepRun:
    """A sweep record as ``SweepRun.save`` wrote it; a damaged one (cut short by a full disk, edited by hand)
    is one error saying how to go on: the leaderboard rows are files of their own and stay intact."""
    try:
        record = json.loads(data.decode())
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
        return SweepRun(**record)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"sweep record {location} is damaged ({' '.join(str(error).split())}): restore it from "
                          "a backup, or start a new sweep (the finished trials' leaderboard rows are intact)"
                          ) from None
