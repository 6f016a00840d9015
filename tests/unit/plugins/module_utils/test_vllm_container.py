"""Desired-vs-actual container comparison, validation, budget and /metrics cross-checks.

The actual side is real ``docker inspect`` output (tests/fixtures/docker_inspect, see its
SOURCES.md): the stand-in image run with the seed's flags by this module on Docker 20.10.
"""

import copy
import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    MANAGED_LABEL,
    actual_spec,
    check_budget,
    check_chat_answer,
    check_tensor_parallel_size,
    compare_plan,
    compare_specs,
    desired_spec,
    display_spec,
    exposure_warning,
    image_env,
    models_listed,
    parse_cache_config_info,
    parse_gpus,
    parse_size,
    parse_ulimits,
    probe_address,
    reconcile_metrics,
    smoke_request,
    validate_options,
    visible_gpu_count,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    parse_memory_report,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
CONTAINER = json.loads(
    (FIXTURES / "docker_inspect" / "container_standin_seed_flags.json").read_text()
)
IMAGE = json.loads((FIXTURES / "docker_inspect" / "image_standin_v0.8.5.json").read_text())
METRICS = (FIXTURES / "docker_inspect" / "metrics_standin_v0.8.5.txt").read_text()
SEED_LOG = (FIXTURES / "vllm_logs" / "v0_0.8.5_tp4_seed_success.log").read_text()

# The options that created the captured container.
PARAMS = {
    "name": "vt-coder",
    "state": "started",
    "image": "llmops-test/vllm-openai:v0.8.5",
    "gpus": "",
    "model_host_path": "/tmp/m1",
    "model_container_path": "/qwen/qwen3-30b-a3b",
    "model_read_only": False,
    "port": 18124,
    "container_port": 8000,
    "bind_address": "127.0.0.1",
    "cpuset_cpus": "0-1",
    "ulimits": {"memlock": 8388608, "stack": 67108864},
    "ipc_mode": "host",
    "shm_size": None,
    "restart_policy": "always",
    "runtime": None,
    "env": {"STANDIN_SPEED": "20"},
    "labels": None,
}


def seed_args() -> list[str]:
    return list(CONTAINER["Config"]["Cmd"])


def desired(**changes):
    params = dict(PARAMS, **changes)
    return desired_spec(params, seed_args(), IMAGE["Id"])


def test_captured_container_matches_the_options_that_made_it():
    match, diff = compare_specs(desired(), actual_spec(CONTAINER, IMAGE), image_env(IMAGE))
    assert match, diff
    assert diff == {"before": {}, "after": {}, "changed": []}


def test_engine_filled_fields_are_not_differences():
    actual = actual_spec(CONTAINER, IMAGE)
    # The engine chose runc and a 64 MiB /dev/shm; the image set NVIDIA_* and PYTHONPATH.
    assert actual["runtime"] == "runc"
    assert actual["shm_size"] == 67108864
    assert "NVIDIA_REQUIRE_CUDA" not in actual["env"]
    assert actual["env"] == {"STANDIN_SPEED": "20"}
    assert actual["labels"] == {MANAGED_LABEL: "1"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"env": {"STANDIN_SPEED": "10"}}, "env"),
        ({"port": 18125}, "ports"),
        ({"bind_address": "0.0.0.0"}, "ports"),
        ({"cpuset_cpus": "0"}, "cpuset_cpus"),
        ({"ulimits": {"memlock": 8388608}}, "ulimits"),
        ({"ipc_mode": "private"}, "ipc_mode"),
        ({"shm_size": "16g"}, "shm_size"),
        ({"restart_policy": "unless-stopped"}, "restart_policy"),
        ({"runtime": "nvidia"}, "runtime"),
        ({"gpus": "all"}, "gpus"),
        ({"model_read_only": True}, "mounts"),
        ({"labels": {"team": "llm"}}, "labels"),
    ],
)
def test_each_difference_is_named(change, field):
    match, diff = compare_specs(desired(**change), actual_spec(CONTAINER, IMAGE), image_env(IMAGE))
    assert not match
    assert diff["changed"] == [field]
    assert field in diff["before"]
    assert field in diff["after"]


def test_argument_and_image_changes():
    want = desired()
    want["command"] = [*seed_args()[:-1]]
    want["image_id"] = "sha256:" + "0" * 64
    match, diff = compare_specs(want, actual_spec(CONTAINER, IMAGE), image_env(IMAGE))
    assert not match
    assert diff["changed"] == ["image_id", "command"]


