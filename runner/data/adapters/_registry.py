"""The layout registry: ``ADAPTERS`` maps each ``data.layout`` name to its adapter class.

Its own module, importing no adapter: each adapter module imports it to register itself, and the registry
imports the adapter modules on its first lookup (``runner.registry.Registry``), so no import order matters.
"""

from __future__ import annotations

from runner.data._records import DataAdapter
from runner.registry import Registry

ADAPTERS: Registry[type[DataAdapter]] = Registry("data layout", package="runner.data.adapters")
