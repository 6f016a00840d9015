"""Verify the vllm_server scenario's host after converge, idempotence and the bad pushes of
side_effect.yml: the seed's container serves, with its key, the budget it reported is on record,
and nothing the failed pushes started is left behind."""

import json
import shlex

import pytest

testinfra_hosts = ["all"]

KEY = "llmops-molecule-key"
SEED_ARGS = shlex.split(
    "--model /qwen/qwen3-30b-a3b --served-model-name coder --tensor-parallel-size 4 "
    "--dtype half --max-model-len 32768 --max-num-batched-tokens 4096 "
    "--gpu-memory-utilization 0.93 --block-size 32 --enable-chunked-prefill "
    "--swap-space 16 --tokenizer-pool-size 56 --disable-custom-all-reduce --api-key " + KEY
)

# One HTTP request from the test host itself (the port is published there).
HTTP = """
import json, sys, urllib.request, urllib.error
method, path, key, body = sys.argv[1:5]
request = urllib.request.Request("http://127.0.0.1:8000" + path, method=method,
    data=body.encode() if body else None, headers={"Content-Type": "application/json"})
if key:
    request.add_header("Authorization", "Bearer " + key)
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
"""


def http(host, method, path, key="", body=""):
    # testinfra quotes each argument.
    done = host.run("python3 -c %s %s %s %s %s", HTTP, method, path, key, body)
    assert done.rc == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def container(host):
    done = host.run("docker inspect coder")
    assert done.rc == 0, done.stderr
    return json.loads(done.stdout)[0]


@pytest.fixture(scope="module")
def report(host):
    return json.loads(host.file("/etc/llmops/serving.json").content_string)


def test_the_seed_container_runs_with_the_seed_flags(container):
    assert container["State"]["Running"] is True
    assert container["Config"]["Cmd"] == SEED_ARGS
    host_config = container["HostConfig"]
    assert host_config["Runtime"] == "nvidia"
    assert host_config["IpcMode"] == "host"
    assert host_config["RestartPolicy"]["Name"] == "always"
    assert host_config["CpusetCpus"] == "0-1"
    assert [r["Capabilities"] for r in host_config["DeviceRequests"]] == [[["gpu"]]]
    assert host_config["DeviceRequests"][0]["Count"] == -1
    ulimits = {u["Name"]: u["Hard"] for u in host_config["Ulimits"]}
    assert ulimits["stack"] == 67108864
    mounts = {m["Destination"]: m["Source"] for m in container["Mounts"]}
    assert mounts == {"/qwen/qwen3-30b-a3b": "/home/llm/model/qwen/qwen3-30b-a3b"}
    # With an API key the role publishes on every address.
    assert host_config["PortBindings"]["8000/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8000"}]


def test_no_container_is_left_from_the_failed_pushes(host):
    names = host.run("docker ps -a --format '{{.Names}}'").stdout.split()
    assert names == ["coder"]


def test_the_api_needs_the_key_and_lists_coder(host):
    assert http(host, "GET", "/v1/models")["status"] == 401
    answer = http(host, "GET", "/v1/models", key=KEY)
    assert answer["status"] == 200
    assert [model["id"] for model in json.loads(answer["body"])["data"]] == ["coder"]
    body = json.dumps({"model": "coder", "messages": [{"role": "user", "content": "hi"}]})
    answer = http(host, "POST", "/v1/chat/completions", key=KEY, body=body)
    assert answer["status"] == 200
    assert json.loads(answer["body"])["choices"]


def test_the_report_holds_the_verified_budget(report, container):
    assert report["container"]["id"] == container["Id"]
    assert report["endpoint"] == "http://127.0.0.1:8000"
    assert report["smoke_test"] == "passed"
    assert report["ready_seconds"] > 0
    # The seed's figures, as vLLM 0.8.5 logged them (replayed by the stand-in).
    memory = report["memory"]
    assert memory["kv_cache_gib"] == 4.3
    assert memory["gpu_blocks"] == 5867
    assert memory["max_concurrency"] == 5.73
    assert memory["weights_gib"] == 14.25
    assert report["budget"]["violations"] == []
    assert report["budget"]["expect"] == {
        "min_kv_cache_gib": 4.0,
        "min_max_concurrency": 5.0,
        "max_weights_gib": 15.0,
    }
    # The preflight's plan beside vLLM's figures.
    assert report["plan"]["fits"] is True
    assert abs(report["plan_comparison"]["kv_cache_gib"]["error_pct"]) < 5
    assert report["settings"] == {"max_model_len": 32768, "gpu_memory_utilization": 0.93}
    assert report["driver"]["version"] == "550.144.03"
    assert report["driver"]["gpus"] == 4
    # The weights as model_sync verified them.
    assert report["model"]["files"] > 0
    assert len(report["model"]["manifest_sha256"]) == 64


def test_the_report_is_not_readable_as_a_secret(host, report):
    # The arguments are on record with the key masked.
    assert KEY not in host.file("/etc/llmops/serving.json").content_string
    assert "--api-key" in report["container"]["args"]


def test_the_image_archive_was_not_left_on_the_host(host):
    assert not host.file("/var/tmp/llmops-vllm-image").exists
