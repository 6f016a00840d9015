"""Verify nvidia_container_toolkit by behaviour: dockerd runs with the nvidia runtime registered
as `nvidia-ctk runtime configure` writes it, next to docker_engine's keys, the four packages are
pinned and held at 1.17.8-1 although 1.18.0-1 is in the repository, a container really runs
through the runtime, dockerd was reloaded and never restarted by the role (first converge,
idempotence, side effect), and the /dev/char links and their udev rule are in place."""

import json
import re

import pytest

testinfra_hosts = ["all"]

PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
VERSION = "1.17.8-1"


def is_default_runtime_host(host) -> bool:
    return host.backend.get_hostname().endswith("-ubuntu2404")


def docker_info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def test_dockerd_lists_the_nvidia_runtime(host):
    info = docker_info(host)
    # The relative path nvidia-ctk writes: dockerd finds it on its PATH.
    assert info["Runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    expected_default = "nvidia" if is_default_runtime_host(host) else "runc"
    assert info["DefaultRuntime"] == expected_default


def test_daemon_json_has_the_runtime_and_keeps_docker_engine_keys(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    # Exactly what the real `nvidia-ctk runtime configure --runtime=docker` wrote
    # (tests/fixtures/daemon_json/nvidia_ctk_runtime_configure.json).
    # (llmops-test-runc: the side effect's other runtime, which the role and nvidia-ctk keep.)
    assert config["runtimes"] == {
        "nvidia": {"args": [], "path": "nvidia-container-runtime"},
        "llmops-test-runc": {"path": "runc"},
    }
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "100m", "max-file": "5"}
    assert config["storage-driver"] == "vfs"
    if is_default_runtime_host(host):
        assert config["default-runtime"] == "nvidia"
    else:
        assert "default-runtime" not in config


def test_packages_are_pinned_together_and_held(host):
    for package in PACKAGES:
        assert host.package(package).version == VERSION, package
    holds = set(host.check_output("apt-mark showhold").split())
    assert set(PACKAGES) <= holds, holds
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert f"Candidate: {VERSION}" in policy, policy
    assert "1.18.0-1" in policy, policy
    upgrade = host.check_output("apt-get -s upgrade")
    assert not re.search(r"^Inst (lib)?nvidia-container", upgrade, re.MULTILINE), upgrade


def test_one_apt_source_with_the_checked_key(host):
    sources = host.check_output("grep -rl libnvidia-container /etc/apt/sources.list.d").split()
    assert sources == ["/etc/apt/sources.list.d/nvidia-container-toolkit.list"]
    line = host.file(sources[0]).content_string
    assert "signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg" in line
    keyring = host.check_output(
        "gpg --show-keys --with-colons /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
    )
    assert keyring.count("\npub:") + keyring.startswith("pub:") == 1


def test_a_container_runs_through_the_nvidia_runtime(host):
    # An image holding /usr/bin/true and its libraries, made from the host's own files: there is
    # no registry to pull from. The simulated runtime execs runc, as the real one does after
    # injecting the GPUs. No network: in Docker-in-Docker /proc/sys is read-only and Docker 26
    # cannot set up a bridge interface (see DEVELOPERS.md).
    host.check_output(
        "tar -chf - -C / usr/bin/true $(ldd /usr/bin/true | grep -o '/[^ ]*' | sed 's|^/||') "
        "| docker import - llmops-verify/true:1"
    )
    run = host.run(
        "docker run --rm --network none --runtime nvidia llmops-verify/true:1 /usr/bin/true"
    )
    assert run.rc == 0, run.stderr


def recorded_dockerd(host, path: str) -> dict:
    return dict(item.split("=", 1) for item in host.file(path).content_string.split())


@pytest.mark.parametrize(
    "record",
    [
        # Not docker_engine's dockerd: the first toolkit run installs the hook, and dockerd
        # registers its --gpus driver only when it starts (moby daemon/nvidia_linux.go), so that
        # run restarts it once; every later run keeps it.
        # the first converge's: neither the idempotence run nor the side effect's runs (runtime
        # put back, daemon.json rewritten by nvidia-ctk) restarted it.
        "/var/tmp/llmops-dockerd-first-converge",
    ],
)
def test_the_role_never_restarted_docker(host, record):
    now = host.check_output(
        "systemctl show docker --property=MainPID --property=ExecMainStartTimestampMonotonic"
    ).split()
    assert dict(item.split("=", 1) for item in now) == recorded_dockerd(host, record)
    assert "MainPID=0" not in now


def test_the_udev_rule_recreates_the_dev_char_links(host):
    rule = host.file("/etc/udev/rules.d/71-nvidia-dev-char.rules")
    assert rule.mode == 0o644
    assert (
        'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
        'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
    ) in rule.content_string


def test_the_loaded_driver_got_its_dev_char_links(host):
    # The side effect loaded the simulated driver (4 GPUs) on Debian 12 only.
    if is_default_runtime_host(host):
        assert not host.file("/dev/char/195:255").is_symlink
        return
    expected = {
        "195:254": "/dev/nvidia-modeset",
        "195:255": "/dev/nvidiactl",
        "509:0": "/dev/nvidia-uvm",
        "509:1": "/dev/nvidia-uvm-tools",
    }
    expected.update({f"195:{i}": f"/dev/nvidia{i}" for i in range(4)})
    for name, target in expected.items():
        link = host.file(f"/dev/char/{name}")
        assert link.is_symlink, name
        assert link.linked_to == target, name
