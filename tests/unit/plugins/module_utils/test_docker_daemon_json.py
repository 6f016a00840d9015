"""Tests of module_utils.docker_daemon_json on real daemon.json files (see fixtures SOURCES.md)."""

import copy
import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.docker_daemon_json import (
    DaemonJsonError,
    changed_paths,
    configs_equal,
    default_runtime_warning,
    diff_daemon_config,
    dockerd_validate_argv,
    dockerd_validation,
    merge_daemon_config,
    parse_daemon_json,
    plan_daemon_json_update,
    render_daemon_json,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "daemon_json"
VALID_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*.json") if not p.name.startswith("invalid_")
)

# What the nvidia_container_toolkit role sets (nvidia-ctk's own shape) and what docker_engine sets.
NVIDIA_RUNTIME = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
LOG_ROTATION = {"log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "5"}}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_valid_fixture_set_is_not_empty():
    assert len(VALID_FIXTURES) >= 8


# --- parse_daemon_json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_keys"),
    [
        ("nvidia_ctk_runtime_configure.json", {"runtimes"}),
        ("hosts_tab_indented.json", {"hosts"}),
        (
            "kubernetes_cgroup_log_storage.json",
            {"exec-opts", "log-driver", "log-opts", "storage-driver"},
        ),
        (
            "devicemapper_log_rotation.json",
            {"storage-driver", "storage-opts", "log-driver", "log-opts"},
        ),
        ("data_root_default_runtime_nvidia.json", {"data-root", "default-runtime", "runtimes"}),
        (
            "insecure_registry_generic_resources.json",
            {"insecure-registries", "default-runtime", "runtimes", "node-generic-resources"},
        ),
        ("registry_mirrors.json", {"registry-mirrors"}),
        (
            "cdi_feature_default_nvidia.json",
            {"default-runtime", "runtimes", "features", "cdi-spec-dirs"},
        ),
        ("default_shm_size_nvidia.json", {"default-runtime", "default-shm-size", "runtimes"}),
    ],
)
def test_parse_real_files(name, expected_keys):
    assert set(parse_daemon_json(fixture_text(name))) == expected_keys


def test_parse_keeps_values_and_types():
    config = parse_daemon_json(fixture_text("cdi_feature_default_nvidia.json"))
    assert config["features"] == {"cdi": True}
    assert config["cdi-spec-dirs"] == ["/etc/cdi/"]
    assert config["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}


@pytest.mark.parametrize(
    ("name", "line", "column", "reason"),
    [
        ("invalid_missing_comma.json", 3, 5, "Expecting ',' delimiter"),
        ("invalid_stray_brace.json", 3, 54, "Extra data"),
        ("invalid_trailing_comma.json", 9, 1, "Expecting property name enclosed in double quotes"),
        ("invalid_two_objects_smart_quotes.json", 9, 1, "Extra data"),
    ],
)
def test_parse_real_broken_files_reports_position(name, line, column, reason):
    with pytest.raises(DaemonJsonError) as caught:
        parse_daemon_json(fixture_text(name), source=f"/etc/docker/{name}")
    assert (caught.value.line, caught.value.column) == (line, column)
    message = str(caught.value)
    assert message.startswith(f"/etc/docker/{name}: invalid JSON at line {line}, column {column}")
    assert reason in message


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('["native.cgroupdriver=systemd"]', "an array"),
        ('"json-file"', "a string"),
        ("null", "null"),
        ("true", "a boolean"),
        ("42", "a number"),
    ],
)
def test_parse_refuses_non_object_top_level(text, found):
    with pytest.raises(DaemonJsonError, match=f"top level must be a JSON object, found {found}$"):
        parse_daemon_json(text)


@pytest.mark.parametrize("text", ["", "\n", "  \n\t \n"])
def test_parse_empty_file_is_empty_config(text):
    assert parse_daemon_json(text) == {}