def test_env_equal_to_the_image_value_is_not_a_difference():
    want = desired(env={"STANDIN_SPEED": "20", "PYTHONPATH": "/opt/standin"})
    assert compare_specs(want, actual_spec(CONTAINER, IMAGE), image_env(IMAGE))[0]


def test_image_not_pulled_yet_is_a_difference():
    want = desired_spec(PARAMS, seed_args(), None)
    match, diff = compare_specs(want, actual_spec(CONTAINER, IMAGE), image_env(IMAGE))
    assert not match
    assert "not pulled yet" in diff["after"]["image_id"]


def test_gpus_from_docker_inspect_of_a_gpu_container():
    # HostConfig.DeviceRequests of `docker run --gpus all`, as a vLLM deployment's checker
    # asserts it (index file 66254748885): Driver "", Count -1, Capabilities [["gpu"]].
    container = copy.deepcopy(CONTAINER)
    container["HostConfig"]["DeviceRequests"] = [
        {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}
    ]
    container["HostConfig"]["Runtime"] = "nvidia"
    actual = actual_spec(container, IMAGE)
    assert actual["gpus"] == {"count": -1}
    assert compare_specs(desired(gpus="all", runtime="nvidia"), actual, image_env(IMAGE))[0]
    container["HostConfig"]["DeviceRequests"][0].update(Count=0, DeviceIDs=["0", "1"])
    assert actual_spec(container, IMAGE)["gpus"] == {"device_ids": ["0", "1"]}


def test_secrets_are_masked_in_the_diff():
    want = desired(env={"STANDIN_SPEED": "20", "HF_TOKEN": "hf_abc"})
    want["command"] = [*seed_args(), "--api-key", "s3cret"]
    _, diff = compare_specs(want, actual_spec(CONTAINER, IMAGE), image_env(IMAGE))
    text = json.dumps(diff)
    assert "s3cret" not in text
    assert "hf_abc" not in text
    assert "********" in text
    assert "s3cret" not in json.dumps(display_spec(want))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", {"count": -1}),
        ("count=all", {"count": -1}),
        ("2", {"count": 2}),
        ("device=0,1", {"device_ids": ["0", "1"]}),
        ('"device=0,2"', {"device_ids": ["0", "2"]}),
        ("GPU-3a1b", {"device_ids": ["GPU-3a1b"]}),
        ("", None),
        (None, None),
    ],
)
def test_parse_gpus(value, expected):
    assert parse_gpus(value) == expected


@pytest.mark.parametrize(
    ("gpus", "host", "visible"),
    [
        ("all", 4, 4),
        ("all", None, None),
        ("2", 4, 2),
        ("8", 4, 4),
        ("device=0,1", None, 2),
        ("", 4, 0),
    ],
)
def test_visible_gpu_count(gpus, host, visible):
    assert visible_gpu_count(parse_gpus(gpus), host) == visible


def test_tensor_parallel_size_against_visible_gpus():
    assert check_tensor_parallel_size(4, 4) is None
    assert check_tensor_parallel_size(4, None) is None
    assert "needs 4 GPUs" in check_tensor_parallel_size(4, 2)


