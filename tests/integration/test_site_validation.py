"""Bad input stops site.yml in its first play, before any role touches a host.

The real entry point runs: ``ansible-playbook site.yml`` against an inventory whose hosts are
unreachable (ssh to 127.0.0.1 on port 9, which nothing listens on; no traffic leaves the
machine). The first play, playbooks/validate.yml, runs on the controller without connecting,
so a host it fails never appears in a later play, while a host whose variables are valid
reaches the second play and shows there as UNREACHABLE: that is how each case proves where it
stopped.

Many cases share one run: each case is an inventory host whose host variables carry its value
(YAML host vars give native types; an INI group's ``:vars`` go through ``ast.literal_eval`` in
ansible-core's INI plugin, so ``8080`` is a number there but ``false``, ``no``, ``25%`` and
``abc`` stay strings). The ``-e key=value`` forms give strings and apply to every host, so they
get a run of their own each, as do the ``-e`` JSON forms.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Nothing listens on port 9 (discard) here: ssh fails at once with "Connection refused".
UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9}

VALIDATION_TASK = "Validate the variables of each role"

# (case, host vars as YAML gives them, what the message must say: the variable first)
YAML_CASES = [
    # nvidia_driver
    ("drv_version_float", {"nvidia_driver_version": 550.144}, "nvidia_driver_version must be"),
    ("drv_version_short", {"nvidia_driver_version": "550"}, "nvidia_driver_version must be"),
    ("drv_version_branch", {"nvidia_driver_version": "535.183.01"}, "of branch 550"),
    ("drv_branch", {"nvidia_driver_branch": "55x"}, "nvidia_driver_branch must be"),
    ("drv_state", {"nvidia_driver_state": "removed"}, "nvidia_driver_state must be one of"),
    ("drv_reboot", {"nvidia_driver_reboot": "sometimes"}, "nvidia_driver_reboot must be one of"),
    ("drv_reboot_timeout", {"nvidia_driver_reboot_timeout": 0}, "nvidia_driver_reboot_timeout"),
    ("drv_gpus", {"nvidia_driver_expected_gpus": -1}, "nvidia_driver_expected_gpus must be"),
    ("drv_mok_bool", {"nvidia_driver_mok_signing": "perhaps"}, "nvidia_driver_mok_signing"),
    ("drv_mok_key", {"nvidia_driver_mok_signing": True}, "nvidia_driver_mok_key must be"),
    ("drv_fpr", {"nvidia_driver_repo_key_fingerprint": "ABCD"}, "nvidia_driver_repo_key_finger"),
    ("drv_local", {"nvidia_driver_source": "local_repo"}, "nvidia_driver_local_repo_deb must"),
    ("drv_url", {"nvidia_driver_repo_base_url": "ftp://mirror/x"}, "nvidia_driver_repo_base_url"),
    ("drv_pkgs", {"nvidia_driver_packages": ["nvidia-driver-550=550.1"]}, "nvidia_driver_packa"),
    ("drv_distro", {"nvidia_driver_repo_distro": "ubuntu2004"}, "nvidia_driver_repo_distro must"),
    # cuda_toolkit
    ("cuda_version_float", {"cuda_toolkit_version": 12.4}, "cuda_toolkit_version must be"),
    ("cuda_release_other", {"cuda_toolkit_release": "12.5.0"}, "cuda_toolkit_release must be"),
    ("cuda_release_format", {"cuda_toolkit_release": "12.4"}, "cuda_toolkit_release must be"),
    ("cuda_method", {"cuda_toolkit_method": "pip"}, "cuda_toolkit_method must be one of"),
    ("cuda_prefix_rel", {"cuda_toolkit_install_prefix": "opt/cuda"}, "cuda_toolkit_install_pre"),
    (
        "cuda_prefix_repo",
        {"cuda_toolkit_method": "repo", "cuda_toolkit_install_prefix": "/opt/cuda"},
        "cuda_toolkit_install_prefix must be /usr/local",
    ),
    ("cuda_sha", {"cuda_toolkit_runfile_sha256": "abc"}, "cuda_toolkit_runfile_sha256 must be"),
    ("cuda_free", {"cuda_toolkit_runfile_tmpdir_free_mib": -5}, "cuda_toolkit_runfile_tmpdir_f"),
    ("cuda_link", {"cuda_toolkit_link": "maybe"}, "cuda_toolkit_link must be a boolean"),
    # docker_engine
    ("dock_version", {"docker_engine_version": "latest"}, "docker_engine_version must be"),
    ("dock_source", {"docker_engine_source": "snap"}, "docker_engine_source must be one of"),
    (
        "dock_tcp",
        {"docker_engine_daemon_options": {"hosts": ["tcp://0.0.0.0:2375"]}},
        "docker_engine_daemon_options.hosts",
    ),
    (
        "dock_logopts",
        {"docker_engine_daemon_options": {"log-opts": {"max-file": 3}}},
        "docker_engine_daemon_options.log-opts.max-file",
    ),
    ("dock_opts_text", {"docker_engine_daemon_options": "big"}, "docker_engine_daemon_options"),
    ("dock_users", {"docker_engine_users": ["Bad User"]}, "docker_engine_users must be"),
    ("dock_json_path", {"docker_engine_daemon_json_path": "daemon.json"}, "docker_engine_daemon_j"),
    ("dock_channel", {"docker_engine_repo_channel": "nightly"}, "docker_engine_repo_channel must"),
    ("dock_containerd", {"docker_engine_containerd_version": "lts"}, "docker_engine_containerd_v"),
    # nvidia_container_toolkit
    ("nct_cve", {"nvidia_container_toolkit_version": "1.17.7-1"}, "CVE-2025-23266"),
    ("nct_format", {"nvidia_container_toolkit_version": "1.17"}, "nvidia_container_toolkit_vers"),
    ("nct_float", {"nvidia_container_toolkit_version": 1.17}, "nvidia_container_toolkit_version"),
    ("nct_runtime", {"nvidia_container_toolkit_runtime_name": "a b"}, "nvidia_container_toolkit_r"),
    (
        "nct_driver",
        {"nvidia_container_toolkit_expected_driver_version": "abc"},
        "nvidia_container_toolkit_expected_driver_version must be",
    ),
    ("nct_default", {"nvidia_container_toolkit_set_as_default": "sure"}, "nvidia_container_tool"),
    ("nct_state", {"nvidia_container_toolkit_state": "gone"}, "nvidia_container_toolkit_state"),
    # model_sync
    (
        "ms_name",
        {"model_sync_models": [{"name": "qwen3", "source": "hf://Qwen/Qwen3-30B-A3B"}]},
        "model_sync_models[0].name must be",
    ),
    (
        "ms_scheme",
        {"model_sync_models": [{"name": "a/b", "source": "s3://bucket/b"}]},
        "model_sync_models[0].source must be",
    ),
    (
        "ms_revision",
        {"model_sync_models": [{"name": "a/b", "source": "hf://a/b@bad..rev"}]},
        "model_sync_models[0].source must be",
    ),
    (
        "ms_dest_outside",
        {"model_sync_models": [{"name": "a/b", "source": "/srv/b", "dest": "/etc"}]},
        "model_sync_models[0].dest must be",
    ),
    (
        "ms_dest_relative",
        {"model_sync_models": [{"name": "a/b", "source": "/srv/b", "dest": "b"}]},
        "model_sync_models[0].dest must be an absolute path",
    ),
    (
        "ms_dest_in_source",
        {
            "model_sync_models": [
                {"name": "a/b", "source": "/home/llm/model/a", "dest": "/home/llm/model/a/b"}
            ]
        },
        "model_sync_models[0].dest must be a directory that does not overlap",
    ),
    (
        "ms_dest_twice",
        {
            "model_sync_models": [
                {"name": "a/b", "source": "/srv/b"},
                {"name": "c/d", "source": "/srv/d", "dest": "/home/llm/model/a/b"},
            ]
        },
        "model_sync_models[1].dest must be",
    ),
    ("ms_models_text", {"model_sync_models": "qwen/qwen3"}, "model_sync_models[0] must be"),
    ("ms_no_source", {"model_sync_models": [{"name": "a/b"}]}, "model_sync_models[0].source"),
    ("ms_free", {"model_sync_min_free_gib": -1}, "model_sync_min_free_gib must be"),
    ("ms_timeout", {"model_sync_timeout": 0}, "model_sync_timeout must be"),
    ("ms_port", {"model_sync_fanout_port": 70000}, "model_sync_fanout_port must be"),
    ("ms_throttle", {"model_sync_download_throttle": 0}, "model_sync_download_throttle must"),
    ("ms_base", {"model_sync_base_dir": "models"}, "model_sync_base_dir must be"),
    ("ms_base_system", {"model_sync_base_dir": "/etc"}, "model_sync_base_dir must be a dir"),
    ("ms_verify", {"model_sync_verify": "maybe"}, "model_sync_verify must be one of"),
    ("ms_user", {"model_sync_user": "Root User"}, "model_sync_user must be"),
    ("ms_address", {"model_sync_fanout_address": "10.0.0.1:8730"}, "model_sync_fanout_address"),
    # vllm_server
    ("vs_port_zero", {"vllm_server_port": 0}, "vllm_server_port must be a TCP port 1-65535"),
    ("vs_port_big", {"vllm_server_port": 65536}, "vllm_server_port must be a TCP port 1-65535"),
    # the serving cluster (issue 18) and the driver's newer variables (issue 16)
    (
        "vs_cluster_port",
        {"vllm_server_cluster_master_port": 70000},
        "vllm_server_cluster_master_port must be a TCP port 1-65535",
    ),
    (
        "vs_cluster_group",
        {"vllm_server_cluster_group": "no_such_group"},
        "vllm_server_cluster_group must be an inventory group of two or more hosts",
    ),
    (
        "vs_cluster_ifname",
        {"vllm_server_cluster_socket_ifname": "eth 0"},
        "vllm_server_cluster_socket_ifname must be an interface name",
    ),
    (
        "nd_lock_timeout",
        {"nvidia_driver_apt_lock_timeout": -1},
        "nvidia_driver_apt_lock_timeout must be a number of seconds >= 0",
    ),
    (
        "nd_retired_key",
        {"nvidia_driver_repo_retired_keys": ["xyz"]},
        "nvidia_driver_repo_retired_keys must be key IDs",
    ),
    ("vs_util_big", {"vllm_server_gpu_memory_utilization": 1.5}, "vllm_server_gpu_memory_util"),
    ("vs_util_zero", {"vllm_server_gpu_memory_utilization": 0}, "vllm_server_gpu_memory_util"),
    ("vs_tp_zero", {"vllm_server_tensor_parallel_size": 0}, "vllm_server_tensor_parallel_size"),
    (
        "vs_tp_gpus",
        {"vllm_server_tensor_parallel_size": 8, "nvidia_driver_expected_gpus": 4},
        "vllm_server_tensor_parallel_size must be at most nvidia_driver_expected_gpus (4)",
    ),
    (
        "vs_autotune",
        {"vllm_server_autotune": True, "vllm_server_autotune_max_gpu_memory_utilization": 0.9},
        "vllm_server_autotune_max_gpu_memory_utilization must be >=",
    ),
    ("vs_bind", {"vllm_server_bind_address": "0.0.0.0:8000"}, "vllm_server_bind_address must"),
    ("vs_key_short", {"vllm_server_api_key": "short"}, "vllm_server_api_key must be at least 16"),
    ("vs_key_space", {"vllm_server_api_key": "a key with spaces 1234"}, "vllm_server_api_key"),
    ("vs_cpuset", {"vllm_server_cpuset_cpus": "0-"}, "vllm_server_cpuset_cpus must be"),
    ("vs_cpuset_order", {"vllm_server_cpuset_cpus": "7-3"}, "vllm_server_cpuset_cpus must be"),
    ("vs_name_empty", {"vllm_server_served_model_name": " "}, "vllm_server_served_model_name"),
    (
        "vs_extra_typed",
        {"vllm_server_extra_args": ["--max-model-len=1024"]},
        "set vllm_server_max_model_len",
    ),
    ("vs_extra_dict", {"vllm_server_extra_args": {"a": 1}}, "vllm_server_extra_args must be"),
    ("vs_dtype", {"vllm_server_dtype": "bogus"}, "vllm_server_dtype must be one of"),
    ("vs_block", {"vllm_server_block_size": 24}, "vllm_server_block_size must be one of"),
    ("vs_kv_negative", {"vllm_server_kv_cache_gib": -1}, "vllm_server_kv_cache_gib must be"),
    ("vs_kv_inf", {"vllm_server_kv_cache_gib": float("inf")}, "vllm_server_kv_cache_gib must be"),
    ("vs_len", {"vllm_server_max_model_len": 0}, "vllm_server_max_model_len must be"),
    ("vs_swap", {"vllm_server_swap_space": -1}, "vllm_server_swap_space must be"),
    ("vs_ready", {"vllm_server_ready_timeout": 0}, "vllm_server_ready_timeout must be"),
    ("vs_container", {"vllm_server_container_name": "bad name"}, "vllm_server_container_name"),
    ("vs_image", {"vllm_server_image": "vllm openai"}, "vllm_server_image must be"),
    (
        "vs_expect_neg",
        {"vllm_server_expect": {"min_kv_cache_gib": -1}},
        "vllm_server_expect.min_kv_cache_gib",
    ),
    ("vs_expect_key", {"vllm_server_expect": {"min_kv_gib": 1}}, "vllm_server_expect.min_kv_gib"),
    ("vs_ulimit", {"vllm_server_ulimits": {"memlock": "lots"}}, "vllm_server_ulimits.memlock"),
    ("vs_shm", {"vllm_server_shm_size": "16 GB"}, "vllm_server_shm_size must be"),
    ("vs_gpus", {"vllm_server_gpus": "two"}, "vllm_server_gpus must be"),
    ("vs_host_path", {"vllm_server_model_host_path": "model"}, "vllm_server_model_host_path"),
    ("vs_rope", {"vllm_server_rope_scaling": {"factor": 4}}, "vllm_server_rope_scaling must be"),
    ("vs_prefill", {"vllm_server_enable_chunked_prefill": "perhaps"}, "vllm_server_enable_chu"),
    ("vs_gpu_mem", {"vllm_server_gpu_memory_gib": 5000}, "vllm_server_gpu_memory_gib must be"),
    ("vs_env", {"vllm_server_env": {"HF_HOME": {"a": 1}}}, "vllm_server_env.HF_HOME must be"),
    # vllm_server's benchmark entry point
    (
        "bench_levels",
        {"vllm_server_benchmark_concurrency": [0, 4]},
        "vllm_server_benchmark_concurrency",
    ),
    ("bench_prompts", {"vllm_server_benchmark_num_prompts": 0}, "vllm_server_benchmark_num_pro"),
    ("bench_api", {"vllm_server_benchmark_api": "grpc"}, "vllm_server_benchmark_api must be"),
    ("bench_timeout", {"vllm_server_benchmark_timeout": -1}, "vllm_server_benchmark_timeout"),
    (
        "bench_ttft",
        {"vllm_server_benchmark_max_p99_ttft_ms": "fast"},
        "vllm_server_benchmark_max_p99_ttft_ms must be",
    ),
    (
        "bench_failed",
        {"vllm_server_benchmark_max_failed_requests": -1},
        "vllm_server_benchmark_max_failed_requests must be",
    ),
    # the upgrade play
    ("upgrade_text", {"vllm_upgrade_batch": "abc"}, "vllm_upgrade_batch must be"),
    ("upgrade_zero", {"vllm_upgrade_batch": 0}, "vllm_upgrade_batch must be"),
    ("upgrade_percent", {"vllm_upgrade_batch": "150%"}, "vllm_upgrade_batch must be"),
]

# (case, one INI `var=value` line under the case's own group, the message).
INI_CASES = [
    ("ini_port", "vllm_server_port=eighty", "vllm_server_port must be an integer"),
    ("ini_port_zero", "vllm_server_port=0", "vllm_server_port must be a TCP port"),
    ("ini_tp", "vllm_server_tensor_parallel_size=0", "vllm_server_tensor_parallel_size must"),
    ("ini_reboot", "nvidia_driver_reboot_timeout=ten", "nvidia_driver_reboot_timeout must be"),
    ("ini_mok", "nvidia_driver_mok_signing=perhaps", "nvidia_driver_mok_signing must be"),
    ("ini_util", "vllm_server_gpu_memory_utilization=93%", "vllm_server_gpu_memory_utilization"),
    ("ini_free", "model_sync_min_free_gib=-1", "model_sync_min_free_gib must be"),
    ("ini_bench", "vllm_server_benchmark_input_len=abc", "vllm_server_benchmark_input_len must"),
    ("ini_batch", "vllm_upgrade_batch=0", "vllm_upgrade_batch must be"),
    ("ini_driver", "nvidia_driver_version=550.144", "nvidia_driver_version must be"),
]

# Valid values typed as strings, and near-miss names: validation passes, the host is reached.
VALID_YAML = [
    ("ok_defaults", {}, None),
    (
        "ok_quoted",
        {
            "vllm_server_port": "8080",
            "vllm_server_tensor_parallel_size": "2",
            "model_sync_min_free_gib": "100",
            "nvidia_driver_mok_signing": "false",
            "vllm_server_gpu_memory_utilization": "0.9",
            "nvidia_driver_version": "550.144.03",
        },
        None,
    ),
    ("ok_typo_port", {"vllm_sever_port": 8080}, "did you mean vllm_server_port?"),
    ("ok_typo_driver", {"nvidia_drivr_version": "x"}, "did you mean nvidia_driver_version?"),
]
VALID_INI = [
    (
        "ok_ini",
        [
            "vllm_server_port=8080",
            "vllm_server_tensor_parallel_size=2",
            "model_sync_min_free_gib=100",
            "nvidia_driver_mok_signing=false",
            "vllm_server_enable_chunked_prefill=no",
            "vllm_server_gpu_memory_utilization=0.9",
            "nvidia_driver_expected_gpus=4",
            "vllm_upgrade_batch=25%",
            "vllm_server_benchmark_num_prompts=32",
        ],
    ),
]

# -e forms apply to every host of the run: one run each, one host.
EXTRA_VAR_CASES = [
    ("e_port", ["-e", "vllm_server_port=abc"], "vllm_server_port must be an integer"),
    ("e_driver", ["-e", "nvidia_driver_version=550.144"], "nvidia_driver_version must be"),
    ("e_batch", ["-e", "vllm_upgrade_batch=0"], "vllm_upgrade_batch must be"),
    (
        "e_json_tp",
        ["-e", json.dumps({"vllm_server_tensor_parallel_size": "two"})],
        "vllm_server_tensor_parallel_size must be an integer",
    ),
    (
        "e_json_float",
        ["-e", json.dumps({"nvidia_driver_version": 550.144})],
        "nvidia_driver_version must be a string",
    ),
    (
        "e_json_models",
        ["-e", json.dumps({"model_sync_models": [{"name": "a/b", "source": "ftp://x/b"}]})],
        "model_sync_models[0].source must be",
    ),
]
VALID_EXTRA_VARS = [
    "vllm_server_port=8080",
    "vllm_server_tensor_parallel_size=2",
    "model_sync_min_free_gib=100",
    "nvidia_driver_mok_signing=false",
    "vllm_server_kv_cache_gib=1",
    "vllm_upgrade_batch=2",
]

# A Python class name, a traceback or the argument spec in a message means a crash or a dump.
_NOT_FOR_USERS = re.compile(
    r"Traceback|argument_spec|<class |\b_?Ansible[A-Z]\w+|\b[A-Z]\w*(Error|Exception)\b"
)


def _env() -> dict:
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_NOCOLOR="true",
        # No facts from an earlier run: each host must really try to connect in the second play.
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_HOST_KEY_CHECKING="false",
    )


def run_site(*inventories: Path, extra: list[str] = (), playbook: str = "site.yml") -> dict:
    command = ["ansible-playbook", playbook]
    for inventory in inventories:
        command += ["-i", str(inventory)]
    result = subprocess.run(
        [*command, *extra],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    try:
        data = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"no JSON from ansible-playbook (rc {result.returncode}): {result.stderr}")
    data["returncode"] = result.returncode
    return data


def per_host(data: dict) -> dict[str, list[tuple[int, str, dict]]]:
    """host -> [(play index, task name, result)] in the order the plays ran."""
    seen: dict[str, list[tuple[int, str, dict]]] = {}
    for index, play in enumerate(data["plays"]):
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                seen.setdefault(host, []).append((index, task["task"]["name"], result))
    return seen


def assert_stopped_in_validation(data: dict, host: str, expected: str) -> None:
    results = per_host(data).get(host, [])
    assert data["plays"][0]["play"]["name"].startswith("Validate the variables"), data["plays"][0]
    assert results, f"{host} ran no task"
    play, task, result = results[0]
    assert (play, task) == (0, VALIDATION_TASK), results[0]
    assert result.get("failed") is True, result
    later = [(index, name) for index, name, _ in results[1:]]
    assert later == [], f"{host} went on past validation: {later}"
    assert data["stats"][host]["unreachable"] == 0, data["stats"][host]
    message = result.get("msg", "")
    assert expected in message, message
    lines = message.splitlines()
    assert 2 <= len(lines) <= 6, message
    assert lines[0].endswith("(nothing was changed):"), message
    assert not _NOT_FOR_USERS.search(message), message


def assert_reached_the_host(data: dict, host: str, warning: str | None = None) -> None:
    results = per_host(data).get(host, [])
    assert results, f"{host} ran no task"
    assert results[0][:2] == (0, VALIDATION_TASK), results
    validation = results[0][2]
    assert not validation.get("failed"), validation.get("msg")
    warnings = validation.get("warnings") or []
    if warning is None:
        assert not [text for text in warnings if "did you mean" in text], warnings
    else:
        assert any(warning in text for text in warnings), warnings
    second_play = [result for index, _, result in results if index == 1]
    assert second_play, f"{host} did not reach the second play"
    assert second_play[0].get("unreachable") is True, second_play[0]


def _ini_line(host: str) -> str:
    return f"{host} " + " ".join(f"{key}={value}" for key, value in UNREACHABLE.items())


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    """One site.yml run over every YAML and INI case, each its own host."""
    folder = tmp_path_factory.mktemp("site-validation")
    hosts = {name: dict(variables) for name, variables, _ in YAML_CASES}
    hosts.update({name: dict(variables) for name, variables, _ in VALID_YAML})
    (folder / "hosts.yml").write_text(
        yaml.safe_dump({"gpu_servers": {"vars": UNREACHABLE, "hosts": hosts}}, sort_keys=False)
    )
    lines = ["[gpu_servers:children]"]
    groups = [(name, [line]) for name, line, _ in INI_CASES] + VALID_INI
    lines += [f"group_{name}" for name, _ in groups]
    for name, variables in groups:
        lines += ["", f"[group_{name}]", _ini_line(name), "", f"[group_{name}:vars]", *variables]
    (folder / "hosts.ini").write_text("\n".join(lines) + "\n")
    return run_site(folder / "hosts.yml", folder / "hosts.ini")


def test_the_table_covers_every_role():
    names = [
        name
        for _, variables, _ in YAML_CASES
        for name in variables
        if name != "nvidia_driver_expected_gpus"
    ] + [line.split("=", 1)[0] for _, line, _ in INI_CASES]
    assert len(YAML_CASES) + len(INI_CASES) + len(EXTRA_VAR_CASES) >= 60
    for prefix in (
        "nvidia_driver_",
        "cuda_toolkit_",
        "docker_engine_",
        "nvidia_container_toolkit_",
        "model_sync_",
        "vllm_server_benchmark_",
        "vllm_server_",
        "vllm_upgrade_",
    ):
        assert any(name.startswith(prefix) for name in names), prefix


@pytest.mark.parametrize(
    ("host", "expected"),
    [(name, expected) for name, _, expected in YAML_CASES + INI_CASES],
)
def test_bad_input_stops_in_the_first_play(batch, host, expected):
    assert_stopped_in_validation(batch, host, expected)


@pytest.mark.parametrize(
    ("host", "warning"),
    [(name, warning) for name, _, warning in VALID_YAML] + [(name, None) for name, _ in VALID_INI],
)
def test_valid_input_typed_as_strings_reaches_the_host(batch, host, warning):
    assert_reached_the_host(batch, host, warning)


def test_the_run_fails_and_names_each_host(batch):
    assert batch["returncode"] != 0
    failed = {host for host, stats in batch["stats"].items() if stats["failures"]}
    assert failed == {name for name, _, _ in YAML_CASES + INI_CASES}


@pytest.fixture
def one_host(tmp_path) -> Path:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[gpu_servers]\n{_ini_line('node')}\n")
    return inventory


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(extra, expected) for _, extra, expected in EXTRA_VAR_CASES],
    ids=[name for name, _, _ in EXTRA_VAR_CASES],
)
def test_bad_extra_vars_stop_in_the_first_play(one_host, extra, expected):
    assert_stopped_in_validation(run_site(one_host, extra=extra), "node", expected)


def test_valid_extra_vars_typed_as_strings_reach_the_host(one_host):
    extra = [part for item in VALID_EXTRA_VARS for part in ("-e", item)]
    assert_reached_the_host(run_site(one_host, extra=extra), "node")


def test_the_benchmark_playbook_validates_first(one_host):
    data = run_site(
        one_host,
        extra=["-e", "vllm_server_benchmark_num_prompts=0"],
        playbook="playbooks/benchmark.yml",
    )
    assert_stopped_in_validation(data, "node", "vllm_server_benchmark_num_prompts must be")