def test_parse_refuses_duplicate_key():
    text = '{"log-opts": {"max-size": "10m", "max-size": "100m"}}'
    with pytest.raises(DaemonJsonError, match="'max-size' appears more than once"):
        parse_daemon_json(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_parse_refuses_non_json_numbers(constant):
    with pytest.raises(DaemonJsonError, match=f"{constant} is not valid JSON"):
        parse_daemon_json(f'{{"max-concurrent-downloads": {constant}}}')


# --- render_daemon_json / configs_equal -------------------------------------------------------


def test_render_reproduces_nvidia_ctk_bytes():
    # Same layout as nvidia-ctk: running both tools must not flip the file's formatting.
    text = fixture_text("nvidia_ctk_runtime_configure.json")
    assert render_daemon_json(parse_daemon_json(text)) == text


def test_render_sorts_keys_indents_four_and_ends_with_newline():
    text = render_daemon_json({"runtimes": {}, "data-root": "/data/docker", "debug": True})
    assert (
        text == '{\n    "data-root": "/data/docker",\n    "debug": true,\n    "runtimes": {}\n}\n'
    )


def test_render_keeps_non_ascii_text():
    assert '"/données/docker"' in render_daemon_json({"data-root": "/données/docker"})


@pytest.mark.parametrize("name", VALID_FIXTURES)
def test_render_then_parse_is_the_same_config(name):
    config = parse_daemon_json(fixture_text(name))
    rendered = render_daemon_json(config)
    assert parse_daemon_json(rendered) == config
    assert configs_equal(parse_daemon_json(rendered), config)


@pytest.mark.parametrize(
    ("first", "second", "equal"),
    [
        ({"a": 1, "b": {"c": [1, 2]}}, {"b": {"c": [1, 2]}, "a": 1}, True),
        ({"registry-mirrors": ["a", "b"]}, {"registry-mirrors": ["b", "a"]}, False),
        ({"debug": True}, {"debug": 1}, False),
        ({"log-opts": {"max-file": "5"}}, {"log-opts": {"max-file": 5}}, False),
        ({"max-concurrent-downloads": 3}, {"max-concurrent-downloads": 3.0}, False),
        ({}, {"runtimes": {}}, False),
    ],
)
def test_configs_equal_is_semantic_and_type_strict(first, second, equal):
    assert configs_equal(first, second) is equal


def test_configs_equal_ignores_real_file_formatting():
    tabbed = parse_daemon_json(fixture_text("hosts_tab_indented.json"))
    assert configs_equal(
        tabbed, json.loads('{"hosts":["tcp://127.0.0.1:2375","unix:///var/run/docker.sock"]}')
    )


# --- merge_daemon_config ----------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_FIXTURES)
def test_merge_nvidia_and_log_rotation_keeps_every_foreign_key(name):
    current = parse_daemon_json(fixture_text(name))
    merged = merge_daemon_config(current, {**NVIDIA_RUNTIME, **LOG_ROTATION})

    owned = {"runtimes", "log-driver", "log-opts"}
    for key, value in current.items():
        if key not in owned:
            assert merged[key] == value, key
    for runtime, settings in current.get("runtimes", {}).items():
        for field, value in settings.items():
            if runtime != "nvidia" or field not in NVIDIA_RUNTIME["runtimes"]["nvidia"]:
                assert merged["runtimes"][runtime][field] == value
    for option, value in current.get("log-opts", {}).items():
        if option not in LOG_ROTATION["log-opts"]:
            assert merged["log-opts"][option] == value
    assert merged["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert merged["runtimes"]["nvidia"]["args"] == []
    assert merged["log-driver"] == "json-file"
    assert merged["log-opts"]["max-size"] == "100m"
    assert merged["log-opts"]["max-file"] == "5"


def test_merge_keeps_other_runtimes():
    current = {"runtimes": {"crun": {"path": "/usr/bin/crun"}}, "default-runtime": "crun"}
    merged = merge_daemon_config(current, NVIDIA_RUNTIME)
    assert merged == {
        "default-runtime": "crun",
        "runtimes": {
            "crun": {"path": "/usr/bin/crun"},
            "nvidia": {"args": [], "path": "nvidia-container-runtime"},
        },
    }


def test_merge_keeps_other_log_opts_of_real_file():
    current = parse_daemon_json(fixture_text("devicemapper_log_rotation.json"))
    merged = merge_daemon_config(current, {"log-opts": {"max-size": "100m"}})
    assert merged["log-opts"] == {"max-size": "100m", "max-file": "10"}
    assert merged["storage-opts"] == current["storage-opts"]


def test_merge_replaces_lists_and_scalars():
    current = parse_daemon_json(fixture_text("kubernetes_cgroup_log_storage.json"))
    merged = merge_daemon_config(
        current, {"exec-opts": ["native.cgroupdriver=cgroupfs"], "storage-driver": "vfs"}
    )
    assert merged["exec-opts"] == ["native.cgroupdriver=cgroupfs"]
    assert merged["storage-driver"] == "vfs"


def test_merge_object_over_scalar_and_scalar_over_object():
    merged = merge_daemon_config(
        {"log-opts": "broken", "features": {"cdi": True}},
        {
            "log-opts": {"max-size": "10m"},
            "features": False,
        },
    )
    assert merged == {"log-opts": {"max-size": "10m"}, "features": False}


def test_merge_never_mutates_inputs():
    current = parse_daemon_json(fixture_text("data_root_default_runtime_nvidia.json"))
    desired = {**NVIDIA_RUNTIME, **LOG_ROTATION}
    current_before, desired_before = copy.deepcopy(current), copy.deepcopy(desired)
    merged = merge_daemon_config(current, desired, ["default-runtime"])
    merged["runtimes"]["nvidia"]["args"].append("--debug")
    merged["log-opts"]["max-size"] = "1m"
    assert current == current_before
    assert desired == desired_before


def test_merge_normalises_yaml_shapes_to_json():
    merged = merge_daemon_config({}, {"default-ulimits": {1: ("a", "b")}})
    assert merged == {"default-ulimits": {"1": ["a", "b"]}}


def test_merge_refuses_values_json_cannot_hold():
    with pytest.raises(DaemonJsonError, match="desired config cannot be written as JSON"):
        merge_daemon_config({}, {"labels": {"x"}})


@pytest.mark.parametrize(
    ("name", "remove", "expected"),
    [
        (
            "data_root_default_runtime_nvidia.json",
            ["default-runtime"],
            {
                "data-root": "/your/custom/location",
                "runtimes": {
                    "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}
                },
            },
        ),
        # The last runtime goes, and so does the "runtimes" object it leaves empty.
        ("nvidia_ctk_runtime_configure.json", ["runtimes.nvidia"], {}),
        (
            "cdi_feature_default_nvidia.json",
            ["features.cdi", "cdi-spec-dirs", "default-runtime"],
            {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}},
        ),
        (
            "devicemapper_log_rotation.json",
            ["log-opts.max-file"],
            {
                "storage-driver": "devicemapper",
                "storage-opts": [
                    "dm.thinpooldev=/dev/mapper/vg0-pool0",
                    "dm.use_deferred_deletion=true",
                    "dm.use_deferred_removal=true",
                ],
                "log-driver": "json-file",
                "log-opts": {"max-size": "10m"},
            },
        ),
        # Absent paths are ignored, including a path running through a non-object.
        (
            "registry_mirrors.json",
            ["default-runtime", "runtimes.nvidia", "registry-mirrors.0"],
            {
                "registry-mirrors": [
                    "https://docker.mirrors.ustc.edu.cn",
                    "https://hub-mirror.c.163.com",
                ]
            },
        ),
    ],
)
def test_merge_removes_dotted_paths(name, remove, expected):
    assert merge_daemon_config(parse_daemon_json(fixture_text(name)), {}, remove) == expected


def test_remove_finds_runtime_names_with_dots():
    current = {
        "runtimes": {
            "io.containerd.runsc.v1": {"path": "/usr/bin/runsc"},
            "nvidia": {"args": [], "path": "nvidia-container-runtime"},
        }
    }
    merged = merge_daemon_config(current, {}, ["runtimes.io.containerd.runsc.v1"])
    assert merged == {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}


@pytest.mark.parametrize(
    "remove",
    [["runtimes.nvidia"], ["runtimes"], ["runtimes.nvidia.path"], ["log-driver", "runtimes"]],
)
def test_merge_refuses_path_both_set_and_removed(remove):
    with pytest.raises(DaemonJsonError, match="both set and removed"):
        merge_daemon_config({}, {**NVIDIA_RUNTIME, "log-driver": "json-file"}, remove)


def test_merge_allows_removing_a_sibling_of_a_set_path():
    current = parse_daemon_json(fixture_text("data_root_default_runtime_nvidia.json"))
    merged = merge_daemon_config(current, NVIDIA_RUNTIME, ["runtimes.nvidia.runtimeArgs"])
    assert merged["runtimes"] == NVIDIA_RUNTIME["runtimes"]


# --- changed_paths / diff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "desired", "remove", "expected"),
    [
        ("nvidia_ctk_runtime_configure.json", NVIDIA_RUNTIME, [], []),
        (
            "nvidia_ctk_runtime_configure.json",
            LOG_ROTATION,
            [],
            ["log-driver", "log-opts"],
        ),
        (
            "devicemapper_log_rotation.json",
            LOG_ROTATION,
            [],
            ["log-opts.max-file", "log-opts.max-size"],
        ),
        (
            "data_root_default_runtime_nvidia.json",
            NVIDIA_RUNTIME,
            ["default-runtime"],
            ["default-runtime", "runtimes.nvidia.args", "runtimes.nvidia.path"],
        ),
        ("registry_mirrors.json", NVIDIA_RUNTIME, [], ["runtimes"]),
        ("cdi_feature_default_nvidia.json", {"features": {"cdi": False}}, [], ["features.cdi"]),
    ],
)
def test_changed_paths_on_real_files(name, desired, remove, expected):
    before = parse_daemon_json(fixture_text(name))
    assert changed_paths(before, merge_daemon_config(before, desired, remove)) == expected


