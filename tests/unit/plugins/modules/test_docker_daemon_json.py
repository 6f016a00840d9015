"""Tests of the docker_daemon_json module: main() against files in a temporary directory."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.module_utils.docker_daemon_json import (
    render_daemon_json,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import docker_daemon_json

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "daemon_json"

NVIDIA_RUNTIME = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
LOG_ROTATION = {"log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "5"}}


def run_module(capsys, **args):
    """Run main() with these module args; return (failed, result)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        docker_daemon_json.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


@pytest.fixture
def docker_dir(tmp_path):
    path = tmp_path / "etc" / "docker"
    path.mkdir(parents=True)
    return path


def install_fixture(docker_dir: Path, name: str, mode: int = 0o644) -> Path:
    target = docker_dir / "daemon.json"
    shutil.copyfile(FIXTURES / name, target)
    target.chmod(mode)
    return target


def warning_texts(result: dict) -> list[str]:
    # ansible-core 2.19 reports warnings as WarningSummary dicts; older versions as strings.
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def snapshot(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_ino, info.st_mtime_ns


def test_creates_missing_file_and_directory(tmp_path, capsys):
    target = tmp_path / "etc" / "docker" / "daemon.json"
    failed, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME)
    assert not failed
    assert result["changed"] is True
    assert result["changed_keys"] == ["runtimes"]
    assert result["config"] == NVIDIA_RUNTIME
    assert target.read_text() == (FIXTURES / "nvidia_ctk_runtime_configure.json").read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    assert "backup_file" not in result


def test_missing_file_with_nothing_to_set_stays_missing(docker_dir, capsys):
    target = docker_dir / "daemon.json"
    failed, result = run_module(capsys, path=str(target), remove=["default-runtime"])
    assert not failed
    assert result["changed"] is False
    assert not target.exists()


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes_cgroup_log_storage.json",
        "insecure_registry_generic_resources.json",
        "cdi_feature_default_nvidia.json",
        "hosts_tab_indented.json",
    ],
)
def test_keeps_foreign_keys_of_real_file(docker_dir, capsys, name):
    target = install_fixture(docker_dir, name)
    original = json.loads(target.read_text())
    failed, result = run_module(capsys, path=str(target), config={**NVIDIA_RUNTIME, **LOG_ROTATION})
    assert not failed
    assert result["changed"] is True
    on_disk = json.loads(target.read_text())
    assert on_disk == result["config"]
    for key, value in original.items():
        if key not in {"runtimes", "log-driver", "log-opts"}:
            assert on_disk[key] == value
    assert on_disk["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert on_disk["log-opts"]["max-file"] == "5"


def test_second_run_is_not_changed_and_does_not_write(docker_dir, capsys):
    target = install_fixture(docker_dir, "devicemapper_log_rotation.json")
    args = dict(path=str(target), config={**NVIDIA_RUNTIME, **LOG_ROTATION})
    _, first = run_module(capsys, **args)
    assert first["changed"] is True
    after_first = snapshot(target)

    _, second = run_module(capsys, **args)
    assert second["changed"] is False
    assert second["changed_keys"] == []
    assert snapshot(target) == after_first

    _, check = run_module(capsys, _ansible_check_mode=True, **args)
    assert check["changed"] is False


def test_key_order_and_whitespace_are_no_change(docker_dir, capsys):
    target = install_fixture(docker_dir, "hosts_tab_indented.json")
    before = snapshot(target)
    failed, result = run_module(
        capsys,
        path=str(target),
        config={"hosts": ["tcp://127.0.0.1:2375", "unix:///var/run/docker.sock"]},
    )
    assert not failed
    assert result["changed"] is False
    assert snapshot(target) == before  # the tabs stay: no rewrite without a change of meaning


@pytest.mark.parametrize(
    ("name", "position"),
    [
        ("invalid_missing_comma.json", "line 3, column 5"),
        ("invalid_stray_brace.json", "line 3, column 54"),
        ("invalid_trailing_comma.json", "line 9, column 1"),
        ("invalid_two_objects_smart_quotes.json", "line 9, column 1"),
    ],
)
def test_invalid_json_fails_and_leaves_file_untouched(docker_dir, capsys, name, position):
    target = install_fixture(docker_dir, name)
    before = snapshot(target)
    failed, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME, backup=True)
    assert failed
    assert result["msg"].startswith(f"{target}: invalid JSON at {position}")
    assert snapshot(target) == before
    assert sorted(os.listdir(docker_dir)) == ["daemon.json"]  # no temp file, no backup


