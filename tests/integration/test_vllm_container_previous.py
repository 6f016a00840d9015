"""llmops.gpu_serving.vllm_container's two-step change, on the stand-in vLLM server.

A cluster's members are committed or rolled back together, so the module can leave the previous
container parked (previous=keep) and finish the change later: state committed removes it, state
rolled_back puts it back and waits until it serves. The stand-in (tests/harness/standin-vllm)
replays real vLLM startup logs at STANDIN_SPEED, so each start takes seconds; the real two-node
engine's use of the same states is tested in test_vllm_cluster_role.py.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from vllm_it import (
    PREVIOUS_SUFFIX,
    REPO_ROOT,
    container_id,
    container_status,
    docker,
    free_port,
    http,
    run_module,
)

pytestmark = pytest.mark.docker

SPEED = "120"


@pytest.fixture(scope="module", autouse=True)
def standin_images():
    subprocess.run([str(REPO_ROOT / "tests/harness/build-standin-vllm.sh")], check=True)


@pytest.fixture
def name():
    value = f"llmops-vllm-prev-{uuid.uuid4().hex[:8]}"
    yield value
    for candidate in (value, value + PREVIOUS_SUFFIX):
        docker("rm", "-f", candidate, check=False)


@pytest.fixture
def options(name, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["Qwen3MoeForCausalLM"]}\n')
    return {
        "name": name,
        "image": "llmops-test/vllm-openai:v0.8.5",
        "pull": "never",
        "gpus": "",
        "model_host_path": str(model),
        "model_container_path": "/qwen/qwen3-30b-a3b",
        "port": free_port(),
        "bind_address": "127.0.0.1",
        "restart_policy": "always",
        "stop_timeout": 5,
        "env": {"STANDIN_SPEED": SPEED},
        "served_model_name": ["coder"],
        "tensor_parallel_size": 4,
        "dtype": "half",
        "max_model_len": 32768,
        "host_cuda_version": "12.4",
        "host_driver_version": "550.144.03",
        "ready_timeout": 60,
        "previous": "keep",
    }


def state(name: str, which: str) -> dict:
    return {"name": name, "state": which, "restart_policy": "always", "ready_timeout": 60}


def test_previous_is_kept_then_committed_or_restored(tmp_path, options, name):
    result, _ = run_module(tmp_path, options)
    assert not result.get("failed"), result["msg"]
    first = result["container"]["id"]
    assert "previous_kept" not in result

    # A verified change keeps the previous container parked, stopped.
    changed = dict(options, max_num_batched_tokens=2048)
    result, _ = run_module(tmp_path, changed)
    assert not result.get("failed"), result["msg"]
    assert result["previous_kept"] == first
    assert container_id(name + PREVIOUS_SUFFIX) == first
    assert container_status(name + PREVIOUS_SUFFIX) == "exited"
    second = result["container"]["id"]

    # Committed: the parked container goes, the new one stays; again: nothing to do.
    result, _ = run_module(tmp_path, state(name, "committed"), "--check")
    assert result["changed"] is True
    assert container_id(name + PREVIOUS_SUFFIX) == first
    result, _ = run_module(tmp_path, state(name, "committed"))
    assert result["changed"] is True
    assert container_id(name + PREVIOUS_SUFFIX) is None
    assert container_id(name) == second
    result, _ = run_module(tmp_path, state(name, "committed"))
    assert result["changed"] is False

    # A failed change with previous=keep leaves the previous container parked, not restored.
    bad = dict(options, env={"STANDIN_SPEED": SPEED, "STANDIN_SCENARIO": "kv_cache_too_small"})
    result, _ = run_module(tmp_path, bad)
    assert result["failed"] is True
    assert result["kind"] == "kv_cache_too_small"
    assert result["rolled_back"] is False
    assert result["previous_kept"] == second
    assert container_id(name) is None
    assert container_id(name + PREVIOUS_SUFFIX) == second

    # Rolled back: the parked container serves again under its own name and restart policy.
    result, _ = run_module(tmp_path, state(name, "rolled_back"))
    assert not result.get("failed"), result["msg"]
    assert result["rolled_back"] is True
    assert result["container"]["id"] == second
    assert container_status(name) == "running"
    assert container_id(name + PREVIOUS_SUFFIX) is None
    assert http(options["port"], "/health")[0] == 200
    assert (
        docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name).stdout.strip()
        == "always"
    )


def test_rolled_back_first_deploy_leaves_nothing(tmp_path, options, name):
    result, _ = run_module(tmp_path, options)
    assert not result.get("failed"), result["msg"]
    # No parked container: the first deploy is undone.
    result, _ = run_module(tmp_path, state(name, "rolled_back"), "--check")
    assert result["changed"] is True
    assert container_id(name) is not None
    result, _ = run_module(tmp_path, state(name, "rolled_back"))
    assert result["changed"] is True
    assert result["rolled_back"] is False
    assert container_id(name) is None
    result, _ = run_module(tmp_path, state(name, "rolled_back"))
    assert result["changed"] is False