def test_changed_paths_sees_type_changes():
    assert changed_paths({"debug": True}, {"debug": 1}) == ["debug"]


def test_diff_renders_both_sides_the_same_way():
    before = parse_daemon_json(fixture_text("hosts_tab_indented.json"))
    after = merge_daemon_config(before, {"log-driver": "json-file"})
    diff = diff_daemon_config(before, after)
    assert diff["before"] == render_daemon_json(before)
    assert diff["after"] == render_daemon_json(after)
    assert "\t" not in diff["before"]
    assert '    "log-driver": "json-file"\n' in diff["after"]


def test_diff_of_missing_file_is_empty_text():
    assert diff_daemon_config(None, NVIDIA_RUNTIME) == {
        "before": "",
        "after": render_daemon_json(NVIDIA_RUNTIME),
    }


# --- default_runtime_warning ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "warns"),
    [
        ({}, False),
        ({"default-runtime": "runc"}, False),
        ({"default-runtime": "io.containerd.runc.v2"}, False),
        ({"default-runtime": "nvidia"}, True),
        ({"default-runtime": "nvidia", "runtimes": {"crun": {"path": "crun"}}}, True),
        ({"default-runtime": "nvidia", **NVIDIA_RUNTIME}, False),
        ({"default-runtime": ["nvidia"], **NVIDIA_RUNTIME}, True),
    ],
)
def test_default_runtime_warning(config, warns):
    warning = default_runtime_warning(config)
    assert (warning is not None) is warns
    if warns:
        assert "dockerd will refuse to start" in warning


