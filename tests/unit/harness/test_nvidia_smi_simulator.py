"""The nvidia-smi and nvidia-persistenced stand-ins of the simulated vendor repository.

They are run as programs, against state files in a temporary directory, and what they print
goes through the same parser as the real outputs in tests/fixtures/nvidia_smi: the roles and
modules must not be able to tell the simulator from a real 550 driver.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import (
    QUERY_FIELDS,
    classify_failure,
    parse_gpu_list,
    parse_header,
    parse_query_csv,
    query_command,
    summarize,
)

TESTS = Path(__file__).resolve().parents[2]
PAYLOADS = TESTS / "fixtures" / "vendor_repo" / "payloads"
PROFILES = TESTS / "fixtures" / "vendor_repo" / "profiles"
REAL = TESTS / "fixtures" / "nvidia_smi"
SIMULATOR = PAYLOADS / "nvidia-smi"
PERSISTENCED = PAYLOADS / "nvidia-persistenced"

# The host of the real table_550.144.03_1x_t4.txt, as a profile.
OPENFAAS_T4 = {
    "gpus": [
        {
            "name": "Tesla T4",
            "memory_total_mib": 15360,
            "memory_used_mib": 1,
            "compute_cap": "7.5",
            "pci_bus_id": "00000000:00:1E.0",
            "uuid": "GPU-51a0c0de-3c00-4000-8000-000000000000",
            "persistence_mode": True,
            "mig_mode": None,
            "ecc": "0",
            "fan_pct": None,
            "temperature_c": 23,
            "power_draw_w": 9.0,
            "power_limit_w": 70.0,
        }
    ]
}


class Host:
    """The files the stand-ins read, in a temporary directory."""

    def __init__(self, root: Path, profile, driver: str = "550.144.03", booted: bool = True):
        self.root = root
        self.profile = root / "gpus.json"
        self.driver_file = root / "driver-version"
        self.loaded_file = root / "run" / "loaded-driver-version"
        self.pid_file = root / "run" / "nvidia-persistenced" / "nvidia-persistenced.pid"
        self.driver_file.write_text(driver + "\n")
        if booted:
            # A host that booted with this driver installed: its module is loaded.
            self.loaded_file.parent.mkdir(parents=True, exist_ok=True)
            self.loaded_file.write_text(driver + "\n")
        if isinstance(profile, Path):
            self.profile.write_text(profile.read_text())
        elif profile is not None:
            self.profile.write_text(json.dumps(profile))

    @property
    def env(self) -> dict:
        return dict(
            os.environ,
            NVIDIA_SIM_PROFILE=str(self.profile),
            NVIDIA_SIM_DRIVER_VERSION_FILE=str(self.driver_file),
            NVIDIA_SIM_LOADED_FILE=str(self.loaded_file),
            NVIDIA_SIM_PERSISTENCED_PID_FILE=str(self.pid_file),
        )

    def nvidia_smi(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SIMULATOR), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def set_profile(self, **changes):
        data = json.loads(self.profile.read_text())
        data.update(changes)
        self.profile.write_text(json.dumps(data))


@pytest.fixture
def seed(tmp_path):
    return Host(tmp_path, PROFILES / "seed-4x-rtx2080ti-22g.json")


# --- the profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("seed-4x-rtx2080ti-22g.json", (4, "NVIDIA GeForce RTX 2080 Ti", 22528, "7.5")),
        ("1x-h100-80g.json", (1, "NVIDIA H100 80GB HBM3", 81559, "9.0")),
        ("8x-a100-40g.json", (8, "NVIDIA A100-SXM4-40GB", 40960, "8.0")),
    ],
)
def test_profiles_answer_a_query_the_parser_reads(tmp_path, name, expected):
    count, gpu_name, mib, cap = expected
    host = Host(tmp_path, PROFILES / name)
    done = host.nvidia_smi(*query_command("nvidia-smi")[1:])
    assert done.returncode == 0, done.stdout
    gpus = parse_query_csv(done.stdout, QUERY_FIELDS)
    assert [gpu["index"] for gpu in gpus] == list(range(count))
    assert {gpu["name"] for gpu in gpus} == {gpu_name}
    assert {gpu["memory_total_mib"] for gpu in gpus} == {mib}
    assert {gpu["compute_capability"] for gpu in gpus} == {cap}
    assert {gpu["driver_version"] for gpu in gpus} == {"550.144.03"}
    assert len({gpu["uuid"] for gpu in gpus}) == count
    assert len({gpu["pci_bus_id"] for gpu in gpus}) == count


def test_seed_profile_is_the_seed_host(seed):
    gpus = parse_query_csv(seed.nvidia_smi(*query_command("nvidia-smi")[1:]).stdout, QUERY_FIELDS)
    summary = summarize(gpus)
    assert summary["count"] == 4
    assert summary["memory_total_gib"] == 88.0
    assert summary["memory_min_gib"] == 22.0
    # GeForce cards have no MIG: nvidia-smi says [N/A], the parser None.
    assert {gpu["mig_mode"] for gpu in gpus} == {None}
    assert {gpu["persistence_mode"] for gpu in gpus} == {False}


# --- the default table -------------------------------------------------------------------------


def test_table_is_laid_out_like_a_real_550_table(tmp_path):
    host = Host(tmp_path, OPENFAAS_T4)
    done = host.nvidia_smi()
    assert done.returncode == 0
    real = (REAL / "table_550.144.03_1x_t4.txt").read_text()
    # Everything but the first line, the time of the call, is the same byte for byte.
    assert done.stdout.splitlines()[1:] == real.splitlines()[1:]
    assert len(done.stdout.splitlines()[0]) == len(real.splitlines()[0])


def test_table_header_parses_like_the_real_ones(seed):
    done = seed.nvidia_smi()
    assert parse_header(done.stdout) == {
        "nvidia_smi_version": "550.144.03",
        "driver_version": "550.144.03",
        "cuda_version": "12.4",
    }
    assert done.stdout.count("NVIDIA GeForce RTX 2080 Ti") == 4
    assert done.stdout.count("22528MiB |") == 4


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("535.230.02", "12.2"),
        ("550.144.03", "12.4"),
        ("560.35.05", "12.6"),
        ("570.133.20", "12.8"),
        ("575.57.08", "12.9"),
        ("580.95.05", "13.0"),
    ],
)
def test_cuda_version_follows_the_driver_branch(tmp_path, driver, cuda):
    host = Host(tmp_path, OPENFAAS_T4, driver=driver)
    header = parse_header(host.nvidia_smi().stdout)
    assert header["driver_version"] == driver
    assert header["cuda_version"] == cuda


def test_profile_may_set_the_cuda_version(seed):
    seed.set_profile(cuda_version="12.3")
    assert parse_header(seed.nvidia_smi().stdout)["cuda_version"] == "12.3"


def test_table_shows_mig_mode_of_datacenter_cards(tmp_path):
    host = Host(tmp_path, PROFILES / "1x-h100-80g.json")
    lines = host.nvidia_smi().stdout.splitlines()
    row = next(number for number, line in enumerate(lines) if "H100 80GB HBM3" in line)
    assert lines[row + 2].endswith("|             Disabled |")
    assert "81559MiB" in lines[row + 1]


# --- other answers -----------------------------------------------------------------------------


def test_version_output(seed):
    done = seed.nvidia_smi("--version")
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "NVIDIA-SMI version  : 550.144.03",
        "NVML version        : 550.144",
        "DRIVER version      : 550.144.03",
        "CUDA Version        : 12.4",
    ]
    assert parse_header(done.stdout)["cuda_version"] == "12.4"


def test_list_gpus_parses_like_the_real_lists(seed):
    gpus = parse_gpu_list(seed.nvidia_smi("-L").stdout)
    assert [gpu["index"] for gpu in gpus] == [0, 1, 2, 3]
    real_shape = parse_gpu_list((REAL / "list_4x_a10-t4.txt").read_text())
    assert [set(gpu) for gpu in gpus] == [set(gpu) for gpu in real_shape]


@pytest.mark.parametrize("selector", [["-i", "2"], ["-i2"], ["--id=2"], ["-i", "00000000:81:00.0"]])
def test_select_one_gpu(seed, selector):
    done = seed.nvidia_smi(*selector, "--query-gpu=index,pci.bus_id", "--format=csv,noheader")
    assert done.returncode == 0
    assert parse_query_csv(done.stdout, ["index", "pci.bus_id"]) == [
        {"index": 2, "pci_bus_id": "00000000:81:00.0"}
    ]


def test_select_a_missing_gpu(seed):
    done = seed.nvidia_smi("-i", "7", "-L")
    assert done.returncode == 6
    assert done.stdout == "No devices were found\n"


def test_query_with_header_and_units_parses_to_the_same_values(seed):
    fields = [
        "index",
        "count",
        "memory.total",
        "memory.used",
        "memory.free",
        "utilization.gpu",
        "temperature.gpu",
        "power.draw",
        "power.limit",
        "serial",
        "vbios_version",
    ]
    with_units = seed.nvidia_smi("--query-gpu=" + ",".join(fields), "--format=csv")
    bare = seed.nvidia_smi("--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits")
    header = with_units.stdout.splitlines()[0]
    assert "memory.total [MiB]" in header
    assert "power.draw [W]" in header
    assert "22528 MiB" in with_units.stdout
    assert "21.00 W" in with_units.stdout
    parsed = parse_query_csv(with_units.stdout, fields)
    assert parsed == parse_query_csv(bare.stdout, fields)
    assert parsed[0]["count"] == 4
    assert parsed[0]["memory_free_mib"] == 22527
    assert parsed[0]["power_limit_w"] == 250.0
    assert parsed[0]["serial"] is None
    assert parsed[0]["vbios_version"] == "90.02.17.00.58"


def test_unknown_field_fails_like_the_real_tool(seed):
    done = seed.nvidia_smi("--query-gpu=compute_cap,id", "--format=csv")
    assert done.returncode == 2
    real = (REAL / "fail_invalid-field.txt").read_text().splitlines()[1]
    assert done.stdout.splitlines()[0] == real.replace("compute_cap", "id")
    assert classify_failure(done.returncode, done.stdout, done.stderr)["kind"] == "other"


@pytest.mark.parametrize(
    "args",
    [
        ["--frobnicate"],
        ["-lms100"],
        ["--query-gpu=index"],
        ["--format=csv"],
        ["--format=xml", "--query-gpu=index"],
    ],
)
def test_bad_arguments_exit_2(seed, args):
    done = seed.nvidia_smi(*args)
    assert done.returncode == 2
    assert "Please run 'nvidia-smi -h' for help." in done.stdout


def test_unknown_option_text_is_the_real_one(seed):
    # As a Kaggle host's nvidia-smi answered `-lms100` (quoted in a public write-up).
    done = seed.nvidia_smi("-lms100")
    assert (
        done.stdout
        == "ERROR: Option -lms100 is not recognized. Please run 'nvidia-smi -h' for help.\n"
    )


# --- faults ------------------------------------------------------------------------------------


def test_reboot_pending_gives_the_real_mismatch(seed):
    """New user-space libraries (installed file) over an old loaded kernel module."""
    seed.driver_file.write_text("550.163.01\n")
    seed.loaded_file.parent.mkdir(parents=True, exist_ok=True)
    seed.loaded_file.write_text("550.144.03\n")
    done = seed.nvidia_smi(*query_command("nvidia-smi")[1:])
    assert done.returncode == 18
    assert done.stdout == (
        "Failed to initialize NVML: Driver/library version mismatch\n"
        "NVML library version: 550.163\n"
    )
    failure = classify_failure(done.returncode, done.stdout, done.stderr)
    assert failure["kind"] == "version_mismatch"
    assert failure["nvml_library_version"] == "550.163"
    # The same first line as the real 550.144 host's.
    real = (REAL / "fail_version-mismatch_nvml-550.144_ci-log.txt").read_text()
    assert done.stdout.splitlines()[0] in real
    # "Reboot": the loaded version now equals the installed one.
    seed.loaded_file.write_text("550.163.01\n")
    assert seed.nvidia_smi("-L").returncode == 0


def test_loaded_module_of_the_installed_version_is_fine(seed):
    seed.loaded_file.parent.mkdir(parents=True, exist_ok=True)
    seed.loaded_file.write_text("550.144.03\n")
    assert seed.nvidia_smi().returncode == 0


@pytest.mark.parametrize(
    ("fault", "rc", "kind", "real"),
    [
        ("no_driver", 9, "no_driver", "fail_no-driver_one-line.txt"),
        ("version_mismatch", 18, "version_mismatch", None),
        ("nvml_unknown", 255, "nvml_unknown", None),
    ],
)
def test_profile_faults(seed, fault, rc, kind, real):
    seed.set_profile(fault=fault)
    for args in ([], ["-L"], query_command("nvidia-smi")[1:], ["--version"]):
        done = seed.nvidia_smi(*args)
        assert done.returncode == rc
        assert classify_failure(done.returncode, done.stdout, done.stderr)["kind"] == kind
    if real:
        assert done.stdout == (REAL / real).read_text()


def test_no_profile_means_no_driver(tmp_path):
    host = Host(tmp_path, None)
    done = host.nvidia_smi()
    assert done.returncode == 9
    assert classify_failure(done.returncode, done.stdout, "")["kind"] == "no_driver"


def test_no_driver_version_file_means_no_driver(seed):
    seed.driver_file.unlink()
    assert seed.nvidia_smi("-L").returncode == 9


# --- persistence mode and the nvidia-persistenced stand-in ------------------------------------


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def persistence(host):
    done = host.nvidia_smi("--query-gpu=persistence_mode", "--format=csv,noheader")
    return {row["persistence_mode"] for row in parse_query_csv(done.stdout, ["persistence_mode"])}


def test_persistenced_enables_persistence_mode_until_stopped(seed):
    assert persistence(seed) == {False}
    started = subprocess.run(
        [sys.executable, str(PERSISTENCED), "--verbose"],
        env=seed.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    # Type=forking: the command returns once the daemon has written its pid file.
    assert started.returncode == 0
    pid = int(seed.pid_file.read_text())
    try:
        assert persistence(seed) == {True}
        assert "|   0  NVIDIA GeForce RTX 2080 Ti     On  |" in seed.nvidia_smi().stdout
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not seed.pid_file.exists())
    assert persistence(seed) == {False}


def test_persistenced_with_no_persistence_mode_runs_but_leaves_it_off(seed):
    # NVIDIA's Ubuntu unit runs the daemon with --no-persistence-mode (facts/nvidia-stack.md).
    started = subprocess.run(
        [sys.executable, str(PERSISTENCED), "--no-persistence-mode", "--verbose"],
        env=seed.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert started.returncode == 0
    pid = int(seed.pid_file.read_text())
    try:
        assert persistence(seed) == {False}
        assert "|   0  NVIDIA GeForce RTX 2080 Ti     Off |" in seed.nvidia_smi().stdout
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not seed.pid_file.exists())


def test_stale_pid_file_is_not_a_running_daemon(seed):
    seed.pid_file.parent.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    seed.pid_file.write_text(done.stdout)  # that process has exited
    assert persistence(seed) == {False}


def test_persistenced_version(seed):
    done = subprocess.run(
        [sys.executable, str(PERSISTENCED), "--version"],
        env=seed.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "nvidia-persistenced:  version 550.144.03" in done.stdout.splitlines()


def test_persistenced_refuses_an_unknown_user(seed):
    done = subprocess.run(
        [sys.executable, str(PERSISTENCED), "--user", "no-such-user-here"],
        env=seed.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no-such-user-here" in done.stderr
    assert not seed.pid_file.exists()


def test_unit_file_matches_the_stand_in():
    unit = (PAYLOADS / "nvidia-persistenced.service").read_text()
    assert "Type=forking" in unit
    assert "PIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid" in unit
    assert "ExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode" in unit
    # Static as NVIDIA's Ubuntu packages ship it: no [Install], stopped when nothing needs it.
    assert "[Install]" not in unit.splitlines()
    assert "StopWhenUnneeded=true" in unit
    source = PERSISTENCED.read_text()
    assert 'PID_FILE = "/run/nvidia-persistenced/nvidia-persistenced.pid"' in source


def test_payloads_are_executable_python3_scripts():
    for script in (SIMULATOR, PERSISTENCED):
        assert os.access(script, os.X_OK)
        assert script.read_text().startswith("#!/usr/bin/python3\n")


def test_driver_installed_since_boot_has_no_loaded_module(tmp_path):
    host = Host(tmp_path, PROFILES / "seed-4x-rtx2080ti-22g.json", booted=False)
    result = host.nvidia_smi()
    assert result.returncode == 9
    assert "couldn't communicate with the NVIDIA driver" in result.stdout
    assert classify_failure(result.returncode, result.stdout, result.stderr)["kind"] == "no_driver"
