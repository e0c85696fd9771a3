"""One small registry class shared by every extension point (data layouts, models, tasks).

Entries are registered with a decorator keyed by the name used in YAML and on the command line; a
duplicate name is a programming error and fails at import. Registries that live in a package import that
package's modules on first lookup, so importing ``runner`` never pulls in TensorFlow.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from runner.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry map filled by ``@registry.register(name)``.

    ``package``: a dotted package whose modules register entries when imported; they are imported the first
    time the registry is read, not when it is created.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self._package = package
        self._entries: dict[str, T] = {}
        self._loaded = package is None

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self._package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self._package}.{module.name}")

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name is a ConfigError listing the valid ones."""
        self._load()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}': choose one of {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