def test_default_runtime_warning_after_removing_the_runtime_from_real_file():
    current = parse_daemon_json(fixture_text("default_shm_size_nvidia.json"))
    assert default_runtime_warning(current) is None
    merged = merge_daemon_config(current, {}, ["runtimes.nvidia"])
    assert "'nvidia'" in default_runtime_warning(merged)


# --- plan_daemon_json_update ------------------------------------------------------------------


def test_plan_missing_file_with_nothing_to_set_changes_nothing():
    plan = plan_daemon_json_update(None, {}, ["default-runtime"])
    assert plan["changed"] is False
    assert plan["changed_keys"] == []
    assert plan["diff"] == {"before": "", "after": ""}


def test_plan_missing_file_is_created():
    plan = plan_daemon_json_update(None, NVIDIA_RUNTIME)
    assert plan["changed"] is True
    assert plan["before"] is None
    assert plan["content"] == fixture_text("nvidia_ctk_runtime_configure.json")
    assert plan["changed_keys"] == ["runtimes"]
    assert plan["diff"]["before"] == ""


@pytest.mark.parametrize("text", ["", "\n"])
def test_plan_empty_file_gets_the_keys(text):
    plan = plan_daemon_json_update(text, LOG_ROTATION)
    assert plan["changed"] is True
    assert plan["after"] == LOG_ROTATION
    assert plan["diff"]["before"] == "{}\n"


def test_plan_empty_file_and_nothing_to_set_is_unchanged():
    assert plan_daemon_json_update("", {})["changed"] is False


def test_plan_key_order_and_whitespace_are_no_change():
    # Same values as the real file, keys in another order and no tabs: nothing to do.
    desired = {"hosts": ["tcp://127.0.0.1:2375", "unix:///var/run/docker.sock"]}
    plan = plan_daemon_json_update(fixture_text("hosts_tab_indented.json"), desired)
    assert plan["changed"] is False
    assert plan["changed_keys"] == []

    reordered = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    plan = plan_daemon_json_update(fixture_text("nvidia_ctk_runtime_configure.json"), reordered)
    assert plan["changed"] is False


