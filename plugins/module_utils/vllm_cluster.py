# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One vLLM engine over several hosts: the layout, each node's command line, what proves a node
joined, and how a member's failure is told.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_container module runs one cluster member per host with these functions; the collection
deploys vLLM's own multi-node engine and schedules nothing itself.

Two engines, chosen by the image's vLLM version as flags are (shared facts, "Versions"):

* ``mp`` (vLLM 0.12 and later): every node runs ``vllm serve`` with ``--nnodes``,
  ``--node-rank``, ``--master-addr``, ``--master-port`` and ``--distributed-executor-backend
  mp``; the followers add ``--headless`` (no API server). vLLM refuses ``--nnodes`` > 1 with
  another backend before 0.12 ("nnodes > 1 can only be set when distributed executor backend is
  mp or uni").
* ``ray`` (older images, such as the seed's 0.8.5): the pattern of vLLM's
  ``examples/online_serving/run_cluster.sh``: a Ray head and Ray workers in the vLLM image
  (``ray start --block --head --node-ip-address=<head> --port=6379`` / ``ray start --block
  --address=<head>:6379``), ``VLLM_HOST_IP`` per node, host networking, then the server on the
  head with ``--distributed-executor-backend ray``. The vllm/vllm-openai images from 0.18 carry
  no Ray.

Pure functions on dicts, strings and log lines: no Docker, no Ansible.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    clean_line,
    is_fatal_line,
)

Version = tuple[int, ...]

ROLES = ("head", "follower")
BACKENDS = ("auto", "mp", "ray")
# Shared facts, "Versions": native multi-node (mp backend) from 0.12; images from 0.18 carry no Ray.
NATIVE_MULTINODE_FROM: Version = (0, 12)
RAY_IMAGES_UNTIL: Version = (0, 18)
DEFAULT_MASTER_PORT = 29500
# run_cluster.sh: the Ray head "accepts connections on port 6379".
DEFAULT_RAY_PORT = 6379
# torch.distributed's Gloo and NCCL pick their interface from these (vLLM's multi-node docs:
# "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"); a wrong guess hangs the join.
SOCKET_IFNAME_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")

# Flags the cluster option owns: in extra_args they would contradict the layout.
CLUSTER_FLAGS = {
    "--nnodes": "nnodes",
    "--node-rank": "node_rank",
    "--master-addr": "master_addr",
    "--master-port": "master_port",
    "--headless": "role",
    "--distributed-executor-backend": "backend",
    "--pipeline-parallel-size": "pipeline_parallel_size",
    "-pp": "pipeline_parallel_size",
}

_ADDRESS_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9_.,:^=-]*$")

# vLLM's parallel_state logs, once every rank of the world joined the process groups:
#   rank 1 in world size 2 is assigned as DP rank 0, PP rank 0, PCP rank 0, TP rank 1, ...
# (0.32.0 CPU engine, tests/fixtures/vllm_logs/real_cpu_0.32.0_nnodes2_follower.log; the same
# sentence without PCP in older releases, vllm/distributed/parallel_state.py).
ASSIGNED_RE = re.compile(
    r"\brank (?P<rank>\d+) in world size (?P<world>\d+) is assigned as (?P<roles>[^\r\n]*)"
)
# init_distributed_environment, before the join: "world_size=2 rank=1 local_rank=0
# distributed_init_method=tcp://head:29500 backend=gloo".
WORLD_INIT_RE = re.compile(
    r"\bworld_size=(?P<world>\d+) rank=(?P<rank>\d+) local_rank=\d+ "
    r"distributed_init_method=(?P<method>\S+)"
)
# The follower's own start line (vllm/entrypoints/cli/serve.py, 0.32.0): "Launching vLLM
# (v0.32.0) headless multiproc executor, with head node address mn18-head:29500 ...".
HEADLESS_RE = re.compile(r"headless multiproc executor, with head node address (?P<addr>\S+)")
# `ray start` prints it once the node is up and, for a worker, connected to the head's GCS
# (ray-project/ray, python/ray/scripts/scripts.py; its CLI tests expect the same line).
RAY_STARTED_RE = re.compile(r"Ray runtime started\.")
# What a rank says when a peer vanished (Gloo's TCP pair, torch's store, NCCL's watchdog).
PEER_LOST_RE = re.compile(
    r"Connection closed by peer|Connection reset by peer|Broken pipe"
    r"|recvBytes|Socket Timeout|failed to recv, got 0 bytes"
    r"|remote process exited or there was a network error"
    r"|TCPStore.*(?:Connection|timed out|timeout)"
)


