"""Request logs are not failures: a client may paste any error message into a prompt.

The request-log templates are real lines (the fixture v1_0.8.x_request_logs_serving.log, and
vLLM 0.32's request_logger.py formats); the failure messages are the real lines of the
fail_*.log and real_*.log fixtures plus the texts of shared/facts/vllm.md ("Failures to
recognise"). Every alternative of every classifier pattern must be quoted by at least one of
them, so a pattern added to vllm_logs.FAILURE_PATTERNS without a message here fails this file.
"""

import re
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    FAILURE_PATTERNS,
    classify_failure,
    classify_message,
    is_fatal_line,
    is_request_log,
    normalize_line,
    parse_memory_report,
    startup_section,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_logs"
SERVING = (FIXTURES / "v1_0.8.x_request_logs_serving.log").read_text(encoding="utf-8").splitlines()
RECEIVED, ADDED, ACCESS = SERVING[1], SERVING[2], SERVING[3]

# Failure texts that no fixture carries, as shared/facts/vllm.md and vLLM's source print them.
FACTS_MESSAGES = [
    "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
    "initializing the engine.",
    # The CPU worker of 0.32 (vllm/v1/worker/cpu_worker.py).
    "ValueError: Available memory on node 0 (2.1/14.59 GiB) on kv cache allocation is less than "
    "requested memory for kv (4.0 GiB). Decrease --kv-cache-memory-bytes, "
    "VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory used by other processes.",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB.",
    "RuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy requests.",
    "ValueError: Failed to load model - not enough GPU memory.",
    "Cannot find any model weights with `/models/qwen`",
    "huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or "
    "'namespace/repo_name': '/models/missing'.",
    "RuntimeError: Error 804: forward compatibility was attempted on non supported HW",
    "RuntimeError: CUDA driver version is insufficient for CUDA runtime version",
    "RuntimeError: The NVIDIA driver on your system is too old (found version 11040).",
    "RuntimeError: Failed to infer device type",
    "NCCL WARN Call to ncclShmOpen failed",
    "Error while creating shared memory segment /dev/shm/nccl-abc123 (size 9637888)",
    "ncclUnhandledCudaError: Call to CUDA function failed.",
    "RuntimeError: Engine core initialization failed. See root cause above.",
    "RuntimeError: EngineCore failed to start.",
    "ERROR 12-02 20:31:05 [core.py:710] EngineCore hit an exception: Traceback",
    "Exception: WorkerProc failed to start.",
    "Worker failed with error 'CUDA error: an illegal memory access was encountered'",
    "Worker VllmWorkerProcess pid 1786 died, exit code: -15",
    "vllm: error: unrecognized arguments: --swap-space 16",
    "api_server.py: error: argument --dtype: invalid choice: 'bf16'",
    "Value error, User-specified max_model_len (100000) is greater than the derived "
    "max_model_len (max_position_embeddings=4096.0 or model_max_length=None in model's "
    "config.json).",
]


def fixture_messages() -> list[str]:
    messages = []
    paths = sorted(FIXTURES.glob("fail_*.log")) + sorted(FIXTURES.glob("real_*.log"))
    for path in paths:
        for error in classify_failure(path.read_text(encoding="utf-8")):
            messages.append(normalize_line(error["line"])[2])
    return messages


MESSAGES = fixture_messages() + FACTS_MESSAGES


def top_level_alternatives(pattern: str) -> list[str]:
    """Split a regex source on the ``|`` that are outside groups and classes."""
    parts, depth, in_class, escaped, start = [], 0, False, False, 0
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:index])
            start = index + 1
    parts.append(pattern[start:])
    return parts


ALTERNATIVES = [
    (kind, alternative)
    for kind, pattern in FAILURE_PATTERNS
    for alternative in top_level_alternatives(pattern.pattern)
]


