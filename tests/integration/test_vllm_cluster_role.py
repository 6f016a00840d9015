"""The vllm_server role's serving cluster, for real: two inventory hosts, one engine.

Both hosts of the inventory group are this machine (connection local), each with its own
container name and its own copy of the weights, as two real hosts have; the containers meet on a
Docker bridge network this test creates (vllm_server_network_mode) and run the real CPU engine,
vLLM 0.32.0 (`vllm serve ... --nnodes 2 --distributed-executor-backend mp`, the follower
`--headless`), with TP 2 across them, Gloo over their eth0. The play runs the role's cluster
tasks (tasks_from cluster_member, then cluster): the preflight, the check pass, the start of
every member at once, then the commit, or the rollback of every member and one failure that
names each member's cause. The Docker and GPU tasks of the role's main entry are left out: they
would install the Docker SDK on this machine. Every line, failure and answer is the engine's own.

One engine lifecycle, four engine-pair starts (each costs ~45-80 s on two busy cores), checked
at both levels, the role's tasks and the vllm_container results they register:

1. check mode on fresh hosts: both would change (the follower's argv ends `--headless`, node
   rank 1; the mp backend, world size 2), nothing is created;
2. a first deploy whose follower is killed (`docker kill`) right after it joined: the follower
   is classified ``killed`` from its exit (137, no error line), the head ``cluster_peer_lost``
   from Gloo's ``Connection closed by peer``, every member is rolled back, nothing is left
   running and the play fails once naming each member's cause;
3. the deploy again, undisturbed: the follower joined (its ``rank 1 in world size 2 is assigned
   as`` line), the head serves with the world size of the layout and the KV tokens the planner
   predicts for one KV head per rank, a real chat completion; each member's report and the audit
   name its role and node; a re-run changes nothing; check mode of a change would recreate both
   members and touches neither;
4. the benchmark gate: a flag change whose benchmark on the head misses a p99 TTFT ceiling of
   0.001 ms: the new pair starts and serves, then both members are rolled back to the previous
   pair (the same containers, serving again) and the play fails naming the regression.

A manifest that differs between the hosts is refused before anything starts.

Two traps of one machine (tests/fixtures/vllm_logs/SOURCES.md, "Two nodes"): both containers
with --ipc host hung the join, so they get --shm-size; and TORCHDYNAMO_DISABLE=1, since TP 2
compiles the vocab-parallel embedding at the first request and the image has no Python.h.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from vllm_it import (
    PREVIOUS_SUFFIX,
    TINY_MODEL,
    VLLM_CPU_VERSION,
    chat,
    container_id,
    docker,
    free_port,
    real_engine_role_vars,
    run_play,
)

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import plan_memory

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("real_engine")]

MANIFEST = ".llmops-manifest.json"
JOINED_LINE = "rank 1 in world size 2 is assigned as"
KV_SPACE_GIB = 1
MAX_MODEL_LEN = 2048


def write_manifest(model_dir: Path, source: str) -> None:
    """A destination manifest as model_sync writes one: every file, its size and sha256."""
    files = []
    for path in sorted(model_dir.iterdir()):
        if path.name == MANIFEST:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": path.name, "size": path.stat().st_size, "sha256": digest})
    (model_dir / MANIFEST).write_text(json.dumps({"source": source, "files": files}, indent=2))


@pytest.fixture
def cluster(tmp_path):
    suffix = uuid.uuid4().hex[:8]
    hosts = {"node-a": f"llmops-role-head-{suffix}", "node-b": f"llmops-role-follower-{suffix}"}
    network = f"llmops-role-net-{suffix}"
    docker("network", "create", network)
    models = {}
    for host in hosts:
        models[host] = tmp_path / host / "tiny-qwen3-moe"
        shutil.copytree(TINY_MODEL, models[host])
        write_manifest(models[host], "llmops-test/tiny-qwen3-moe")
    port = free_port()
    group_vars = real_engine_role_vars(
        vllm_server_cluster_group="tiny_cluster",
        vllm_server_cluster_master_addr=hosts["node-a"],
        vllm_server_cluster_socket_ifname="eth0",
        vllm_server_network_mode=network,
        # Two "hosts" on one machine must not share one IPC namespace (SOURCES.md, "Two nodes");
        # TP 2 compiles at the first request without TORCHDYNAMO_DISABLE (no Python.h there).
        vllm_server_env={"VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB), "TORCHDYNAMO_DISABLE": "1"},
        vllm_server_port=port,
        vllm_server_tensor_parallel_size=2,
        vllm_server_max_model_len=MAX_MODEL_LEN,
        vllm_server_verify_timeout=120,
        vllm_server_benchmark_num_prompts=2,
    )
    inventory = {
        "all": {
            "children": {
                "tiny_cluster": {
                    "hosts": {
                        host: {
                            "vllm_server_container_name": name,
                            "vllm_server_model_host_path": str(models[host]),
                            "vllm_server_report_path": str(tmp_path / host / "serving.json"),
                        }
                        for host, name in hosts.items()
                    },
                    "vars": group_vars,
                }
            }
        }
    }
    inventory_file = tmp_path / "inventory.json"
    inventory_file.write_text(json.dumps(inventory))
    yield {"hosts": hosts, "models": models, "port": port, "inventory": inventory_file}
    for name in hosts.values():
        for candidate in (name, name + PREVIOUS_SUFFIX):
            docker("rm", "-f", candidate, check=False)
    docker("network", "rm", network, check=False)


ROLE = "llmops.gpu_serving.vllm_server"
DEPLOY = [
    {
        "name": "Place the host",
        "ansible.builtin.include_role": {"name": ROLE, "tasks_from": "cluster_member"},
    },
    {
        "name": "Deploy the cluster",
        "ansible.builtin.include_role": {"name": ROLE, "tasks_from": "cluster"},
    },
    {
        "name": "Write the serving report",
        "ansible.builtin.include_role": {"name": ROLE, "tasks_from": "report"},
    },
]
AUDIT = [
    {
        "name": "Audit the member",
        "ansible.builtin.include_role": {"name": ROLE, "tasks_from": "verify"},
    }
]


def run_role(tmp_path: Path, inventory: Path, *flags: str, during=None, tasks=DEPLOY) -> dict:
    """The role's cluster tasks on both hosts; returns {task name: {host: result}}.

    A name that runs more than once (the container task: check pass, start, a follower's
    re-read) keeps every run under "<name> #runs".
    """
    results, _ = run_play(tmp_path, inventory, "tiny_cluster", tasks, *flags, during=during)
    return results


def kill_after_join(name: str, deadline_seconds: float = 900) -> dict:
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


def test_cluster_role_refuses_different_weights(tmp_path, cluster):
    write_manifest(cluster["models"]["node-b"], "llmops-test/another-revision")
    tasks = run_role(tmp_path, cluster["inventory"])
    refused = tasks["Check that every member holds the same weights"]
    for host in ("node-a", "node-b"):
        assert refused[host]["failed"] is True
        assert "the manifests differ" in refused[host]["msg"]
    assert "Start every member of the cluster together" not in tasks
    for name in cluster["hosts"].values():
        assert container_id(name) is None


def test_cluster_role_refuses_fewer_forks_than_members(tmp_path, cluster):
    # One fork: node-a's start would wait for node-b, which Ansible would start only after it.
    tasks = run_role(tmp_path, cluster["inventory"], "--forks", "1")
    refused = tasks["Check that Ansible starts every cluster member of the play at once"]
    for host in ("node-a", "node-b"):
        assert refused[host]["failed"] is True
        assert "run with --forks 2 or more" in refused[host]["msg"]
    assert "Start every member of the cluster together" not in tasks
    for name in cluster["hosts"].values():
        assert container_id(name) is None


def test_cluster_role_rolls_back_every_member_then_serves(tmp_path, cluster):
    head, follower = cluster["hosts"]["node-a"], cluster["hosts"]["node-b"]
    config = json.loads((TINY_MODEL / "config.json").read_text())
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

    # Check mode on fresh hosts: both would change, nothing is created.
    tasks = run_role(tmp_path, cluster["inventory"], "--check")
    (check,) = tasks["Converge the vLLM container (started) #runs"]
    for host in ("node-a", "node-b"):
        assert check[host]["changed"] is True, check[host]
    follower_args = check["node-b"]["args"]
    assert follower_args[-1] == "--headless"
    assert follower_args[follower_args.index("--node-rank") + 1] == "1"
    assert check["node-a"]["cluster"]["backend"] == "mp"
    assert check["node-a"]["cluster"]["layout"]["world_size"] == 2
    for name in (head, follower):
        assert container_id(name) is None

    # A first deploy whose follower dies during startup: every member rolled back, one failure.
    killer: dict = {}
    tasks = run_role(
        tmp_path, cluster["inventory"], during=lambda: killer.update(kill_after_join(follower))
    )
    # The killer runs beside the play: without "killed" the play ended before the join showed.
    assert killer.get("killed") is True, {
        host: result.get("msg")
        for host, result in tasks.get(
            "Fail the cluster's change with every member's reason", {}
        ).items()
    }
    failed = tasks["Fail the cluster's change with every member's reason"]
    for host in ("node-a", "node-b"):
        message = failed[host]["msg"]
        assert "every member was rolled back" in message
        assert "node-b killed" in message, message
        assert "node-a cluster_peer_lost" in message, message
    # What vllm_container itself found on each member.
    started = tasks["Converge the vLLM container (started) #runs"][1]
    assert started["node-b"]["kind"] == "killed", started["node-b"]["msg"]
    assert started["node-b"]["exit_code"] == 137
    assert "128 + SIGKILL" in started["node-b"]["proof"][0]
    assert started["node-a"]["kind"] == "cluster_peer_lost", started["node-a"]["msg"]
    assert any("Connection closed by peer" in line for line in started["node-a"]["proof"])
    for name in (head, follower):
        assert container_id(name) is None
        assert container_id(name + PREVIOUS_SUFFIX) is None

    # The same deploy, undisturbed: both members start together and the head serves.
    tasks = run_role(tmp_path, cluster["inventory"])
    # The container task ran three times: the check pass, the start, the follower's re-read.
    runs = tasks["Converge the vLLM container (started) #runs"]
    assert len(runs) == 3, {
        host: result.get("msg")
        for host, result in tasks["Fail the cluster's change with every member's reason"].items()
    }
    check, started, reread = runs
    for result in tasks["Fail the cluster's change with every member's reason"].values():
        assert result.get("skipped") is True
    for host in ("node-a", "node-b"):
        assert started[host]["changed"] is True
        assert "kind" not in started[host], started[host].get("msg")
    assert started["node-b"]["cluster"]["join"]["joined"] is True
    assert JOINED_LINE in started["node-b"]["cluster"]["join"]["proof"][0]
    assert started["node-a"]["cluster"]["memory"]["ranks"] == [0]
    assert check["node-a"]["changed"] is True
    # The head's log: the KV tokens of 1 GiB at the planner's 512 bytes per token and rank.
    assert started["node-a"]["memory"]["kv_cache_tokens"] == (
        KV_SPACE_GIB * 2**30 // plan["kv_bytes_per_token"]
    )
    # Read again once the head served: the follower's own ranks' figures are in its log now.
    assert list(reread) == ["node-b"]
    assert reread["node-b"]["changed"] is False
    assert reread["node-b"]["memory"]["kv_cache_gib"] == 1.0
    assert reread["node-b"]["cluster"]["memory"]["ranks"] == [1]
    assert started["node-a"]["smoke_test"]["passed"] is True
    status, body = chat(cluster["port"])
    assert status == 200, body
    assert json.loads(body)["system_fingerprint"].startswith(f"vllm-{VLLM_CPU_VERSION}-tp2")
    ids = {name: container_id(name) for name in (head, follower)}

    # The report of each member: its role, node and ranks.
    reports = {
        host: json.loads((cluster["models"][host].parent / "serving.json").read_text())
        for host in ("node-a", "node-b")
    }
    assert reports["node-a"]["cluster"]["layout"]["role"] == "head"
    assert reports["node-b"]["cluster"]["memory"]["ranks"] == [1]

    # The audit: the head still serves the layout's world, the follower is still joined.
    tasks = run_role(tmp_path, cluster["inventory"], tasks=AUDIT)
    audit = tasks["Record the audit of this host"]
    assert audit["node-a"]["ansible_facts"]["__vllm_server_audit"]["cluster"] == (
        "tiny_cluster head node 0/2"
    )
    assert audit["node-b"]["ansible_facts"]["__vllm_server_audit"]["cluster"] == (
        "tiny_cluster follower node 1/2 joined"
    )

    # Again: the check pass finds nothing to change, so nothing is recreated; the follower is
    # judged by its log again.
    tasks = run_role(tmp_path, cluster["inventory"])
    check, started, _ = tasks["Converge the vLLM container (started) #runs"]
    for host in ("node-a", "node-b"):
        assert check[host]["changed"] is False
        assert started[host]["changed"] is False
    assert started["node-b"]["cluster"]["join"]["joined"] is True
    assert {name: container_id(name) for name in (head, follower)} == ids

    # Check mode of a change: both members would be recreated, neither is touched.
    tasks = run_role(
        tmp_path,
        cluster["inventory"],
        "--check",
        "--diff",
        "-e",
        "vllm_server_max_num_batched_tokens=1024",
    )
    (check,) = tasks["Converge the vLLM container (started) #runs"]
    for host in ("node-a", "node-b"):
        assert check[host]["changed"] is True, check[host]
        assert check[host]["changes"] == ["command"], check[host]["changes"]
    assert {name: container_id(name) for name in (head, follower)} == ids

    # The benchmark gate: a flag change whose benchmark on the head misses a p99 TTFT ceiling
    # no engine meets. The new pair starts and serves, then every member is rolled back.
    tasks = run_role(
        tmp_path,
        cluster["inventory"],
        "-e",
        "vllm_server_benchmark_gate=true",
        "-e",
        "vllm_server_max_num_batched_tokens=1024",
        "-e",
        "vllm_server_benchmark_max_p99_ttft_ms=0.001",
    )
    _, started, *_ = tasks["Converge the vLLM container (started) #runs"]
    for host in ("node-a", "node-b"):
        assert started[host]["changed"] is True
        assert "kind" not in started[host], started[host].get("msg")
    verdict = tasks["Run the serving benchmark inside the container"]["node-a"]["verdict"]
    assert verdict["passed"] is False
    assert "node-b" not in tasks["Run the serving benchmark inside the container"]
    for host in ("node-a", "node-b"):
        message = tasks["Fail the cluster's change with every member's reason"][host]["msg"]
        assert "did not pass its benchmark gate, so every member was rolled back" in message
        assert "node-a benchmark_regression: concurrency 1: p99 TTFT" in message, message
        assert tasks["Put the previous container back"][host]["rolled_back"] is True
    # The previous pair again, the same containers, serving.
    assert {name: container_id(name) for name in (head, follower)} == ids
    for name in (head, follower):
        assert container_id(name + PREVIOUS_SUFFIX) is None
    status, body = chat(cluster["port"])
    assert status == 200, body
