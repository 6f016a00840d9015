"""A vLLM engine over two "hosts": the real CPU engine, tensor parallel 2 across two containers.

llmops.gpu_serving.vllm_container runs one cluster member per container, as the role runs one
per host: the head (node 0, serves the API) and a headless follower (node 1), both the real
llmops-test/vllm-cpu:0.32.0 (`vllm serve ... --nnodes 2 --distributed-executor-backend mp`) on
a Docker bridge network this test creates, Gloo over its eth0 (GLOO_SOCKET_IFNAME). Every line,
failure and answer is the engine's own.

The pair starts twice, no more (each start costs ~45-80 s on two busy cores):

1. a first deploy whose follower is killed (`docker kill`) right after it joined: the follower is
   classified ``killed`` from its exit (137, no error line), the head ``cluster_peer_lost`` from
   Gloo's ``Connection closed by peer``, and neither leaves a container behind;
2. the deploy again, undisturbed: the follower joined (its ``rank 1 in world size 2 is assigned
   as`` line), the head serves with the world size of the layout, a real chat completion; then
   the same options change nothing, and check mode of a change restarts nothing.

Two traps of one machine (tests/fixtures/vllm_logs/SOURCES.md, "Two nodes"): both containers
with --ipc host hung the join, so they get --shm-size; and TORCHDYNAMO_DISABLE=1, since TP 2
compiles the vocab-parallel embedding at the first request and the image has no Python.h.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import pytest
from vllm_it import (
    PREVIOUS_SUFFIX,
    REPO_ROOT,
    container_id,
    docker,
    free_port,
    http,
    run_module,
)

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import plan_memory

pytestmark = pytest.mark.docker

VERSION = "0.32.0"
IMAGE = f"llmops-test/vllm-cpu:{VERSION}"
MODELS = REPO_ROOT / "tests/output/models/llmops-test"
KV_SPACE_GIB = 1
MAX_MODEL_LEN = 2048
JOINED_LINE = "rank 1 in world size 2 is assigned as"


@pytest.fixture(scope="module", autouse=True)
def real_engine():
    subprocess.run([str(REPO_ROOT / "tests/harness/build-vllm-cpu.sh"), VERSION], check=True)
    subprocess.run([str(REPO_ROOT / "tests/harness/build-tiny-model.sh"), VERSION], check=True)


@pytest.fixture
def pair():
    """Names of a head, a follower and their network; all removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "head": f"llmops-mn-head-{suffix}",
        "follower": f"llmops-mn-follower-{suffix}",
        "network": f"llmops-mn-net-{suffix}",
    }
    docker("network", "create", names["network"])
    yield names
    for role in ("head", "follower"):
        for candidate in (names[role], names[role] + PREVIOUS_SUFFIX):
            docker("rm", "-f", candidate, check=False)
    docker("network", "rm", names["network"], check=False)