def test_non_object_json_fails(docker_dir, capsys):
    target = docker_dir / "daemon.json"
    target.write_text('["native.cgroupdriver=systemd"]\n')
    failed, result = run_module(capsys, path=str(target), config=LOG_ROTATION)
    assert failed
    assert "top level must be a JSON object, found an array" in result["msg"]
    assert target.read_text() == '["native.cgroupdriver=systemd"]\n'


def test_empty_file_is_filled(docker_dir, capsys):
    target = docker_dir / "daemon.json"
    target.write_text("")
    failed, result = run_module(capsys, path=str(target), config=LOG_ROTATION)
    assert not failed
    assert result["changed"] is True
    assert json.loads(target.read_text()) == LOG_ROTATION


def test_file_with_bom_is_read(docker_dir, capsys):
    target = docker_dir / "daemon.json"
    target.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "registry_mirrors.json").read_bytes())
    failed, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME)
    assert not failed
    assert result["config"]["registry-mirrors"][0] == "https://docker.mirrors.ustc.edu.cn"


def test_check_mode_reports_change_and_diff_without_writing(docker_dir, capsys):
    target = install_fixture(docker_dir, "data_root_default_runtime_nvidia.json")
    before = snapshot(target)
    args = dict(path=str(target), config=NVIDIA_RUNTIME, remove=["default-runtime"], backup=True)
    failed, checked = run_module(capsys, _ansible_check_mode=True, _ansible_diff=True, **args)
    assert not failed
    assert checked["changed"] is True
    assert snapshot(target) == before
    assert sorted(os.listdir(docker_dir)) == ["daemon.json"]
    assert "backup_file" not in checked

    _, applied = run_module(capsys, **args)
    assert applied["changed"] is True
    assert applied["changed_keys"] == checked["changed_keys"]
    assert applied["config"] == checked["config"]


@pytest.mark.parametrize(
    "name", ["cdi_feature_default_nvidia.json", "hosts_tab_indented.json", None]
)
def test_check_mode_without_config_reads_the_file(docker_dir, capsys, name):
    # How nvidia_container_toolkit reads daemon.json before it changes anything: no config, check
    # mode, the parsed file (or {} for no file) in `config`, nothing touched.
    target = docker_dir / "daemon.json"
    if name is not None:
        install_fixture(docker_dir, name)
    before = snapshot(target) if name is not None else None
    failed, result = run_module(capsys, path=str(target), _ansible_check_mode=True)
    assert not failed
    assert result["changed"] is False
    assert result["changed_keys"] == []
    expected = json.loads((FIXTURES / name).read_text()) if name is not None else {}
    assert result["config"] == expected
    if name is None:
        assert not target.exists()
    else:
        assert snapshot(target) == before


def test_check_mode_does_not_create_missing_file_or_directory(tmp_path, capsys):
    target = tmp_path / "etc" / "docker" / "daemon.json"
    failed, result = run_module(
        capsys, path=str(target), config=LOG_ROTATION, _ansible_check_mode=True, _ansible_diff=True
    )
    assert not failed
    assert result["changed"] is True
    assert not target.parent.exists()
    assert result["diff"][0]["before"] == ""
    assert result["diff"][0]["before_header"] == f"{target} (absent)"
    assert result["diff"][0]["after"] == render_daemon_json(LOG_ROTATION)