def quoting(message: str) -> list[str]:
    """The request-log lines of every vLLM version, each quoting ``message``."""
    prompt = repr(f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n")
    received = RECEIVED.replace(
        "'<|im_start|>user\\nping<|im_end|>\\n<|im_start|>assistant\\n'", prompt
    )
    assert received != RECEIVED
    request_id = "chatcmpl-339cba12293b42a7ba808aca93821d50"
    return [
        # 0.8.5: every prompt at INFO.
        received,
        # The same under >= 0.31's process prefix and through docker compose.
        f"(APIServer pid=1) {received}",
        f"vllm-1  | {received}",
        # >= 0.2x with --enable-log-requests (DEBUG) and --enable-log-outputs.
        f"(APIServer pid=1) DEBUG 12-02 20:31:05 [request_logger.py:56] Request {request_id} "
        f"details: prompt: {prompt}, prompt_token_ids: None, prompt_embeds shape: None.",
        f"(APIServer pid=1) INFO 12-02 20:31:06 [request_logger.py:109] Generated response "
        f"{request_id}: output: {message!r}, finish_reason: stop",
        # A client's X-Request-Id is the request id of the engine's lines.
        ADDED.replace(request_id, f"{request_id} {message}"),
        f"INFO 04-29 04:15:30 [async_llm_engine.py:179] Finished request {message}.",
        f"(APIServer pid=1) INFO 12-02 20:31:06 [async_llm.py:922] Aborted request(s) {message}.",
        # uvicorn's access log quotes the path a client asked for.
        ACCESS.replace("/v1/chat/completions", f"/v1/chat/completions?q={message}"),
    ]


def test_the_templates_are_request_logs_and_the_fixture_has_no_failure():
    assert all(is_request_log(normalize_line(line)[2]) for line in (RECEIVED, ADDED, ACCESS))
    assert classify_failure("\n".join(SERVING)) == []
    assert not is_request_log(normalize_line(SERVING[4])[2])  # engine stats are engine lines


@pytest.mark.parametrize(("kind", "alternative"), ALTERNATIVES)
def test_every_classifier_alternative_is_quoted_by_a_known_message(kind, alternative):
    quoted = [message for message in MESSAGES if re.search(alternative, message)]

    assert quoted, f"no message in this file matches {kind} alternative {alternative!r}"
    assert any(classify_message(message) == kind for message in quoted)


@pytest.mark.parametrize("message", MESSAGES)
def test_a_request_line_quoting_a_failure_is_no_failure(message):
    assert classify_message(message) is not None
    for line in quoting(message):
        assert is_fatal_line(line) is None, line
        assert classify_failure(line) == [], line


def test_a_serving_log_full_of_quoted_failures_reports_no_errors():
    seed = (FIXTURES / "v0_0.8.5_tp4_seed_success.log").read_text(encoding="utf-8").splitlines()
    requests = [line for message in MESSAGES for line in quoting(message)]
    text = "\n".join([*seed, "INFO:     Application startup complete.", *requests])
    report = parse_memory_report(text)

    assert report["errors"] == []
    assert report["kv_cache_gib"] == 4.30
    assert report["ready"] is True


def test_an_engine_line_after_request_lines_is_still_a_failure():
    nccl = (
        "(VllmWorkerProcess pid=221) ERROR 04-06 20:46:48 [multiproc_worker_utils.py:238] "
        "torch.distributed.DistBackendError: NCCL error in: "
        "/pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:268, unhandled system error"
    )
    errors = classify_failure("\n".join([*SERVING, nccl]))

    assert [error["kind"] for error in errors] == ["nccl"]


@pytest.mark.parametrize(
    ("fixture", "last"),
    [
        ("v1_0.10.1.1_tp1_enginecore_0_success.log", "Application startup complete."),
        ("v1_0.10.1.1_tp2_vllmworker_tp_success.log", "Application startup complete."),
    ],
)
def test_the_startup_section_ends_at_uvicorns_ready_line(fixture, last):
    lines = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
    section = startup_section([*lines, *SERVING])

    assert section[-1].endswith(last)
    assert len(section) <= len(lines)
    assert not any(line in section for line in SERVING)


def test_the_startup_section_ends_at_vllms_own_ready_line_without_uvicorns():
    ready = "(APIServer pid=1) INFO 12-02 20:31:05 [api_server.py:1880] Starting vLLM server on http://0.0.0.0:8000"
    lines = ["(APIServer pid=1) INFO 12-02 20:30:01 [utils.py:253] non-default args: {}", ready]

    assert startup_section([*lines, *SERVING]) == lines


def test_a_log_without_a_ready_line_is_all_startup():
    lines = (FIXTURES / "v0_0.8.5_tp4_seed_success.log").read_text(encoding="utf-8").splitlines()

    assert startup_section(lines) == lines
