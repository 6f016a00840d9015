"""Verify the nvidia_driver scenario's hosts by behaviour: apt keeps the driver family at exactly
550.144.03 against a repository that offers newer ones, nvidia-smi (simulated, answering from the
host's GPU profile) reports that version on every GPU, and the drift protections are in force.

- debian12 started fresh with the seed's 4 x RTX 2080 Ti: the role installed and rebooted it.
- debian13 is a HGX H100 host that already ran 550.144.03 without the meta packages
  (prepare.yml): the role added them, its nouveau blacklist and Fabric Manager, and did not
  reboot it.
"""

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


def is_hgx(host):
    return "debian13" in host.backend.get_hostname()


def test_host_runs_the_module_of_the_version(host):
    # The simulated module is "loaded" at boot only; the role's reboot marker is gone with /run.
    assert host.file("/run/nvidia-sim/loaded-driver-version").content_string.strip() == VERSION
    assert not host.file("/run/nvidia-driver-reboot-required").exists
    # The NVRM line of NVIDIA's proprietary module (the role's default flavour).
    proc = host.file("/proc/driver/nvidia/version").content_string
    assert proc.startswith(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  ")


def test_only_the_fresh_host_was_rebooted(host):
    boot_time = host.check_output("cut -d' ' -f22 /proc/1/stat")
    recorded = host.file("/var/lib/llmops-test/boot-time-after-prepare")
    if is_hgx(host):
        # Already running 550.144.03: the meta packages and the blacklist file the role added
        # are no reason to reboot.
        assert recorded.content_string.strip() == boot_time
    else:
        assert not recorded.exists


def test_headers_meta_package_tracks_future_kernels(host):
    assert host.package(VENDOR_VARS["vendor_repo_kernel_headers_meta_package"]).is_installed
    kernel = host.check_output("uname -r")
    # DKMS (simulated) built the module for the running kernel, where Debian's dkms puts it.
    assert host.file(f"/lib/modules/{kernel}/updates/dkms/nvidia.ko").exists


def test_fabric_manager_runs_at_the_version_on_the_nvswitch_host_only(host):
    package = "nvidia-fabricmanager-550"
    if not is_hgx(host):
        assert not host.package(package).is_installed
        assert not host.file("/proc/driver/nvidia-nvswitch/devices").exists
        return
    assert len(host.file("/proc/driver/nvidia-nvswitch/devices").listdir()) == 4
    version, want, status = dpkg_state(host, package)
    assert (version, want, status) == (f"{VERSION}-1", "hold", "installed")
    service = host.service("nvidia-fabricmanager")
    assert service.is_running
    assert service.is_enabled


def test_nvidia_smi_reports_the_version_on_every_gpu(host):
    out = host.check_output(
        "nvidia-smi --query-gpu=driver_version,name,memory.total,persistence_mode "
        "--format=csv,noheader,nounits"
    )
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines()]
    expected = ("NVIDIA H100 80GB HBM3", "81559", 8) if is_hgx(host) else (
        "NVIDIA GeForce RTX 2080 Ti", "22528", 4)  # fmt: skip
    assert len(rows) == expected[2]
    for version, name, memory, persistence in rows:
        assert version == VERSION
        assert (name, memory) == expected[:2]
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


def test_retired_repository_key_is_no_longer_trusted(host):
    # prepare.yml trusted a stand-in for NVIDIA's retired key on debian12, alone in a file of
    # trusted.gpg.d and beside Docker's key in the legacy keyring.
    if is_hgx(host):
        pytest.skip("the retired key was put on the debian12 host")
    assert not host.file("/etc/apt/trusted.gpg.d/cuda-retired.gpg").exists
    keys = host.check_output(
        "home=$(mktemp -d) && gpg --homedir $home --show-keys --with-colons /etc/apt/trusted.gpg;"
        " rc=$?; rm -rf $home; exit $rc"
    )
    assert VENDOR_VARS["vendor_repo_nct_key_fingerprint"] not in keys
    assert VENDOR_VARS["vendor_repo_docker_key_fingerprint"] in keys
