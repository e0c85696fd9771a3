"""The package's import graph has no cycle, and each registry sits in a leaf: a module that imports none of the
modules registering into it.

A cycle makes import order matter: whichever module of the cycle is imported first sees the other half-built,
so a name must be defined "before" an import (``# noqa: E402``) or an import must hide in a function. The graph
is read from the source with ``ast`` (nothing is imported, so TensorFlow stays out of this test):

- an edge is an import statement at module level, including those under ``if TYPE_CHECKING:``: two modules
  whose types need each other are still two halves of one module;
- imports inside functions are not edges. They run after every module has loaded, so they cannot break import
  order, and they are how TensorFlow, Keras and Ray stay out of ``import runner`` (STYLE.md: lazy imports);
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` itself: a name
  re-exported by a package ``__init__`` is an edge to the ``__init__``, whose own imports then count;
- importing ``pkg.mod`` also runs ``pkg/__init__.py`` first, but that is no edge: nothing is read from the
  package, so it cannot matter whether its ``__init__`` has finished.

A registry module that imports a module registering into it makes a cycle with any registration done at module
level; one done inside a function (``from pkg import REGISTRY`` in the decorator) hides that cycle from the graph
above, so the leaf test counts ``NAME.register(...)`` calls wherever they are, and function-level imports of the
name too.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages whose imports are walked (the tasks live in ``runner.tasks``).
PACKAGES = ("runner",)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def package(self) -> str:
        """The package relative imports start from: the module itself for an ``__init__``."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @cached_property
    def tree(self) -> ast.Module:
        return ast.parse(self.path.read_text(), str(self.path))


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Module]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = Module(name, path)
    return found


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements outside any function or class body, at any depth of ``if``/``try``/``with``."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported(module: Module, node: ast.Import | ast.ImportFrom, known: Mapping[str, Module]) -> set[str]:
    """The walked modules this statement imports (modules outside the walked packages are left out)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    source = _absolute(module, node)
    targets = {f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names}
    return targets & set(known)


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    return {name: set().union(*(imported(module, node, modules) for node in module_level_imports(module.tree)))
            for name, module in modules.items()}


def strongly_connected(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules each reachable from every other one of its group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycles(graph: Mapping[str, set[str]]) -> list[str]:
    """One line per group of modules that import one another: the group, and one cycle through it."""
    found = []
    for group in strongly_connected(graph):
        first = min(group)
        if len(group) > 1 or first in graph[first]:
            found.append(f"{', '.join(sorted(group))} import one another ({' -> '.join(_cycle_in(graph, group))})")
    return found


def _cycle_in(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                frontier.append(target)
    raise AssertionError(f"no cycle through {start}")


@dataclass(frozen=True)
class RegistryName:
    """A ``Registry`` instance assigned at module level: ``module.name``."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


def _base_name(base: ast.expr) -> str | None:
    """``Registry`` for ``Registry`` and for ``Registry[Path]``."""
    node = base.value if isinstance(base, ast.Subscript) else base
    return node.id if isinstance(node, ast.Name) else None


def _registry_classes(tree: ast.Module) -> set[str]:
    """``Registry`` and the module's own subclasses of it."""
    classes = {"Registry"}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(_base_name(base) in classes for base in node.bases):
            classes.add(node.name)
    return classes


def registries(modules: Mapping[str, Module]) -> list[RegistryName]:
    found = []
    for name, module in modules.items():
        classes = _registry_classes(module.tree)
        for node in module.tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in classes:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [RegistryName(name, target.id) for target in targets if isinstance(target, ast.Name)]
    return found


def _bindings(module: Module) -> dict[str, tuple[str, str]]:
    """Each name bound by a ``from X import Y [as Z]`` anywhere in the module: ``{Z: (X, Y)}``."""
    return {alias.asname or alias.name: (_absolute(module, node), alias.name)
            for node in ast.walk(module.tree) if isinstance(node, ast.ImportFrom) for alias in node.names}


def _resolve(modules: Mapping[str, Module], defined: set[RegistryName], module: str, name: str,
             ) -> RegistryName | None:
    """The registry ``name`` in ``module`` stands for, following re-exports (``runner.data.ADAPTERS``)."""
    if RegistryName(module, name) in defined:
        return RegistryName(module, name)
    if module not in modules:
        return None
    source = _bindings(modules[module]).get(name)
    return None if source is None else _resolve(modules, defined, *source)


def _registers_into(node: ast.AST, registry: RegistryName) -> bool:
    """Whether ``node`` holds a call of ``<registry>.register`` by its own name."""
    return any(isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "register"
               and isinstance(call.func.value, ast.Name) and call.func.value.id == registry.name
               for call in ast.walk(node))


def _register_functions(modules: Mapping[str, Module], registry: RegistryName) -> set[str]:
    """Module-level functions of the registry's own module that register into it (``runner.models._spec.register``):
    a module calling one of them registers as surely as one calling ``MODELS.register``."""
    return {node.name for node in modules[registry.module].tree.body
            if isinstance(node, ast.FunctionDef) and _registers_into(node, registry)}


