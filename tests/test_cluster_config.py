"""``runner cluster check`` on the shipped cluster files and on broken copies: each error names the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.cluster import check_cluster
from runner.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_shipped_cluster_files_pass_and_say_what_they_launch(name: str) -> None:
    summary = check_cluster(ROOT / name)
    assert summary.startswith("cluster 'cxr-runner")


def test_aws_file_has_gpu_workers_on_demand_and_spot() -> None:
    summary = check_cluster(ROOT / "cluster.yaml")
    assert "gpu.ondemand: workers 0..4 x g5.xlarge (GPU)" in summary and "(GPU, spot)" in summary
    assert "head.cpu: head x m5.2xlarge (CPU)" in summary


def _broken(change) -> dict:
    config = copy.deepcopy(SHIPPED)
    change(config)
    return config


def _drop_gpus(config: dict) -> None:
    for name in ("gpu.ondemand", "gpu.spot"):
        config["available_node_types"][name]["node_config"]["InstanceType"] = "m5.xlarge"


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(head_node_type="head"), r"head_node_type: 'head' is not one of available_node_types"),
    (_drop_gpus, r"available_node_types: no worker type has GPUs"),
    (lambda c: c.update(setup_commands=["echo hello"]), r"setup_commands: nothing installs this project"),
    (lambda c: c.update(max_workers="eight"), r"max_workers: 'eight' is not of type 'integer' \(Ray's cluster"),
    (lambda c: c.update(max_worker=8), r"\(top level\): Additional properties are not allowed \('max_worker'"),
    (lambda c: c["available_node_types"]["gpu.spot"].pop("node_config"),
     r"available_node_types.gpu.spot: 'node_config' is a required property"),
    (lambda c: c["available_node_types"]["gpu.spot"].update(min_workers=5),
     r"available_node_types.gpu.spot.min_workers: 5 is more than its max_workers 4"),
    (lambda c: c.update(max_workers=0), r"max_workers: 0 is less than the worker types' min_workers"),
])
def test_broken_copies_name_the_key(tmp_path: Path, change, message: str) -> None:
    config = _broken(change)
    if message.startswith("max_workers: 0"):
        config["available_node_types"]["gpu.ondemand"]["min_workers"] = 1
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message) as error:
        check_cluster(path)
    assert str(path) in str(error.value)


def test_cli_prints_one_line_error_and_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(_broken(lambda c: c.update(head_node_type="nope"))))
    run = subprocess.run([sys.executable, "-m", "runner", "cluster", "check", str(path)], capture_output=True,
                         text=True)
    assert run.returncode != 0 and run.stderr.strip().count("\n") == 0
    assert "head_node_type: 'nope'" in run.stderr
    missing = subprocess.run([sys.executable, "-m", "runner", "cluster", "check", str(tmp_path / "none.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
