"""The flag-aware replay of the stand-in vLLM (tests/harness/standin-vllm/flag_budget.py).

The oracle is the collection's own log parser and classifier: what the stand-in prints for a
set of flags must read back, through vllm_logs, as the figures vLLM's arithmetic gives for those
flags (facts/vllm.md, "Arithmetic"), and a KV cache that cannot hold one request must be
classified as vLLM's own V0 error is.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    classify_failure,
    parse_memory_report,
)

ROOT = Path(__file__).resolve().parents[3]
SPEC = importlib.util.spec_from_file_location(
    "flag_budget", ROOT / "tests/harness/standin-vllm/flag_budget.py"
)
flag_budget = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(flag_budget)

SEED_LOG = (ROOT / "tests/fixtures/vllm_logs/v0_0.8.5_tp4_seed_success.log").read_text()
SEED_CONFIG = json.loads((ROOT / "tests/fixtures/model_configs/qwen3-30b-a3b.json").read_text())
SCENARIOS = json.loads((ROOT / "tests/harness/standin-vllm/scenarios.json").read_text())
LOGGED = SCENARIOS["v0_success"]["flags"]


def replay(**flags) -> tuple[str, str | None]:
    lines, error = flag_budget.rescale(SEED_LOG.splitlines(), LOGGED, flags, SEED_CONFIG)
    text = "\n".join(lines)
    if error:
        text += f"\nValueError: {error}"
    return text, error


def test_the_logs_own_flags_replay_it_byte_for_byte():
    text, error = replay(**LOGGED)
    assert error is None
    assert text == "\n".join(SEED_LOG.splitlines())


def test_bytes_per_token_of_the_seed():
    # 48 layers x 4 KV heads / TP 4 x head_dim 128 x 2 (K and V) x 2 bytes.
    assert flag_budget.bytes_per_token(SEED_CONFIG, 4, "half", "auto") == 24_576
    assert flag_budget.bytes_per_token(SEED_CONFIG, 4, "half", "fp8") == 12_288
    assert flag_budget.bytes_per_token(SEED_CONFIG, 8, "half", "auto") == 24_576


def test_a_smaller_share_shrinks_the_kv_cache():
    text, error = replay(gpu_memory_utilization=0.90)
    assert error is None
    report = parse_memory_report(text)
    # 21.66 GiB x 0.03 less for every rank; blocks follow rank 0's KV cache.
    assert report["gpu_memory_utilization"] == 0.9
    assert report["budget_gib"] == round(20.15 - 21.66 * 0.03, 2)
    assert report["kv_cache_gib"] == round(4.30 - 21.66 * 0.03, 2)
    assert report["gpu_blocks"] < 5867
    assert report["max_concurrency"] == round(report["gpu_blocks"] * 32 / 32768, 2)


def test_block_size_and_max_model_len_move_blocks_and_concurrency():
    report = parse_memory_report(replay(block_size=16)[0])
    assert report["gpu_blocks"] == 5867 * 2
    assert report["cpu_blocks"] == 16 * 2**30 // (24_576 * 16)
    report = parse_memory_report(replay(max_model_len=16384)[0])
    assert report["gpu_blocks"] == 5867
    assert report["max_concurrency"] == round(5867 * 32 / 16384, 2)


def test_fp8_kv_cache_doubles_the_tokens():
    report = parse_memory_report(replay(kv_cache_dtype="fp8")[0])
    assert report["gpu_blocks"] == 5867 * 2


@pytest.mark.parametrize(
    ("flags", "kind", "text"),
    [
        # 5867 blocks x 32 = 187,744 tokens: one 262,144-token request does not fit.
        (
            {"max_model_len": 262144},
            "kv_cache_too_small",
            "The model's max seq len (262144) is larger than the maximum number of tokens "
            "that can be stored in KV cache (187744)",
        ),
        # TP 2: 28.50 GiB of weights per GPU leave nothing of a 20 GiB budget.
        ({"tensor_parallel_size": 2}, "no_cache_memory", "No available memory for the cache"),
    ],
)
def test_a_cache_that_cannot_serve_fails_as_vllm_does(flags, kind, text):
    log, error = replay(**flags)
    assert text in error
    kinds = [item["kind"] for item in classify_failure(log)]
    assert kinds[:1] == [kind], kinds
