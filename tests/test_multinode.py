"""A real multi-node Ray cluster on this machine: ``ray start --head`` (no CPUs: it only hosts the driver's
cluster state, like the head of ``cluster.yaml``) plus two ``ray start --address`` worker nodes of one CPU
each. A sweep joined with ``--address`` must spread its trials over both workers, and must still record
every trial exactly once when one worker node is killed mid-sweep (its trials are retried on the other).
Every process the test started is stopped by pid."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).with_name("ray"))
SWEEP = {
    "description": "multi-node test sweep",
    "tasks": ["pneumonia"],
    "models": ["baseline"],
    "fixed": {"epochs": 12, "image_size": 48, "bootstrap": 20, "early_stopping": 0, "data": {"n": 120},
              "batch_size": 16},
    "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "num_samples": 6,
    "scheduler": {"type": "fifo"},
    "resources": {"cpu": 1, "gpu": 0, "workers": 0},
    "max_failures": 2,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _cluster_pids(port: int) -> dict[int, str]:
    """Every live process whose command line names this cluster's GCS address (raylets, GCS, workers)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(rf"(:|port=){port}\b", command):
            found[int(entry.name)] = command
    return found


def _raylet_of(port: int, marker: str) -> tuple[int, str]:
    """The pid and Ray node id of the worker node started with the custom resource ``marker``."""
    for pid, command in _cluster_pids(port).items():
        if "raylet" in command.split(" ", 1)[0] and marker in command:
            return pid, re.search(r"--node[-_]id=([0-9a-f]+)", command).group(1)
    raise AssertionError(f"no raylet with resource {marker}")


def _ray_start(*args: str, env: dict[str, str]) -> None:
    started = subprocess.run([RAY, "start", "--disable-usage-stats", *args], capture_output=True, text=True, env=env,
                             timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    # every node and the driver share one token (Ray's token authentication, as on a real cluster)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    from ray._private.services import get_node_ip_address

    address = f"{get_node_ip_address()}:{port}"  # where `ray start --head` listens
    try:
        _ray_start("--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false", env=env)
        for name in ("node_a", "node_b"):
            _ray_start(f"--address={address}", "--num-cpus=1", f"--resources={{\"{name}\": 1}}", env=env)
        yield address, env
    finally:
        for pid in _cluster_pids(port):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _cluster_pids(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _cluster_pids(port), "cluster processes outlived the test"
        current = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")  # `ray start --head` leaves this
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def _sweep(tmp_path: Path, address: str, env: dict[str, str]) -> subprocess.Popen:
    path = tmp_path / "multinode.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return subprocess.Popen([sys.executable, "-m", "runner", "sweep", str(path), "--address", address,
                             "--results", str(tmp_path / "results")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _nodes_with_rows(tmp_path: Path) -> int:
    from runner.leaderboard import load

    board = load(tmp_path / "results")
    return board["node_id"].nunique() if len(board) else 0


@pytest.mark.slow  # about a minute: three ray start nodes, a sweep over them and a node killed
def test_sweep_spreads_over_nodes_and_survives_losing_one(tmp_path: Path, cluster: tuple[str, dict]) -> None:
    address, env = cluster
    driver = _sweep(tmp_path, address, env)
    deadline = time.monotonic() + 300
    while _nodes_with_rows(tmp_path) < 2:
        assert driver.poll() is None, driver.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "trials did not finish on both worker nodes within 300 s"
        time.sleep(0.5)
    assert len(list((tmp_path / "results").glob("leaderboard/*/*.parquet"))) < SWEEP["num_samples"]
    port = int(address.rsplit(":", 1)[1])
    raylet, lost_node = _raylet_of(port, "node_b")
    os.kill(raylet, signal.SIGKILL)
    killed_at = pd.Timestamp.now(tz="UTC")
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-4000:]
    from runner.leaderboard import load

    board = load(tmp_path / "results")
    assert len(board) == SWEEP["num_samples"] and board["trial_id"].is_unique, board[["trial_id", "status"]]
    assert (board["status"] == "completed").all(), board[["status", "error"]]
    assert lost_node in set(board["node_id"]), "node_b ran no trial before it was killed"
    late = board[board["finished_at"] > killed_at + pd.Timedelta(seconds=5)]
    assert len(late) and (late["node_id"] != lost_node).all(), "trials after the kill must run on node_a"
    from ray.tune import ExperimentAnalysis

    state = ExperimentAnalysis(str(tmp_path / "results" / "tune" / board["sweep_id"][0])).trials
    retried = [t.trial_id for t in state if t.run_metadata.num_failures]
    assert retried and set(retried) <= set(board["trial_id"]), "the trial on the lost node was not retried"