class ClusterError(ValueError):
    """A cluster layout or option that cannot work; the message names the option."""


def validate_cluster(
    cluster: Mapping[str, Any] | None, tensor_parallel_size: int | None
) -> list[str]:
    """Every error of the ``cluster`` option, each naming its key. Empty when all is well."""
    if not cluster:
        return []
    errors: list[str] = []
    role = cluster.get("role")
    if role not in ROLES:
        errors.append(f"cluster.role must be head or follower, got {role!r}")
    nnodes = cluster.get("nnodes")
    if not isinstance(nnodes, int) or nnodes < 2:
        errors.append(f"cluster.nnodes must be an integer of 2 or more, got {nnodes!r}")
        nnodes = None
    rank = cluster.get("node_rank")
    if rank is None:
        rank = 0 if role == "head" else None
    if role == "follower" and rank is None:
        errors.append("cluster.node_rank is required for a follower (1 to nnodes - 1)")
    elif rank is not None and nnodes is not None:
        low = 0 if role == "head" else 1
        high = 0 if role == "head" else nnodes - 1
        if not isinstance(rank, int) or not low <= rank <= high:
            where = "0 (the head is node 0)" if role == "head" else f"1 to {nnodes - 1}"
            errors.append(f"cluster.node_rank of a {role} must be {where}, got {rank!r}")
    address = cluster.get("master_addr")
    if not address or not _ADDRESS_RE.match(str(address)):
        errors.append(
            "cluster.master_addr must be the head's address (a host name or IP address every "
            f"node reaches), got {address!r}"
        )
    for key, default in (("master_port", DEFAULT_MASTER_PORT), ("ray_port", DEFAULT_RAY_PORT)):
        port = cluster.get(key, default)
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            errors.append(f"cluster.{key} must be a TCP port (1-65535), got {port!r}")
    pp = cluster.get("pipeline_parallel_size")
    pp = 1 if pp is None else pp
    if not isinstance(pp, int) or pp < 1:
        errors.append(f"cluster.pipeline_parallel_size must be 1 or more, got {pp!r}")
        pp = None
    backend = cluster.get("backend") or "auto"
    if backend not in BACKENDS:
        errors.append(f"cluster.backend must be one of auto, mp, ray, got {backend!r}")
    ifname = cluster.get("socket_ifname")
    if ifname and not _IFNAME_RE.match(str(ifname)):
        errors.append(
            f"cluster.socket_ifname must be an interface name (such as eth0 or ^lo,docker), "
            f"got {ifname!r}"
        )
    host_ip = cluster.get("host_ip")
    if host_ip and not _ADDRESS_RE.match(str(host_ip)):
        errors.append(f"cluster.host_ip must be this node's IP address, got {host_ip!r}")
    tp = tensor_parallel_size or 1
    if nnodes is not None and pp is not None and (tp * pp) % nnodes:
        errors.append(
            f"the layout does not split over the nodes: tensor_parallel_size {tp} x "
            f"cluster.pipeline_parallel_size {pp} = {tp * pp} ranks over cluster.nnodes "
            f"{nnodes} nodes (every node runs the same number of ranks)"
        )
    return errors


