"""``--set key=value`` overrides: dotted keys for nesting, YAML for values read as the runner reads its files
(``runner.yamlfile``: ``1e-3`` is a float, ``[a, b]`` a list, ``none`` stays the string a model option
expects)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from runner import yamlfile
from runner.errors import ConfigError

#: How a value starts when it can only be meant as YAML: a mapping, a list, a quoted string.
YAML_OPENERS = ("{", "[", '"', "'")


def parse_value(text: str) -> Any:
    """A value as the runner's YAML files read it; text that is not YAML (``a: b: c``) stays the text typed,
    unless it opens a mapping, list or quoted string: ``data={path: x, label_regex: "_(\\d)"}`` (an unknown
    escape in double quotes) became a data path named by the whole text, and a quoted regex kept its quotes."""
    if text == "":
        return ""
    try:
        return yamlfile.load(text)
    except yamlfile.DuplicateKeyError as error:
        raise ConfigError(f"--set value '{text}': {error}") from None
    except yaml.YAMLError as error:
        if not text.startswith(YAML_OPENERS):
            return text
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        fix = ("in double quotes write a backslash as \\\\, or use single quotes" if "escape" in problem
               else "close each bracket and quote, and quote names holding ': ' or '#'")
        raise ConfigError(f"--set value '{text}' is not valid YAML ({problem}): {fix}") from None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{pair}' must look like key=value")
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise _value_and_group(pair, part)
        parsed = parse_value(value.strip())
        if isinstance(node.get(leaf), dict):  # keys set before: a mapping adds to them, a value cannot replace them
            if not isinstance(parsed, Mapping):
                raise _value_and_group(pair, leaf)
            parsed = deep_merge(node[leaf], parsed)
        node[leaf] = parsed
    return result


def _value_and_group(pair: str, key: str) -> ConfigError:
    """``--set data=PATH`` beside ``--set data.label_map.X=Y``, in either order: neither may silently win."""
    example = "{path: PATH, label_map: {...}}" if key == "data" else "{name: value, ...}"
    return ConfigError(f"--set '{pair}': '{key}' is set both as a value and as a group: set it once, as a mapping "
                       f"(--set '{key}={example}')")


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any],
               replaces: Callable[[str, Mapping[str, Any], Mapping[str, Any]], bool] | None = None) -> dict[str, Any]:
    """``base`` updated with ``extra``, merging nested mappings instead of replacing them, unless
    ``replaces(key, base's, extra's)`` says the one in ``extra`` stands for itself (at any depth)."""
    merged = dict(base)
    for key, value in extra.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping) and not (replaces and replaces(key, below, value)):
            merged[key] = deep_merge(below, value, replaces)
        else:
            merged[key] = value
    return merged
