"""Bad input stops site.yml in its first play, with a message naming the variable and the
accepted values, before any role touches the host."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def target():
    name = f"llmops-validate-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "llmops-test/debian:12", "sleep", "600"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def run_site(target: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "gpu_servers:\n  hosts:\n    node:\n"
        f"      ansible_connection: community.docker.docker\n      ansible_host: {target}\n"
    )
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_NOCOLOR="true",
    )
    return subprocess.run(
        ["ansible-playbook", "site.yml", "-i", str(inventory), *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "vllm_server_dtype",
            "bogus",
            "vllm_server_dtype must be one of: auto, half, float16, bfloat16, float, float32",
        ),
        ("nvidia_driver_reboot", "sometimes", "nvidia_driver_reboot must be one of: auto, never"),
        ("docker_engine_source", "snap", "docker_engine_source must be one of: docker_ce, distro"),
        ("model_sync_verify", "maybe", "model_sync_verify must be one of: fast, full"),
    ],
)
def test_bad_value_stops_before_any_role_runs(target, tmp_path, variable, value, expected):
    result = run_site(target, tmp_path, "-e", f"{variable}={value}")
    assert result.returncode != 0, result.stdout
    assert expected in result.stdout, result.stdout
    # The validation play is the only play that ran: no role's tasks started.
    plays = [line for line in result.stdout.splitlines() if line.startswith("PLAY [")]
    assert len(plays) == 1, plays
    assert "Validate the variables of every role" in plays[0]


def test_valid_input_passes_validation(target, tmp_path):
    result = run_site(target, tmp_path, "--tags", "never")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validate the variables of each role" in result.stdout
