"""llmops.gpu_serving.vllm_container against the real Docker engine, through ansible-playbook.

The image is the stand-in vLLM server (tests/harness/standin-vllm, built by
tests/harness/build-standin-vllm.sh): it parses vLLM's command line for its version, replays
real vLLM startup logs and serves the OpenAI endpoints. STANDIN_SPEED shortens the replay's
real timing. Containers publish on 127.0.0.1 only, have unique names, and are removed after
each test.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import uuid

import pytest
from seed_deployment import SEED_ENGINE, SEED_HOST, SEED_OTHER_FLAGS
from vllm_it import (
    PREVIOUS_SUFFIX,
    REPO_ROOT,
    container_id,
    container_status,
    docker,
    free_port,
    http,
    run_module,
    warnings_of,
)

pytestmark = pytest.mark.docker

IMAGE = "llmops-test/vllm-openai"
SPEED = "120"


@pytest.fixture(scope="session", autouse=True)
def standin_images():
    subprocess.run([str(REPO_ROOT / "tests/harness/build-standin-vllm.sh")], check=True)


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "qwen3-30b-a3b"
    path.mkdir()
    (path / "config.json").write_text('{"architectures": ["Qwen3MoeForCausalLM"]}\n')
    return path


@pytest.fixture
def name():
    value = f"llmops-vllm-it-{uuid.uuid4().hex[:8]}"
    yield value
    for candidate in (value, value + PREVIOUS_SUFFIX):
        docker("rm", "-f", candidate, check=False)


@pytest.fixture
def seed(name, model_dir):
    """The seed deployment's options, on the stand-in and this machine's limits."""
    return {
        "name": name,
        "image": f"{IMAGE}:v0.8.5",
        "pull": "never",
        # No GPU and no nvidia runtime here; the role passes runtime nvidia and gpus all.
        "gpus": "",
        "model_host_path": str(model_dir),
        "model_container_path": "/qwen/qwen3-30b-a3b",
        "port": free_port(),
        "bind_address": "127.0.0.1",
        "cpuset_cpus": "0",
        # The seed's memlock=-1 needs CAP_SYS_RESOURCE, which this machine's dockerd lacks.
        "ulimits": {"memlock": 65536, "stack": 67108864},
        "ipc_mode": "host",
        "restart_policy": "always",
        "stop_timeout": 5,
        "env": {"STANDIN_SPEED": SPEED},
        "served_model_name": ["coder"],
        **SEED_ENGINE,
        **SEED_OTHER_FLAGS,
        **SEED_HOST,
        "ready_timeout": 60,
    }


def test_check_create_idempotent_change(tmp_path, seed, name):
    # Check mode on a fresh host: a change is reported, nothing is created.
    result, _ = run_module(tmp_path, seed, "--check", "--diff")
    assert result["changed"] is True
    assert container_id(name) is None
    assert result["diff"]["after"]["restart_policy"] == "always"

    result, _ = run_module(tmp_path, seed)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    first = result["container"]["id"]
    assert result["container"]["status"] == "running"
    # The seed's command line, flag for flag, for vLLM 0.8.5 (read from the image's label).
    assert result["image"]["vllm_version"] == "0.8.5"
    assert json.loads(docker("inspect", "-f", "{{json .Config.Cmd}}", name).stdout) == shlex.split(
        "--model /qwen/qwen3-30b-a3b --served-model-name coder --tensor-parallel-size 4 "
        "--dtype half --max-model-len 32768 --max-num-batched-tokens 4096 "
        "--gpu-memory-utilization 0.93 --block-size 32 --enable-chunked-prefill "
        "--swap-space 16 --tokenizer-pool-size 56 --disable-custom-all-reduce"
    )
    memory = result["memory"]
    assert memory["engine"] == "v0"
    assert memory["kv_cache_gib"] == 4.3
    assert memory["weights_gib"] == 14.25
    assert memory["gpu_blocks"] == 5867
    assert memory["cpu_blocks"] == 21845
    assert memory["kv_cache_tokens"] == 187744
    assert memory["max_concurrency"] == 5.73
    assert [rank["kv_cache_gib"] for rank in memory["ranks"]] == [4.3, 5.47]
    assert result["metrics"]["num_gpu_blocks"] == "5867"
    assert result["metrics_mismatches"] == []
    assert result["ready_seconds"] > 0
    status, body = http(
        seed["port"],
        "/v1/chat/completions",
        {"model": "coder", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"]

    result, _ = run_module(tmp_path, seed)
    assert result["changed"] is False
    assert result["container"]["id"] == first
    assert result["memory"]["kv_cache_gib"] == 4.3

    result, _ = run_module(tmp_path, seed, "--check")
    assert result["changed"] is False

    changed = dict(
        seed, max_num_batched_tokens=2048, env={"STANDIN_SPEED": SPEED, "HF_TOKEN": "hf_x"}
    )
    result, _ = run_module(tmp_path, changed, "--check", "--diff")
    assert result["changed"] is True
    assert result["changes"] == ["command", "env"]
    assert result["diff"]["after"]["env"]["HF_TOKEN"] == "********"
    assert container_id(name) == first

    result, _ = run_module(tmp_path, changed, "--diff")
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    assert result["container"]["id"] != first
    assert "2048" in result["diff"]["after"]["command"]
    assert container_id(name + PREVIOUS_SUFFIX) is None
    assert container_id(first) is None


def test_failed_change_is_classified_fast_and_rolled_back(tmp_path, seed, name):
    result, _ = run_module(tmp_path, seed)
    assert not result.get("failed"), result["msg"]
    good = result["container"]["id"]

    bad = dict(seed, env={"STANDIN_SPEED": SPEED, "STANDIN_SCENARIO": "kv_cache_too_small"})
    result, _ = run_module(tmp_path, bad)
    assert result["failed"] is True
    assert result["kind"] == "kv_cache_too_small"
    assert "larger than the available KV cache memory (28.57 GiB)" in result["proof"][0]
    # The fatal line ended the wait (the cause, not a wall-clock figure): the wait stopped on the
    # log or on the exit that followed it, never on the ready_timeout, and it saw the fatal line.
    assert result["reason"] in ("fatal_log", "exited")
    assert result["timings"]["fatal_seconds"] is not None
    assert result["rolled_back"] is True
    assert result["rollback"]["ready"] is True
    assert result["container"]["id"] == good
    assert container_id(name) == good
    assert container_status(name) == "running"
    assert container_id(name + PREVIOUS_SUFFIX) is None
    assert http(seed["port"], "/health")[0] == 200
    # The restored container keeps its restart policy.
    assert (
        docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name).stdout.strip()
        == "always"
    )


def test_smoke_request_gates_the_change(tmp_path, seed, name):
    smoked = dict(seed, smoke_test=True)
    result, _ = run_module(tmp_path, smoked)
    assert not result.get("failed"), result["msg"]
    assert result["smoke_test"]["passed"] is True
    assert result["smoke_test"]["status"] == 200
    assert result["smoke_test"]["reply"].startswith("stand-in vLLM 0.8.5")
    good = result["container"]["id"]

    # Ready, lists its model, answers /health, and fails every chat request: only a real
    # request finds out. The change is rolled back before the previous container is removed.
    broken = dict(smoked, env={"STANDIN_SPEED": SPEED, "STANDIN_CHAT_TEMPLATE": "missing"})
    result, _ = run_module(tmp_path, broken)
    assert result["failed"] is True
    assert result["kind"] == "smoke_test_failed"
    assert "default chat template is no longer allowed" in result["proof"][0]
    smoke = result["smoke_test"]
    assert (smoke["passed"], smoke["status"], smoke["reply"]) == (False, 400, None)
    assert "default chat template is no longer allowed" in smoke["error"]
    assert result["rolled_back"] is True
    assert result["rollback"]["ready"] is True
    assert container_id(name) == good
    assert container_status(name) == "running"
    # Before the restore the module waited for the failed server's GPU memory: it ran, so
    # docker top listed its processes; a host without nvidia-smi says why it could not tell.
    release = result["gpu_release"]
    assert release["container"] == name
    assert release["pids"]
    if shutil.which("nvidia-smi") is None:
        assert (release["released"], release["polls"]) == (None, 0)
        assert release["reason"] == "nvidia-smi was not found on the host"


@pytest.mark.parametrize(
    "case",
    [
        ("cuda_oom", {}, "cuda_oom"),
        ("nccl", {}, "nccl"),
        ("gpu_memory_busy", {}, "gpu_memory_busy"),
        ("crash", {}, "engine_failed"),
        (
            "v0_success",
            {"model_container_path": "/qwen/missing", "model_host_path": None},
            "model_not_found",
        ),
        ("v0_success", {"extra_args": ["--bogus-flag", "1"]}, "bad_argument"),
    ],
    ids=["cuda_oom", "nccl", "gpu_memory_busy", "crash", "model_not_found", "bad_argument"],
)
def test_fresh_failure_is_classified_and_removed(tmp_path, seed, name, case):
    scenario, extra, kind = case
    params = dict(seed, env={"STANDIN_SPEED": SPEED, "STANDIN_SCENARIO": scenario}, **extra)
    result, _ = run_module(tmp_path, params)
    assert result["failed"] is True
    assert result["kind"] == kind, result["msg"]
    assert result["reason"] == "exited"
    if kind != "engine_failed":
        assert result["proof"]
    assert "no previous one to restore" in result["msg"]
    assert container_id(name) is None


def test_ready_timeout_and_rollback_off(tmp_path, seed, name):
    params = dict(
        seed,
        env={"STANDIN_SPEED": SPEED, "STANDIN_SCENARIO": "slow"},
        ready_timeout=3,
        rollback=False,
    )
    result, _ = run_module(tmp_path, params)
    assert result["failed"] is True
    assert result["kind"] == "ready_timeout"
    # The wait ended on its own bound, not on a log line or an exit.
    assert result["reason"] == "timeout"
    assert result["timings"]["fatal_seconds"] is None
    # rollback off: the failed container is kept, stopped, for inspection.
    assert container_status(name) == "exited"


def test_stopped_and_absent(tmp_path, seed, name):
    result, _ = run_module(tmp_path, seed)
    assert not result.get("failed"), result["msg"]
    result, _ = run_module(tmp_path, dict(seed, state="stopped"))
    assert result["changed"] is True
    assert container_status(name) == "exited"
    result, _ = run_module(tmp_path, dict(seed, state="stopped"))
    assert result["changed"] is False
    result, _ = run_module(tmp_path, {"name": name, "state": "absent"}, "--check")
    assert result["changed"] is True
    assert container_id(name) is not None
    result, _ = run_module(tmp_path, {"name": name, "state": "absent"})
    assert result["changed"] is True
    assert container_id(name) is None
    result, _ = run_module(tmp_path, {"name": name, "state": "absent"})
    assert result["changed"] is False


def test_cuda_floor_refusal(tmp_path, seed, name):
    result, _ = run_module(tmp_path, dict(seed, image=f"{IMAGE}:v0.9.0"))
    assert result["failed"] is True
    assert result["kind"] == "cuda_driver"
    assert "needs CUDA 12.8" in result["msg"]
    assert "550.144.03 supports CUDA 12.4" in result["msg"]
    # The forward-compatibility exception of the 550 branch is for data-centre brands only.
    assert "set host_gpu_brand" in result["msg"]
    result, _ = run_module(tmp_path, dict(seed, image=f"{IMAGE}:v0.9.0", host_gpu_brand="geforce"))
    assert result["failed"] is True
    assert "supports only CUDA 12.4; geforce is not among the brands" in result["msg"]
    assert container_id(name) is None


def test_removed_flags_on_a_newer_image(tmp_path, seed, name):
    newer = dict(
        seed, image=f"{IMAGE}:v0.10.1.1", host_cuda_version="12.8", host_driver_version="570.124.06"
    )
    # What passing the flag blind does: the image's own parser refuses it and exits 2.
    blind = docker("run", "--rm", newer["image"], "/m", "--tokenizer-pool-size", "56", check=False)
    assert blind.returncode == 2
    assert "vllm: error: unrecognized arguments: --tokenizer-pool-size 56" in blind.stderr

    result, _ = run_module(tmp_path, dict(newer, on_unsupported_flag="fail"))
    assert result["failed"] is True
    assert "--tokenizer-pool-size was removed in vLLM 0.10.0" in result["msg"]
    assert container_id(name) is None

    result, _ = run_module(tmp_path, newer)
    assert not result.get("failed"), result["msg"]
    assert result["image"]["entrypoint_style"] == "serve"
    assert result["image"]["vllm_version_source"] == "image tag"
    assert [item["flag"] for item in result["dropped_flags"]] == ["--tokenizer-pool-size"]
    assert any("dropped --tokenizer-pool-size" in text for text in warnings_of(result))
    assert result["args"][0] == "/qwen/qwen3-30b-a3b"
    assert "--swap-space" in result["args"]
    # The V1 log of 0.10.1.1: 5.01 GiB of KV cache, 93,872 tokens.
    assert result["memory"]["engine"] == "v1"
    assert result["memory"]["kv_cache_gib"] == 5.01
    assert result["memory"]["kv_cache_tokens"] == 93872


def test_budget_floor_fail_and_warn(tmp_path, seed, name):
    strict = dict(seed, expect={"min_kv_cache_gib": 5.0, "min_max_concurrency": 5.0})
    result, _ = run_module(tmp_path, strict)
    assert result["failed"] is True
    assert result["kind"] == "budget_violation"
    assert "kv_cache_gib 4.3 is below the floor min_kv_cache_gib=5.0" in result["msg"]
    assert any("KV Cache is 4.30GiB" in line for line in result["proof"])
    assert container_id(name) is None

    result, _ = run_module(tmp_path, dict(strict, on_budget_violation="warn"))
    assert not result.get("failed"), result["msg"]
    assert [item["expect"] for item in result["budget"]["violations"]] == ["min_kv_cache_gib"]
    assert any("below the floor" in text for text in warnings_of(result))
    assert container_status(name) == "running"


def test_api_key_protects_the_endpoint(tmp_path, seed, name):
    result, _ = run_module(tmp_path, dict(seed, api_key="s3cret-key"))
    assert not result.get("failed"), result["msg"]
    assert "s3cret-key" not in json.dumps(result)
    assert result["args"][-2:] == ["--api-key", "********"]
    chat = {"model": "coder", "messages": [{"role": "user", "content": "hello"}]}
    assert http(seed["port"], "/v1/chat/completions", chat)[0] == 401
    assert http(seed["port"], "/v1/chat/completions", chat, key="s3cret-key")[0] == 200


def test_replay_follows_the_flags_and_prompts_are_not_failures(tmp_path, seed, name):
    # A smaller share of GPU memory: the replayed log gives what vLLM's arithmetic gives
    # (21.66 GiB x 0.03 less KV cache per rank), and /metrics agrees with the log.
    smaller = dict(seed, gpu_memory_utilization=0.9)
    result, _ = run_module(tmp_path, smaller)
    assert not result.get("failed"), result["msg"]
    memory = result["memory"]
    assert memory["kv_cache_gib"] == 3.65
    assert memory["gpu_blocks"] < 5867
    assert result["metrics"]["num_gpu_blocks"] == str(memory["gpu_blocks"])
    assert result["metrics_mismatches"] == []

    # 0.8.5 logs every prompt at INFO: a user who pastes an NCCL error into a chat must not
    # make the next run report the healthy server as failed.
    status, _ = http(
        seed["port"],
        "/v1/chat/completions",
        {
            "model": "coder",
            "messages": [
                {
                    "role": "user",
                    "content": "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
                    "unhandled system error. torch.OutOfMemoryError: CUDA out of memory.",
                }
            ],
        },
    )
    assert status == 200
    assert "NCCL error" in docker("logs", name).stdout
    result, _ = run_module(tmp_path, smaller)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False