def test_diff_shows_meaning_not_formatting(docker_dir, capsys):
    target = install_fixture(docker_dir, "data_root_default_runtime_nvidia.json")
    _, result = run_module(
        capsys,
        path=str(target),
        config=NVIDIA_RUNTIME,
        remove=["default-runtime"],
        _ansible_diff=True,
    )
    assert result["changed_keys"] == [
        "default-runtime",
        "runtimes.nvidia.args",
        "runtimes.nvidia.path",
    ]
    (content_diff,) = result["diff"]
    assert content_diff["before_header"] == content_diff["after_header"] == str(target)
    assert content_diff["before"] == (
        "{\n"
        '    "data-root": "/your/custom/location",\n'
        '    "default-runtime": "nvidia",\n'
        '    "runtimes": {\n'
        '        "nvidia": {\n'
        '            "path": "/usr/bin/nvidia-container-runtime",\n'
        '            "runtimeArgs": []\n'
        "        }\n"
        "    }\n"
        "}\n"
    )
    assert content_diff["after"] == (
        "{\n"
        '    "data-root": "/your/custom/location",\n'
        '    "runtimes": {\n'
        '        "nvidia": {\n'
        '            "args": [],\n'
        '            "path": "nvidia-container-runtime",\n'
        '            "runtimeArgs": []\n'
        "        }\n"
        "    }\n"
        "}\n"
    )
    assert target.read_text() == content_diff["after"]


def test_no_diff_key_outside_diff_mode(docker_dir, capsys):
    target = install_fixture(docker_dir, "registry_mirrors.json")
    _, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME)
    assert "diff" not in result


def test_remove_paths(docker_dir, capsys):
    target = install_fixture(docker_dir, "cdi_feature_default_nvidia.json")
    failed, result = run_module(
        capsys, path=str(target), remove=["runtimes.nvidia", "default-runtime", "absent.key"]
    )
    assert not failed
    assert result["changed_keys"] == ["default-runtime", "runtimes"]
    assert json.loads(target.read_text()) == {
        "cdi-spec-dirs": ["/etc/cdi/"],
        "features": {"cdi": True},
    }
    assert warning_texts(result) == []


def test_set_and_remove_same_path_fails(docker_dir, capsys):
    target = install_fixture(docker_dir, "nvidia_ctk_runtime_configure.json")
    before = snapshot(target)
    failed, result = run_module(
        capsys, path=str(target), config=NVIDIA_RUNTIME, remove=["runtimes.nvidia"]
    )
    assert failed
    assert "both set and removed: runtimes.nvidia" in result["msg"]
    assert snapshot(target) == before


def test_backup_keeps_previous_bytes(docker_dir, capsys):
    target = install_fixture(docker_dir, "insecure_registry_generic_resources.json")
    original = target.read_bytes()
    _, result = run_module(capsys, path=str(target), config=LOG_ROTATION, backup=True)
    assert result["changed"] is True
    backup = Path(result["backup_file"])
    assert backup.parent == docker_dir
    assert backup.read_bytes() == original


def test_warns_when_default_runtime_is_unknown(docker_dir, capsys):
    target = install_fixture(docker_dir, "default_shm_size_nvidia.json")
    failed, result = run_module(capsys, path=str(target), remove=["runtimes.nvidia"])
    assert not failed
    assert result["changed"] is True
    (warning,) = warning_texts(result)
    assert warning.startswith("default-runtime is 'nvidia', which is neither in runtimes")


def test_existing_mode_is_kept_and_mode_option_applies(docker_dir, capsys):
    target = install_fixture(docker_dir, "registry_mirrors.json", mode=0o600)
    _, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME)
    assert result["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    # Content already right, only the mode differs: changed, but no key changed.
    _, result = run_module(capsys, path=str(target), config=NVIDIA_RUNTIME, mode="0644")
    assert result["changed"] is True
    assert result["changed_keys"] == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_symlink_is_followed_and_kept(docker_dir, capsys):
    real = docker_dir / "real-daemon.json"
    shutil.copyfile(FIXTURES / "registry_mirrors.json", real)
    link = docker_dir / "daemon.json"
    link.symlink_to(real.name)
    _, result = run_module(capsys, path=str(link), config=NVIDIA_RUNTIME)
    assert result["changed"] is True
    assert result["path"] == str(real)
    assert link.is_symlink()
    assert "nvidia" in json.loads(real.read_text())["runtimes"]


def test_directory_path_fails(docker_dir, capsys):
    failed, result = run_module(capsys, path=str(docker_dir), config=NVIDIA_RUNTIME)
    assert failed
    assert "is a directory" in result["msg"]


# --- dockerd --validate before writing ----------------------------------------------------------
# Stand-in dockerd executables replay real runs (tests/fixtures/dockerd_validate/captures.json):
# what they print and their exit status; they also keep the file they were asked to check.
VALIDATE_RUNS = json.loads(
    (FIXTURES.parent / "dockerd_validate" / "captures.json").read_text(encoding="utf-8")
)


def replaying_dockerd(tmp_path: Path, run: str) -> tuple[Path, Path]:
    captured = VALIDATE_RUNS[run]
    seen = tmp_path / f"seen-{run}.json"
    (tmp_path / f"{run}.out").write_text(captured["stdout"])
    (tmp_path / f"{run}.err").write_text(captured["stderr"])
    script = tmp_path / f"dockerd-{run}"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --validate ] && [ "$2" = --config-file ] && cp "$3" {seen}\n'
        f"cat {tmp_path / f'{run}.out'}\n"
        f"cat {tmp_path / f'{run}.err'} >&2\n"
        f"exit {captured['rc']}\n"
    )
    script.chmod(0o755)
    return script, seen


