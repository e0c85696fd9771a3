"""SECURITY.md's claims, checked: local Ray starts no dashboard and refuses a caller without its token, even on
the node's network address; the cluster files hold no credentials. (Manifests that escape their folder:
tests/test_bad_inputs.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench._proctree import listening_addresses, tree

REPO = Path(__file__).resolve().parents[1]
CLUSTER_FILES = sorted(REPO.glob("cluster*.yaml"))
SECRET_KEY = re.compile(r"(secret|password|passwd|token|access_key|credential|api_key)", re.IGNORECASE)
SECRET_TEXT = [re.compile(r"AKIA[0-9A-Z]{16}"), re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
               re.compile(r"(?i)aws_secret_access_key\s*[=:]"), re.compile(r"(?i)RAY_AUTH_TOKEN\s*=\s*\S")]
DASHBOARD_PORT = 8265


def test_local_ray_has_no_dashboard_and_refuses_a_wrong_token(private_home: Path) -> None:
    """Ray's token lives in the session's private home (conftest), never the user's own ``~/.ray``."""
    import ray
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    from runner.sweep.run import init_ray

    ray.shutdown()  # a fresh local Ray, started the way a sweep starts it
    init_ray(None, print)
    try:
        listening = listening_addresses(tree(os.getpid()))
        owners = {address: _command(pid) for address, pid in listening.items()}
        assert not [a for a in listening if a.endswith(f":{DASHBOARD_PORT}")], owners
        # Ray keeps a minimal dashboard process (usage stats, --disable-frontend): it must serve nothing
        assert not [a for a, command in owners.items() if "dashboard" in command.split("\0")[1]], owners
        assert is_token_auth_enabled()
        token = Path.home() / ".ray" / "auth_token"
        assert token.is_relative_to(private_home) and token.stat().st_mode & 0o777 == 0o600
        address = ray.get_runtime_context().gcs_address  # the node's network address, not loopback
        probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r})"],
                               env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token" * 4},
                               capture_output=True, text=True, timeout=180)
        assert probe.returncode != 0
        assert "InvalidAuthToken: Authentication token is missing or incorrect" in probe.stderr
    finally:
        ray.shutdown()


def _command(pid: int) -> str:
    """The process's command line (NUL-separated), or '' if it ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text() + "\0"
    except OSError:
        return "\0"


def _keys_with_values(node: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _keys_with_values(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [item for index, value in enumerate(node) for item in _keys_with_values(value, f"{path}[{index}]")]
    return [(path, node)]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_holds_no_secrets(path: Path) -> None:
    """Credentials come from the provider's own mechanism (an IAM instance profile, ~/.aws, SSH agent)."""
    text = path.read_text()
    leaked = [(key, value) for key, value in _keys_with_values(yaml.safe_load(text))
              if SECRET_KEY.search(key.rsplit(".", 1)[-1]) and value not in (None, "")]
    assert not leaked, f"{path.name} holds what looks like a secret: {leaked}"
    assert not [p.pattern for p in SECRET_TEXT if p.search(text)], f"{path.name} holds a key-like string"


def test_the_secret_scan_finds_secrets(tmp_path: Path) -> None:
    """The scan itself can fail: a file with an AWS key pair and a token is caught."""
    planted = tmp_path / "cluster-leaky.yaml"
    planted.write_text("provider:\n  type: aws\n  aws_access_key_id: AKIAABCDEFGHIJKLMNOP\n"
                       "  aws_secret_access_key: abc\nsetup_commands: ['export RAY_AUTH_TOKEN=abc']\n")
    with pytest.raises(AssertionError, match="looks like a secret"):
        test_cluster_file_holds_no_secrets(planted)