@pytest.mark.parametrize("name", VALID_FIXTURES)
def test_plan_is_idempotent_on_real_files(name):
    desired = {**NVIDIA_RUNTIME, **LOG_ROTATION}
    first = plan_daemon_json_update(fixture_text(name), desired)
    assert first["changed"] is True
    second = plan_daemon_json_update(first["content"], desired)
    assert second["changed"] is False
    assert second["changed_keys"] == []
    assert second["after"] == first["after"]


def test_plan_warns_about_unknown_default_runtime():
    plan = plan_daemon_json_update(
        fixture_text("data_root_default_runtime_nvidia.json"), {}, ["runtimes.nvidia"]
    )
    assert len(plan["warnings"]) == 1
    assert "default-runtime is 'nvidia'" in plan["warnings"][0]


def test_plan_reports_invalid_file_with_source():
    with pytest.raises(DaemonJsonError, match=r"^/etc/docker/daemon.json: invalid JSON at line 3"):
        plan_daemon_json_update(
            fixture_text("invalid_missing_comma.json"),
            NVIDIA_RUNTIME,
            source="/etc/docker/daemon.json",
        )


@pytest.mark.parametrize(
    ("desired", "expected"),
    [
        # dockerd: "cannot unmarshal number into Go struct field ... of type string".
        ({"log-opts": {"max-size": "100m", "max-file": 5}}, "log-opts.max-file must be a JSON"),
        ({"live-restore": "true"}, "live-restore must be a JSON boolean"),
        ({"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}, "hosts must be"),
    ],
)
def test_plan_refuses_a_merged_file_dockerd_would_refuse_or_open(desired, expected):
    with pytest.raises(DaemonJsonError, match=r"^/etc/docker/daemon\.json: not written") as raised:
        plan_daemon_json_update(
            fixture_text("nvidia_ctk_runtime_configure.json"),
            desired,
            source="/etc/docker/daemon.json",
        )
    assert expected in str(raised.value)


def test_plan_leaves_the_hosts_own_keys_to_the_host():
    # The real file listens on tcp://127.0.0.1:2375 without TLS: the host's choice, which an
    # update of other keys neither refuses nor changes.
    plan = plan_daemon_json_update(fixture_text("hosts_tab_indented.json"), NVIDIA_RUNTIME)
    assert plan["changed"] is True
    assert plan["changed_keys"] == ["runtimes"]
    assert "tcp://127.0.0.1:2375" in plan["after"]["hosts"]


# --- dockerd --validate, classified from real runs (tests/fixtures/dockerd_validate) ----------
VALIDATE_RUNS = json.loads(
    (
        Path(__file__).resolve().parents[3] / "fixtures" / "dockerd_validate" / "captures.json"
    ).read_text()
)


@pytest.mark.parametrize(
    ("run", "verdict", "message"),
    [
        ("26.1.5_ok", "ok", "configuration OK"),
        (
            "26.1.5_log-opts-number",
            "refused",
            "json: cannot unmarshal number into Go struct field "
            "Config.CommonConfig.LogConfig.log-opts of type string",
        ),
        (
            "26.1.5_unknown-directive",
            "refused",
            "the following directives don't match any configuration option: "
            "containerd-plugin-namespace",
        ),
        ("26.1.5_malformed", "refused", "unexpected end of JSON input"),
        (
            "20.10.24_no-validate-flag",
            "unsupported",
            "this dockerd has no --validate (Docker < 23)",
        ),
    ],
)
def test_dockerd_validate_runs_are_classified(run, verdict, message):
    captured = VALIDATE_RUNS[run]
    assert dockerd_validation(captured["rc"], captured["stdout"], captured["stderr"]) == {
        "verdict": verdict,
        "message": message,
    }


def test_no_answer_and_no_binary_leave_the_known_rules():
    assert dockerd_validation(None, "", "")["verdict"] == "unavailable"
    assert dockerd_validation(127, "", "dockerd: not found")["verdict"] == "unavailable"
    assert dockerd_validate_argv("/usr/bin/dockerd", "/tmp/x.json") == [
        "/usr/bin/dockerd",
        "--validate",
        "--config-file",
        "/tmp/x.json",
    ]