def _registry_called(modules: Mapping[str, Module], defined: set[RegistryName],
                     helpers: Mapping[RegistryName, set[str]], bindings: Mapping[str, tuple[str, str]],
                     func: ast.expr) -> RegistryName | None:
    """The registry a call's function registers into: ``X.register`` with X bound to a registry, or a name bound
    to one of a registry module's register functions."""
    if (isinstance(func, ast.Attribute) and func.attr == "register" and isinstance(func.value, ast.Name)
            and func.value.id in bindings):
        return _resolve(modules, defined, *bindings[func.value.id])
    if isinstance(func, ast.Name) and func.id in bindings:
        module, name = bindings[func.id]
        return next((registry for registry, names in helpers.items() if registry.module == module and name in names),
                    None)
    return None


def registrants(modules: Mapping[str, Module], defined: set[RegistryName]) -> dict[RegistryName, set[str]]:
    """For each registry, the other modules that register into it, at module level or in a function."""
    found: dict[RegistryName, set[str]] = {registry: set() for registry in defined}
    helpers = {registry: _register_functions(modules, registry) for registry in defined}
    for name, module in modules.items():
        bindings = _bindings(module)
        for node in ast.walk(module.tree):
            # a call (``register(task)``, ``@register(name)``) or a bare decorator (``@register`` on a class)
            called = ([node.func] if isinstance(node, ast.Call) else
                      [d for d in node.decorator_list if isinstance(d, ast.Name)]
                      if isinstance(node, ast.ClassDef | ast.FunctionDef) else [])
            for func in called:
                registry = _registry_called(modules, defined, helpers, bindings, func)
                if registry is not None and registry.module != name:
                    found[registry].add(name)
    return found


def reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others, at module level."""
    seen: set[str] = set()
    pending = [start]
    while pending:
        for target in graph[pending.pop()] - seen:
            seen.add(target)
            pending.append(target)
    return seen


MODULES = find_modules(ROOT, PACKAGES)
GRAPH = import_graph(MODULES)
REGISTRIES = registries(MODULES)
REGISTERING = registrants(MODULES, set(REGISTRIES))
def test_the_walk_finds_the_registries_and_their_entries() -> None:
    """A walk that found nothing would pass the test below for no reason."""
    found = {registry.name: modules for registry, modules in REGISTERING.items()}
    assert all(found.get(name) for name in ("ADAPTERS", "MODELS", "TASKS")), found


@pytest.mark.parametrize("registry", REGISTRIES, ids=str)
def test_each_registry_is_a_leaf(registry: RegistryName) -> None:
    imported_here = reachable(GRAPH, registry.module) & REGISTERING[registry]
    assert not imported_here, (f"{registry} is defined in a module that imports {', '.join(sorted(imported_here))}, "
                               f"which registers into it: move {registry.name} into a module of its own")


def test_the_walk_reads_relative_imports_re_exports_and_type_checking_blocks(tmp_path: Path) -> None:
    """The rules of the module docstring on a package written here, forms the real one may not use yet."""
    files = {
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\nA = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from .. import A\n\ndef later():\n    from pkg import c\n",
        "pkg/c.py": "import json\nimport pkg.a\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(find_modules(tmp_path, ("pkg",)))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg"},
                     "pkg.c": {"pkg.a"}}
    assert cycles(graph) == ["pkg, pkg.a, pkg.sub.b import one another (pkg -> pkg.a -> pkg.sub.b -> pkg)"]


def test_no_import_cycle() -> None:
    found = cycles(GRAPH)
    assert not found, ("import cycles: move what both sides need into a module that imports neither: "
                       + "; ".join(found))


def test_help_lists_each_registrys_names_read_only_when_printed() -> None:
    """``--help`` named the tasks, models and sweeps by hand, and had fallen behind (no ``findings``): it now
    reads them from their registries, when help is printed, so building the parser imports none of them."""
    import subprocess
    import sys

    from runner.data import ADAPTERS
    from runner.models import MODELS
    from runner.sweep.space import SEARCH_SPACES
    from runner.tasks import TASKS

    def helped(*command: str) -> str:
        result = subprocess.run([sys.executable, "-m", "runner", *command, "--help"], capture_output=True, text=True,
                                check=True, env={**os.environ, "COLUMNS": "1000"})
        return result.stdout

    for command, registries in ((("data", "check"), (TASKS, ADAPTERS)), (("train",), (TASKS, MODELS)),
                                (("sweep",), (SEARCH_SPACES,))):
        text = helped(*command)
        assert not [kind for kind in ("<tasks>", "<models>", "<layouts>", "<sweeps>") if kind in text]
        for registry in registries:
            assert ", ".join(registry.names()) in text
    loaded = subprocess.run([sys.executable, "-c", "import sys; from runner.cli import build_parser; build_parser(); "
                             "print(sorted(m for m in ('runner.tasks', 'runner.models', 'runner.data') "
                             "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
