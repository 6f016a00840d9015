"""Verify docker_engine by behaviour: dockerd answers with the merged daemon.json, Docker CE is
the pinned and held version (or the distribution's docker.io where that was chosen), the source
switch removed docker.io, and the Docker SDK for Python reaches the daemon."""

import json
import re

import pytest

testinfra_hosts = ["all"]

DOCKER_CE = ("docker-ce", "docker-ce-cli")
CODENAMES = {"12": "bookworm", "13": "trixie"}


def is_distro(host) -> bool:
    return host.backend.get_hostname().endswith("-distro-debian13")


def has_options(host) -> bool:
    """Ubuntu 24.04 from Docker CE: compose and buildx plugins, live-restore on (converge.yml)."""
    return host.backend.get_hostname().endswith("-ubuntu2404")


def debian_release(host) -> str:
    return host.file("/etc/debian_version").content_string.split(".")[0].strip()


def suite(host) -> str:
    """The distribution part of Docker's version strings: debian.12~bookworm, ubuntu.24.04~noble
    (the Ubuntu-facts platform's os-release), as roles/docker_engine/vars/main.yml builds it."""
    info = host.system_info
    if info.distribution == "ubuntu":
        return f"ubuntu.{info.release}~{info.codename}"
    release = debian_release(host)
    return f"debian.{release}~{CODENAMES[release]}"


def docker_json(host, *args: str):
    out = host.check_output("docker " + " ".join(args) + " --format '{{json .}}'")
    return json.loads(out)


def test_dockerd_answers_and_is_enabled(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled
    version = docker_json(host, "version")
    assert version["Server"]["Version"], version
    assert version["Client"]["Version"], version


def test_daemon_json_keeps_foreign_keys_and_has_the_role_keys(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["labels"] == ["llmops.test=foreign-key"]
    assert config["log-opts"] == {"compress": "true", "max-size": "100m", "max-file": "5"}
    assert config["log-driver"] == "json-file"
    assert config["storage-driver"] == "vfs"
    if has_options(host):
        assert config["live-restore"] is True
    else:
        assert "live-restore" not in config


def test_dockerd_runs_with_the_merged_configuration(host):
    info = docker_json(host, "info")
    assert info["Driver"] == "vfs"
    assert info["LoggingDriver"] == "json-file"
    assert "llmops.test=foreign-key" in info["Labels"]
    assert info["LiveRestoreEnabled"] is has_options(host)


def test_new_containers_get_the_rotated_json_file_logs(host):
    # dockerd copies its default log options into each container at creation: an empty image
    # is enough, nothing needs to run.
    host.check_output("tar -cf - -T /dev/null | docker import - llmops-verify/empty:1")
    host.run("docker rm -f llmops-verify-logs")
    host.check_output("docker create --name llmops-verify-logs llmops-verify/empty:1 /none")
    try:
        log_config = json.loads(
            host.check_output(
                "docker inspect --format '{{json .HostConfig.LogConfig}}' llmops-verify-logs"
            )
        )
    finally:
        host.run("docker rm -f llmops-verify-logs")
    assert log_config == {
        "Type": "json-file",
        "Config": {"compress": "true", "max-file": "5", "max-size": "100m"},
    }


def test_docker_ce_is_the_pinned_version_and_held(host):
    if is_distro(host):
        pytest.skip("the distro variant installs docker.io")
    expected = f"5:27.5.1-1~{suite(host)}"
    for package in DOCKER_CE:
        assert host.package(package).version == expected
    holds = host.check_output("apt-mark showhold").split()
    assert set(DOCKER_CE) <= set(holds), holds
    # The simulated repository also has 28.0.1: the pin must keep apt on 27.5.1.
    policy = host.check_output("apt-cache policy docker-ce")
    assert f"Candidate: {expected}" in policy, policy
    assert "28.0.1" in policy, policy
    upgrade = host.check_output("apt-get -s upgrade")
    assert not re.search(r"^Inst docker-ce", upgrade, re.MULTILINE), upgrade


def test_repository_has_one_entry_with_the_checked_key(host):
    sources = host.check_output("grep -rl /docker/linux /etc/apt/sources.list.d || true")
    if is_distro(host):
        assert sources == ""
        assert not host.file("/etc/apt/keyrings/docker.asc").exists
        assert not host.file("/etc/apt/preferences.d/docker-ce").exists
        return
    assert sources.split() == ["/etc/apt/sources.list.d/docker.sources"]
    assert "Signed-By: /etc/apt/keyrings/docker.asc" in host.file(sources).content_string
    assert host.file("/etc/apt/keyrings/docker.asc").mode == 0o644


def test_the_source_switch_removed_the_distribution_package(host):
    if is_distro(host):
        assert host.package("docker.io").is_installed
        assert not host.package("docker-ce").is_installed
        if debian_release(host) == "13":
            # Debian 13 ships the client apart from the engine.
            assert host.package("docker-cli").is_installed
        return
    assert not host.package("docker.io").is_installed
    assert host.package("docker-ce").is_installed


def test_python_sdk_talks_to_dockerd(host):
    out = host.check_output(
        "python3 -c 'import docker; print(docker.from_env().version()[\"ApiVersion\"])'"
    )
    assert out.strip()


def test_containerd_io_is_pinned_and_held_with_docker_ce(host):
    if is_distro(host):
        pytest.skip("the distro variant installs Debian's containerd")
    assert host.package("containerd.io").version == "1.7.25-1"
    assert "containerd.io" in host.check_output("apt-mark showhold").split()
    # 2.0.5-1 is in the simulated repository, as 2.x is in Docker's: the pin keeps 1.7.
    policy = host.check_output("apt-cache policy containerd.io")
    assert "Candidate: 1.7.25-1" in policy, policy
    assert "2.0.5-1" in policy, policy
    upgrade = host.check_output("apt-get -s upgrade")
    assert not re.search(r"^Inst containerd", upgrade, re.MULTILINE), upgrade


@pytest.mark.parametrize(
    ("package", "command", "version", "newer"),
    [
        ("docker-compose-plugin", "docker compose version", "2.32.4", "2.33.1"),
        ("docker-buildx-plugin", "docker buildx version", "0.20.0", "0.21.1"),
    ],
)
def test_cli_plugins_are_an_option_pinned_and_held(host, package, command, version, newer):
    if not has_options(host):
        assert not host.package(package).is_installed
        return
    expected = f"{version}-1~{suite(host)}"
    assert host.package(package).version == expected
    assert package in host.check_output("apt-mark showhold").split()
    assert f"Candidate: {expected}" in host.check_output(f"apt-cache policy {package}")
    assert newer in host.check_output(f"apt-cache policy {package}")
    # Through Debian's real docker CLI, which finds the plugin in /usr/libexec/docker/cli-plugins.
    assert f"v{version}" in host.check_output(command)