def layout(cluster: Mapping[str, Any], tensor_parallel_size: int | None) -> dict[str, Any]:
    """The layout as numbers: world_size, gpus_per_node (ranks per node), which ranks live here.

    vLLM numbers ranks node by node: node r holds ranks r x per_node to (r + 1) x per_node - 1.
    """
    errors = validate_cluster(cluster, tensor_parallel_size)
    if errors:
        raise ClusterError("; ".join(errors))
    tp = tensor_parallel_size or 1
    pp = cluster.get("pipeline_parallel_size") or 1
    nnodes = int(cluster["nnodes"])
    rank = cluster.get("node_rank")
    rank = 0 if rank is None else int(rank)
    world = tp * pp
    per_node = world // nnodes
    return {
        "role": cluster["role"],
        "nnodes": nnodes,
        "node_rank": rank,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "world_size": world,
        "gpus_per_node": per_node,
        "ranks": list(range(rank * per_node, (rank + 1) * per_node)),
        "master_addr": str(cluster["master_addr"]),
        "master_port": int(cluster.get("master_port") or DEFAULT_MASTER_PORT),
        "ray_port": int(cluster.get("ray_port") or DEFAULT_RAY_PORT),
        "tp_across_nodes": tp > per_node,
    }


def choose_backend(requested: str | None, version: Version | None) -> tuple[str, list[str]]:
    """(backend, warnings) for the image's vLLM version; ClusterError when it cannot work."""
    requested = requested or "auto"
    release = (*version, 0, 0) if version is not None else None
    if requested == "auto":
        if release is None:
            raise ClusterError(
                "cluster.backend auto needs the image's vLLM version (mp from 0.12, Ray before): "
                "set vllm_version or cluster.backend"
            )
        return ("mp" if release[:2] >= NATIVE_MULTINODE_FROM else "ray"), []
    if requested == "mp" and release is not None and release[:2] < NATIVE_MULTINODE_FROM:
        raise ClusterError(
            f"cluster.backend mp needs vLLM 0.12 or later (native --nnodes); the image has "
            f"{'.'.join(map(str, version or ()))}: use backend ray (or auto)"
        )
    warnings = []
    if requested == "ray" and release is not None and release[:2] >= RAY_IMAGES_UNTIL:
        warnings.append(
            "cluster.backend ray: the vllm/vllm-openai images from 0.18 carry no Ray; the image "
            "must bring its own (mp, the native engine, needs none)"
        )
    return requested, warnings


def refuse_owned_flags(extra_args: Sequence[str]) -> None:
    """ClusterError when extra_args sets what the cluster option owns."""
    for token in extra_args or []:
        flag = str(token).split("=", 1)[0].replace("_", "-")
        if flag in CLUSTER_FLAGS:
            raise ClusterError(
                f"extra_args has {token}: with cluster set, cluster.{CLUSTER_FLAGS[flag]} owns it"
            )


def cluster_env(cluster: Mapping[str, Any], backend: str) -> dict[str, str]:
    """The environment a member needs besides the operator's own (which wins over this)."""
    env: dict[str, str] = {}
    ifname = cluster.get("socket_ifname")
    if ifname:
        for name in SOCKET_IFNAME_VARIABLES:
            env[name] = str(ifname)
    host_ip = cluster.get("host_ip")
    if host_ip:
        # vLLM's get_ip() takes VLLM_HOST_IP first (mp: the address the head's message queue
        # advertises; Ray: run_cluster.sh "Each worker requires a unique VLLM_HOST_IP value").
        env["VLLM_HOST_IP"] = str(host_ip)
        if backend == "ray":
            # run_cluster.sh pins Ray to the same address on multi-NIC hosts.
            env["RAY_NODE_IP_ADDRESS"] = str(host_ip)
            env["RAY_OVERRIDE_NODE_IP_ADDRESS"] = str(host_ip)
    return env


