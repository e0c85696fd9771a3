"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt image, a typo in a YAML key) raises a subclass of
``CxrError`` whose message is one line naming the file or key and saying what to do. The CLI prints that
line and exits 2 instead of dumping a traceback; tests assert on the text.
"""

from __future__ import annotations


class CxrError(Exception):
    """An error the user can fix; its message is shown as is."""


class ConfigError(CxrError):
    """A bad key, value or name in a config, search space or command line."""


class DataError(CxrError):
    """A bad file, label, split or layout in a data set."""


class StorageError(CxrError):
    """The results folder cannot be written: read-only, full, or not permitted."""
