"""Verify the nvidia_driver scenario's hosts by behaviour: apt keeps the driver family at exactly
550.144.03 against a repository that offers newer ones, nvidia-smi (simulated, answering from the
seed's GPU profile) reports that version on all four GPUs after the reboot the role did, and the
drift protections are in force."""

import json
import os
import re
from pathlib import Path

import pytest

testinfra_hosts = ["all"]

VERSION = "550.144.03"
VENDOR_VARS = json.loads(
    (
        Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tests/output/vendor-repo/vendor-vars.json"
    ).read_text()
)
# NVIDIA's Debian repositories (the test hosts are Debian): names without the branch.
FAMILY = ["cuda-drivers-550", "nvidia-driver", "nvidia-kernel-dkms", "libcuda1", "nvidia-smi",
          "nvidia-persistenced"]  # fmt: skip


def dpkg_state(host, package):
    fields = "${Version} ${db:Status-Want} ${db:Status-Status}"
    out = host.run(f"dpkg-query -W -f '{fields}' {package}")
    assert out.rc == 0, out.stderr
    version, want, status = out.stdout.split()
    return version, want, status


@pytest.mark.parametrize("package", FAMILY)
def test_driver_family_is_installed_at_the_version_and_held(host, package):
    version, want, status = dpkg_state(host, package)
    assert version == f"{VERSION}-1"
    assert (want, status) == ("hold", "installed")


def test_pin_keeps_apt_on_the_version_although_newer_ones_exist(host):
    pref = host.file("/etc/apt/preferences.d/nvidia-driver.pref")
    assert pref.exists
    assert pref.mode == 0o644
    assert f"Pin: version {VERSION}-*" in pref.content_string
    assert "Pin-Priority: 1001" in pref.content_string
    policy = host.run("apt-cache policy nvidia-driver cuda-drivers-550").stdout
    assert "550.163.01-1" in policy  # the newer version is offered ...
    assert policy.count(f"Candidate: {VERSION}-1") == 2, policy  # ... and not chosen
    # An upgrade moves nothing of the family.
    upgrade = host.run("apt-get -s -o Debug::NoLocking=1 upgrade")
    assert upgrade.rc == 0, upgrade.stderr
    moved = re.findall(r"^Inst (?:nvidia|libcuda|cuda-drivers)\S*", upgrade.stdout, re.M)
    assert moved == []


def test_repository_key_is_the_expected_one_and_source_names_it(host):
    keys = host.check_output(
        "home=$(mktemp -d) && gpg --homedir $home --show-keys --with-colons "
        "/usr/share/keyrings/cuda-archive-keyring.gpg; rc=$?; rm -rf $home; exit $rc"
    )
    assert VENDOR_VARS["vendor_repo_cuda_key_fingerprint"] in keys
    major = host.system_info.release.split(".")[0]
    source = host.file(f"/etc/apt/sources.list.d/cuda-debian{major}-x86_64.list")
    assert source.content_string.startswith(
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
        "file:///srv/vendor-repo/compute/cuda/repos/debian1"
    )
    update = host.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stdout + update.stderr


def test_unattended_upgrades_blacklist_is_in_apt_config(host):
    dump = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    for prefix in ("nvidia-", "libnvidia-", "libcuda1", "cuda-"):
        assert f'Unattended-Upgrade::Package-Blacklist:: "{prefix}";' in dump, dump


def test_nouveau_is_blacklisted_and_initramfs_updated_once(host):
    config = host.run("modprobe --showconfig").stdout
    assert "blacklist nouveau" in config
    assert "options nouveau modeset=0" in config
    # The update-initramfs stand-in from prepare.yml: called once, by the converge that wrote
    # the blacklist, not by the idempotence run.
    calls = host.file("/var/log/update-initramfs-calls.log").content_string.splitlines()
    assert calls == ["update-initramfs -u -k all"]


def test_kernel_headers_and_dkms_are_installed(host):
    assert host.package(VENDOR_VARS["vendor_repo_kernel_headers_package"]).is_installed
    assert host.package("dkms").is_installed
    assert host.package("build-essential").is_installed


def test_host_rebooted_into_the_new_module(host):
    # The simulated module is "loaded" at boot only; the role's reboot marker is gone with /run.
    assert host.file("/run/nvidia-sim/loaded-driver-version").content_string.strip() == VERSION
    assert not host.file("/run/nvidia-driver-reboot-required").exists


def test_nvidia_smi_reports_the_version_on_the_four_seed_gpus(host):
    out = host.check_output(
        "nvidia-smi --query-gpu=driver_version,name,memory.total,persistence_mode "
        "--format=csv,noheader,nounits"
    )
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines()]
    assert len(rows) == 4
    for version, name, memory, persistence in rows:
        assert version == VERSION
        assert name == "NVIDIA GeForce RTX 2080 Ti"
        assert memory == "22528"
        assert persistence == "Enabled"
    assert re.search(rf"Driver Version: {re.escape(VERSION)}\s+CUDA Version: 12\.4",
                     host.check_output("nvidia-smi"))  # fmt: skip


def test_persistence_daemon_is_enabled_and_running(host):
    # NVIDIA's Ubuntu unit is static and runs --no-persistence-mode: only the role's drop-in
    # turns persistence on (nvidia-smi's Enabled above follows the daemon's flag).
    service = host.service("nvidia-persistenced")
    assert service.is_running
    assert host.check_output("systemctl is-enabled nvidia-persistenced") == "static"
    exec_start = host.check_output("systemctl show -p ExecStart nvidia-persistenced")
    assert "--persistence-mode" in exec_start
    assert "--no-persistence-mode" not in exec_start