def member_command(
    lay: Mapping[str, Any],
    backend: str,
    server_args: Sequence[str],
    *,
    image_entrypoint: Sequence[str] | None,
    host_ip: str | None = None,
) -> dict[str, Any]:
    """What the member's container runs: {"entrypoint": list or None, "command": list}.

    ``server_args`` are the single-node server arguments (vllm_flags.build_vllm_args());
    ``entrypoint`` None keeps the image's own.
    """
    pp = lay["pipeline_parallel_size"]
    pp_args = ["--pipeline-parallel-size", str(pp)] if pp > 1 else []
    if backend == "mp":
        args = [
            *server_args,
            *pp_args,
            "--nnodes",
            str(lay["nnodes"]),
            "--node-rank",
            str(lay["node_rank"]),
            "--master-addr",
            lay["master_addr"],
            "--master-port",
            str(lay["master_port"]),
            "--distributed-executor-backend",
            "mp",
        ]
        if lay["role"] == "follower":
            args.append("--headless")
        return {"entrypoint": None, "command": args}
    if backend != "ray":
        raise ClusterError(f"cluster.backend must be mp or ray here, got {backend!r}")
    ray = ["ray", "start", "--block"]
    if lay["role"] == "follower":
        ray.append(f"--address={lay['master_addr']}:{lay['ray_port']}")
        if host_ip:
            ray.append(f"--node-ip-address={host_ip}")
        return {"entrypoint": ray, "command": []}
    # The head: a Ray head in the background (no --block), then the image's own server in the
    # foreground with the Ray backend, as run_cluster.sh's `docker exec ... vllm serve` does.
    head = ["ray", "start", "--head", f"--port={lay['ray_port']}"]
    head.append(f"--node-ip-address={host_ip or lay['master_addr']}")
    script = " ".join(head) + ' && exec "$@"'
    server = list(image_entrypoint or ["python3", "-m", "vllm.entrypoints.openai.api_server"])
    return {
        "entrypoint": ["/bin/bash", "-c", script, "llmops-ray-head"],
        "command": [*server, *server_args, *pp_args, "--distributed-executor-backend", "ray"],
    }


def world_sizes(lines: Sequence[str]) -> dict[str, Any]:
    """What a member's log says about the world: {"assigned": {rank: (world, line)},
    "init": {rank: (world, line)}, "ray_started": line or None, "headless": line or None}."""
    found: dict[str, Any] = {"assigned": {}, "init": {}, "ray_started": None, "headless": None}
    for raw in lines:
        line = clean_line(raw)
        match = ASSIGNED_RE.search(line)
        if match:
            found["assigned"].setdefault(int(match["rank"]), (int(match["world"]), line))
            continue
        match = WORLD_INIT_RE.search(line)
        if match:
            found["init"].setdefault(int(match["rank"]), (int(match["world"]), line))
            continue
        if found["ray_started"] is None and RAY_STARTED_RE.search(line):
            found["ray_started"] = line
        if found["headless"] is None and HEADLESS_RE.search(line):
            found["headless"] = line
    return found


