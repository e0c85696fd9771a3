"""Where results live: a local folder, a shared mount, or a URI (``s3://``, ``gs://``, ``file://``) that every
node of a cluster can reach. Small files (sweep records) are read and written here; the leaderboard has its
own atomic writer on top of ``filesystem``; trial folders are built on local disk and uploaded whole.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from runner.errors import StorageError

#: What a writability probe writes: a full disk refuses it, as it would refuse a leaderboard row.
PROBE_BYTES = 4096


def add_results_argument(parser: argparse.ArgumentParser,
                         help: str = "results folder or URI (default $CXR_RUNNER_RESULTS or results)") -> None:
    """Every command's ``--results``: ``$CXR_RUNNER_RESULTS`` points them all at one place."""
    parser.add_argument("--results", default=os.environ.get("CXR_RUNNER_RESULTS", "results"), help=help,
                        type=folder_argument)


def folder_argument(location: str) -> str:
    """An argparse ``type`` for an option naming a folder that is created if missing (``--results``,
    ``--out``): a local path that is, or lies under, a file is refused at once, as argparse's one error
    line, rather than as a traceback from the first write."""
    if is_uri(location):
        return location
    path = Path(location).expanduser()
    for above in (path, *path.parents):
        if above.exists():
            if not above.is_dir():
                where = "is a file" if above == path else f"is under {above}, which is a file"
                raise argparse.ArgumentTypeError(f"{location} {where}, not a folder: give a folder (it is "
                                                 "created if missing)")
            break
    return location


def is_uri(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and "://" in location


def filesystem(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """(pyarrow filesystem, or None for the local one, and the base path). ``file://`` is local."""
    if is_uri(location):
        from pyarrow import fs as pafs

        found, path = pafs.FileSystem.from_uri(location)
        if isinstance(found, pafs.LocalFileSystem):
            return None, path
        return found, path.rstrip("/")
    return None, os.fspath(location)


def resolve(location: str) -> str:
    """A URI as given; a local path made absolute (trial processes run in other working directories)."""
    return location if is_uri(location) else str(Path(location).expanduser().resolve())


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def write_error(location: str | os.PathLike[str], error: OSError) -> StorageError:
    """One line for a failed write under the results folder: which file, why, and what to do."""
    return StorageError(f"cannot write {location}: {error.strerror or error}: free space on that disk or make it "
                        "writable (or choose another --results)")


def check_writable(location: str) -> None:
    """Writes and deletes a probe file, so a read-only, full or forbidden results folder is refused before
    any trial starts rather than after the first one trained."""
    name = f".write-probe-{os.getpid()}"
    found, path = filesystem(location)
    try:
        if found is None:
            Path(path).mkdir(parents=True, exist_ok=True)
            probe = Path(path, name)
            try:
                with open(probe, "wb") as handle:
                    handle.write(b"\0" * PROBE_BYTES)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                probe.unlink(missing_ok=True)
        else:
            found.create_dir(path, recursive=True)
            with found.open_output_stream(f"{path}/{name}") as stream:
                stream.write(b"\0" * PROBE_BYTES)
            found.delete_file(f"{path}/{name}")
    except OSError as error:
        raise write_error(location, error) from None


def write_text(location: str, text: str) -> None:
    """Writes a whole text file, as ``write_bytes``."""
    write_bytes(location, text.encode())


def write_bytes(location: str, data: bytes) -> None:
    """Writes a whole file; a local one atomically (temporary file, fsync, rename), so a killed or full
    write leaves the previous content or none, never half a file. Object stores write whole objects."""
    found, path = filesystem(location)
    if found is None:
        _write_local_atomically(Path(path), data)
        return
    found.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with found.open_output_stream(path) as stream:
        stream.write(data)


def _write_local_atomically(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise StorageError(f"cannot write {path}: it is a folder: move it away or write somewhere else")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)


def read_text(location: str) -> str | None:
    """The file's text, or None when it does not exist."""
    data = read_bytes(location)
    return None if data is None else data.decode()


def read_bytes(location: str) -> bytes | None:
    """The file's content, or None when it does not exist."""
    found, path = filesystem(location)
    if not _is_file(found, path):
        return None
    if found is None:
        return Path(path).read_bytes()
    with found.open_input_stream(path) as stream:
        return stream.read()


def is_file(location: str) -> bool:
    return _is_file(*filesystem(location))


def _is_file(found: Any, path: str) -> bool:
    if found is None:
        return Path(path).is_file()
    from pyarrow import fs as pafs

    return found.get_file_info(path).type == pafs.FileType.File


def list_files(folder: str, suffix: str) -> list[tuple[str, float]]:
    """(location, modification time) of the files in ``folder`` whose names end with ``suffix``."""
    found, path = filesystem(folder)
    if found is None:
        root = Path(path)
        return [(str(p), p.stat().st_mtime) for p in root.glob(f"*{suffix}")] if root.is_dir() else []
    from pyarrow import fs as pafs

    infos = found.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    scheme = folder.split("://", 1)[0]
    return [(f"{scheme}://{info.path}", info.mtime.timestamp() if info.mtime else 0.0) for info in infos
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix)]


def upload_folder(local: Path, destination: str) -> None:
    """Copies a finished trial folder to shared storage (any pyarrow URI, ``file://`` included)."""
    from pyarrow import fs as pafs

    target, path = pafs.FileSystem.from_uri(destination)
    target.create_dir(path, recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=target)


def remove_folder(location: str) -> None:
    """Deletes a folder and everything in it, if it exists (local or any pyarrow URI)."""
    found, path = filesystem(location)
    if found is None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    from pyarrow import fs as pafs

    if found.get_file_info(path).type == pafs.FileType.Directory:
        found.delete_dir(path)
