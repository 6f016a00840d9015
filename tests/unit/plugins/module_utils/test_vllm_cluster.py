"""vllm_cluster: layouts, each member's command line, and the join proofs of real 0.32.0 logs.

The logs are the real CPU engine's (tests/fixtures/vllm_logs/SOURCES.md, "two nodes"): a head
and a headless follower of `vllm serve --tensor-parallel-size 2 --nnodes 2`, one process group
over a Docker bridge network.
"""

from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_cluster import (
    ClusterError,
    check_node_gpus,
    choose_backend,
    cluster_env,
    exit_cause,
    head_join_timeout,
    head_world_check,
    join_state,
    layout,
    member_command,
    member_failure,
    member_from_container,
    member_plan,
    refuse_owned_flags,
    served_names_from_args,
    validate_cluster,
    wait_until_joined,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import (
    pipeline_stage_layers,
    plan_memory_for_layout,
)

LOGS = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_logs"
SERVER_ARGS = ["/m", "--served-model-name", "tiny", "--tensor-parallel-size", "2"]


def lines(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


def member(role="follower", **extra):
    cluster = {"role": role, "nnodes": 2, "master_addr": "head-0", "node_rank": 1}
    if role == "head":
        cluster["node_rank"] = 0
    cluster.update(extra)
    return cluster


@pytest.mark.parametrize(
    ("cluster", "tp", "needle"),
    [
        ({"role": "boss", "nnodes": 2, "master_addr": "h"}, 2, "cluster.role must be head or"),
        ({"role": "head", "nnodes": 1, "master_addr": "h"}, 2, "cluster.nnodes must be an integer"),
        ({"role": "follower", "nnodes": 2, "master_addr": "h"}, 2, "node_rank is required"),
        (member(node_rank=2), 2, "node_rank of a follower must be 1 to 1"),
        (member("head", node_rank=1), 2, "node_rank of a head must be 0"),
        (member(master_addr=""), 2, "cluster.master_addr must be the head's address"),
        (member(master_addr="a b"), 2, "cluster.master_addr must be"),
        (member(master_port=70000), 2, "cluster.master_port must be a TCP port"),
        (member(backend="slurm"), 2, "cluster.backend must be one of auto, mp, ray"),
        (member(socket_ifname="eth0; rm"), 2, "cluster.socket_ifname must be an interface"),
        (member(nnodes=3, node_rank=1), 2, "2 ranks over cluster.nnodes 3 nodes"),
        (member(pipeline_parallel_size=0), 2, "pipeline_parallel_size must be 1 or more"),
    ],
)
def test_bad_cluster_options_are_named(cluster, tp, needle):
    errors = validate_cluster(cluster, tp)
    assert any(needle in error for error in errors), errors


def test_good_layouts():
    assert validate_cluster(None, 4) == []
    # Two 4-GPU hosts: TP 4 within each, PP 2 across.
    pp = layout(member(pipeline_parallel_size=2), 4)
    assert pp["world_size"] == 8
    assert pp["gpus_per_node"] == 4
    assert pp["ranks"] == [4, 5, 6, 7]
    assert pp["tp_across_nodes"] is False
    # The same hosts with TP 8 across both.
    tp8 = layout(member("head"), 8)
    assert (tp8["world_size"], tp8["gpus_per_node"], tp8["ranks"]) == (8, 4, [0, 1, 2, 3])
    assert tp8["tp_across_nodes"] is True
    with pytest.raises(ClusterError, match=r"cluster\.nnodes"):
        layout({"role": "head", "master_addr": "h"}, 2)


@pytest.mark.parametrize(
    ("requested", "version", "backend"),
    [("auto", (0, 32, 0), "mp"), ("auto", (0, 12, 0), "mp"), ("auto", (0, 8, 5), "ray")],
)
def test_backend_follows_the_version(requested, version, backend):
    assert choose_backend(requested, version)[0] == backend


def test_backend_refusals_and_warnings():
    with pytest.raises(ClusterError, match=r"needs vLLM 0\.12 or later"):
        choose_backend("mp", (0, 8, 5))
    with pytest.raises(ClusterError, match=r"set vllm_version or cluster\.backend"):
        choose_backend("auto", None)
    backend, warnings = choose_backend("ray", (0, 20, 1))
    assert backend == "ray"
    assert "carry no Ray" in warnings[0]
    assert choose_backend("mp", None) == ("mp", [])


def test_mp_commands_of_head_and_follower():
    head = member_command(
        layout(member("head"), 2), "mp", SERVER_ARGS, image_entrypoint=["vllm", "serve"]
    )
    assert head["entrypoint"] is None
    assert head["command"] == [
        *SERVER_ARGS,
        "--nnodes",
        "2",
        "--node-rank",
        "0",
        "--master-addr",
        "head-0",
        "--master-port",
        "29500",
        "--distributed-executor-backend",
        "mp",
    ]
    follower = member_command(
        layout(member(pipeline_parallel_size=2, master_port=29600), 4),
        "mp",
        SERVER_ARGS,
        image_entrypoint=None,
    )["command"]
    assert follower[-1] == "--headless"
    assert follower[follower.index("--pipeline-parallel-size") + 1] == "2"
    assert follower[follower.index("--node-rank") + 1] == "1"
    assert follower[follower.index("--master-port") + 1] == "29600"


def test_ray_commands_follow_run_cluster_sh():
    api_server = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    worker = member_command(
        layout(member(), 2), "ray", SERVER_ARGS, image_entrypoint=api_server, host_ip="10.0.0.2"
    )
    assert worker == {
        "entrypoint": [
            "ray",
            "start",
            "--block",
            "--address=head-0:6379",
            "--node-ip-address=10.0.0.2",
        ],
        "command": [],
    }
    head = member_command(
        layout(member("head", pipeline_parallel_size=2), 2),
        "ray",
        SERVER_ARGS,
        image_entrypoint=api_server,
        host_ip="10.0.0.1",
    )
    assert head["entrypoint"][:2] == ["/bin/bash", "-c"]
    assert head["entrypoint"][2] == (
        'ray start --head --port=6379 --node-ip-address=10.0.0.1 && exec "$@"'
    )
    assert head["command"][:3] == api_server
    assert head["command"][-4:] == [
        "--pipeline-parallel-size",
        "2",
        "--distributed-executor-backend",
        "ray",
    ]
    assert "--nnodes" not in head["command"]


def test_cluster_env():
    env = cluster_env({"socket_ifname": "eth0", "host_ip": "10.0.0.2"}, "ray")
    assert env == {
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_SOCKET_IFNAME": "eth0",
        "VLLM_HOST_IP": "10.0.0.2",
        "RAY_NODE_IP_ADDRESS": "10.0.0.2",
        "RAY_OVERRIDE_NODE_IP_ADDRESS": "10.0.0.2",
    }
    assert cluster_env({"host_ip": "10.0.0.2"}, "mp") == {"VLLM_HOST_IP": "10.0.0.2"}
    assert cluster_env({}, "mp") == {}


def test_owned_flags_are_refused_in_extra_args():
    refuse_owned_flags(["--enforce-eager"])
    for flag in ("--nnodes", "--headless", "--node_rank=1", "-pp"):
        with pytest.raises(ClusterError, match=r"cluster\."):
            refuse_owned_flags([flag, "2"])


def test_real_follower_log_proves_the_join():
    log = lines("real_cpu_0.32.0_nnodes2_follower.log")
    lay = layout(member(), 2)
    state = join_state(log, lay, "mp")
    assert state["joined"] is True
    assert "rank 1 in world size 2 is assigned as" in state["proof"][0]
    # Up to the world_size line only: the process group is not formed yet.
    before = [line for line in log if "is assigned as" not in line]
    assert join_state(before, lay, "mp") == {
        "joined": False,
        "wrong_world": None,
        "proof": [],
        "missing": [1],
    }
    # The same log judged against a layout of 4 ranks: the world is the wrong one.
    wrong = join_state(log, layout(member(), 4), "mp")
    assert wrong["joined"] is False
    assert "rank 1 in world size 2" in wrong["wrong_world"]


def test_real_head_log_shows_the_world_size():
    log = lines("real_cpu_0.32.0_nnodes2_head.log")
    assert head_world_check(log, layout(member("head"), 2)) is None
    failure = head_world_check(log, layout(member("head", pipeline_parallel_size=2), 2))
    assert failure["kind"] == "cluster_world_size"
    assert "rank 0 in world size 2" in failure["proof"][0]
    single = lines("real_cpu_0.32.0_tp1_success.log")
    lonely = head_world_check(
        [line for line in single if "is assigned as" not in line], layout(member("head"), 2)
    )
    assert lonely["kind"] == "cluster_world_size"


def test_ray_worker_joins_by_ray_start():
    lay = layout(member(), 2)
    text = ["Local node IP: 10.0.0.2", "--------------------", "Ray runtime started."]
    assert join_state(text, lay, "ray")["joined"] is True
    assert join_state(text[:1], lay, "ray")["joined"] is False


@pytest.mark.parametrize(
    ("code", "oom", "kind"),
    [(137, False, "killed"), (143, False, "killed"), (137, True, "host_oom"), (1, False, None)],
)
def test_exit_causes(code, oom, kind):
    cause = exit_cause(code, oom)
    assert (cause[0] if cause else None) == kind


def test_member_failure_prefers_the_root_cause():
    root = ["ValueError: To serve at least one request with the model's max seq len (2048)"]
    assert member_failure(root, {"running": False, "exit_code": 137})[0] == "kv_cache_too_small"
    lost = ["RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]"]
    kind, proof = member_failure(lost, {"running": False, "exit_code": 1})
    assert kind == "cluster_peer_lost"
    assert "Connection closed by peer" in proof[0]
    kind, proof = member_failure(["INFO loading"], {"running": False, "exit_code": 137})
    assert kind == "killed"
    assert "137" in proof[0]
    assert member_failure([], {"running": False, "exit_code": 3})[0] == "engine_failed"


class FakeMember:
    """A follower that prints ``log`` one line per tick and exits at ``exit_at`` (a tick)."""

    def __init__(self, log, *, exit_at=None, exit_code=137, state_keys=True):
        self.log = list(log)
        self.tick = 0
        self.exit_at = exit_at
        self.exit_code = exit_code
        self.state_keys = state_keys

    def clock(self):
        return float(self.tick)

    def sleep(self, _seconds):
        self.tick += 1

    def read_logs(self):
        if self.tick < len(self.log) and (self.exit_at is None or self.tick < self.exit_at):
            return [self.log[self.tick]]
        return []

    def state(self):
        if self.exit_at is not None and self.tick >= self.exit_at:
            return {"running": False, "exit_code": self.exit_code}
        return {"running": True, "restarted": False} if self.state_keys else {}


def run_wait(fake, lay, backend="mp", timeout=500):
    captured: list[str] = []
    return wait_until_joined(
        read_logs=fake.read_logs,
        container_state=fake.state,
        lay=lay,
        backend=backend,
        timeout=timeout,
        log_lines=captured,
        clock=fake.clock,
        sleep=fake.sleep,
        interval=1,
    )


def test_wait_ends_joined_on_the_real_follower_log():
    log = lines("real_cpu_0.32.0_nnodes2_follower.log")
    fake = FakeMember(log)
    result = run_wait(fake, layout(member(), 2))
    assert result["ready"] is True
    assert result["reason"] == "joined"
    assert "is assigned as" in result["proof"][0]
    joined_at = next(i for i, line in enumerate(log) if "is assigned as" in line)
    # It waited for the assignment line, then for the settle time (2 ticks), no longer.
    assert fake.tick == joined_at + 2


def test_wait_classifies_a_follower_killed_before_it_joined():
    log = lines("real_cpu_0.32.0_nnodes2_follower.log")
    kill_at = next(i for i, line in enumerate(log) if "world_size=2 rank=1" in line) + 1
    result = run_wait(FakeMember(log, exit_at=kill_at), layout(member(), 2))
    assert result["ready"] is False
    assert result["reason"] == "exited"
    assert result["kind"] == "killed"
    assert result["exit_code"] == 137
    assert "128 + SIGKILL" in result["proof"][0]


def test_wait_times_out_naming_the_missing_ranks_and_survives_an_empty_state():
    log = lines("real_cpu_0.32.0_nnodes2_follower.log")[:10]
    result = run_wait(FakeMember(log), layout(member(), 2), timeout=20)
    assert result["reason"] == "timeout"
    assert result["kind"] == "cluster_join_timeout"
    assert "rank(s) 1 of the world of 2" in result["proof"][0]
    # A state without "running" (a container that vanished) is an exit, not a crash.
    gone = run_wait(FakeMember(log, state_keys=False), layout(member(), 2))
    assert gone["reason"] == "exited"


def test_wait_stops_on_a_wrong_world():
    log = lines("real_cpu_0.32.0_nnodes2_follower.log")
    result = run_wait(FakeMember(log), layout(member(pipeline_parallel_size=2), 2))
    assert result["reason"] == "wrong_world"
    assert result["kind"] == "cluster_world_size"


def test_real_head_log_of_a_killed_follower_is_a_lost_peer():
    # The follower was killed (docker kill) right after its "is assigned as" line; the head's
    # Gloo pair saw the connection close 2 s later and its engine failed to start.
    log = lines("real_cpu_0.32.0_nnodes2_head_follower_killed.log")
    kind, proof = member_failure(log, {"running": False, "exit_code": 1})
    assert kind == "cluster_peer_lost"
    assert "Connection closed by peer [172.18.0.2]" in proof[0]
    assert any("WorkerProc failed to start." in line for line in proof)
    follower = lines("real_cpu_0.32.0_nnodes2_follower_killed.log")
    assert member_failure(follower, {"running": False, "exit_code": 137})[0] == "killed"


def test_member_plan_merges_env_and_refuses_what_cannot_work():
    plan = member_plan(
        member(socket_ifname="eth0"),
        (0, 32, 0),
        2,
        SERVER_ARGS,
        image_entrypoint=["vllm", "serve"],
        extra_args=["--enforce-eager"],
        env={"GLOO_SOCKET_IFNAME": "ib0", "VLLM_CPU_KVCACHE_SPACE": 1},
    )
    assert plan["backend"] == "mp"
    assert plan["command"][-1] == "--headless"
    # The operator's own variables win over the member's.
    assert plan["env"] == {
        "GLOO_SOCKET_IFNAME": "ib0",
        "NCCL_SOCKET_IFNAME": "eth0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    assert plan["settle"] == 5
    with pytest.raises(ClusterError, match=r"cluster\.host_ip is required with the Ray backend"):
        member_plan(
            member(), (0, 8, 5), 2, SERVER_ARGS, image_entrypoint=None, extra_args=[], env={}
        )
    with pytest.raises(ClusterError, match=r"extra_args has --nnodes"):
        member_plan(
            member(),
            (0, 32, 0),
            2,
            SERVER_ARGS,
            image_entrypoint=None,
            extra_args=["--nnodes", "3"],
            env={},
        )


def test_node_gpus():
    eight = layout(member("head"), 8)
    assert check_node_gpus(eight, 4) is None
    assert check_node_gpus(eight, None) is None
    assert "puts 4 ranks on every node" in check_node_gpus(eight, 2)


def test_a_restored_member_is_read_from_its_own_command_line():
    # SERVER_ARGS ask for TP 2: with PP 2, 4 ranks, 2 per node.
    lay = layout(member(pipeline_parallel_size=2), 2)
    run = member_command(lay, "mp", SERVER_ARGS, image_entrypoint=None)
    restored = member_from_container(["vllm", "serve"], run["command"])
    assert restored["backend"] == "mp"
    assert restored["layout"] == lay
    assert served_names_from_args(run["command"]) == ["tiny"]
    ray_worker = member_command(
        layout(member(), 2), "ray", SERVER_ARGS, image_entrypoint=None, host_ip="10.0.0.2"
    )
    worker = member_from_container(ray_worker["entrypoint"], ray_worker["command"])
    assert (worker["backend"], worker["layout"]["role"]) == ("ray", "follower")
    ray_head = member_command(
        layout(member("head"), 2), "ray", SERVER_ARGS, image_entrypoint=None, host_ip="10.0.0.1"
    )
    head = member_from_container(ray_head["entrypoint"], ray_head["command"])
    assert (head["backend"], head["layout"]["role"], head["layout"]["world_size"]) == (
        "ray",
        "head",
        2,
    )
    # A server that serves alone is no member.
    assert member_from_container(["vllm", "serve"], SERVER_ARGS) is None


def test_real_ray_worker_log_proves_the_join():
    # ray 2.60.0's `ray start --block --address=<head>:6379` in the vLLM CPU image.
    log = lines("real_ray_2.60.0_worker_started.log")
    state = join_state(log, layout(member(), 2), "ray")
    assert state["joined"] is True
    assert "Ray runtime started." in state["proof"][0]
    # The head of that run: its Ray runtime started, vLLM's CPU build has no Ray backend.
    head = lines("real_cpu_0.32.0_ray_head_cpu_has_no_ray.log")
    kind, proof = member_failure(head, {"running": False, "exit_code": 1})
    assert kind == "engine_failed"
    assert any("EngineCore failed to start." in line for line in proof)


@pytest.mark.parametrize(
    ("layers", "pp", "stages"),
    [
        (48, 2, [24, 24]),
        # vLLM's get_pp_indices: the remainder one each to the stages before the last.
        (50, 4, [12, 13, 13, 12]),
        (7, 4, [2, 2, 2, 1]),
        (2, 1, [2]),
    ],
)
def test_pipeline_stage_layers_follow_vllm(layers, pp, stages):
    assert pipeline_stage_layers(layers, pp) == stages


def test_pipeline_stage_layers_partition_and_refusals():
    assert pipeline_stage_layers(48, 4, "10,14,14,10") == [10, 14, 14, 10]
    with pytest.raises(ValueError, match="must give 4 stages that add up"):
        pipeline_stage_layers(48, 4, "10,14,14")
    with pytest.raises(ValueError, match="exceeds the model's 2 layers"):
        pipeline_stage_layers(2, 4)


SEED_CONFIG = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "hidden_size": 2048,
    "max_position_embeddings": 40960,
    "torch_dtype": "bfloat16",
    "num_experts": 128,
}


def test_a_rank_plans_its_share_of_heads_and_layers():
    # The seed's model on two 4-GPU hosts. TP 4 x PP 2: each rank holds 1 of 4 KV heads of its
    # stage's 24 layers, half the 24,576 bytes per token of the seed's single-host TP 4.
    common = {"dtype": "half", "max_model_len": 32768, "block_size": 32, "kv_cache_gib": 4.3}
    single = plan_memory_for_layout(SEED_CONFIG, tensor_parallel_size=4, **common)
    assert single["kv_bytes_per_token"] == 24576
    assert single["pipeline_stages"] == [48]
    pp2 = plan_memory_for_layout(
        SEED_CONFIG, tensor_parallel_size=4, pipeline_parallel_size=2, **common
    )
    assert pp2["kv_bytes_per_token"] == 12288
    assert pp2["pipeline_stages"] == [24, 24]
    # 4.3 GiB / (32 tokens x 12,288 bytes) = 11,741 blocks (twice the seed's 5,870, plus the
    # block the finer division leaves over).
    assert pp2["gpu_blocks"] == int(4.3 * 2**30 // (32 * 12288)) == 11741
    assert pp2["kv_cache_tokens"] == 11741 * 32
    assert any("planned for the stage of 24 layers" in note for note in pp2["notes"])
    # TP 8 across both: the model's 4 KV heads cannot split 8 ways, each rank keeps one.
    tp8 = plan_memory_for_layout(SEED_CONFIG, tensor_parallel_size=8, **common)
    assert tp8["kv_bytes_per_token"] == single["kv_bytes_per_token"]


def test_a_head_whose_world_never_formed_names_the_join():
    head = lines("real_cpu_0.32.0_nnodes2_head.log")
    lay = layout(member("head"), 2)
    assert head_join_timeout(head, lay) is None
    waiting = [line for line in head if "is assigned as" not in line][:40]
    proof = head_join_timeout(waiting, lay)
    assert "a follower did not join" in proof[0]
    assert "head-0:29500" in proof[0]
