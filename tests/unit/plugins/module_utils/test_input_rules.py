"""module_utils.input_rules against the roles' real argument specs."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.gpu_serving.plugins.module_utils.docker_daemon_json import (
    daemon_config_problems,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.input_rules import (
    ROLES,
    check_inputs,
    format_failure,
    source_problem,
)

ROLES_DIR = Path(__file__).resolve().parents[4] / "roles"
SPECS = {
    role: yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"
    ]["main"]["options"]
    for role in ROLES
}


def errors(**provided):
    return check_inputs(SPECS, provided).errors


def test_the_defaults_are_valid():
    assert errors() == []


@pytest.mark.parametrize(
    "provided",
    [
        {"vllm_server_port": "8080"},
        {"vllm_server_tensor_parallel_size": "2"},
        {"model_sync_min_free_gib": "100"},
        {"vllm_server_kv_cache_gib": "1"},
        {"nvidia_driver_mok_signing": "false"},
        {"vllm_server_gpu_memory_utilization": "0.9"},
        {"vllm_server_enable_chunked_prefill": "no"},
        {"vllm_server_block_size": "16"},
        {"nvidia_driver_branch": 550},
        {"nvidia_driver_expected_gpus": "4", "vllm_server_tensor_parallel_size": "4"},
        {"vllm_server_api_key": "0123456789abcdef", "vllm_server_bind_address": "10.0.0.5"},
        {"vllm_server_cpuset_cpus": "0,2,4-7"},
        {"docker_engine_version": "5:27.5.1-1~ubuntu.24.04~noble"},
        {"vllm_upgrade_batch": "25%"},
        {"vllm_upgrade_batch": "2"},
        {"vllm_upgrade_benchmark_gate": "false"},
        {"vllm_server_benchmark_gate": "yes"},
        {"model_sync_models": [{"name": "a/b", "source": "hf://A/B@v1.0"}]},
        {"model_sync_models": [{"name": "a/b", "source": "/srv/weights/b"}]},
        {
            "model_sync_models": [
                {"name": "a/b", "source": "peer:/srv/b", "dest": "/home/llm/model/x"}
            ]
        },
    ],
)
def test_values_as_users_type_them_are_accepted(provided):
    assert errors(**provided) == []


@pytest.mark.parametrize(
    ("provided", "expected"),
    [
        ({"vllm_server_port": 0}, "vllm_server_port must be a TCP port 1-65535; got 0"),
        ({"vllm_server_port": "80x"}, "vllm_server_port must be an integer; got '80x'"),
        ({"vllm_server_dtype": "bogus"}, "vllm_server_dtype must be one of: auto, half"),
        ({"nvidia_driver_version": 550.144}, "nvidia_driver_version must be a string"),
        ({"nvidia_driver_version": "560.35.03"}, "a version of branch 550"),
        ({"nvidia_driver_mok_signing": "maybe"}, "nvidia_driver_mok_signing must be a boolean"),
        ({"vllm_server_gpu_memory_utilization": 1.5}, "greater than 0 and at most 1"),
        ({"vllm_server_gpu_memory_utilization": "inf"}, "a finite number"),
        ({"vllm_server_api_key": "short"}, "at least 16 characters"),
        ({"vllm_server_bind_address": "0.0.0.0:8000"}, "an IP address without a port"),
        ({"vllm_server_cpuset_cpus": "7-3"}, "a cpuset"),
        ({"vllm_server_extra_args": ["--max-model-len=4096"]}, "set vllm_server_max_model_len"),
        (
            {"nvidia_driver_expected_gpus": 2, "vllm_server_tensor_parallel_size": 4},
            "at most nvidia_driver_expected_gpus (2)",
        ),
        ({"nvidia_container_toolkit_version": "1.17.7-1"}, "CVE-2025-23266"),
        ({"docker_engine_daemon_options": {"hosts": ["tcp://0.0.0.0:2375"]}}, "tcp://"),
        ({"docker_engine_daemon_options": {"log-opts": {"max-file": 5}}}, "log-opts.max-file"),
        ({"model_sync_models": [{"name": "noslash", "source": "hf://a/b"}]}, "[0].name"),
        ({"model_sync_models": [{"name": "a/b", "source": "ftp://x"}]}, "[0].source"),
        ({"model_sync_models": [{"name": "a/b", "source": "hf://a/b@bad..ref"}]}, "revision"),
        ({"model_sync_models": [{"name": "a/b", "source": "/x", "dest": "/etc"}]}, "[0].dest"),
        ({"model_sync_models": [{"name": "a/b"}]}, "model_sync_models[0].source must be set"),
        ({"model_sync_models": [{"name": "a/b", "source": "/x", "sorce": 1}]}, "did you mean"),
        ({"vllm_server_expect": {"min_kv_cache_gib": -1}}, "vllm_server_expect.min_kv_cache_gib"),
        ({"vllm_server_kv_cache_gib": -1}, "vllm_server_kv_cache_gib must be GiB >= 0"),
        (
            {"vllm_server_drain_timeout": -5},
            "vllm_server_drain_timeout must be a number of seconds >= 0",
        ),
        ({"vllm_server_kv_cache_gib": "inf"}, "a finite number"),
        ({"vllm_upgrade_batch": 0}, "vllm_upgrade_batch must be"),
        ({"vllm_upgrade_benchmark_gate": "maybe"}, "vllm_upgrade_benchmark_gate must be a bool"),
        ({"vllm_server_benchmark_gate": "sometimes"}, "vllm_server_benchmark_gate must be a bool"),
        ({"vllm_server_restart_policy": False}, "quote it"),
        ({"cuda_toolkit_release": "12.5.0"}, "a release of cuda_toolkit_version 12.4"),
        ({"vllm_server_api_key": None}, "null"),
        ({"nvidia_driver_version": "550.144"}, "a driver version x.y.z"),
        ({"docker_engine_containerd_version": "lts"}, "docker_engine_containerd_version must"),
        ({"vllm_server_env": {"HF_HOME": {"a": 1}}}, "vllm_server_env.HF_HOME must be a string"),
        ({"vllm_server_env": {"VLLM_USE_V1": True}}, "quote it"),
        ({"vllm_server_env": {"BAD NAME": "1"}}, "an environment variable name"),
        ({"model_sync_base_dir": "/etc"}, "model_sync_base_dir must be a directory of its own"),
        ({"model_sync_base_dir": "/"}, "not a system one"),
        ({"model_sync_base_dir": "/usr/share/models"}, "not a system one"),
    ],
)
def test_bad_values_are_named_with_what_is_accepted(provided, expected):
    found = errors(**provided)
    assert len(found) == 1, found
    assert expected in found[0]
    assert len(found[0]) < 220


def test_a_secret_is_never_shown():
    found = errors(vllm_server_api_key="has a space but is long")
    assert "has a space" not in found[0]
    assert "<hidden>" in found[0]


def test_every_violation_is_reported_at_once():
    report = check_inputs(SPECS, {"vllm_server_port": 0, "model_sync_timeout": 0, "x": 1})
    assert len(report.errors) == 2
    message = format_failure("node", report)
    assert message.splitlines()[0] == "2 invalid variables for node (nothing was changed):"


@pytest.mark.parametrize(
    ("name", "intended"),
    [("vllm_sever_port", "vllm_server_port"), ("nvidia_drivr_version", "nvidia_driver_version")],
)
def test_near_miss_names_get_a_warning(name, intended):
    warnings = check_inputs(SPECS, {}, [name, "vault_model_sync_hf_token", "inventory_hostname"])
    assert warnings.warnings == [
        f"{name} is not a variable of this collection; did you mean {intended}?"
    ]


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("hf://Qwen/Qwen3-30B-A3B", True),
        ("hf://Qwen/Qwen3-30B-A3B@main", True),
        ("hf://Qwen", False),
        ("rsync://peer/models/qwen", True),
        ("peer:/srv/models", True),
        ("https://mirror.example/qwen", True),
        ("relative/path", False),
    ],
)
def test_sources_by_scheme(source, ok):
    assert (source_problem(source) is None) is ok


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"log-opts": {"max-size": 100}}, "log-opts.max-size"),
        ({"live-restore": "true"}, "live-restore"),
        ({"hosts": ["unix:///run/docker.sock", "tcp://0.0.0.0:2375"]}, "hosts"),
        ({"runtimes": {"nvidia": {"args": []}}}, "runtimes.nvidia"),
        ({"max-concurrent-downloads": 1.5}, "max-concurrent-downloads"),
    ],
)
def test_daemon_options_dockerd_refuses(config, key):
    assert [found for found, _ in daemon_config_problems(config)] == [key]


def test_daemon_options_with_tls_and_strings_pass():
    assert (
        daemon_config_problems(
            {"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": True, "log-opts": {"max-file": "5"}}
        )
        == []
    )


ALL_ENTRY_POINTS = {
    role: {
        name: option
        for entry_point in yaml.safe_load(
            (ROLES_DIR / role / "meta" / "argument_specs.yml").read_text()
        )["argument_specs"].values()
        for name, option in (entry_point.get("options") or {}).items()
    }
    for role in ROLES
}


@pytest.mark.parametrize(
    ("provided", "expected"),
    [
        ({"vllm_server_benchmark_concurrency": [0, 4]}, "vllm_server_benchmark_concurrency"),
        ({"vllm_server_benchmark_concurrency": []}, "a non-empty list"),
        ({"vllm_server_benchmark_concurrency": "1,x"}, "a list of integers"),
        ({"vllm_server_benchmark_num_prompts": 0}, "vllm_server_benchmark_num_prompts must"),
        ({"vllm_server_benchmark_timeout": "-1"}, "vllm_server_benchmark_timeout must"),
        ({"vllm_server_benchmark_max_p99_ttft_ms": -5}, "milliseconds >= 0"),
        ({"vllm_server_benchmark_api": "grpc"}, "one of: completions, chat"),
    ],
)
def test_benchmark_variables_are_checked(provided, expected):
    found = check_inputs(ALL_ENTRY_POINTS, provided).errors
    assert len(found) == 1, found
    assert expected in found[0]


@pytest.mark.parametrize(
    "provided",
    [
        {"vllm_server_benchmark_concurrency": "1,4,16"},
        {"vllm_server_benchmark_max_p99_ttft_ms": None},
        {"vllm_server_benchmark_min_output_throughput": "400"},
        {"nvidia_driver_kernel_headers_package": None},
        {"docker_engine_containerd_version": "", "docker_engine_buildx_plugin_version": "0.20.0"},
        {"vllm_server_env": {"VLLM_CPU_KVCACHE_SPACE": 1, "HF_HUB_OFFLINE": "1"}},
        {"model_sync_base_dir": "/data/models"},
        {"model_sync_base_dir": "/srv/models"},
    ],
)
def test_unset_thresholds_and_typed_values_pass(provided):
    assert check_inputs(ALL_ENTRY_POINTS, provided).errors == []


# --- the serving cluster's and the driver's newer variables ------------------------------------
@pytest.mark.parametrize(
    ("provided", "expected"),
    [
        (
            {"vllm_server_cluster_master_port": 70000},
            "vllm_server_cluster_master_port must be a TCP port 1-65535; got 70000",
        ),
        (
            {"vllm_server_cluster_pipeline_parallel_size": "0"},
            "vllm_server_cluster_pipeline_parallel_size must be an integer >= 1; got 0",
        ),
        (
            {"vllm_server_cluster_join_settle": -1},
            "vllm_server_cluster_join_settle must be a number of seconds >= 0; got -1",
        ),
        (
            {"vllm_server_cluster_master_addr": "10.0.0.1:29500"},
            "vllm_server_cluster_master_addr must be an IP address or host name, without a port",
        ),
        (
            {"vllm_server_cluster_socket_ifname": "eth 0"},
            "vllm_server_cluster_socket_ifname must be an interface name such as eth0",
        ),
        (
            {"vllm_server_network_mode": "my net"},
            "vllm_server_network_mode must be host, bridge, none or a Docker network name",
        ),
        (
            {"vllm_server_cluster_group": "tiny", "vllm_server_cluster_backend": "ray"},
            "vllm_server_cluster_host_ip must be this host's address (VLLM_HOST_IP)",
        ),
        (
            {"vllm_server_cluster_head": "gpu-a"},
            "vllm_server_cluster_head must be empty unless vllm_server_cluster_group names",
        ),
        (
            {"nvidia_driver_apt_lock_timeout": -5},
            "nvidia_driver_apt_lock_timeout must be a number of seconds >= 0; got -5",
        ),
        (
            {"nvidia_driver_repo_retired_keys": ["7FA2AF8"]},
            "nvidia_driver_repo_retired_keys must be key IDs of 8, 16 or 40 hex digits; got "
            "'7FA2AF8'",
        ),
        (
            {"nvidia_driver_kernel_headers_meta_package": "Linux Headers"},
            "nvidia_driver_kernel_headers_meta_package must be auto, empty (none) or a package",
        ),
    ],
)
def test_cluster_and_driver_variables_are_checked(provided, expected):
    (error,) = errors(**provided)
    assert error.startswith(expected), error


def test_valid_cluster_and_driver_values_pass():
    assert (
        errors(
            vllm_server_cluster_group="tiny",
            vllm_server_cluster_master_addr="gpu-a.example.internal",
            vllm_server_cluster_host_ip="10.0.0.7",
            vllm_server_cluster_socket_ifname="^docker,lo",
            vllm_server_cluster_backend="ray",
            vllm_server_network_mode="host",
            nvidia_driver_repo_retired_keys=["7fa2af80", "A4B469963BF863CC"],
            nvidia_driver_kernel_headers_meta_package="linux-headers-generic",
        )
        == []
    )


def test_a_clusters_tensor_parallel_size_spans_its_hosts():
    # TP 8 over two 4-GPU hosts: the per-host check belongs to the role, not this rule.
    assert errors(vllm_server_tensor_parallel_size=8, nvidia_driver_expected_gpus=4) == [
        "vllm_server_tensor_parallel_size must be at most nvidia_driver_expected_gpus (4); got 8"
    ]
    assert (
        errors(
            vllm_server_tensor_parallel_size=8,
            nvidia_driver_expected_gpus=4,
            vllm_server_cluster_group="tiny",
        )
        == []
    )


@pytest.mark.parametrize(
    ("groups", "host", "head", "expected"),
    [
        ({"tiny": ["gpu-a", "gpu-b"]}, "gpu-a", "", []),
        ({"tiny": ["gpu-a", "gpu-b"]}, "gpu-a", "gpu-b", []),
        (
            {},
            "gpu-a",
            "",
            [
                "vllm_server_cluster_group must be an inventory group of two or more hosts that "
                "holds this host; got 'tiny' (no such group)"
            ],
        ),
        (
            {"tiny": ["gpu-a"]},
            "gpu-a",
            "",
            [
                "vllm_server_cluster_group must be an inventory group of two or more hosts that "
                "holds this host; got 'tiny' (1 host(s))"
            ],
        ),
        (
            {"tiny": ["gpu-b", "gpu-c"]},
            "gpu-a",
            "",
            [
                "vllm_server_cluster_group must be an inventory group of two or more hosts that "
                "holds this host; got 'tiny' (2 host(s))"
            ],
        ),
        (
            {"tiny": ["gpu-a", "gpu-b"]},
            "gpu-a",
            "gpu-z",
            ["vllm_server_cluster_head must be a host of group tiny; got 'gpu-z' (not in it)"],
        ),
    ],
)
def test_the_cluster_group_must_exist_and_hold_this_host(groups, host, head, expected):
    provided = {"vllm_server_cluster_group": "tiny", "vllm_server_cluster_head": head}
    assert check_inputs(SPECS, provided, groups=groups, host=host).errors == expected
