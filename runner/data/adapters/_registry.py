"""The layout registry: ``ADAPTERS`` maps each ``data.layout`` name to its adapter class.

Its own module, importing no adapter: each adapter module imports it to register itself, and the registry
imports the adapter modules on its first lookup (``runner.registry.Registry``), so no import order matters.
"""

from __future__ import annotations

from runner.data._records import DataAdapter
from runner.registry import Registry

ADAPTERS: Registry[type[DataAdapter]] = Registry("data layout", package="runner.data.adapters")


def register(adapter: type[DataAdapter]) -> type[DataAdapter]:
    """Class decorator adding ``adapter`` to ``ADAPTERS`` under its own ``name`` (the ``data.layout`` value), so
    a layout module writes the name once; a name registered twice fails when the modules are imported."""
    return ADAPTERS.register(adapter.name)(adapter)