def test_a_file_dockerd_validates_is_written_and_says_so(docker_dir, tmp_path, capsys):
    dockerd, seen = replaying_dockerd(tmp_path, "26.1.5_ok")
    target = docker_dir / "daemon.json"
    failed, result = run_module(
        capsys, path=str(target), config=LOG_ROTATION, dockerd_path=str(dockerd)
    )
    assert not failed, result
    assert result["validated_by"] == "dockerd --validate"
    # dockerd checked exactly what was then written.
    assert seen.read_text() == target.read_text()


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_file_dockerd_refuses_is_not_written(docker_dir, tmp_path, capsys, check_mode):
    dockerd, _seen = replaying_dockerd(tmp_path, "26.1.5_unknown-directive")
    target = install_fixture(docker_dir, "registry_mirrors.json")
    before = snapshot(target)
    failed, result = run_module(
        capsys,
        path=str(target),
        config={"containerd-plugin-namespace": "x"},
        dockerd_path=str(dockerd),
        _ansible_check_mode=check_mode,
    )
    assert failed
    assert result["msg"] == (
        f"{target}: not written, dockerd --validate refuses the merged file: the following "
        "directives don't match any configuration option: containerd-plugin-namespace"
    )
    assert snapshot(target) == before


def test_an_old_dockerd_leaves_the_known_rules(docker_dir, tmp_path, capsys):
    dockerd, _seen = replaying_dockerd(tmp_path, "20.10.24_no-validate-flag")
    failed, result = run_module(
        capsys,
        path=str(docker_dir / "daemon.json"),
        config=NVIDIA_RUNTIME,
        dockerd_path=str(dockerd),
    )
    assert not failed, result
    assert result["validated_by"] == "known rules (this dockerd has no --validate (Docker < 23))"


def test_no_dockerd_and_validate_off_leave_the_known_rules(docker_dir, tmp_path, capsys):
    target = docker_dir / "daemon.json"
    failed, result = run_module(
        capsys, path=str(target), config=NVIDIA_RUNTIME, dockerd_path="no-such-dockerd-here"
    )
    assert not failed, result
    assert result["validated_by"] == "known rules (no no-such-dockerd-here on this host)"
    dockerd, seen = replaying_dockerd(tmp_path, "26.1.5_unknown-directive")
    failed, result = run_module(
        capsys, path=str(target), config=LOG_ROTATION, dockerd_path=str(dockerd), validate=False
    )
    assert not failed, result
    assert result["validated_by"] == "known rules"
    assert not seen.exists()


def test_an_unchanged_file_is_not_validated(docker_dir, tmp_path, capsys):
    dockerd, seen = replaying_dockerd(tmp_path, "26.1.5_unknown-directive")
    target = install_fixture(docker_dir, "nvidia_ctk_runtime_configure.json")
    config = json.loads(target.read_text())
    failed, result = run_module(capsys, path=str(target), config=config, dockerd_path=str(dockerd))
    assert not failed, result
    assert result["changed"] is False
    assert result["validated_by"] is None
    assert not seen.exists()