def join_state(lines: Sequence[str], lay: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """Whether this member's log proves it joined the world the layout asks for.

    Returns joined (bool), wrong_world (a line reporting another world size, or None), proof
    (the lines that prove the join) and missing (the local ranks not seen yet). A Ray worker
    node joins by ``ray start`` (its vLLM ranks log on the head); an mp member when every local
    rank logged its assignment in the expected world.
    """
    seen = world_sizes(lines)
    expected = lay["world_size"]
    for world, line in {**seen["init"], **seen["assigned"]}.values():
        if world != expected:
            return {"joined": False, "wrong_world": line, "proof": [line], "missing": []}
    if backend == "ray" and lay["role"] == "follower":
        proof = [seen["ray_started"]] if seen["ray_started"] else []
        return {"joined": bool(proof), "wrong_world": None, "proof": proof, "missing": []}
    missing = [rank for rank in lay["ranks"] if rank not in seen["assigned"]]
    proof = [seen["assigned"][rank][1] for rank in lay["ranks"] if rank in seen["assigned"]]
    return {"joined": not missing, "wrong_world": None, "proof": proof, "missing": missing}


def head_world_check(lines: Sequence[str], lay: Mapping[str, Any]) -> dict[str, Any] | None:
    """None when the head's log shows the world size the layout asked for, else a failure
    {kind: cluster_world_size, msg, proof}. With Ray the ranks of every node log on the head
    (Ray forwards them, deduplicated: "[repeated Nx across cluster]"), so any rank's line counts.
    """
    seen = world_sizes(lines)
    expected = lay["world_size"]
    rows = {**seen["init"], **seen["assigned"]}
    wrong = [line for world, line in rows.values() if world != expected]
    if wrong:
        return {
            "kind": "cluster_world_size",
            "msg": f"the engine formed another world than the layout's {expected} ranks",
            "proof": wrong[:4],
        }
    if not seen["assigned"]:
        return {
            "kind": "cluster_world_size",
            "msg": (
                f"the server answers, but its log never shows the world of {expected} ranks the "
                "layout asked for (no 'rank N in world size W is assigned as' line)"
            ),
            "proof": [],
        }
    return None


def exit_cause(exit_code: int | None, oom_killed: bool | None) -> tuple[str, str] | None:
    """(kind, proof line) for an exit that no log line explains: SIGKILL or the OOM killer."""
    if oom_killed:
        return "host_oom", (
            f"the container exited with code {exit_code} and Docker reports OOMKilled: the "
            "kernel's OOM killer ended it (host memory or the container's limit)"
        )
    if exit_code == 137:
        return "killed", (
            "the container exited with code 137 (128 + SIGKILL) without an error line in its "
            "log: it was killed from outside (docker kill, a host shutdown)"
        )
    if exit_code == 143:
        return "killed", (
            "the container exited with code 143 (128 + SIGTERM) without an error line in its "
            "log: it was stopped from outside (docker stop)"
        )
    return None


def peer_lost(lines: Sequence[str]) -> list[str]:
    """The lines of a rank telling that a peer of the world vanished (at most 6)."""
    return [clean_line(line) for line in lines if PEER_LOST_RE.search(line)][:6]


def wait_until_joined(
    *,
    read_logs: Callable[[], list[str]],
    container_state: Callable[[], dict[str, Any]],
    lay: Mapping[str, Any],
    backend: str,
    timeout: float,
    log_lines: list[str],
    full_log: Callable[[], list[str]] | None = None,
    settle: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.25,
) -> dict[str, Any]:
    """Wait until a follower joined the world and is alive, or say why it will not.

    A follower serves no API: it is ready when its log proves the join (join_state()) and the
    container still runs ``settle`` seconds later. ``container_state()`` returns {"running",
    "exit_code", "oom_killed", "restarted"}; a state without a key counts as not running only
    when "running" is missing or false.

    Returns ready, reason (joined, exited, wrong_world, fatal_log, timeout), kind, proof,
    exit_code, seconds, joined_seconds, log_tail.
    """
    start = clock()
    result: dict[str, Any] = {
        "ready": False,
        "reason": None,
        "kind": None,
        "proof": [],
        "exit_code": None,
        "seconds": None,
        "joined_seconds": None,
        "log_tail": [],
    }
    fatal_at: float | None = None

    def finish(reason: str, kind: str | None = None, proof: Sequence[str] = ()) -> dict:
        result["reason"] = reason
        result["seconds"] = round(clock() - start, 2)
        result["ready"] = reason == "joined"
        result["kind"] = kind
        result["proof"] = list(proof)
        result["log_tail"] = log_lines[-30:]
        return result

    while True:
        for line in read_logs():
            log_lines.append(line)
            if fatal_at is None and is_fatal_line(line):
                fatal_at = clock()
        joined = join_state(log_lines, lay, backend)
        if joined["wrong_world"]:
            return finish("wrong_world", "cluster_world_size", joined["proof"])
        state = container_state() or {}
        now = clock()
        if not state.get("running") or state.get("restarted"):
            if full_log is not None:
                complete = full_log()
                if complete:
                    log_lines[:] = complete
            result["exit_code"] = state.get("exit_code")
            return finish("exited", *member_failure(log_lines, state))
        if fatal_at is not None and now - fatal_at >= settle:
            return finish("fatal_log", *member_failure(log_lines, state))
        if joined["joined"] and fatal_at is None:
            if result["joined_seconds"] is None:
                result["joined_seconds"] = round(now - start, 2)
            elif now - start - result["joined_seconds"] >= settle:
                return finish("joined", None, joined["proof"])
        if now - start >= timeout:
            missing = joined["missing"]
            why = (
                f"cluster member did not join within {timeout} s: no assignment line for "
                f"rank(s) {', '.join(map(str, missing))} of the world of {lay['world_size']} "
                f"(is the head up, and {lay['master_addr']}:{lay['master_port']} reachable?)"
                if missing
                else f"cluster member did not join within {timeout} s"
            )
            return finish("timeout", "cluster_join_timeout", [why])
        sleep(interval)


def member_failure(lines: Sequence[str], state: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(kind, proof) of a member that exited or logged a fatal line.

    The root cause in its log first (vllm_readiness.failure_from_log), then a vanished peer
    (cluster_peer_lost), then an exit no line explains (killed, host_oom), else engine_failed.
    """
    # Imported here: vllm_readiness imports vllm_container, which a caller may import first.
    from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_readiness import (  # noqa: PLC0415
        failure_from_log,
    )

    kind, proof = failure_from_log(lines)
    lost = peer_lost(lines)
    if kind is not None and kind != "engine_failed":
        return kind, proof
    if lost:
        return "cluster_peer_lost", [*lost, *proof][:12]
    cause = exit_cause(state.get("exit_code"), state.get("oom_killed"))
    if cause is not None and not state.get("running"):
        return cause[0], [cause[1], *proof][:12]
    return kind or "engine_failed", proof


def rank_memory(report: Mapping[str, Any], lay: Mapping[str, Any], host: str | None) -> dict:
    """The memory report of one member, labelled with the ranks it holds."""
    return {
        "host": host,
        "role": lay["role"],
        "node_rank": lay["node_rank"],
        "ranks": list(lay["ranks"]),
        "kv_cache_tokens": report.get("kv_cache_tokens"),
        "kv_cache_gib": report.get("kv_cache_gib"),
        "weights_gib": report.get("weights_gib"),
        "per_rank": list(report.get("ranks") or []),
    }


def check_node_gpus(lay: Mapping[str, Any], visible: int | None) -> str | None:
    """An error when this node's container would see fewer GPUs than its ranks need."""
    if visible is None or visible >= lay["gpus_per_node"]:
        return None
    return (
        f"the layout puts {lay['gpus_per_node']} ranks on every node (tensor_parallel_size "
        f"{lay['tensor_parallel_size']} x cluster.pipeline_parallel_size "
        f"{lay['pipeline_parallel_size']} over cluster.nnodes {lay['nnodes']}) and the container "
        f"would see {visible} GPUs (gpus option and the host's GPU count)"
    )


def member_plan(
    cluster: Mapping[str, Any],
    version: Version | None,
    tensor_parallel_size: int | None,
    server_args: Sequence[str],
    *,
    image_entrypoint: Sequence[str] | None,
    extra_args: Sequence[str] | None,
    env: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Everything the module needs to run one member: layout, backend, entrypoint, command,
    env (the member's variables under the operator's), settle and warnings."""
    lay = layout(cluster, tensor_parallel_size)
    backend, warnings = choose_backend(cluster.get("backend"), version)
    refuse_owned_flags(extra_args or [])
    if backend == "ray" and not cluster.get("host_ip"):
        raise ClusterError(
            "cluster.host_ip is required with the Ray backend: run_cluster.sh gives every node "
            "its own VLLM_HOST_IP, the address the other nodes reach it on"
        )
    run = member_command(
        lay, backend, server_args, image_entrypoint=image_entrypoint, host_ip=cluster.get("host_ip")
    )
    merged = cluster_env(cluster, backend)
    merged.update({str(key): str(value) for key, value in (env or {}).items()})
    settle = cluster.get("join_settle")
    return {
        "layout": lay,
        "backend": backend,
        "entrypoint": run["entrypoint"],
        "command": run["command"],
        "env": merged,
        "settle": 5 if settle is None else max(0, int(settle)),
        "warnings": warnings,
    }


def flag_value(args: Sequence[str], *flags: str) -> str | None:
    """The value of the first of ``flags`` on a command line (``--flag v`` or ``--flag=v``)."""
    for index, token in enumerate(args):
        name, sep, value = str(token).partition("=")
        if name in flags:
            if sep:
                return value
            if index + 1 < len(args):
                return str(args[index + 1])
    return None


def member_from_container(
    entrypoint: Sequence[str] | None, command: Sequence[str] | None
) -> dict[str, Any] | None:
    """The member an existing container was created as, read from its own command line (a
    rollback restores the previous configuration, whose layout may differ from the new one).
    None when it is no cluster member."""
    words = [str(word) for word in (entrypoint or [])]
    args = [str(word) for word in (command or [])]
    if words[:3] == ["ray", "start", "--block"]:
        address = flag_value(words, "--address") or ""
        host, _, port = address.rpartition(":")
        return {
            "backend": "ray",
            "layout": {
                "role": "follower",
                "nnodes": None,
                "node_rank": None,
                "world_size": None,
                "ranks": [],
                "master_addr": host,
                "master_port": None,
                "ray_port": int(port) if port.isdigit() else DEFAULT_RAY_PORT,
            },
            "settle": 5,
        }
    backend = flag_value(args, "--distributed-executor-backend")
    nnodes = flag_value(args, "--nnodes")
    if backend == "ray" and any("ray start --head" in word for word in words):
        nnodes = nnodes or "2"
    elif nnodes is None or not nnodes.isdigit() or int(nnodes) < 2:
        return None
    tp = int(flag_value(args, "--tensor-parallel-size", "-tp") or 1)
    pp = int(flag_value(args, "--pipeline-parallel-size", "-pp") or 1)
    rank = int(flag_value(args, "--node-rank") or 0)
    cluster = {
        "role": "follower" if "--headless" in args else "head",
        "nnodes": int(nnodes),
        "node_rank": rank,
        "master_addr": flag_value(args, "--master-addr") or "localhost",
        "master_port": int(flag_value(args, "--master-port") or DEFAULT_MASTER_PORT),
        "pipeline_parallel_size": pp,
    }
    try:
        lay = layout(cluster, tp)
    except ClusterError:
        return None
    return {"backend": backend or "mp", "layout": lay, "settle": 5}


def served_names_from_args(args: Sequence[str]) -> list[str]:
    """The --served-model-name values of a server's arguments (empty when absent)."""
    names: list[str] = []
    tokens = [str(token) for token in args or []]
    for index, token in enumerate(tokens):
        if token == "--served-model-name":
            for value in tokens[index + 1 :]:
                if value.startswith("-"):
                    break
                names.append(value)
    return names


def head_join_timeout(lines: Sequence[str], lay: Mapping[str, Any]) -> list[str] | None:
    """The proof of a head that timed out before its world formed (no rank of it was assigned):
    its followers never joined. None when the world formed (the timeout has another cause)."""
    if world_sizes(lines)["assigned"]:
        return None
    return [
        f"no 'rank N in world size {lay['world_size']} is assigned as' line: the world of "
        f"{lay['nnodes']} nodes never formed, so a follower did not join (is every follower "
        f"started, and {lay['master_addr']}:{lay['master_port']} reachable from it?)"
    ]
