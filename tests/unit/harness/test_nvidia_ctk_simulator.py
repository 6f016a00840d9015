"""The nvidia-ctk stand-in of the simulated vendor repository, run as a program.

What it writes must be what NVIDIA's nvidia-ctk writes: tests/fixtures/daemon_json/
nvidia_ctk_runtime_configure.json is a file the real `nvidia-ctk runtime configure
--runtime=docker` wrote (SOURCES.md there), and the role nvidia_container_toolkit must find a
host configured that way already converged.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
SIMULATOR = TESTS / "fixtures" / "vendor_repo" / "payloads" / "nvidia-ctk"
PROFILE = TESTS / "fixtures" / "vendor_repo" / "profiles" / "seed-4x-rtx2080ti-22g.json"
REAL_CONFIGURE = TESTS / "fixtures" / "daemon_json" / "nvidia_ctk_runtime_configure.json"


def ctk(tmp_path: Path, *args: str, loaded: bool = False) -> subprocess.CompletedProcess:
    loaded_file = tmp_path / "loaded-driver-version"
    if loaded:
        loaded_file.write_text("550.144.03\n")
    env = dict(
        os.environ,
        NVIDIA_SIM_LOADED_FILE=str(loaded_file),
        NVIDIA_SIM_PROFILE=str(PROFILE),
        NVIDIA_SIM_DEV_ROOT=str(tmp_path / "root"),
    )
    return subprocess.run(
        [sys.executable, str(SIMULATOR), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )


def test_runtime_configure_writes_what_the_real_one_wrote(tmp_path):
    config = tmp_path / "daemon.json"
    result = ctk(tmp_path, "runtime", "configure", "--runtime=docker", f"--config={config}")
    assert result.returncode == 0, result.stderr
    # Byte for byte: sorted keys, 4-space indent, the relative runtime path; Go writes no
    # final newline (the capture was pasted with one).
    assert config.read_text() == REAL_CONFIGURE.read_text().rstrip("\n")
    assert json.loads(config.read_text()) == {
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
    }
    assert "Config file does not exist; using empty config" in result.stderr
    assert "It is recommended that docker daemon be restarted." in result.stderr


def test_runtime_configure_keeps_other_keys_and_sets_the_default_when_asked(tmp_path):
    config = tmp_path / "daemon.json"
    config.write_text(
        '{"log-opts": {"max-size": "100m"}, "runtimes": {"runsc": {"path": "/usr/bin/runsc"}},'
        ' "storage-driver": "vfs"}'
    )
    result = ctk(
        tmp_path, "runtime", "configure", "--runtime", "docker", "--config", str(config),
        "--set-as-default",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(config.read_text()) == {
        "default-runtime": "nvidia",
        "log-opts": {"max-size": "100m"},
        "runtimes": {
            "nvidia": {"args": [], "path": "nvidia-container-runtime"},
            "runsc": {"path": "/usr/bin/runsc"},
        },
        "storage-driver": "vfs",
    }
    first = config.read_text()
    again = ctk(tmp_path, "runtime", "configure", f"--config={config}", "--set-as-default")
    assert again.returncode == 0, again.stderr
    assert config.read_text() == first


def test_runtime_configure_dry_run_prints_and_writes_nothing(tmp_path):
    config = tmp_path / "daemon.json"
    result = ctk(tmp_path, "runtime", "configure", f"--config={config}", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not config.exists()
    assert json.loads(result.stdout)["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"


def test_runtime_configure_refuses_invalid_json(tmp_path):
    config = tmp_path / "daemon.json"
    config.write_text('{"dns": ["8.8.8.8"] "mtu": 1400}')
    result = ctk(tmp_path, "runtime", "configure", f"--config={config}")
    assert result.returncode == 1
    assert "unable to load config for runtime docker" in result.stderr
    assert config.read_text() == '{"dns": ["8.8.8.8"] "mtu": 1400}'


def test_dev_char_symlinks_need_the_loaded_driver(tmp_path):
    result = ctk(tmp_path, "system", "create-dev-char-symlinks", "--create-all")
    assert result.returncode == 1
    assert "missing required device major nvidia" in result.stderr
    assert not (tmp_path / "root" / "dev" / "char").exists()


def test_dev_char_symlinks_link_every_possible_node_then_warn(tmp_path):
    result = ctk(tmp_path, "system", "create-dev-char-symlinks", "--create-all", loaded=True)
    assert result.returncode == 0, result.stderr
    dev = tmp_path / "root" / "dev"
    links = {p.name: os.readlink(p) for p in (dev / "char").iterdir()}
    expected = {
        "195:254": f"{dev}/nvidia-modeset",
        "195:255": f"{dev}/nvidiactl",
        "509:0": f"{dev}/nvidia-uvm",
        "509:1": f"{dev}/nvidia-uvm-tools",
    }
    expected.update({f"195:{i}": f"{dev}/nvidia{i}" for i in range(4)})
    assert links == expected
    assert result.stderr.count("Creating link") == 8
    again = ctk(tmp_path, "system", "create-dev-char-symlinks", "--create-all", loaded=True)
    assert again.returncode == 0
    assert again.stderr.count("Creating link") == 8
    assert again.stderr.count("file exists") == 8


@pytest.mark.parametrize("args", [["--version"], ["-v"]])
def test_version(tmp_path, args):
    assert "NVIDIA Container Toolkit CLI version" in ctk(tmp_path, *args).stdout
