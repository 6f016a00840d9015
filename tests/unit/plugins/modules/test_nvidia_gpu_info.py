"""Tests of the nvidia_gpu_info module: main() with run_command answering from real outputs.

The query answers come from the nvidia-smi simulator (run here on a seed-like profile), the
table and the failures from real captured outputs in tests/fixtures/nvidia_smi.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import query_command
from ansible_collections.llmops.gpu_serving.plugins.modules import nvidia_gpu_info

TESTS = Path(__file__).resolve().parents[3]
FIXTURES = TESTS / "fixtures" / "nvidia_smi"
SIMULATOR = TESTS / "fixtures" / "vendor_repo" / "payloads" / "nvidia-smi"
SEED_PROFILE = TESTS / "fixtures" / "vendor_repo" / "profiles" / "seed-4x-rtx2080ti-22g.json"
NVIDIA_SMI = "/usr/bin/nvidia-smi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed_answers(tmp_path_factory):
    """The simulator's query and table answers for the seed host (4 x 22 GB 2080 Ti)."""
    state = tmp_path_factory.mktemp("sim")
    (state / "driver-version").write_text("550.144.03\n")
    # Booted with this driver: the simulated kernel module of the same version is loaded.
    (state / "loaded-driver-version").write_text("550.144.03\n")
    env = dict(
        os.environ,
        NVIDIA_SIM_PROFILE=str(SEED_PROFILE),
        NVIDIA_SIM_DRIVER_VERSION_FILE=str(state / "driver-version"),
        NVIDIA_SIM_LOADED_FILE=str(state / "loaded-driver-version"),
        NVIDIA_SIM_PERSISTENCED_PID_FILE=str(state / "absent.pid"),
    )

    def simulate(argv):
        done = subprocess.run(
            [sys.executable, str(SIMULATOR), *argv[1:]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    return {
        "query": simulate(query_command(NVIDIA_SMI)),
        "table": simulate([NVIDIA_SMI]),
    }


@pytest.fixture
def nvidia_smi_answers(monkeypatch):
    """Make the module's nvidia-smi runner answer from a list; record the argv it was given."""
    calls = []
    answers = []

    def subprocess_runner(timeout, env_update=None):
        assert env_update == {"LC_ALL": "C"}
        assert timeout == 30

        def run(argv):
            calls.append(list(argv))
            return answers[len(calls) - 1]

        return run

    def get_bin_path(self, name, *args, **kwargs):
        assert name == "nvidia-smi"
        return NVIDIA_SMI

    monkeypatch.setattr(nvidia_gpu_info, "subprocess_runner", subprocess_runner)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
    monkeypatch.setattr(nvidia_gpu_info.os, "access", lambda path, mode: path == NVIDIA_SMI)
    return answers, calls


def run_module(capsys, **args):
    """Run main() with these module args; return (failed, result)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        nvidia_gpu_info.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


def test_reports_the_seed_host(capsys, nvidia_smi_answers, seed_answers):
    answers, calls = nvidia_smi_answers
    answers += [seed_answers["query"], seed_answers["table"]]
    failed, result = run_module(capsys)
    assert not failed
    assert result["changed"] is False
    assert calls == [query_command(NVIDIA_SMI), [NVIDIA_SMI]]
    assert result["driver_version"] == "550.144.03"
    assert result["cuda_version"] == "12.4"
    assert result["gpu_count"] == 4
    first = result["gpus"][0]
    assert first["name"] == "NVIDIA GeForce RTX 2080 Ti"
    assert first["memory_total_mib"] == 22528
    assert first["memory_total_gib"] == 22.0
    assert first["compute_capability"] == "7.5"
    assert first["persistence_mode"] is False
    assert first["mig_mode"] is None
    assert first["pci_bus_id"] == "00000000:01:00.0"
    assert result["summary"]["memory_total_gib"] == 88.0
    assert result["summary"]["memory_min_mib"] == 22528
    facts = result["ansible_facts"]["nvidia_gpu_info"]
    assert facts["gpus"] == result["gpus"]
    assert facts["cuda_version"] == "12.4"


def test_runs_in_check_mode(capsys, nvidia_smi_answers, seed_answers):
    answers, calls = nvidia_smi_answers
    answers += [seed_answers["query"], seed_answers["table"]]
    failed, result = run_module(capsys, _ansible_check_mode=True)
    assert not failed
    assert len(calls) == 2
    assert result["gpu_count"] == 4


def test_passes_expected_driver_and_count(capsys, nvidia_smi_answers, seed_answers):
    answers, _ = nvidia_smi_answers
    answers += [seed_answers["query"], seed_answers["table"]]
    failed, result = run_module(capsys, expected_driver_version="550.144.03", expected_gpu_count=4)
    assert not failed
    assert result["gpu_count"] == 4


def test_fails_on_another_driver_naming_both(capsys, nvidia_smi_answers, seed_answers):
    answers, _ = nvidia_smi_answers
    answers += [seed_answers["query"], seed_answers["table"]]
    failed, result = run_module(capsys, expected_driver_version="550.163.01")
    assert failed
    assert "550.163.01" in result["msg"]
    assert "GPU 3: 550.144.03" in result["msg"]


def test_fails_on_a_missing_card(capsys, nvidia_smi_answers, seed_answers):
    answers, _ = nvidia_smi_answers
    answers += [seed_answers["query"], seed_answers["table"]]
    failed, result = run_module(capsys, expected_gpu_count=8)
    assert failed
    assert result["msg"].startswith("expected 8 GPU(s), nvidia-smi lists 4")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fail_version-mismatch_nvml-570.124.txt", (18, "version_mismatch", "Reboot")),
        ("fail_no-driver_one-line.txt", (9, "no_driver", "lsmod")),
        ("fail_nvml-unknown-error.txt", (255, "nvml_unknown", "restart the container")),
    ],
)
def test_fails_with_the_classified_nvidia_smi_error(capsys, nvidia_smi_answers, name, expected):
    rc, kind, in_hint = expected
    answers, calls = nvidia_smi_answers
    # The fixtures are transcripts: the line after the prompt is what nvidia-smi printed.
    printed = "".join(
        line for line in fixture(name).splitlines(keepends=True) if not line.startswith(("$", "("))
    )
    printed = printed.removeprefix("nvidia-smi \n")
    answers.append((rc, printed, ""))
    failed, result = run_module(capsys)
    assert failed
    assert len(calls) == 1
    assert result["kind"] == kind
    assert result["rc"] == rc
    assert in_hint in result["hint"]
    assert result["nvidia_smi_output"] == printed.strip("\n")
    assert kind in result["msg"]


def test_version_mismatch_reports_the_library_version(capsys, nvidia_smi_answers):
    answers, _ = nvidia_smi_answers
    answers.append((18, fixture("fail_version-mismatch_nvml-570.124.txt"), ""))
    failed, result = run_module(capsys)
    assert failed
    assert result["nvml_library_version"] == "570.124"


def test_fails_when_nvidia_smi_is_not_installed(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **kw: None)

    def subprocess_runner(*args, **kwargs):
        raise AssertionError("nothing may run without nvidia-smi")

    monkeypatch.setattr(nvidia_gpu_info, "subprocess_runner", subprocess_runner)
    failed, result = run_module(capsys)
    assert failed
    assert result["kind"] == "not_installed"
    assert result["rc"] is None
    assert "nvidia-utils" in result["hint"]


def test_fails_when_the_given_path_does_not_exist(capsys, tmp_path):
    failed, result = run_module(capsys, nvidia_smi_path=str(tmp_path / "nvidia-smi"))
    assert failed
    assert result["kind"] == "not_installed"
    assert str(tmp_path / "nvidia-smi") in result["msg"]


def test_a_hung_nvidia_smi_is_killed_and_classified(capsys, tmp_path):
    """A real process that never answers (a hung driver): the module fails with kind timeout."""
    hung = tmp_path / "nvidia-smi"
    hung.write_text("#!/bin/sh\nexec sleep 600\n")
    hung.chmod(0o755)
    failed, result = run_module(capsys, nvidia_smi_path=str(hung), timeout=0.5)
    assert failed
    assert result["kind"] == "timeout"
    assert "did not answer within 0.5 s" in result["msg"]
    assert "dmesg" in result["hint"]


def test_a_timeout_that_is_not_a_duration_is_refused(capsys, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    failed, result = run_module(capsys, nvidia_smi_path=str(smi), timeout=0)
    assert failed
    assert result["msg"] == "nvidia_gpu_info: timeout must be a number of seconds above 0, got 0.0"
