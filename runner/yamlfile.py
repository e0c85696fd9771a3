"""The one YAML reader for every file the runner reads (search spaces, ``--config``, data specs, cluster files)
and for ``--set`` values.

PyYAML follows YAML 1.1, whose float needs a dot and a signed exponent: ``1e-3``, ``1E-3`` and ``3e4``, as
people write learning rates, would load as strings and fail later as "not a number". This reader also takes
YAML 1.2's floats (``1e-3``, ``1.0e3``); ints stay ints, everything else reads as PyYAML reads it. A key given
twice in one mapping (two ``fixed:`` blocks) is an error naming the key and both lines, not a silent "the last
one wins".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ConfigError

#: Floats YAML 1.1 misses: an exponent without a dot or without a sign (``1e-3``, ``3e4``, ``1.5e3``).
_EXPONENT_FLOAT = re.compile(r"^[-+]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        super().__init__(f"key '{key}' is given twice (lines {first_line} and {second_line}): keep one")


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2's exponent floats, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # ``<<: *defaults`` may be overridden key by key: that is what merge keys are for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, list | dict):
                continue  # unhashable: SafeConstructor itself refuses it with its own message
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def load(text: str) -> Any:
    """The YAML document in ``text``; raises ``yaml.YAMLError`` (``DuplicateKeyError`` for a repeated key)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only, no Python objects


def parse(text: str, source: str) -> Any:
    """The YAML document in ``text``; errors are one line naming ``source``."""
    try:
        return load(text)
    except DuplicateKeyError as error:
        raise ConfigError(f"{source}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(error).split())}") from None


def read_file(path: Path, what: str) -> Any:
    """The YAML document in file ``path``; ``what`` names it in errors (``config file``, ``cluster file``...)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a YAML file: give the path of the file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {error.start}): save it as UTF-8 YAML") from None
    return parse(text, str(path))


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding one mapping of keys to values; an empty file is an empty mapping."""
    loaded = read_file(path, what)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = "a list" if isinstance(loaded, list) else f"the single value {loaded!r}"
        raise ConfigError(f"{what} {path} holds {kind}, not a mapping of keys to values: write it as key: value "
                          "lines")
    return loaded
