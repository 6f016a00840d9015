"""The readiness wait, driven by a fake clock over real vLLM logs (tests/fixtures/vllm_logs)."""

import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_readiness import (
    LogFollower,
    failure_from_log,
    wait_until_ready,
)

LOGS = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_logs"
MODELS = json.dumps({"object": "list", "data": [{"id": "coder"}]})


def log_lines(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


class FakeServer:
    """A container that prints ``lines`` one per tick, then serves or exits."""

    def __init__(self, lines, *, exit_code=None, serve_after=None, exit_after=None, models=MODELS):
        self.lines = list(lines)
        self.now = 0.0
        self.exit_code = exit_code
        self.serve_after = serve_after
        self.exit_after = exit_after
        self.models = models
        self.probes: list[str] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def read_logs(self) -> list[str]:
        return [self.lines.pop(0)] if self.lines else []

    def state(self) -> dict:
        exited = self.exit_after is not None and self.now >= self.exit_after
        return {"running": not exited, "exit_code": self.exit_code if exited else None}

    def probe(self, path: str):
        self.probes.append(path)
        if self.serve_after is None or self.now < self.serve_after:
            return None, ""
        if path == "/health":
            return 200, ""
        return 200, self.models

    def wait(self, timeout=60.0, **kwargs):
        lines: list[str] = []
        result = wait_until_ready(
            read_logs=self.read_logs,
            container_state=self.state,
            probe=self.probe,
            served_names=["coder"],
            timeout=timeout,
            log_lines=lines,
            clock=self.clock,
            sleep=self.sleep,
            **kwargs,
        )
        return result, lines


def test_ready_on_the_seed_log():
    server = FakeServer(log_lines("v0_0.8.5_tp4_seed_success.log"), serve_after=3.0)
    result, lines = server.wait()
    assert result["ready"] is True
    assert result["reason"] == "ready"
    assert result["kind"] is None
    assert result["health_ok_seconds"] == 3.0
    assert result["models"] == ["coder"]
    assert len(lines) == 8


def test_health_without_the_served_name_is_not_ready():
    other = json.dumps({"object": "list", "data": [{"id": "/qwen/qwen3-30b-a3b"}]})
    server = FakeServer([], serve_after=0.0, models=other)
    result, _ = server.wait(timeout=5)
    assert result["ready"] is False
    assert result["reason"] == "timeout"
    assert result["models"] == ["/qwen/qwen3-30b-a3b"]


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("fail_kv_cache_too_small_v1_enginecore_dp0.log", "kv_cache_too_small"),
        ("fail_kv_cache_too_small_v0_worker_died.log", "kv_cache_too_small"),
        ("fail_no_cache_memory_v1_engine_core_init_failed.log", "no_cache_memory"),
        ("fail_gpu_memory_busy_v1_0.10.1_enginecore_0.log", "gpu_memory_busy"),
        ("fail_cuda_oom_worker_tp0_enginecore_failed.log", "cuda_oom"),
        ("fail_nccl_shm_v0_0.8.3.log", "nccl"),
        ("fail_cuda_driver_nvidia_container_cli.log", "cuda_driver"),
        ("fail_model_not_found_apiserver.log", "model_not_found"),
        ("fail_bad_argument_unrecognized_arguments.log", "bad_argument"),
        ("fail_engine_failed_wrapper_only_v1_0.8.x.log", "engine_failed"),
    ],
)
def test_fatal_line_ends_the_wait_within_the_grace(fixture, kind):
    # The container keeps running (never exits): the log alone must end the wait.
    server = FakeServer(log_lines(fixture))
    result, _ = server.wait(timeout=900, fatal_grace=2.0, interval=0.25)
    assert result["reason"] == "fatal_log"
    assert result["kind"] == kind
    assert result["proof"]
    assert result["seconds"] - result["fatal_seconds"] <= 2.25
    assert result["seconds"] < 30


def test_root_cause_wins_over_the_wrapper_that_follows():
    lines = log_lines("fail_no_cache_memory_v1_engine_core_init_failed.log")
    kind, proof = failure_from_log(lines)
    assert kind == "no_cache_memory"
    assert "No available memory for the cache blocks" in proof[0]
    assert any("Engine core initialization failed" in line for line in proof[1:])


def test_exit_ends_the_wait_at_once():
    server = FakeServer(
        log_lines("fail_kv_cache_too_small_v0_worker_died.log"), exit_code=1, exit_after=1.0
    )
    result, _ = server.wait()
    assert result["reason"] == "exited"
    assert result["exit_code"] == 1
    assert result["kind"] == "kv_cache_too_small"
    assert result["seconds"] <= 1.25


def test_full_log_replaces_a_lagging_stream_on_exit():
    # The follow stream delivered nothing yet; the engine's full log has the cause.
    full = log_lines("fail_cuda_oom_worker_tp0_enginecore_failed.log")
    server = FakeServer([], exit_code=1, exit_after=0.5)
    lines: list[str] = []
    result = wait_until_ready(
        read_logs=server.read_logs,
        container_state=server.state,
        probe=server.probe,
        served_names=["coder"],
        timeout=10,
        log_lines=lines,
        full_log=lambda: full,
        clock=server.clock,
        sleep=server.sleep,
    )
    assert result["kind"] == "cuda_oom"
    assert lines == full


def test_exit_without_an_error_line_is_engine_failed():
    server = FakeServer(
        log_lines("v0_0.8.5_tp4_seed_success.log")[:3], exit_code=137, exit_after=2.0
    )
    result, _ = server.wait()
    assert result["reason"] == "exited"
    assert result["kind"] == "engine_failed"
    assert result["proof"] == []
    assert len(result["log_tail"]) == 3


def test_restart_counts_as_exit():
    server = FakeServer([])
    result = wait_until_ready(
        read_logs=server.read_logs,
        container_state=lambda: {"running": True, "exit_code": 1, "restarted": True},
        probe=server.probe,
        served_names=["coder"],
        timeout=10,
        log_lines=[],
        clock=server.clock,
        sleep=server.sleep,
    )
    assert result["reason"] == "exited"


def test_timeout():
    server = FakeServer([])
    result, _ = server.wait(timeout=10)
    assert result["reason"] == "timeout"
    assert 10 <= result["seconds"] <= 10.5
    assert result["kind"] is None


def test_log_follower_joins_partial_lines_and_decodes():
    chunks = [b"INFO first li", b"ne\nsecond\n", b"caf\xc3", b"\xa9 \xff\nlast without newline"]
    follower = LogFollower(iter(chunks)).start()
    lines = follower.wait_finished(5.0)
    assert lines == ["INFO first line", "second", "café \ufffd", "last without newline"]
    assert follower.finished


def test_log_follower_survives_a_broken_stream():
    def broken():
        yield b"one\n"
        raise ConnectionError("socket closed")

    follower = LogFollower(broken()).start()
    assert follower.wait_finished(5.0) == ["one"]
