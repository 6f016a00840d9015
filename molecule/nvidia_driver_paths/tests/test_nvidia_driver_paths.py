"""Verify where the nvidia_driver_paths converge left each host (the refusals themselves are
asserted in the converge, on the role's failure messages).

- debian12 went 550.127.05 -> (refused) -> 550.163.01 -> 550.144.03, then (refused while a
  kernel without the module would boot next) to the open kernel module: it must hold exactly the
  downgraded family with the open module package, pinned and held, and run the open module
  after a reboot.
- debian13 installed from NVIDIA's local repository package, then removed the driver: nothing of
  the driver, its repositories or its drift protections may be left.
"""

import re

import pytest

testinfra_hosts = ["all"]

VERSION = "550.144.03"
FAMILY = ["cuda-drivers-550", "nvidia-driver", "nvidia-kernel-open-dkms", "libcuda1", "nvidia-smi",
          "nvidia-persistenced"]  # fmt: skip


@pytest.fixture
def replaced(host):
    if "debian12" not in host.backend.get_hostname():
        pytest.skip("the replacement paths ran on the debian12 host")
    return host


@pytest.fixture
def removed(host):
    if "debian13" not in host.backend.get_hostname():
        pytest.skip("the local repository and removal paths ran on the debian13 host")
    return host


@pytest.mark.parametrize("package", FAMILY)
def test_downgraded_family_is_at_the_version_and_held(replaced, package):
    fields = "${Version} ${db:Status-Want} ${db:Status-Status}"
    out = replaced.check_output(f"dpkg-query -W -f '{fields}' {package}")
    assert out.split() == [f"{VERSION}-1", "hold", "installed"]


def test_pin_names_the_downgraded_version(replaced):
    pref = replaced.file("/etc/apt/preferences.d/nvidia-driver.pref").content_string
    assert f"Pin: version {VERSION}-*" in pref
    assert "550.163.01" not in pref


def test_replaced_host_runs_the_downgraded_module(replaced):
    # Loaded at the last boot: the role rebooted after the switch to the open module.
    loaded = replaced.file("/run/nvidia-sim/loaded-driver-version").content_string.strip()
    assert loaded == VERSION
    proc = replaced.file("/proc/driver/nvidia/version").content_string
    assert proc.startswith(f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {VERSION}  ")
    # The proprietary module package went when apt installed the open one (they conflict).
    assert not replaced.package("nvidia-kernel-dkms").is_installed
    versions = replaced.check_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
    assert versions.split() == [VERSION] * 4
    assert replaced.service("nvidia-persistenced").is_running


def test_removed_host_has_no_driver_package_left(removed):
    installed = removed.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'")
    left = [
        line
        for line in installed.splitlines()
        if re.search(r" (nvidia-|libnvidia-|libcuda1|cuda-drivers)", line)
    ]
    # Purged, not only removed: no "rc" (config files left) entries either.
    assert left == []


@pytest.mark.parametrize(
    "path",
    [
        "/etc/apt/preferences.d/nvidia-driver.pref",
        "/etc/apt/apt.conf.d/51nvidia-driver-unattended-upgrades",
        "/etc/modprobe.d/blacklist-nouveau.conf",
        "/usr/share/keyrings/cuda-archive-keyring.gpg",
        "/var/nvidia-driver-local-repo-debian13-550.144.03",
        "/etc/apt/sources.list.d/nvidia-driver-local-debian13-550.144.03.list",
        "/run/nvidia-driver-reboot-required",
    ],
)
def test_removed_host_keeps_nothing_of_the_role(removed, path):
    assert not removed.file(path).exists


def test_removed_host_trusts_no_local_repository_key(removed):
    keys = removed.check_output("ls /usr/share/keyrings")
    assert "nvidia-driver-local" not in keys


def test_removed_host_rebooted_and_apt_is_consistent(removed):
    # The module "loaded" at boot is gone with the packages once the host rebooted.
    assert not removed.file("/run/nvidia-sim/loaded-driver-version").exists
    update = removed.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stdout + update.stderr
    assert removed.run("apt-get check").rc == 0


def test_dkms_signing_configuration_stays(removed):
    # Written for the MOK-signed install; removal keeps DKMS's configuration (other modules).
    framework = removed.file("/etc/dkms/framework.conf").content_string
    assert 'mok_signing_key="/var/lib/shim-signed/mok/MOK.priv"' in framework
    assert 'mok_certificate="/var/lib/shim-signed/mok/MOK.der"' in framework
