"""``runner cluster check``: a Ray cluster-launcher file validated offline before ``ray up`` spends money.

Two layers: Ray's own JSON schema (``ray/autoscaler/ray-schema.json``, the one ``ray up`` applies), then the
rules a cxr-runner cluster needs that the schema cannot know: the head type exists, some worker type has
GPUs, setup installs this project, the worker bounds add up. Every error names the key.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config import load_config_file
from runner.errors import ConfigError

#: AWS instance families with GPUs (p: training, g: graphics/inference, both fine for our trials).
_AWS_GPU_FAMILY = re.compile(r"^(p\d\w*|g\d\w*)\.", re.IGNORECASE)
_PROJECT = "cxr-runner"


@dataclass(frozen=True)
class NodeType:
    name: str
    instance: str
    gpus: bool
    spot: bool
    min_workers: int
    max_workers: int


def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def check_schema(config: Mapping[str, Any], source: str) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(ray_schema()).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        key = ".".join(str(part) for part in first.path) or "(top level)"
        raise ConfigError(f"{source}: {key}: {first.message} (Ray's cluster schema)")


def _gpu_type(node: Mapping[str, Any], provider: str) -> bool:
    if (node.get("resources") or {}).get("GPU", 0) > 0:
        return True
    config = node.get("node_config") or {}
    if provider == "aws":
        return bool(_AWS_GPU_FAMILY.match(str(config.get("InstanceType", ""))))
    if provider == "gcp":
        return bool(config.get("guestAccelerators"))
    return False


def node_types(config: Mapping[str, Any]) -> list[NodeType]:
    provider = config["provider"]["type"]
    found = []
    for name, node in (config.get("available_node_types") or {}).items():
        node_config = node.get("node_config") or {}
        instance = str(node_config.get("InstanceType") or node_config.get("machineType") or "-")
        spot = (node_config.get("InstanceMarketOptions") or {}).get("MarketType") == "spot" or bool(
            (node_config.get("scheduling") or {}).get("preemptible"))
        found.append(NodeType(name=name, instance=instance, gpus=_gpu_type(node, provider), spot=spot,
                              min_workers=int(node.get("min_workers", 0)),
                              max_workers=int(node.get("max_workers", config.get("max_workers", 0)))))
    return found


def _commands(config: Mapping[str, Any]) -> Iterator[str]:
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands"):
        yield from (str(command) for command in config.get(key) or [])


def check_rules(config: Mapping[str, Any], source: str) -> list[NodeType]:
    """Our rules on top of Ray's schema; returns the node types for the summary."""
    types = {node.name: node for node in node_types(config)}
    head = config.get("head_node_type")
    if not types:
        raise ConfigError(f"{source}: available_node_types: none defined: add a head type and a GPU worker type")
    if head not in types:
        raise ConfigError(f"{source}: head_node_type: '{head}' is not one of available_node_types "
                          f"({', '.join(types)})")
    workers = [node for name, node in types.items() if name != head]
    if config["provider"]["type"] != "local" and not any(node.gpus for node in workers):
        raise ConfigError(f"{source}: available_node_types: no worker type has GPUs: add one with a GPU instance "
                          "type (e.g. InstanceType: g5.xlarge) or resources: {GPU: 1}")
    for node in workers:
        if node.min_workers > node.max_workers:
            raise ConfigError(f"{source}: available_node_types.{node.name}.min_workers: {node.min_workers} is "
                              f"more than its max_workers {node.max_workers}")
    if sum(node.min_workers for node in workers) > int(config.get("max_workers", 0)):
        raise ConfigError(f"{source}: max_workers: {config.get('max_workers', 0)} is less than the worker types' "
                          "min_workers together")
    if not any("pip install" in command and (_PROJECT in command or "runner" in command)
               for command in _commands(config)):
        raise ConfigError(f"{source}: setup_commands: nothing installs this project: add "
                          f"'pip install -e \"/home/ray/{_PROJECT}[gpu]\"' with the repo in file_mounts")
    return list(types.values())


def describe(config: Mapping[str, Any], types: list[NodeType]) -> str:
    head = config["head_node_type"]
    lines = [f"cluster '{config['cluster_name']}' on {config['provider']['type']} "
             f"({config['provider'].get('region', 'no region')}), at most {config.get('max_workers', 0)} workers, "
             f"idle timeout {config.get('idle_timeout_minutes', 5)} min"]
    for node in types:
        role = "head" if node.name == head else f"workers {node.min_workers}..{node.max_workers}"
        kind = ", ".join(filter(None, ["GPU" if node.gpus else "CPU", "spot" if node.spot else ""]))
        lines.append(f"  {node.name}: {role} x {node.instance} ({kind})")
    image = (config.get("docker") or {}).get("image")
    if image:
        lines.append(f"  image: {image}")
    return "\n".join(lines)


def check_cluster(path: Path) -> str:
    """Validates a cluster file; returns what ``ray up`` would launch."""
    config = load_config_file(path, "cluster file")
    check_schema(config, str(path))
    return describe(config, check_rules(config, str(path)))


def add_cluster_command(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="Ray cluster helpers")
    actions = cluster.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a cluster-launcher YAML offline and show what it launches")
    check.add_argument("file", nargs="?", type=Path, default=Path("cluster.yaml"))
    check.set_defaults(handler=lambda args: print(check_cluster(args.file)) or 0)
