"""The simulated driver's kernel side (payloads/nvidia-sim-kernel), run as a program against a
temporary root: DKMS builds only for kernels with headers, and a boot shows what a real kernel
shows (/proc/driver/nvidia/version of the flavour, /sys/module/nouveau, NVSwitch entries)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
KERNEL = TESTS / "fixtures" / "vendor_repo" / "payloads" / "nvidia-sim-kernel"
PROFILES = TESTS / "fixtures" / "vendor_repo" / "profiles"
RUNNING = "6.1.0-28-amd64"
BLACKLIST = "blacklist nouveau\noptions nouveau modeset=0\n"


class SimHost:
    def __init__(self, root: Path, flavour: str = "proprietary", version: str = "550.144.03"):
        self.root = root
        share = root / "usr/share/nvidia-sim"
        share.mkdir(parents=True)
        (share / "module-version").write_text(version + "\n")
        (share / "module-flavour").write_text(flavour + "\n")
        self.modprobe_config = root / "modprobe-showconfig"
        self.modprobe_config.write_text(BLACKLIST)

    def headers(self, kernel: str) -> None:
        (self.root / f"usr/src/linux-headers-{kernel}").mkdir(parents=True)

    def profile(self, name: str) -> None:
        target = self.root / "etc/nvidia-sim/gpus.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((PROFILES / name).read_text())

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            NVIDIA_SIM_ROOT=str(self.root),
            NVIDIA_SIM_KERNEL=RUNNING,
            NVIDIA_SIM_MODPROBE_CONFIG=str(self.modprobe_config),
        )
        return subprocess.run(
            [sys.executable, str(KERNEL), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")


@pytest.fixture
def sim(tmp_path):
    return SimHost(tmp_path)


def test_dkms_builds_only_for_kernels_with_headers(sim):
    sim.headers(RUNNING)
    result = sim.run("build", RUNNING, "6.12.0-1-amd64")
    assert result.returncode == 0
    module = sim.file(f"/lib/modules/{RUNNING}/updates/dkms/nvidia.ko").read_text()
    assert "version=550.144.03" in module
    assert "flavour=proprietary" in module
    assert not sim.file("/lib/modules/6.12.0-1-amd64/updates/dkms/nvidia.ko").exists()
    assert "no headers for kernel 6.12.0-1-amd64" in result.stderr


def test_dkms_without_arguments_builds_for_every_kernel_with_headers(sim):
    sim.headers(RUNNING)
    sim.headers("6.12.0-1-amd64")
    assert sim.run("build").returncode == 0
    for kernel in (RUNNING, "6.12.0-1-amd64"):
        assert sim.file(f"/lib/modules/{kernel}/updates/dkms/nvidia.ko").exists()


@pytest.mark.parametrize(
    ("flavour", "line"),
    [
        ("proprietary", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.144.03  Release"),
        ("open", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.144.03  Release"),
    ],
)
def test_boot_loads_the_module_of_its_flavour(tmp_path, flavour, line):
    sim = SimHost(tmp_path, flavour=flavour)
    sim.headers(RUNNING)
    sim.profile("seed-4x-rtx2080ti-22g.json")
    sim.run("build")
    assert sim.run("boot").returncode == 0
    assert sim.file("/proc/driver/nvidia/version").read_text().startswith(line)
    assert sim.file("/run/nvidia-sim/loaded-driver-version").read_text() == "550.144.03\n"
    assert not sim.file("/sys/module/nouveau").exists()
    assert not sim.file("/proc/driver/nvidia-nvswitch").exists()


def test_boot_without_a_module_for_the_running_kernel_loads_nothing(sim):
    sim.headers("6.12.0-1-amd64")
    sim.profile("seed-4x-rtx2080ti-22g.json")
    sim.run("build")
    sim.file("/run/nvidia-sim").mkdir(parents=True)
    sim.file("/run/nvidia-sim/loaded-driver-version").write_text("550.127.05\n")
    result = sim.run("boot")
    assert result.returncode == 0
    assert f"no nvidia module for kernel {RUNNING}" in result.stdout
    # What the last boot had loaded is gone with the reboot.
    assert not sim.file("/run/nvidia-sim/loaded-driver-version").exists()
    assert not sim.file("/proc/driver/nvidia/version").exists()


def test_nouveau_takes_the_gpus_unless_blacklisted(sim):
    sim.headers(RUNNING)
    sim.profile("seed-4x-rtx2080ti-22g.json")
    sim.run("build")
    sim.modprobe_config.write_text("blacklist snd_pcsp\n# blacklist nouveau\n")
    assert sim.run("boot").returncode == 0
    assert sim.file("/sys/module/nouveau/initstate").read_text() == "live\n"
    assert not sim.file("/proc/driver/nvidia/version").exists()
    assert not sim.file("/run/nvidia-sim/loaded-driver-version").exists()


def test_nouveau_that_bound_the_gpus_at_boot_is_in_use_and_stays(sim):
    sim.headers(RUNNING)
    sim.profile("seed-4x-rtx2080ti-22g.json")
    sim.run("build")
    sim.modprobe_config.write_text("")
    sim.run("boot")
    # The console on the GPUs nouveau bound holds a reference.
    assert sim.file("/sys/module/nouveau/refcnt").read_text() == "1\n"
    result = sim.run("unload", "nouveau")
    assert result.returncode == 1
    assert result.stderr.strip() == "modprobe: FATAL: Module nouveau is in use."
    assert sim.file("/sys/module/nouveau/initstate").exists()


def test_nouveau_loaded_after_the_nvidia_module_unloads(sim):
    sim.headers(RUNNING)
    sim.profile("seed-4x-rtx2080ti-22g.json")
    sim.run("build")
    sim.run("boot")
    assert sim.file("/proc/driver/nvidia/version").exists()
    assert sim.run("load", "nouveau").returncode == 0
    assert sim.file("/sys/module/nouveau/refcnt").read_text() == "0\n"
    assert sim.run("unload", "nouveau").returncode == 0
    assert not sim.file("/sys/module/nouveau").exists()
    again = sim.run("unload", "nouveau")
    assert again.returncode == 1
    assert "nouveau is not currently loaded" in again.stderr


def test_nouveau_with_a_user_marked_in_refcnt_refuses_to_unload(sim):
    assert sim.run("load", "nouveau").returncode == 0
    sim.file("/sys/module/nouveau/refcnt").write_text("2\n")
    assert sim.run("unload", "nouveau").returncode == 1
    assert sim.file("/sys/module/nouveau").is_dir()


def test_nvswitch_system_shows_its_switches(sim):
    sim.headers(RUNNING)
    sim.profile("hgx-8x-h100-80g.json")
    sim.run("build")
    assert sim.run("boot").returncode == 0
    switches = sorted(os.listdir(sim.file("/proc/driver/nvidia-nvswitch/devices")))
    profile = json.loads((PROFILES / "hgx-8x-h100-80g.json").read_text())
    assert switches == sorted(entry["pci_bus_id"] for entry in profile["nvswitches"])
    assert len(switches) == 4
    assert sim.file("/dev/nvidia-nvswitch3").exists()


def test_host_without_gpus_loads_nothing(sim):
    sim.headers(RUNNING)
    sim.run("build")
    result = sim.run("boot")
    assert result.returncode == 0
    assert "no NVIDIA GPU on the bus" in result.stdout
    assert not sim.file("/proc/driver/nvidia/version").exists()
