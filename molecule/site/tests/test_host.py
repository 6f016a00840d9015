"""Verify the site scenario's host: what the harness promises every scenario (a booted systemd,
the signed simulated distro archive), checked by behaviour. Each role's issue adds the checks of
what it installs."""

import json
import os
from pathlib import Path

import pytest

testinfra_hosts = ["all"]

VENDOR_VARS = json.loads(
    (
        Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tests/output/vendor-repo/vendor-vars.json"
    ).read_text()
)


def test_systemd_is_running(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert failed == "", failed


def test_vendor_repositories_are_mounted_read_only(host):
    mount = host.mount_point("/srv/vendor-repo")
    assert mount.exists
    assert "ro" in mount.options


def test_distro_extras_repository_is_trusted_and_serves_kernel_headers(host):
    keyring = host.run("gpg --show-keys --with-colons /usr/share/keyrings/llmops-distro-extras.gpg")
    assert VENDOR_VARS["vendor_repo_distro_extras_key_fingerprint"] in keyring.stdout
    update = host.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stderr
    package = VENDOR_VARS["vendor_repo_kernel_headers_package"]
    policy = host.run(f"apt-cache policy {package}").stdout
    assert "Candidate: 1.0-1" in policy, policy


@pytest.mark.parametrize("path", ["/etc/llmops/serving.json"])
def test_nothing_claims_serving_before_the_serving_role_exists(host, path):
    # The vllm_server role writes this only after it verified a running server.
    assert not host.file(path).exists