def test_sizes_and_ulimits():
    assert parse_size("16g") == 16 * 2**30
    assert parse_size("512m") == 512 * 2**20
    assert parse_size("64MB") == 64 * 2**20
    assert parse_size(1024) == 1024
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    assert parse_ulimits({"memlock": -1, "stack": 67108864, "nofile": "1024:4096"}) == {
        "memlock": (-1, -1),
        "stack": (67108864, 67108864),
        "nofile": (1024, 4096),
    }
    with pytest.raises(ValueError, match="unknown limit 'memlok'"):
        parse_ulimits({"memlok": -1})
    with pytest.raises(ValueError, match="must be an integer"):
        parse_ulimits({"stack": "big"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization must be in (0, 1]"),
        ({"gpu_memory_utilization": 1.01}, "gpu_memory_utilization must be in (0, 1]"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be in [1"),
        ({"max_model_len": 0}, "max_model_len must be in [1"),
        ({"port": 70000}, "port must be in [1, 65535]"),
        ({"swap_space": -1}, "swap_space must be in [0"),
        ({"name": "bad name"}, "name must match"),
        ({"image": None}, "image is required with state started"),
        ({"cpuset_cpus": "0-"}, "cpuset_cpus must be a CPU list"),
        ({"bind_address": "localhost"}, "bind_address must be an IP address"),
        ({"gpus": "device="}, "gpus: no device"),
        ({"ulimits": {"memlok": 1}}, "ulimits: unknown limit"),
        ({"shm_size": "huge"}, "shm_size: not a size"),
        ({"served_model_name": ["coder", " "]}, "served_model_name must not contain empty"),
        ({"rope_scaling": {"factor": 4.0}}, "rope_scaling must name its kind"),
        ({"expect": {"min_kv_cache_gib": -1}}, "expect.min_kv_cache_gib must not be negative"),
        ({"model_container_path": None}, "model_container_path is required with model_host_path"),
    ],
)
def test_validate_options(change, message):
    errors = validate_options(dict(PARAMS, **change))
    assert any(message in error for error in errors), errors


def test_validate_options_accepts_the_seed():
    params = dict(
        PARAMS,
        gpu_memory_utilization=0.93,
        tensor_parallel_size=4,
        max_model_len=32768,
        rope_scaling={"rope_type": "yarn", "factor": 4.0},
        ulimits={"memlock": -1, "stack": 67108864},
    )
    assert validate_options(params) == []
    assert validate_options({"name": "coder", "state": "absent"}) == []


SEED_REPORT = parse_memory_report(SEED_LOG)
# What the module checks: V0 logs no "GPU KV cache size" line, so the KV tokens come from the
# blocks times the block size (reconcile_metrics), as vLLM computes them.
SEED_CHECKED, _ = reconcile_metrics(
    SEED_REPORT,
    parse_cache_config_info(METRICS),
    block_size=32,
    gpu_memory_utilization=0.93,
    max_model_len=32768,
)


@pytest.mark.parametrize(
    ("expect", "violated"),
    [
        ({"min_kv_cache_gib": 4.0, "min_max_concurrency": 5.0, "max_weights_gib": 15}, []),
        ({"min_kv_cache_gib": 4.5}, ["min_kv_cache_gib"]),
        ({"min_max_concurrency": 6}, ["min_max_concurrency"]),
        ({"max_weights_gib": 14.0}, ["max_weights_gib"]),
        ({"min_gpu_blocks": 5868, "min_kv_cache_tokens": 187744}, ["min_gpu_blocks"]),
    ],
)
def test_budget_against_the_seed_log(expect, violated):
    violations, unchecked = check_budget(SEED_CHECKED, expect)
    assert unchecked == []
    assert [item["expect"] for item in violations] == violated
    for item in violations:
        assert str(item["value"]) in item["msg"]
        assert str(item["limit"]) in item["msg"]


def test_budget_figure_missing_from_the_log_is_unchecked_not_a_violation():
    report = parse_memory_report(
        (FIXTURES / "vllm_logs" / "v1_0.20.1_tp2_enginecore_separate_lines.log").read_text()
    )
    assert report["kv_cache_gib"] is None
    violations, unchecked = check_budget(
        report, {"min_kv_cache_gib": 1}, reasons={"kv_cache_gib": "no plan"}
    )
    assert violations == []
    assert unchecked == [
        {
            "expect": "min_kv_cache_gib",
            "limit": 1,
            "field": "kv_cache_gib",
            "reason": "no plan",
            "msg": "min_kv_cache_gib=1 unchecked: kv_cache_gib unknown, no plan",
        }
    ]


def test_cache_config_info_of_the_standin_metrics():
    info = parse_cache_config_info(METRICS)
    assert info["num_gpu_blocks"] == "5867"
    assert info["block_size"] == "32"
    assert info["gpu_memory_utilization"] == "0.93"
    assert parse_cache_config_info("# nothing here\n") is None


def test_reconcile_metrics_agrees_with_the_seed_log():
    merged, mismatches = reconcile_metrics(
        SEED_REPORT,
        parse_cache_config_info(METRICS),
        block_size=32,
        gpu_memory_utilization=0.93,
        max_model_len=32768,
    )
    assert mismatches == []
    assert merged["gpu_blocks"] == 5867
    assert SEED_REPORT["kv_cache_tokens"] is None
    assert merged["kv_cache_tokens"] == 5867 * 32


def test_reconcile_metrics_fills_and_disagrees():
    report = {
        "gpu_blocks": None,
        "kv_cache_tokens": None,
        "max_concurrency": None,
        "max_model_len": None,
    }
    info = {"num_gpu_blocks": "5867", "block_size": "32", "gpu_memory_utilization": "0.9"}
    merged, mismatches = reconcile_metrics(
        report, info, block_size=32, gpu_memory_utilization=0.93, max_model_len=32768
    )
    assert merged["gpu_blocks"] == 5867
    assert merged["gpu_blocks_source"] == "metrics"
    assert merged["kv_cache_tokens"] == 187744
    assert merged["max_concurrency"] == 5.73
    assert mismatches == ["gpu_memory_utilization 0.93 was asked for, /metrics reports 0.9"]
    _, mismatches = reconcile_metrics(
        SEED_REPORT,
        {"num_gpu_blocks": "6000"},
        block_size=32,
        gpu_memory_utilization=None,
        max_model_len=None,
    )
    assert "the log says 5867 GPU blocks" in mismatches[0]


def test_compare_plan_with_the_seed():
    plan = {"kv_cache_gib": 4.5, "gpu_blocks": 6140, "max_concurrency": 6.0, "weights_gib": 14.25}
    comparison = compare_plan(plan, SEED_REPORT)
    assert comparison["kv_cache_gib"] == {"planned": 4.5, "measured": 4.3, "error_pct": 4.7}
    assert comparison["weights_gib"]["error_pct"] == 0.0
    assert comparison["gpu_blocks"]["measured"] == 5867
    assert compare_plan(None, SEED_REPORT) == {}


def test_models_listed_and_probe_address():
    body = json.dumps({"object": "list", "data": [{"id": "coder"}, {"id": "coder-2"}]})
    assert models_listed(body, ["coder"]) == (True, ["coder", "coder-2"])
    assert models_listed(body, ["coder", "other"])[0] is False
    assert models_listed("not json", ["coder"]) == (False, [])
    assert probe_address("0.0.0.0") == "127.0.0.1"
    assert probe_address("") == "127.0.0.1"
    assert probe_address("10.0.0.5") == "10.0.0.5"


@pytest.mark.parametrize(
    ("bind_address", "port", "api_key", "env", "warned"),
    [
        ("127.0.0.1", 8000, None, {}, False),
        ("::1", 8000, None, {}, False),
        ("localhost", 8000, None, {}, False),
        ("0.0.0.0", 8000, None, {}, True),
        ("", 8000, None, {}, True),
        ("10.0.0.5", 8000, "", None, True),
        ("0.0.0.0", 8000, "sk-x", {}, False),
        ("0.0.0.0", 8000, None, {"VLLM_API_KEY": "sk-x"}, False),
        ("0.0.0.0", 0, None, {}, False),
    ],
)
def test_exposure_warning(bind_address, port, api_key, env, warned):
    warning = exposure_warning(bind_address, port, api_key, env)
    assert (warning is not None) is warned
    if warned:
        assert f":{port} without an API key" in warning
        assert "vllm_server_api_key" in warning


# Answers to the smoke request. OLD_ERROR is captured from a vLLM server (0.8-era ErrorResponse,
# runpod-workers/worker-vllm issue #57); the others are written in the shapes of vLLM's protocol
# (the later nested ErrorResponse, the API-key middleware's 401, a chat completion, and one whose
# few tokens were all reasoning under a reasoning parser).
OLD_ERROR = (
    '{"code":404,"message":"The model `a model that does not exist` does not exist.",'
    '"object":"error","param":null,"type":"NotFoundError"}'
)
NESTED_ERROR = (
    '{"error":{"message":"max_tokens must be at least 1, got 0.","type":"BadRequestError",'
    '"param":null,"code":400}}'
)
UNAUTHORIZED = '{"error":"Unauthorized"}'
# A model without a chat template on vLLM 0.8-era (the openai client's print of the body, in a
# public deployment note found by searching for the message, turned back into JSON).
NO_CHAT_TEMPLATE = json.dumps(
    {
        "object": "error",
        "message": "As of transformers v4.44, default chat template is no longer allowed, so "
        "you must provide a chat template if the tokenizer does not define one. None",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
)
ANSWER = (
    '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"coder","choices":'
    '[{"index":0,"message":{"role":"assistant","content":"OK"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}'
)
REASONING_ONLY = (
    '{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"coder","choices":'
    '[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"Okay, the"},'
    '"finish_reason":"length"}]}'
)


@pytest.mark.parametrize(
    ("status", "body", "ok", "said"),
    [
        (200, ANSWER, True, "OK"),
        (200, REASONING_ONLY, True, "Okay, the"),
        (
            404,
            OLD_ERROR,
            False,
            "HTTP 404: The model `a model that does not exist` does not exist.",
        ),
        (400, NESTED_ERROR, False, "HTTP 400: max_tokens must be at least 1, got 0."),
        (401, UNAUTHORIZED, False, "HTTP 401: Unauthorized"),
        (
            400,
            NO_CHAT_TEMPLATE,
            False,
            "HTTP 400: As of transformers v4.44, default chat "
            "template is no longer allowed, so you must provide a chat template if the tokenizer "
            "does not define one. None",
        ),
        (500, "Internal Server Error", False, "HTTP 500: Internal Server Error"),
        (200, '{"choices": []}', False, 'HTTP 200 without choices[0].message: {"choices": []}'),
        (200, "<p>proxy</p>", False, "HTTP 200 without choices[0].message: <p>proxy</p>"),
        (None, "", False, "no answer (connection refused, reset or timed out)"),
    ],
)
def test_check_chat_answer(status, body, ok, said):
    assert check_chat_answer(status, body) == (ok, said)


def test_smoke_request_is_short_and_deterministic():
    body = smoke_request("coder")
    assert body["model"] == "coder"
    assert body["max_tokens"] <= 16
    assert body["temperature"] == 0
    assert body["messages"][0]["role"] == "user"


def test_compile_cache_is_one_more_bind_mount():
    params = dict(PARAMS, compile_cache_host_path="/var/cache/llmops/vllm")
    spec = desired_spec(params, ["--model", "/qwen/qwen3-30b-a3b"], "sha256:1")

    assert "/var/cache/llmops/vllm:/root/.cache/vllm:rw" in spec["mounts"]
    assert spec["mounts"] == sorted(spec["mounts"])
    moved = dict(params, compile_cache_container_path="/cache/vllm")
    assert "/var/cache/llmops/vllm:/cache/vllm:rw" in desired_spec(moved, [], None)["mounts"]
    assert validate_options(dict(params, compile_cache_host_path="cache")) == [
        "compile_cache_host_path must be an absolute path, got 'cache'"
    ]


def test_a_compile_cache_the_container_lacks_is_a_change():
    actual = actual_spec(CONTAINER, IMAGE)
    params = dict(PARAMS, compile_cache_host_path="/var/cache/llmops/vllm")
    desired = desired_spec(params, actual["command"], actual["image_id"])

    match, diff = compare_specs(desired, actual, image_env(IMAGE))
    assert match is False
    assert diff["changed"] == ["mounts"]


def test_network_mode_and_entrypoint_are_compared_only_when_asked_for():
    actual = actual_spec(CONTAINER, IMAGE)
    # Unset: Docker's network and the image's entrypoint, whatever the engine filled in.
    assert compare_specs(desired(), actual, image_env(IMAGE))[0] is True
    match, diff = compare_specs(desired(network_mode="llmops-net"), actual, image_env(IMAGE))
    assert match is False
    assert diff["changed"] == ["network_mode"]
    want = desired_spec(PARAMS, seed_args(), IMAGE["Id"], entrypoint=["ray", "start", "--block"])
    match, diff = compare_specs(want, actual, image_env(IMAGE))
    assert diff["changed"] == ["entrypoint"]
    assert diff["after"]["entrypoint"] == ["ray", "start", "--block"]


def test_host_networking_publishes_nothing():
    assert desired(port=8000)["ports"] == {"8000/tcp": ["127.0.0.1:8000"]}
    assert desired(port=8000, network_mode="host")["ports"] == {}


def test_a_member_adds_its_environment():
    want = desired_spec(PARAMS, seed_args(), IMAGE["Id"], env={"GLOO_SOCKET_IFNAME": "eth0"})
    assert want["env"] == {"GLOO_SOCKET_IFNAME": "eth0"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"network_mode": "bad net"}, "network_mode must be host, bridge, none or the name"),
        ({"port": 0}, "port must be in [1, 65535]"),
        (
            {"cluster": {"role": "follower", "nnodes": 2, "master_addr": "h"}},
            "cluster.node_rank is required for a follower",
        ),
    ],
)
def test_validate_cluster_options(change, message):
    errors = validate_options(dict(PARAMS, **change))
    assert any(message in error for error in errors), errors


def test_a_follower_may_publish_nothing():
    follower = {"role": "follower", "nnodes": 2, "node_rank": 1, "master_addr": "head"}
    assert validate_options(dict(PARAMS, port=0, tensor_parallel_size=2, cluster=follower)) == []