def member_options(names: dict, role: str, port: int) -> dict:
    head = role == "head"
    return {
        "name": names[role],
        "image": IMAGE,
        "pull": "never",
        "gpus": "",
        "cuda_check": False,
        "model_host_path": str(MODELS / "tiny-qwen3-moe"),
        "model_container_path": "/home/llm/model/llmops-test/tiny",
        "model_read_only": True,
        "network_mode": names["network"],
        # Only the head serves; a follower publishes nothing.
        "port": port if head else 0,
        "bind_address": "127.0.0.1",
        "shm_size": "1g",
        "restart_policy": "always",
        "stop_timeout": 10,
        "env": {"VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB), "TORCHDYNAMO_DISABLE": "1"},
        "served_model_name": ["tiny"],
        "max_model_len": MAX_MODEL_LEN,
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
        "extra_args": ["--enforce-eager"],
        # Generous: two engines on two busy cores took 80 s idle and over 5 min under a load of 15.
        "ready_timeout": 600,
        "smoke_test": head,
        "cluster": {
            "role": role,
            "nnodes": 2,
            "node_rank": 0 if head else 1,
            # Docker's DNS on a user network resolves the head by its container name.
            "master_addr": names["head"],
            "master_port": 29500,
            "socket_ifname": "eth0",
            "join_settle": 5,
        },
    }


def run_pair(tmp_path, options: dict, *flags: str, during=None) -> dict:
    """Both members at once, as one Ansible task runs on every host of the cluster."""
    results: dict[str, dict] = {}

    def one(role: str) -> None:
        results[role], _ = run_module(tmp_path, options[role], *flags, timeout=900)

    threads = [threading.Thread(target=one, args=(role,)) for role in ("follower", "head")]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join()
    return results


def kill_after_join(name: str, deadline_seconds: float = 700) -> dict:
    """Kill the follower as soon as its log proves the join; return what was seen."""
    seen = {"killed": False}
    end = time.monotonic() + deadline_seconds
    while time.monotonic() < end:
        logs = docker("logs", name, check=False)
        if JOINED_LINE in logs.stdout + logs.stderr:
            docker("kill", name, check=False)
            seen["killed"] = True
            break
        time.sleep(0.2)
    return seen


def test_two_node_engine_lifecycle(tmp_path, pair):
    port = free_port()
    options = {role: member_options(pair, role, port) for role in ("head", "follower")}
    config = json.loads((MODELS / "tiny-qwen3-moe/config.json").read_text())
    plan = plan_memory(
        config,
        tensor_parallel_size=2,
        dtype="bfloat16",
        max_model_len=MAX_MODEL_LEN,
        block_size=128,
        kv_cache_gib=KV_SPACE_GIB,
    )
    # Each of the two ranks holds one of the model's two KV heads: half the bytes per token.
    assert plan["kv_bytes_per_token"] == 512
    options["head"]["plan"] = plan

    # Check mode on fresh hosts: both would change, nothing is created.
    results = run_pair(tmp_path, options, "--check")
    for role in ("head", "follower"):
        assert results[role]["changed"] is True, results[role]
        assert container_id(pair[role]) is None
    follower_args = results["follower"]["args"]
    assert follower_args[-1] == "--headless"
    assert follower_args[follower_args.index("--node-rank") + 1] == "1"
    assert results["head"]["cluster"]["backend"] == "mp"
    assert results["head"]["cluster"]["layout"]["world_size"] == 2

    # 1. A first deploy whose follower dies while the engine starts.
    killer: dict = {}
    results = run_pair(
        tmp_path, options, during=lambda: killer.update(kill_after_join(pair["follower"]))
    )
    assert killer["killed"] is True, "the follower never logged its join"
    follower, head = results["follower"], results["head"]
    assert follower["failed"] is True
    assert follower["kind"] == "killed", follower["msg"]
    assert follower["exit_code"] == 137
    assert "128 + SIGKILL" in follower["proof"][0]
    assert head["failed"] is True
    assert head["kind"] == "cluster_peer_lost", head["msg"]
    assert any("Connection closed by peer" in line for line in head["proof"]), head["proof"]
    # A first deploy has nothing to restore: nothing is left running on either node.
    for role in ("head", "follower"):
        assert results[role]["rolled_back"] is False
        assert container_id(pair[role]) is None
        assert container_id(pair[role] + PREVIOUS_SUFFIX) is None

    # 2. The same deploy, undisturbed: the pair joins and serves.
    results = run_pair(tmp_path, options)
    follower, head = results["follower"], results["head"]
    assert not follower.get("failed"), follower["msg"]
    assert not head.get("failed"), head["msg"]
    assert follower["cluster"]["join"]["joined"] is True
    assert JOINED_LINE in follower["cluster"]["join"]["proof"][0]
    assert follower["cluster"]["memory"]["ranks"] == [1]
    assert head["cluster"]["memory"]["ranks"] == [0]
    memory = head["memory"]
    assert memory["kv_cache_tokens"] == KV_SPACE_GIB * 2**30 // 512
    assert head["plan_comparison"]["kv_cache_tokens"]["error_pct"] == 0.0
    assert head["smoke_test"]["passed"] is True
    status, body = http(
        port,
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4},
        timeout=90,
    )
    assert status == 200, body
    assert json.loads(body)["system_fingerprint"].startswith(f"vllm-{VERSION}-tp2")
    ids = {role: results[role]["container"]["id"] for role in ("head", "follower")}

    # Idempotent: the same options change nothing; the follower is judged by its log again.
    results = run_pair(tmp_path, options)
    for role in ("head", "follower"):
        assert not results[role].get("failed"), results[role]["msg"]
        assert results[role]["changed"] is False
        assert results[role]["container"]["id"] == ids[role]
    assert results["follower"]["cluster"]["join"]["joined"] is True

    # Check mode of a change: both members would be recreated, neither is touched.
    changed = {role: dict(options[role], max_num_batched_tokens=1024) for role in options}
    results = run_pair(tmp_path, changed, "--check", "--diff")
    for role in ("head", "follower"):
        assert results[role]["changed"] is True
        assert results[role]["changes"] == ["command"]
        assert container_id(pair[role]) == ids[role]
