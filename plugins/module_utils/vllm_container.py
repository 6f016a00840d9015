# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vLLM container as data: validation, desired-vs-actual comparison, budget verification.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_container module turns its options into a desired container with these functions,
compares it with ``docker inspect`` output, and checks what vLLM reported against the
operator's floors. Pure functions on dicts and strings: no Docker, no Ansible.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_cluster import (
    flag_value,
    validate_cluster,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import (
    SECRET_MASK,
    mask_args,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    parse_memory_report,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_metrics import (
    live_load,
    samples,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import range_errors

MANAGED_LABEL = "llmops.gpu_serving.vllm_container"
PREVIOUS_SUFFIX = "-llmops-previous"
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
STATES = ("absent", "present", "stopped", "started")

# Docker's container name rule (daemon/names.go: restrictedNameChars).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CPUSET_RE = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$")
_SIZE_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[bkmgt]?)(?:i?b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SECRET_ENV_RE = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# ulimit names Docker accepts (pkg/ulimit in moby).
ULIMIT_NAMES = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)

# expect key -> (report key, comparison): a floor ("min") or a ceiling ("max").
EXPECT_CHECKS: dict[str, tuple[str, str]] = {
    "min_kv_cache_gib": ("kv_cache_gib", "min"),
    "min_max_concurrency": ("max_concurrency", "min"),
    "max_weights_gib": ("weights_gib", "max"),
    "min_gpu_blocks": ("gpu_blocks", "min"),
    "min_kv_cache_tokens": ("kv_cache_tokens", "min"),
}
PLAN_FIELDS = (
    "kv_cache_gib",
    "weights_gib",
    "budget_gib",
    "gpu_blocks",
    "cpu_blocks",
    "kv_cache_tokens",
    "max_concurrency",
)
# Fields of the memory report the module returns (vllm_logs.parse_memory_report keys).
REPORT_FIELDS = (
    "engine",
    "vllm_version",
    "kv_cache_gib",
    "weights_gib",
    "gpu_blocks",
    "cpu_blocks",
    "kv_cache_tokens",
    "max_model_len",
    "max_concurrency",
    "total_gpu_memory_gib",
    "gpu_memory_utilization",
    "budget_gib",
    "model_load_seconds",
    "init_engine_seconds",
    "graph_capture_gib",
    "ranks",
)


def parse_size(text: str | int) -> int:
    """Docker's size notation in bytes: ``16g`` -> 17179869184, ``512m``, ``1024``."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (use a number with b, k, m or g, such as 16g)")
    return int(float(match["number"]) * _SIZE_UNITS[match["unit"].lower()])


def parse_gpus(value: str | int | None) -> dict[str, Any] | None:
    """``--gpus`` as data: all -> {"count": -1}; 2 -> {"count": 2}; device=0,1 or 0,1 ->
    {"device_ids": ["0", "1"]}; empty or ``none`` -> None (no GPU requested)."""
    if value is None:
        return None
    text = str(value).strip().strip('"')
    if text in ("", "none", "0"):
        return None
    if text == "all":
        return {"count": -1}
    if text.startswith("count="):
        text = text[len("count=") :]
        if text == "all":
            return {"count": -1}
    if text.isdigit():
        return {"count": int(text)}
    if text.startswith("device="):
        text = text[len("device=") :]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ValueError(f"gpus: no device in {value!r}")
    return {"device_ids": ids}


def visible_gpu_count(gpus: Mapping[str, Any] | None, host_gpu_count: int | None) -> int | None:
    """How many GPUs the container will see, when that can be told."""
    if gpus is None:
        return 0
    if "device_ids" in gpus:
        return len(gpus["device_ids"])
    if gpus.get("count", -1) >= 0:
        count = int(gpus["count"])
        return count if host_gpu_count is None else min(count, host_gpu_count)
    return host_gpu_count


def parse_ulimits(ulimits: Mapping[str, Any] | None) -> dict[str, tuple[int, int]]:
    """{"memlock": -1, "stack": 67108864, "nofile": "1024:4096"} -> name -> (soft, hard)."""
    parsed: dict[str, tuple[int, int]] = {}
    for name, value in (ulimits or {}).items():
        if name not in ULIMIT_NAMES:
            raise ValueError(f"ulimits: unknown limit {name!r}; known: {', '.join(ULIMIT_NAMES)}")
        text = str(value).strip()
        try:
            if ":" in text:
                soft, hard = (int(part) for part in text.split(":", 1))
            else:
                soft = hard = int(text)
        except ValueError:
            raise ValueError(
                f"ulimits: {name} must be an integer (-1 for unlimited) or soft:hard, got {value!r}"
            ) from None
        parsed[name] = (soft, hard)
    return parsed


def probe_address(bind_address: str | None) -> str:
    """Where the module reaches a port published on ``bind_address`` from the same host."""
    if not bind_address or bind_address in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return bind_address


def published_endpoint(attrs: Mapping[str, Any]) -> tuple[str | None, int] | None:
    """(host IP or None, host port) of the first port a container publishes (``docker
    inspect``'s HostConfig.PortBindings), None when it publishes none."""
    bindings = ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).values()
    published = [b for group in bindings for b in group or [] if b.get("HostPort")]
    if not published:
        return None
    return published[0].get("HostIp") or None, int(published[0]["HostPort"])


# vLLM 0.18 added --shutdown-timeout: on SIGTERM the server stops taking requests and waits up
# to that many seconds for the running ones (0, its default, aborts them at once); vLLM PR
# #36666 (vllm-project/vllm), facts/vllm.md "Versions". Docker's stop timeout must exceed it,
# with room for the engine's own teardown after the wait.
SHUTDOWN_TIMEOUT_FLAG = "--shutdown-timeout"
SHUTDOWN_TEARDOWN_SECONDS = 15


def shutdown_timeout_of(command: Sequence[str] | None) -> int | None:
    """The ``--shutdown-timeout`` a container's vLLM command line sets, None without one."""
    value = flag_value([str(arg) for arg in command or []], SHUTDOWN_TIMEOUT_FLAG)
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def stop_timeout_for(stop_timeout: int, shutdown_timeout: int | None) -> int:
    """Docker's stop timeout for a vLLM container: ``stop_timeout``, raised above the server's
    own ``--shutdown-timeout`` so Docker's SIGKILL does not cut its graceful wait short."""
    if not shutdown_timeout or shutdown_timeout <= 0:
        return stop_timeout
    return max(stop_timeout, shutdown_timeout + SHUTDOWN_TEARDOWN_SECONDS)


def exposure_warning(
    bind_address: str | None, port: int, api_key: str | None, env: Mapping[str, Any] | None
) -> str | None:
    """A warning when the server is published beyond this host without an API key.

    vLLM takes the key from ``--api-key`` or the ``VLLM_API_KEY`` environment variable; without
    either, anyone who reaches a port published on a routable address can use the model.
    """
    if not port or api_key or (env or {}).get("VLLM_API_KEY"):
        return None
    address = bind_address or "0.0.0.0"
    try:
        if ipaddress.ip_address(address).is_loopback:
            return None
    except ValueError:
        if address == "localhost":
            return None
    return (
        f"the server is published on {address}:{port} without an API key: anyone who reaches "
        "that address can use the model; set api_key (vllm_server_api_key), or bind_address "
        "127.0.0.1"
    )


def validate_options(params: Mapping[str, Any]) -> list[str]:
    """Every error in the options, before anything touches Docker. Empty when all is well.

    Cross-checks that need the image (block size per version, tensor parallel size against
    the visible GPUs) are made later with check_block_size / check_tensor_parallel_size.
    """
    errors: list[str] = []
    name = params.get("name") or ""
    if not _NAME_RE.match(name):
        errors.append(
            f"name must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (Docker's container names), got {name!r}"
        )
    state = params.get("state", "started")
    if state not in ("absent", "committed", "rolled_back") and not params.get("image"):
        errors.append(f"image is required with state {state}")

    def number(key: str, *, low: float | None = None, high: float | None = None, low_open=False):
        value = params.get(key)
        if value is None:
            return
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            left = "(" if low_open else "["
            errors.append(f"{key} must be in {left}{low}, {high}], got {value}")

    # The engine options' ranges and choices: module_utils/vllm_options.py.
    errors.extend(range_errors(params))
    # A cluster follower serves no API: port 0 publishes nothing.
    follower = (params.get("cluster") or {}).get("role") == "follower"
    number("port", low=0 if follower else 1, high=65535)
    number("container_port", low=1, high=65535)
    number("ready_timeout", low=1)
    number("stop_timeout", low=0)
    number("gpu_release_timeout", low=0)
    number("drain_timeout", low=0)
    names = params.get("served_model_name") or []
    if any(not str(served).strip() for served in names):
        errors.append("served_model_name must not contain empty names")
    bind = params.get("bind_address")
    if bind:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            errors.append(f"bind_address must be an IP address, got {bind!r}")
    network = params.get("network_mode")
    if network and not _NAME_RE.match(str(network)):
        errors.append(
            "network_mode must be host, bridge, none or the name of a Docker network, "
            f"got {network!r}"
        )
    errors.extend(validate_cluster(params.get("cluster"), params.get("tensor_parallel_size")))
    cpuset = params.get("cpuset_cpus")
    if cpuset and not _CPUSET_RE.match(str(cpuset)):
        errors.append(f"cpuset_cpus must be a CPU list such as 0-55 or 0,2,4-7, got {cpuset!r}")
    for key, parser in (
        ("gpus", parse_gpus),
        ("ulimits", parse_ulimits),
        ("shm_size", lambda value: parse_size(value) if value else None),
    ):
        try:
            parser(params.get(key))
        except ValueError as err:
            errors.append(str(err) if str(err).startswith(key) else f"{key}: {err}")
    if params.get("model_host_path") and not params.get("model_container_path"):
        errors.append("model_container_path is required with model_host_path")
    cache = params.get("compile_cache_host_path")
    if cache and not str(cache).startswith("/"):
        errors.append(f"compile_cache_host_path must be an absolute path, got {cache!r}")
    inside = params.get("compile_cache_container_path") or COMPILE_CACHE_CONTAINER_PATH
    if cache and not str(inside).startswith("/"):
        errors.append("compile_cache_container_path must be an absolute path")
    if state in ("started", "present", "stopped") and not (
        params.get("model") or params.get("model_container_path")
    ):
        errors.append("model (or model_container_path) is required")
    rope = params.get("rope_scaling")
    if rope and not ({"rope_type", "type"} & set(rope)):
        errors.append(
            "rope_scaling must name its kind with rope_type (or the older type), "
            'such as {"rope_type": "yarn", "factor": 4.0, '
            '"original_max_position_embeddings": 32768}'
        )
    for key, value in (params.get("expect") or {}).items():
        if value is not None and value < 0:
            errors.append(f"expect.{key} must not be negative, got {value}")
    return errors


def check_tensor_parallel_size(tensor_parallel_size: int | None, visible: int | None) -> str | None:
    """An error when the container would see fewer GPUs than tensor parallelism needs."""
    if tensor_parallel_size is None or visible is None:
        return None
    if tensor_parallel_size > visible:
        return (
            f"tensor_parallel_size {tensor_parallel_size} needs {tensor_parallel_size} GPUs and "
            f"the container would see {visible} (gpus option and the host's GPU count)"
        )
    return None


COMPILE_CACHE_CONTAINER_PATH = "/root/.cache/vllm"


def compile_cache_mounts(params: Mapping[str, Any]) -> dict[str, str]:
    """Host path -> container path of vLLM's compile cache (torch.compile, Triton, FlashInfer
    caches under ``~/.cache/vllm``), so a recreated container does not compile again."""
    host = params.get("compile_cache_host_path")
    if not host:
        return {}
    return {
        str(host): str(params.get("compile_cache_container_path") or COMPILE_CACHE_CONTAINER_PATH)
    }


def desired_spec(
    params: Mapping[str, Any],
    args: Sequence[str],
    image_id: str | None,
    *,
    entrypoint: Sequence[str] | None = None,
    env: Mapping[str, Any] | None = None,
) -> dict:
    """The container the options describe, in the normalized form actual_spec() produces.

    ``None`` for runtime, ipc_mode, shm_size, network_mode and entrypoint means "Docker's
    default" (the image's entrypoint) and is not compared (the engine fills those in).
    ``env`` replaces the ``env`` option (a cluster member adds its own variables to it).
    """
    labels = {str(k): str(v) for k, v in (params.get("labels") or {}).items()}
    labels[MANAGED_LABEL] = "1"
    mounts = []
    if params.get("model_host_path"):
        mode = "ro" if params.get("model_read_only") else "rw"
        mounts.append(f"{params['model_host_path']}:{params['model_container_path']}:{mode}")
    for host, container in compile_cache_mounts(params).items():
        mounts.append(f"{host}:{container}:rw")
    bind = params.get("bind_address") or "127.0.0.1"
    container_port = int(params.get("container_port") or 8000)
    ports = {}
    # Host networking publishes nothing: the server listens on the host's own ports.
    if params.get("port") and params.get("network_mode") != "host":
        ports[f"{container_port}/tcp"] = [f"{bind}:{params['port']}"]
    shm = params.get("shm_size")
    return {
        "image": params.get("image"),
        "image_id": image_id,
        "entrypoint": list(entrypoint) if entrypoint is not None else None,
        "command": list(args),
        "env": {
            str(k): str(v) for k, v in (env if env is not None else params.get("env") or {}).items()
        },
        "labels": labels,
        "mounts": sorted(mounts),
        "ports": ports,
        "runtime": params.get("runtime") or None,
        "gpus": parse_gpus(params.get("gpus")),
        "cpuset_cpus": params.get("cpuset_cpus") or "",
        "ulimits": {
            name: list(limits) for name, limits in parse_ulimits(params.get("ulimits")).items()
        },
        "ipc_mode": params.get("ipc_mode") or None,
        "shm_size": parse_size(shm) if shm else None,
        "restart_policy": params.get("restart_policy") or "no",
        "network_mode": params.get("network_mode") or None,
    }


def _env_dict(env_list: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in env_list or []:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


def image_env(image_attrs: Mapping[str, Any]) -> dict[str, str]:
    return _env_dict((image_attrs.get("Config") or {}).get("Env"))


def _own_entries(values: Mapping[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """What a container sets itself: entries that differ from the image's."""
    return {key: value for key, value in values.items() if inherited.get(key) != value}


def actual_spec(container_attrs: Mapping[str, Any], image_attrs: Mapping[str, Any]) -> dict:
    """Normalize ``docker inspect`` of a container (with its image's inspect) like desired_spec.

    Values the image provides (its environment, its labels) are left out: the container
    inherits them, the options do not set them.
    """
    config = container_attrs.get("Config") or {}
    host = container_attrs.get("HostConfig") or {}
    image_config = image_attrs.get("Config") or {}
    mounts = sorted(
        f"{mount.get('Source')}:{mount.get('Destination')}:{'rw' if mount.get('RW') else 'ro'}"
        for mount in container_attrs.get("Mounts") or []
        if mount.get("Type") == "bind"
    )
    ports: dict[str, list[str]] = {}
    for port, bindings in (host.get("PortBindings") or {}).items():
        ports[port] = sorted(
            f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}"
            for binding in bindings or []
        )
    gpus = None
    for request in host.get("DeviceRequests") or []:
        capabilities = [cap for group in request.get("Capabilities") or [] for cap in group]
        if "gpu" not in capabilities:
            continue
        if request.get("DeviceIDs"):
            gpus = {"device_ids": list(request["DeviceIDs"])}
        else:
            gpus = {"count": request.get("Count", -1)}
    ulimits = {
        limit["Name"]: [limit.get("Soft"), limit.get("Hard")] for limit in host.get("Ulimits") or []
    }
    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    return {
        "image": config.get("Image"),
        "image_id": container_attrs.get("Image"),
        "entrypoint": list(config.get("Entrypoint") or []),
        "command": list(config.get("Cmd") or []),
        "env": _own_entries(_env_dict(config.get("Env")), _env_dict(image_config.get("Env"))),
        "labels": _own_entries(config.get("Labels") or {}, image_config.get("Labels") or {}),
        "mounts": mounts,
        "ports": ports,
        "runtime": host.get("Runtime"),
        "gpus": gpus,
        "cpuset_cpus": host.get("CpusetCpus") or "",
        "ulimits": ulimits,
        "ipc_mode": host.get("IpcMode"),
        "shm_size": host.get("ShmSize"),
        "restart_policy": restart,
        "network_mode": host.get("NetworkMode"),
    }


# Fields compared; the image reference itself is not (the image id is what runs).
COMPARED_FIELDS = (
    "image_id",
    "command",
    "env",
    "labels",
    "mounts",
    "ports",
    "runtime",
    "gpus",
    "cpuset_cpus",
    "ulimits",
    "ipc_mode",
    "shm_size",
    "restart_policy",
    "network_mode",
    "entrypoint",
)
# None in the desired spec means "whatever the engine fills in".
ENGINE_DEFAULT_FIELDS = ("runtime", "ipc_mode", "shm_size", "network_mode", "entrypoint")


def _masked(field: str, value: Any) -> Any:
    if field == "command" and isinstance(value, list):
        return mask_args(value)
    if field == "env" and isinstance(value, dict):
        return {
            key: SECRET_MASK if _SECRET_ENV_RE.search(key) else item for key, item in value.items()
        }
    return value


def display_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec for a diff or a report: every compared field, secrets masked."""
    return {field: _masked(field, spec.get(field)) for field in ("image", *COMPARED_FIELDS)}


def compare_specs(
    desired: Mapping[str, Any], actual: Mapping[str, Any], image_env_values: Mapping[str, str]
) -> tuple[bool, dict[str, Any]]:
    """(match, diff) of a desired and an actual container spec.

    Fields the engine fills in (runtime, ipc_mode, shm_size when not asked for; environment
    and labels that come from the image) are not differences. ``image_env_values`` is the
    image's environment: desired variables equal to the image's are not the container's own.
    ``diff`` is {"before": {...}, "after": {...}, "changed": [field, ...]} with secrets
    (--api-key, *TOKEN*/*KEY*/*SECRET* variables) masked.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    changed: list[str] = []
    for field in COMPARED_FIELDS:
        want = desired.get(field)
        have = actual.get(field)
        if field in ENGINE_DEFAULT_FIELDS and want is None:
            continue
        if field == "image_id" and want is None:
            # The image is not local yet (check mode before a pull): it will change.
            want = f"{desired.get('image')} (not pulled yet)"
        if field == "env":
            want = _own_entries(want or {}, image_env_values)
        if field == "labels":
            # A label the image sets to the same value is not the container's own either.
            have = dict(have or {})
        if want != have:
            changed.append(field)
            before[field] = _masked(field, have)
            after[field] = _masked(field, want)
    return not changed, {"before": before, "after": after, "changed": changed}


GIB = 2**30
UNVERIFIABLE_POLICIES = ("warn", "fail")


def derive_figures(
    report: Mapping[str, Any],
    *,
    kv_bytes_per_token: int | None = None,
    block_size: int | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Fill the KV figures a log lacks from the KV token count it gives.

    vLLM 0.8.5-0.9.0 with the V1 engine and the CPU engine log ``KV cache size: N tokens`` but
    neither the KV GiB nor a block count. KV GiB = tokens x bytes per token (the plan's
    ``kv_bytes_per_token``, per GPU), rounded down to 0.01 GiB; blocks = tokens // block size.
    Returns (report, derived), derived being field -> how it was derived.
    """
    merged = dict(report)
    derived: dict[str, str] = {}
    tokens = merged.get("kv_cache_tokens")
    if tokens is None:
        return merged, derived
    if merged.get("kv_cache_gib") is None and kv_bytes_per_token:
        merged["kv_cache_gib"] = math.floor(tokens * kv_bytes_per_token / GIB * 100) / 100
        derived["kv_cache_gib"] = (
            f"{tokens} KV tokens x {kv_bytes_per_token} bytes per token (plan)"
        )
    if merged.get("gpu_blocks") is None and block_size:
        merged["gpu_blocks"] = tokens // block_size
        derived["gpu_blocks"] = f"{tokens} KV tokens / block_size {block_size}"
    return merged, derived


def unverifiable_reason(
    field: str,
    report: Mapping[str, Any],
    *,
    kv_bytes_per_token: int | None = None,
    block_size: int | None = None,
    startup_in_log: bool = True,
) -> str:
    """Why ``field`` is neither in the log nor derivable, in one short clause."""
    tokens = report.get("kv_cache_tokens")
    if field == "kv_cache_gib" and tokens is not None and not kv_bytes_per_token:
        why = (
            f"the log gives {tokens} KV tokens but no GiB (V1 before 0.9.1, the CPU engine) "
            "and the bytes per token are unknown: pass plan (the vllm_memory_plan result)"
        )
    elif field == "gpu_blocks" and tokens is not None and not block_size:
        why = f"the log gives {tokens} KV tokens but no block count, and block_size is unknown"
    elif field in ("kv_cache_gib", "gpu_blocks", "kv_cache_tokens", "max_concurrency"):
        why = "the log gives no KV cache figure"
    else:
        why = "the log does not give it"
    if not startup_in_log:
        why += " (the startup lines may have rotated out of the container's log)"
    return why


def check_budget(
    report: Mapping[str, Any],
    expect: Mapping[str, Any] | None,
    *,
    reasons: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Compare the memory report with the operator's floors and ceilings.

    Returns (violations, unchecked). A figure the report lacks is never a violation: it is
    ``unchecked`` ({"expect", "limit", "field", "reason", "msg"}), ``reasons`` giving the why
    per field (unverifiable_reason()); what the caller does with it is the operator's policy
    (the module's ``unverifiable_floor``).
    """
    violations: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    for key, limit in (expect or {}).items():
        if limit is None or key not in EXPECT_CHECKS:
            continue
        field, kind = EXPECT_CHECKS[key]
        value = report.get(field)
        if value is None:
            reason = (reasons or {}).get(field) or "the log does not give it"
            unchecked.append(
                {
                    "expect": key,
                    "limit": limit,
                    "field": field,
                    "reason": reason,
                    "msg": f"{key}={limit} unchecked: {field} unknown, {reason}",
                }
            )
            continue
        bad = value < limit if kind == "min" else value > limit
        if bad:
            word = "below the floor" if kind == "min" else "above the ceiling"
            violations.append(
                {
                    "expect": key,
                    "limit": limit,
                    "value": value,
                    "msg": f"{field} {value} is {word} {key}={limit}",
                }
            )
    return violations, unchecked


CACHE_CONFIG_INFO = "vllm:cache_config_info"


def parse_cache_config_info(metrics_text: str) -> dict[str, str] | None:
    """The labels of ``vllm:cache_config_info`` in a Prometheus /metrics page (first engine)."""
    return next(
        (labels for name, labels, _value in samples(metrics_text) if name == CACHE_CONFIG_INFO),
        None,
    )


def _as_int(text: Any) -> int | None:
    try:
        return int(float(str(text)))
    except (TypeError, ValueError):
        return None


def _as_float(text: Any) -> float | None:
    try:
        return float(str(text))
    except (TypeError, ValueError):
        return None


def reconcile_metrics(
    report: Mapping[str, Any],
    cache_info: Mapping[str, str] | None,
    *,
    block_size: int | None,
    gpu_memory_utilization: float | None,
    max_model_len: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """Cross-check the log's figures with /metrics' cache_config_info; fill what the log lacks.

    Returns (report, mismatches). GPU blocks missing from the log are taken from the metric
    (and KV tokens and concurrency derived from them with the block size); a disagreement
    between log, metric and the requested flags is listed in mismatches.
    """
    merged = dict(report)
    mismatches: list[str] = []
    if not cache_info:
        return merged, mismatches
    blocks = _as_int(cache_info.get("num_gpu_blocks"))
    metric_block_size = _as_int(cache_info.get("block_size"))
    utilization = _as_float(cache_info.get("gpu_memory_utilization"))
    if blocks is not None:
        if merged.get("gpu_blocks") is None:
            merged["gpu_blocks"] = blocks
            merged["gpu_blocks_source"] = "metrics"
        elif merged["gpu_blocks"] != blocks:
            mismatches.append(
                f"the log says {merged['gpu_blocks']} GPU blocks, /metrics "
                f"vllm:cache_config_info says {blocks}"
            )
    if block_size is not None and metric_block_size is not None and metric_block_size != block_size:
        mismatches.append(
            f"block_size {block_size} was asked for, /metrics reports {metric_block_size}"
        )
    if (
        gpu_memory_utilization is not None
        and utilization is not None
        and abs(utilization - gpu_memory_utilization) > 1e-6
    ):
        mismatches.append(
            f"gpu_memory_utilization {gpu_memory_utilization} was asked for, /metrics reports "
            f"{utilization}"
        )
    size = metric_block_size or block_size
    if merged.get("kv_cache_tokens") is None and merged.get("gpu_blocks") is not None and size:
        merged["kv_cache_tokens"] = merged["gpu_blocks"] * size
    length = merged.get("max_model_len") or max_model_len
    if merged.get("max_concurrency") is None and merged.get("kv_cache_tokens") and length:
        merged["max_concurrency"] = round(merged["kv_cache_tokens"] / length, 2)
    return merged, mismatches


def compare_plan(plan: Mapping[str, Any] | None, report: Mapping[str, Any]) -> dict[str, Any]:
    """Planned (vllm_memory_plan) and measured figures side by side, with the error in %.

    error_pct = (planned - measured) / measured x 100, rounded to 0.1; None when either side
    is missing or the measured figure is 0.
    """
    comparison: dict[str, Any] = {}
    if not plan:
        return comparison
    for field in PLAN_FIELDS:
        planned = plan.get(field)
        measured = report.get(field)
        if planned is None and measured is None:
            continue
        error = None
        if planned is not None and measured not in (None, 0):
            error = round((planned - measured) / measured * 100, 1)
        comparison[field] = {"planned": planned, "measured": measured, "error_pct": error}
    return comparison


def memory_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The part of parse_memory_report()'s dict the module returns as ``memory``."""
    summary = {field: report.get(field) for field in REPORT_FIELDS}
    summary["derived"] = dict(report.get("derived") or {})
    return summary


BUDGET_PROOF_KEYS = (
    "KV Cache is",
    "KV cache",
    "blocks:",
    "Maximum concurrency",
    "Model loading took",
)


def budget_proof(log_text: str) -> list[str]:
    """The log lines a budget verdict rests on (at most 12)."""
    lines = log_text.splitlines()
    return [line for line in lines if any(key in line for key in BUDGET_PROOF_KEYS)][:12]


def verify_memory(
    log_text: str,
    *,
    metrics_text: str | None,
    expect: Mapping[str, Any] | None,
    plan: Mapping[str, Any] | None = None,
    block_size: int | None = None,
    gpu_memory_utilization: float | None = None,
    max_model_len: int | None = None,
    startup_in_log: bool = True,
    on_budget_violation: str = "fail",
    unverifiable_floor: str = "warn",
) -> dict[str, Any]:
    """The module's verification of a ready server's memory, as data.

    ``log_text`` is the startup section of the log (vllm_logs.startup_section()),
    ``metrics_text`` the /metrics page (None when it did not answer 200). ``startup_in_log``:
    the container was started by this run, so its log must hold the startup lines; for an
    older container an unchecked floor is only reported (its lines may have rotated away).

    Returns memory (memory_summary()), metrics (cache_config_info labels or None), live (the
    running and waiting requests and KV-cache usage on the same page, vllm_metrics.live_load()),
    mismatches, budget ({expect, violations, unchecked, policy}), plan_comparison (None
    without a plan), warnings, and failure (None, or {kind, msg, proof} with kind
    budget_violation or budget_unverifiable).
    """
    report = parse_memory_report(log_text)
    cache_info = parse_cache_config_info(metrics_text) if metrics_text else None
    report, mismatches = reconcile_metrics(
        report,
        cache_info,
        block_size=block_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
    )
    kv_bytes_per_token = (plan or {}).get("kv_bytes_per_token")
    size = (
        block_size
        or _as_int((cache_info or {}).get("block_size"))
        or ((plan or {}).get("inputs") or {}).get("block_size")
    )
    report, derived = derive_figures(report, kv_bytes_per_token=kv_bytes_per_token, block_size=size)
    report["derived"] = derived
    length = report.get("max_model_len") or max_model_len
    if report.get("max_concurrency") is None and report.get("kv_cache_tokens") and length:
        report["max_concurrency"] = round(report["kv_cache_tokens"] / length, 2)
    reasons = {
        field: unverifiable_reason(
            field,
            report,
            kv_bytes_per_token=kv_bytes_per_token,
            block_size=size,
            startup_in_log=startup_in_log,
        )
        for field, _ in EXPECT_CHECKS.values()
    }
    expect = {key: value for key, value in (expect or {}).items() if value is not None}
    violations, unchecked = check_budget(report, expect, reasons=reasons)
    warnings = [f"memory report: {mismatch}" for mismatch in mismatches]
    failure = None
    if violations:
        text = "; ".join(violation["msg"] for violation in violations)
        if on_budget_violation == "warn":
            warnings.append(f"memory budget: {text}")
        else:
            failure = {
                "kind": "budget_violation",
                "msg": f"serves, but its memory budget misses the floors: {text}",
                "proof": budget_proof(log_text),
            }
    if unchecked:
        text = "; ".join(item["msg"] for item in unchecked)
        if unverifiable_floor == "fail" and startup_in_log and failure is None:
            failure = {
                "kind": "budget_unverifiable",
                "msg": f"serves, but its memory budget cannot be verified: {text}",
                "proof": budget_proof(log_text),
            }
        else:
            warnings.append(f"memory budget: {text}")
    return {
        "memory": memory_summary(report),
        "metrics": cache_info,
        "live": live_load(metrics_text) if metrics_text else None,
        "mismatches": mismatches,
        "budget": {
            "expect": expect,
            "violations": violations,
            "unchecked": unchecked,
            "policy": {
                "on_budget_violation": on_budget_violation,
                "unverifiable_floor": unverifiable_floor,
            },
        },
        "plan_comparison": compare_plan(plan, report) if plan else None,
        "warnings": warnings,
        "failure": failure,
    }


def models_listed(body: str, served_names: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether a /v1/models answer lists every served name; returns (all listed, ids)."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return False, []
    ids = [str(entry.get("id")) for entry in (data.get("data") or []) if isinstance(entry, dict)]
    return all(name in ids for name in served_names), ids


SMOKE_PROMPT = "Reply with the single word OK."


def smoke_request(served_name: str) -> dict[str, Any]:
    """The body of the smoke test: one short, deterministic chat completion."""
    return {
        "model": served_name,
        "messages": [{"role": "user", "content": SMOKE_PROMPT}],
        "max_tokens": 8,
        "temperature": 0,
    }


def check_chat_answer(status: int | None, body: str) -> tuple[bool, str]:
    """Judge the answer to smoke_request(): (ok, what it said or why it is not an answer).

    An OpenAI chat completion has ``choices[0].message``; its ``content`` may be null (a
    reasoning model whose few tokens were all reasoning, under a reasoning parser, or a tool
    call), so a message is enough. vLLM's error answers are ``{"object": "error", "message":
    ...}`` (up to 0.10), ``{"error": {"message": ...}}`` (later) and, for a missing or wrong API
    key, ``{"error": "Unauthorized"}``.
    """
    if status is None:
        return False, "no answer (connection refused, reset or timed out)"
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if status != 200:
        detail = body.strip()
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                detail = str(error["message"])
            elif isinstance(error, str) and error:
                detail = error
            elif data.get("message") or data.get("detail"):
                detail = str(data.get("message") or data.get("detail"))
        return False, f"HTTP {status}: {detail[:300]}"
    choices = data.get("choices") if isinstance(data, dict) else None
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return False, f"HTTP 200 without choices[0].message: {body.strip()[:300]}"
    if message.get("tool_calls"):
        return True, json.dumps(message["tool_calls"])[:200]
    reply = str(
        message.get("content") or message.get("reasoning_content") or message.get("reasoning") or ""
    )
    degenerate = degenerate_reason(reply)
    if degenerate:
        return False, f"HTTP 200 with {degenerate}"
    return True, reply[:200]


def smoke_proof(served_name: str, said: str, body: str) -> list[str]:
    """The proof of a failed smoke request: what it asked, the verdict, the answer's body."""
    proof = [f"POST /v1/chat/completions (model {served_name}): {said}"]
    if body and body.strip():
        proof.append(f"response body: {body.strip()[:500]}")
    return proof


def degenerate_reason(text: str) -> str | None:
    """Why an answer's text is no answer: empty, blank, or one character repeated.

    fp16 overflow (vllm#14126; Turing has no bf16) answers HTTP 200 with ``!!!!!!``.
    """
    visible = "".join(text.split())
    if not visible:
        return "an empty answer" if not text else "a blank answer"
    if len(visible) > 1 and len(set(visible)) == 1:
        return (
            f"degenerate text {text[:40]!r} (one character repeated, as fp16 overflow answers; "
            "try dtype bfloat16 or float32 where the GPU has them)"
        )
    return None
