"""playbooks/monitoring.yml with dcgm-exporter, against this machine's Docker (local connection).

What is real: ansible-playbook, the play, community.docker against a real dockerd, the
container's options, the port it publishes on 127.0.0.1, the wait for its /metrics page, the
file_sd list. What is not: the exporter is a stand-in (tests/harness/standin-dcgm-exporter) that
serves a real dcgm-exporter page from NVIDIA/dcgm-exporter#250, and there is no GPU to request:
the GPU request (device_requests) and the nvidia runtime are switched off with their variables,
because this dockerd has no NVIDIA runtime.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
import uuid

import pytest
from vllm_it import REPO_ROOT, ansible_playbook, docker, free_port

pytestmark = pytest.mark.docker

STANDIN = REPO_ROOT / "tests/harness/standin-dcgm-exporter"
PAGE = REPO_ROOT / "tests/fixtures/dcgm_exporter/metrics_4x-v100_dcgm-exporter-250.txt"
IMAGE = "llmops-test/dcgm-exporter:standin"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    context = tmp_path_factory.mktemp("dcgm-context")
    for source in (STANDIN / "Dockerfile", STANDIN / "standin_dcgm_exporter.py"):
        shutil.copy(source, context / source.name)
    shutil.copy(PAGE, context / "metrics.txt")
    docker("build", "-q", "-t", IMAGE, str(context))
    return IMAGE


@pytest.fixture
def exporter(image, tmp_path):
    name = f"llmops-dcgm-{uuid.uuid4().hex[:6]}"
    port = free_port()
    inventory = tmp_path / "hosts.yml"
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # The play becomes root on a real host; here the test already runs as root, without sudo.
        "ansible_become": False,
        "vllm_server_api_key": "set",
        "vllm_server_monitoring_dcgm_exporter": True,
        "vllm_server_monitoring_dcgm_exporter_image": image,
        "vllm_server_monitoring_dcgm_exporter_name": name,
        "vllm_server_monitoring_dcgm_exporter_port": port,
        "vllm_server_monitoring_dcgm_exporter_bind_address": "127.0.0.1",
        "vllm_server_monitoring_dcgm_exporter_runtime": "",
        "vllm_server_monitoring_dcgm_exporter_gpus": False,
        "vllm_server_monitoring_dcgm_exporter_timeout": 60,
    }
    inventory.write_text(
        json.dumps(
            {"gpu_servers": {"hosts": {"gpu-a": {"ansible_host": "127.0.0.1"}}, "vars": host_vars}}
        )
    )
    try:
        yield {
            "name": name,
            "port": port,
            "inventory": inventory,
            "sd": tmp_path / "sd" / "vllm.json",
        }
    finally:
        docker("rm", "-f", name, check=False)


def play(exporter, *extra: str) -> subprocess.CompletedProcess:
    return ansible_playbook(
        "playbooks/monitoring.yml",
        exporter["inventory"],
        "-e",
        f"vllm_server_monitoring_file_sd_path={exporter['sd']}",
        *extra,
        timeout=600,
    )


def recap_changed(stdout: str) -> int:
    line = next(
        line for line in stdout.splitlines() if line.startswith("gpu-a ") and "changed=" in line
    )
    return int(line.split("changed=")[1].split()[0])


def test_dcgm_exporter_runs_serves_and_is_listed(exporter):
    # Check mode on a host without the exporter: nothing is started.
    checked = play(exporter, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert docker("inspect", exporter["name"], check=False).returncode != 0

    done = play(exporter)
    assert done.returncode == 0, done.stdout + done.stderr

    inspect = json.loads(docker("inspect", exporter["name"]).stdout)[0]
    assert inspect["State"]["Running"]
    # Docker stores the capability as given (SYS_ADMIN) or, from 20.10's API, prefixed.
    assert inspect["HostConfig"]["CapAdd"] in (["SYS_ADMIN"], ["CAP_SYS_ADMIN"])
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert "DCGM_EXPORTER_LISTEN=:9400" in inspect["Config"]["Env"]
    bound = inspect["HostConfig"]["PortBindings"]["9400/tcp"][0]
    assert (bound["HostIp"], bound["HostPort"]) == ("127.0.0.1", str(exporter["port"]))

    # The page the play waited for is the exporter's.
    with urllib.request.urlopen(
        f"http://127.0.0.1:{exporter['port']}/metrics", timeout=10
    ) as answer:
        assert "DCGM_FI_DEV_GPU_UTIL" in answer.read().decode()

    groups = json.loads(exporter["sd"].read_text())
    assert [(group["labels"]["job"], group["targets"]) for group in groups] == [
        ("vllm", ["127.0.0.1:8000"]),
        ("dcgm", [f"127.0.0.1:{exporter['port']}"]),
    ]

    # Converged: a second run changes nothing, and check mode agrees.
    again = play(exporter)
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap_changed(again.stdout) == 0, again.stdout
    checked = play(exporter, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert recap_changed(checked.stdout) == 0, checked.stdout


def test_an_exporter_that_never_serves_fails_the_wait(exporter):
    # An image without the exporter: its container exits at once, the published port never
    # answers, and the wait gives up after its retries instead of passing or hanging.
    result = play(
        exporter,
        "-e", "vllm_server_monitoring_dcgm_exporter_image=llmops-test/debian:12",
        "-e", "vllm_server_monitoring_dcgm_exporter_timeout=10",
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("fatal: [gpu-a]")]
    assert failed, result.stdout
    assert "Wait until dcgm-exporter serves GPU metrics" in result.stdout.split(failed[0])[0]
    assert not exporter["sd"].exists()
