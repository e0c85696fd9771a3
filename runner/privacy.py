"""Patient ids leave the data set only as salted hashes.

A patient id (a manifest's ``patient_id``, a DICOM PatientID, which is often the hospital's record number) is
personal data. The results a sweep writes are shared: ``predictions.parquet`` keeps a patient column so
per-patient metrics can be computed later, and holds it as a keyed BLAKE2b hash instead. The key is one random
salt per results folder, the file ``patient_salt`` in it, created by the first trial that needs it: within one
results folder a patient hashes the same in every trial (patients can be joined across trials), across folders
differently (no linking between studies), and without the salt nobody can test a guessed id against a hash
(an unsalted hash of a short numeric id is reversed by trying them all). Share results without that file; keep
it to find a patient's rows by hashing their id (``hash_patient_id``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner import storage

SALT_FILE = "patient_salt"


def _create_local(path: Path, salt: str) -> None:
    """Write the salt under a temporary name and link it into place: of two trials creating it at once one
    wins, and the other reads the winner's (a link never replaces a file, and is never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_text(salt)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


def patient_salt(results: str | os.PathLike[str]) -> str:
    """The results folder's salt (``results/patient_salt``), created on first use. On an object store, which
    cannot create a file only if it is missing, the sweep's driver creates it before any trial starts."""
    location = storage.join(str(results), SALT_FILE)
    found = storage.read_text(location)
    if found:
        return found.strip()
    if storage.is_uri(location):
        storage.write_text(location, secrets.token_hex(32))
    else:
        _create_local(Path(location), secrets.token_hex(32))
    return (storage.read_text(location) or "").strip()


def hash_patient_id(patient_id: str | None, salt: str) -> str | None:
    """16 hex digits (64 bits) of BLAKE2b keyed with the salt; None stays None."""
    if patient_id is None:
        return None
    return hashlib.blake2b(patient_id.encode(), key=bytes.fromhex(salt), digest_size=8).hexdigest()


def hash_patient_ids(rows: Iterable[dict[str, Any]], salt: str) -> list[dict[str, Any]]:
    """Prediction rows with their ``patient_id`` hashed."""
    return [{**row, "patient_id": hash_patient_id(row.get("patient_id"), salt)} for row in rows]
