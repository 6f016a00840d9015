"""Verify the nvidia_driver scenario's hosts by behaviour: apt keeps the driver family at exactly
550.144.03 against a repository that offers newer ones, nvidia-smi (simulated, answering from the
host's GPU profile) reports that version on every GPU, and the drift protections are in force.

- debian12 started fresh with the seed's 4 x RTX 2080 Ti: the role installed and rebooted it.
- ubuntu2404 (the Ubuntu-facts platform: Debian 13 userland, Ubuntu 24.04 facts) is a HGX H100
  host that already ran 550.144.03 from NVIDIA's ubuntu2404 packages without the meta packages,
  with an unused nouveau loaded (prepare.yml): the role unloaded nouveau, added the meta
  packages, its nouveau blacklist and Fabric Manager, and did not reboot it.
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
# NVIDIA's package names and versions per repository: the Debian ones without the branch at
# <version>-1, the Ubuntu ones after the branch at <version>-0ubuntu1 (cuda-drivers-550 at -1).
FAMILY = {
    "debian": {"cuda-drivers-550": "1", "nvidia-driver": "1", "nvidia-kernel-dkms": "1",
               "libcuda1": "1", "nvidia-smi": "1", "nvidia-persistenced": "1"},
    "ubuntu": {"cuda-drivers-550": "1", "nvidia-driver-550": "0ubuntu1",
               "nvidia-dkms-550": "0ubuntu1", "libnvidia-compute-550": "0ubuntu1",
               "nvidia-utils-550": "0ubuntu1", "nvidia-compute-utils-550": "0ubuntu1"},
}  # fmt: skip


def distro(host):
    """The NVIDIA repository directory the host's facts select: debian12 or ubuntu2404."""
    info = host.system_info
    if info.distribution == "ubuntu":
        return "ubuntu" + info.release.replace(".", "")
    return "debian" + info.release.split(".")[0]


def family(host):
    return FAMILY["ubuntu" if distro(host).startswith("ubuntu") else "debian"]


def dpkg_state(host, package):
    fields = "${Version} ${db:Status-Want} ${db:Status-Status}"
    out = host.run(f"dpkg-query -W -f '{fields}' {package}")
    assert out.rc == 0, out.stderr
    version, want, status = out.stdout.split()
    return version, want, status


def test_the_host_reads_as_the_distribution_of_its_platform(host):
    expected = "ubuntu2404" if host.backend.get_hostname().endswith("-ubuntu2404") else "debian12"
    assert distro(host) == expected
    if expected == "ubuntu2404":
        assert host.system_info.codename == "noble"


def test_driver_family_is_installed_at_the_version_and_held(host):
    for package, revision in family(host).items():
        version, want, status = dpkg_state(host, package)
        assert version == f"{VERSION}-{revision}", package
        assert (want, status) == ("hold", "installed"), package


def test_pin_keeps_apt_on_the_version_although_newer_ones_exist(host):
    pref = host.file("/etc/apt/preferences.d/nvidia-driver.pref")
    assert pref.exists
    assert pref.mode == 0o644
    assert f"Pin: version {VERSION}-*" in pref.content_string
    assert "Pin-Priority: 1001" in pref.content_string
    meta = "nvidia-driver-550" if distro(host).startswith("ubuntu") else "nvidia-driver"
    revision = family(host)[meta]
    policy = host.run(f"apt-cache policy {meta} cuda-drivers-550").stdout
    assert f"550.163.01-{revision}" in policy  # the newer version is offered ...
    assert f"Candidate: {VERSION}-{revision}\n" in policy, policy  # ... and not chosen
    assert f"Candidate: {VERSION}-1\n" in policy, policy
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
    source = host.file(f"/etc/apt/sources.list.d/cuda-{distro(host)}-x86_64.list")
    assert source.content_string == (
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
        f"file:///srv/vendor-repo/compute/cuda/repos/{distro(host)}/x86_64/ /\n"
    )
    update = host.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stdout + update.stderr


def test_unattended_upgrades_blacklist_is_in_apt_config(host):
    dump = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    # The role's list per distribution (vars/Debian.yml, vars/Ubuntu.yml): libcuda1 is a Debian
    # name, libxnvctrl an Ubuntu one.
    own = "libxnvctrl" if distro(host).startswith("ubuntu") else "libcuda1"
    for prefix in ("nvidia-", "libnvidia-", own, "cuda-"):
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
    return host.backend.get_hostname().endswith("-ubuntu2404")


def test_host_runs_the_module_of_the_version(host):
    # The simulated module is "loaded" at boot only; the role's reboot marker is gone with /run.
    assert host.file("/run/nvidia-sim/loaded-driver-version").content_string.strip() == VERSION
    assert not host.file("/run/nvidia-driver-reboot-required").exists
    # The NVRM line of NVIDIA's proprietary module (the role's default flavour).
    proc = host.file("/proc/driver/nvidia/version").content_string
    assert proc.startswith(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  ")


def test_nouveau_is_not_loaded(host):
    # The HGX host had an unused nouveau loaded (prepare.yml): modprobe -r took it out without a
    # reboot; the fresh host booted with the role's blacklist.
    assert not host.file("/sys/module/nouveau").exists


def test_only_the_fresh_host_was_rebooted(host):
    boot_time = host.check_output("cut -d' ' -f22 /proc/1/stat")
    recorded = host.file("/var/lib/llmops-test/boot-time-after-prepare")
    if is_hgx(host):
        # Already running 550.144.03: the meta packages and the blacklist file the role added
        # are no reason to reboot, nor is a nouveau that modprobe -r could unload.
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
