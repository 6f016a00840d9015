"""Tests of module_utils.vllm_gpu_release: reading compute-apps lists and the bounded wait.

The compute-apps lines follow nvidia-smi's ``--help-query-compute-apps`` format (header names as
printed in the paste in NVIDIA/dcgm-exporter#94); the failures are the real captures in
tests/fixtures/nvidia_smi. The clock is a fake advanced by the fake sleep: nothing waits.
"""

from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_gpu_release import (
    compute_apps_command,
    parse_compute_apps,
    wait_released,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "nvidia_smi"
NO_DRIVER = (FIXTURES / "fail_no-driver_one-line.txt").read_text()


class FakeHost:
    """nvidia-smi answers in turn (the last one repeats); a clock the sleeps advance."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []
        self.now = 100.0
        self.sleeps = []

    def run(self, argv):
        self.calls.append(argv)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


def wait(host, pids=(4242, 4243), timeout=30, interval=5, path="/usr/bin/nvidia-smi"):
    return wait_released(
        host.run,
        path,
        pids,
        timeout=timeout,
        interval=interval,
        sleep=host.sleep,
        clock=host.clock,
    )


def test_command_asks_for_pid_and_memory_without_header_or_units():
    assert compute_apps_command("/usr/bin/nvidia-smi") == [
        "/usr/bin/nvidia-smi",
        "--query-compute-apps=pid,used_memory",
        "--format=csv,noheader,nounits",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "pid, used_gpu_memory [MiB]\n4242, 15120 MiB\n977, [N/A]\n",
        "4242, 15120\n977, [N/A]\n",
        "4242, 15120 MiB\n977, [Insufficient Permissions]\n",
    ],
)
def test_parse_reads_each_format_and_unknown_memory_as_none(text):
    assert parse_compute_apps(text) == [
        {"pid": 4242, "used_memory_mib": 15120},
        {"pid": 977, "used_memory_mib": None},
    ]


@pytest.mark.parametrize("text", ["", "\n", "pid, used_gpu_memory [MiB]\n"])
def test_parse_no_process_is_an_empty_list(text):
    assert parse_compute_apps(text) == []


@pytest.mark.parametrize("text", [NO_DRIVER, "4242, 15120, python3\n", "4242, lots\n"])
def test_parse_refuses_what_is_not_the_list(text):
    # A message on stdout must not read as "no processes, memory free".
    with pytest.raises(ValueError, match=r"values for 2 fields|expected a number"):
        parse_compute_apps(text)


def test_released_once_the_failed_pids_leave_the_list():
    host = FakeHost(
        [
            (0, "4242, 15120\n4243, 15098\n977, 512\n", ""),
            (0, "4243, 300\n977, 512\n", ""),
            (0, "977, 512\n", ""),
        ]
    )
    report = wait(host)
    assert report["released"] is True
    assert report["polls"] == 3
    assert report["remaining"] == []
    assert report["pids"] == [4242, 4243]
    assert host.sleeps == [5, 5]
    assert report["seconds"] == 10.0


def test_bound_passes_with_the_processes_still_listed():
    host = FakeHost([(0, "4242, 15120\n", "")])
    report = wait(host, timeout=12, interval=5)
    assert report["released"] is False
    assert report["remaining"] == [4242]
    assert report["remaining_mib"] == 15120
    # 5 + 5 + the 2 left of the bound: never sleeps past it.
    assert host.sleeps == [5, 5, 2]
    assert report["polls"] == 4


def test_a_failing_query_does_not_end_the_wait_and_a_later_answer_counts():
    host = FakeHost(
        [
            (9, "", NO_DRIVER),
            (0, NO_DRIVER, ""),
            (0, "", ""),
        ]
    )
    report = wait(host)
    assert report["released"] is True
    assert report["polls"] == 3
    assert report["last_error"].startswith("nvidia-smi line has 1 values")


def test_a_query_that_never_answers_is_unknown_not_released():
    host = FakeHost([(9, "", NO_DRIVER)])
    report = wait(host, timeout=10, interval=5)
    assert report["released"] is None
    assert report["last_error"] == "rc 9: " + NO_DRIVER.strip()
    assert "no process list" in report["reason"]


def test_a_missing_binary_ends_the_wait_at_once():
    host = FakeHost([FileNotFoundError(2, "No such file or directory")])
    report = wait(host)
    assert report["released"] is None
    assert report["polls"] == 1
    assert host.sleeps == []
    assert "could not be run" in report["reason"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"timeout": 0}, "off"),
        ({"pids": ()}, "no process"),
        ({"path": None}, "not found"),
    ],
)
def test_nothing_to_wait_for_runs_nothing(kwargs, reason):
    host = FakeHost([(0, "4242, 1\n", "")])
    report = wait(host, **kwargs)
    assert host.calls == []
    assert report["released"] is None
    assert reason in report["reason"]


def test_unknown_memory_of_a_remaining_process_is_not_summed_as_zero():
    host = FakeHost([(0, "4242, [N/A]\n4243, 100\n", "")])
    report = wait(host, timeout=5, interval=5)
    assert report["released"] is False
    assert report["remaining"] == [4242, 4243]
    assert report["remaining_mib"] is None


def test_a_silent_failure_is_recorded_by_its_exit_code():
    host = FakeHost([(255, "", ""), (0, "", "")])
    report = wait(host)
    assert report["released"] is True
    assert report["last_error"] == "rc 255: "
