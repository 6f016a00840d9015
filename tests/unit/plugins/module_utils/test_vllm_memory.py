"""Unit tests for module_utils/vllm_memory over real config.json files (see fixtures SOURCES.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from seed_deployment import QWEN3_30B_A3B_WEIGHTS, SEED_ENGINE, SEED_SWAP_SPACE_GIB

from ansible_collections.llmops.gpu_serving.plugins.module_utils import vllm_memory
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import (
    kv_bytes_per_token,
    largest_fitting_max_model_len,
    largest_max_model_len_for_concurrency,
    plan_memory,
    smallest_fitting_gpu_memory_utilization,
    suggest_fit,
    text_config,
    weights_bytes_from_files,
    weights_bytes_from_index,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "model_configs"
GIB = 2**30

# metadata.total_size of Qwen/Qwen3-30B-A3B's model.safetensors.index.json (SOURCES.md).
# metadata.total_size of mistralai/Mistral-7B-v0.1's index (fixture file).
MISTRAL_7B_WEIGHTS = 14_483_464_192

# The seed deployment's flags (vllm/vllm-openai:v0.8.5 on 4 x RTX 2080 Ti 22 GB).
SEED = {**SEED_ENGINE, "swap_space_gib": SEED_SWAP_SPACE_GIB}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# ---------------------------------------------------------------------------------------------
# The seed: every figure its log printed
# ---------------------------------------------------------------------------------------------


def test_seed_bytes_per_token_and_block():
    plan = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.30, **SEED)
    # 2 x 48 layers x max(1, 4 KV heads // TP 4) x 128 x 2 bytes (half)
    assert plan["kv_bytes_per_token"] == 24_576
    # x block_size 32
    assert plan["block_bytes"] == 786_432


def test_seed_cpu_blocks_for_16_gib_swap():
    plan = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.30, **SEED)
    # floor(16 x 2**30 / 786,432) = floor(21,845.33); the log: "# CPU blocks: 21845"
    assert plan["cpu_blocks"] == 21_845


def test_seed_exact_kv_reproduces_the_logged_blocks_tokens_and_concurrency():
    # 5867 blocks is what vLLM printed; its KV memory was 5867 x 786,432 bytes or a little more.
    kv_gib = 5867 * 786_432 / GIB
    plan = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=kv_gib, **SEED)
    assert plan["gpu_blocks"] == 5867
    assert plan["kv_cache_tokens"] == 187_744  # 5867 x 32
    assert plan["max_concurrency"] == 5.73  # 187,744 / 32,768 = 5.7295
    assert plan["fits"] is True
    assert plan["kv_cache_source"] == "given"


def test_seed_logged_kv_rounded_to_two_decimals():
    # The log's "4.30GiB" is rounded: exactly 4.30 GiB holds floor(4.30 x 1365.33) = 5870 blocks.
    # The logged 5867 lies between the blocks of the rounding interval's ends [4.295, 4.305).
    plan = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.30, **SEED)
    assert plan["gpu_blocks"] == 5870
    assert plan["kv_cache_tokens"] == 187_840
    assert plan["max_concurrency"] == 5.73  # 187,840 / 32,768 = 5.732
    low = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.295, **SEED)["gpu_blocks"]
    high = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.305, **SEED)["gpu_blocks"]
    assert low <= 5867 < high


def test_seed_predicted_kv_is_within_a_few_percent_of_the_log():
    plan = plan_memory(
        load("qwen3-30b-a3b"), gpu_memory_gib=21.66, weights_bytes=QWEN3_30B_A3B_WEIGHTS, **SEED
    )
    # budget 21.66 x 0.93 = 20.1438 (log: 20.15)
    assert plan["budget_gib"] == pytest.approx(20.1438, abs=1e-4)
    # weights 61,064,245,248 / 4 / 2**30 = 14.2176 (log: 14.25)
    assert plan["weights_gib"] == pytest.approx(14.2176, abs=1e-4)
    # activation: 4096 x 16 x 2048 x 2 = 0.25 GiB + 256 x 151,936 x 4 x 8 = 1.159 GiB (log 1.40)
    assert plan["activation_gib"] == pytest.approx(1.40, abs=0.02)
    assert plan["non_torch_gib"] == 0.20
    assert plan["kv_cache_source"] == "predicted"
    assert plan["kv_cache_gib"] == pytest.approx(4.30, rel=0.03)
    assert plan["gpu_blocks"] == pytest.approx(5867, rel=0.03)
    assert plan["max_concurrency"] == pytest.approx(5.73, rel=0.03)
    assert plan["fits"] is True
    assert any("MoE" in note for note in plan["notes"])
    assert any("CUDA graph" in note for note in plan["notes"])


def test_seed_measured_overhead_replaces_the_estimate():
    # With rank 0's logged activation and non-torch memory only the weights remain estimated.
    plan = plan_memory(
        load("qwen3-30b-a3b"),
        gpu_memory_gib=21.66,
        weights_bytes=QWEN3_30B_A3B_WEIGHTS,
        activation_gib=1.40,
        non_torch_gib=0.20,
        **SEED,
    )
    # 20.1438 - 14.2176 - 1.60 = 4.3262
    assert plan["kv_cache_gib"] == pytest.approx(4.3262, abs=1e-4)
    assert not any("calibrated" in note for note in plan["notes"])


# ---------------------------------------------------------------------------------------------
# KV bytes per token over the real configs, arithmetic written out per row
# ---------------------------------------------------------------------------------------------

KV_TABLE = [
    # 2 x 48 x max(1, 4 // 1) x 128 x 2 (config bfloat16)
    ("qwen3-30b-a3b", 1, "auto", "auto", 98_304),
    # 2 x 48 x max(1, 4 // 4) x 128 x 2
    ("qwen3-30b-a3b", 4, "half", "auto", 24_576),
    # KV heads 4 < TP 8: each rank keeps one replicated head -> 2 x 48 x 1 x 128 x 2
    ("qwen3-30b-a3b", 8, "half", "auto", 24_576),
    # fp8 KV: 2 x 48 x 1 x 128 x 1
    ("qwen3-30b-a3b", 4, "half", "fp8", 12_288),
    # GQA dense, head_dim = 4096 / 32 = 128: 2 x 32 x 8 x 128 x 2
    ("meta-llama-3.1-8b", 1, "auto", "auto", 131_072),
    # 2 x 32 x (8 // 2) x 128 x 2
    ("meta-llama-3.1-8b", 2, "bfloat16", "auto", 65_536),
    # 2 x 32 x 8 x 128 x 1
    ("meta-llama-3.1-8b", 1, "auto", "fp8_e4m3", 65_536),
    # 2 x 80 x (8 // 4) x (8192 / 64 = 128) x 2
    ("meta-llama-3.1-70b", 4, "auto", "auto", 81_920),
    # KV heads 8 < TP 16: 2 x 80 x 1 x 128 x 2
    ("meta-llama-3.1-70b", 16, "auto", "auto", 40_960),
    # MLA: 1 x 61 x (512 + 64) x 2, the same on every rank
    ("deepseek-v3", 8, "auto", "auto", 70_272),
    ("deepseek-v3", 1, "auto", "auto", 70_272),
    # MLA fp8: 1 x 61 x 576 x 1
    ("deepseek-v3", 8, "auto", "fp8_e5m2", 35_136),
    # MHA without num_key_value_heads: kv = n_head 12, head_dim = 768 / 12 = 64;
    # float32 checkpoint served in 16 bits under auto: 2 x 12 x 12 x 64 x 2
    ("gpt2", 1, "auto", "auto", 36_864),
    # explicit float32: 2 x 12 x 12 x 64 x 4
    ("gpt2", 1, "float32", "auto", 73_728),
    # sliding window on all layers: 2 x 32 x 8 x 128 x 2 (the window is a note, not arithmetic)
    ("mistral-7b-v0.1", 1, "auto", "auto", 131_072),
    # sliding/full hybrid, all 24 layers attend: 2 x 24 x 8 x 64 x 2
    ("gpt-oss-20b", 1, "auto", "auto", 49_152),
    # 2 x 24 x (8 // 2) x 64 x 2
    ("gpt-oss-20b", 2, "auto", "auto", 24_576),
    # nested text_config (dtype bfloat16 inside it): 2 x 48 x (4 // 4) x 128 x 2
    ("qwen3-vl-30b-a3b-instruct", 4, "auto", "auto", 24_576),
    # nested + linear_attention hybrid: 10 of 40 layers attend: 2 x 10 x 2 x 256 x 2
    ("qwen3.5-35b-a3b", 1, "auto", "auto", 20_480),
    # 2 x 10 x (2 // 2) x 256 x 2
    ("qwen3.5-35b-a3b", 2, "auto", "auto", 10_240),
    # Mamba hybrid, 10 '*' in hybrid_override_pattern, attention_head_dim 128: 2 x 10 x 8 x 128 x 2
    ("nemotron-h-56b-base-8k", 1, "auto", "auto", 40_960),
    # 2 x 10 x (8 // 8) x 128 x 2
    ("nemotron-h-56b-base-8k", 8, "auto", "auto", 5_120),
]


@pytest.mark.parametrize(("fixture", "tp", "dtype", "kv_cache_dtype", "expected"), KV_TABLE)
def test_kv_bytes_per_token(fixture, tp, dtype, kv_cache_dtype, expected):
    got = kv_bytes_per_token(
        load(fixture), tensor_parallel_size=tp, kv_cache_dtype=kv_cache_dtype, dtype=dtype
    )
    assert got == expected


@pytest.mark.parametrize(
    ("fixture", "layers", "kv_heads_per_gpu", "head_dim", "mla"),
    [
        ("qwen3-30b-a3b", 48, 4, 128, False),
        ("deepseek-v3", 61, 1, 576, True),
        ("gpt2", 12, 12, 64, False),
        ("qwen3.5-35b-a3b", 10, 2, 256, False),
        ("nemotron-h-56b-base-8k", 10, 8, 128, False),
    ],
)
def test_plan_reports_the_geometry_it_used(fixture, layers, kv_heads_per_gpu, head_dim, mla):
    plan = plan_memory(load(fixture), kv_cache_gib=1.0, max_model_len=1024)
    assert plan["attention_layers"] == layers
    assert plan["kv_heads_per_gpu"] == kv_heads_per_gpu
    assert plan["head_dim"] == head_dim
    assert plan["mla"] is mla


@pytest.mark.parametrize(
    ("fixture", "note_fragment"),
    [
        ("mistral-7b-v0.1", "sliding window of 4096"),
        ("gpt-oss-20b", "sliding window of 128"),
        ("gpt-oss-20b", "config dtype None not recognised"),
        ("qwen3.5-35b-a3b", "10 of 40 layers"),
        ("nemotron-h-56b-base-8k", "10 of 118 layers"),
    ],
)
def test_notes_say_what_the_arithmetic_cannot_know(fixture, note_fragment):
    plan = plan_memory(load(fixture), kv_cache_gib=1.0, max_model_len=4096)
    assert any(note_fragment in note for note in plan["notes"]), plan["notes"]


def test_qwen3_has_no_sliding_window_note():
    # sliding_window is null and use_sliding_window false in Qwen3's config.
    plan = plan_memory(load("qwen3-30b-a3b"), kv_cache_gib=4.30, **SEED)
    assert not any("sliding" in note for note in plan["notes"])


# ---------------------------------------------------------------------------------------------
# text_config and defaults from the config
# ---------------------------------------------------------------------------------------------


def test_text_config_returns_the_nested_language_model():
    config = load("qwen3-vl-30b-a3b-instruct")
    text = text_config(config)
    assert text["num_hidden_layers"] == 48
    assert text["model_type"] == "qwen3_vl_moe_text"
    assert "vision_config" not in text


def test_text_config_of_a_text_only_model_is_a_copy():
    config = load("meta-llama-3.1-8b")
    text = text_config(config)
    assert text == config
    text["num_hidden_layers"] = 1
    assert config["num_hidden_layers"] == 32


def test_text_config_carries_top_level_dtype_into_the_nested_part():
    config = {"torch_dtype": "float16", "llm_config": {"num_hidden_layers": 2}}
    assert text_config(config) == {"num_hidden_layers": 2, "torch_dtype": "float16"}


@pytest.mark.parametrize(
    ("fixture", "expected_len"),
    [
        ("qwen3-30b-a3b", 40_960),
        ("gpt2", 1024),  # n_positions
        ("qwen3-vl-30b-a3b-instruct", 262_144),  # from text_config
    ],
)
def test_max_model_len_defaults_to_the_config(fixture, expected_len):
    plan = plan_memory(load(fixture), kv_cache_gib=1.0)
    assert plan["inputs"]["max_model_len"] == expected_len


# ---------------------------------------------------------------------------------------------
# Fitting and not fitting, and what would fit
# ---------------------------------------------------------------------------------------------

# Mistral-7B-v0.1 bf16 at 32K context, TP 1, default flags, one GPU of 16 / 20 / 24 GiB.
# weights 14,483,464,192 / 2**30 = 13.4888 GiB; activation: 8192 tokens (default, capped at
# max_model_len) x 16 x 4096 x 2 = 1.0 GiB + 256 x 32,000 x 4 x 8 = 0.2441 GiB; non-torch 0.20
# -> overhead 1.4441 GiB; block = 16 x 131,072 = 2 MiB.
MISTRAL_32K = {"max_model_len": 32768, "weights_bytes": MISTRAL_7B_WEIGHTS}


def test_too_small_gpu_has_no_kv_cache_at_all():
    # 16 x 0.9 = 14.4 - 13.4888 - 1.4441 = -0.5329 GiB
    plan = plan_memory(load("mistral-7b-v0.1"), gpu_memory_gib=16.0, **MISTRAL_32K)
    assert plan["kv_cache_gib"] == pytest.approx(-0.5329, abs=1e-4)
    assert plan["gpu_blocks"] == 0
    assert plan["kv_cache_tokens"] == 0
    assert plan["fits"] is False
    assert any("leave no KV cache" in note for note in plan["notes"])


def test_32k_context_does_not_fit_on_a_20_gib_gpu():
    # 20 x 0.9 = 18.0 - 13.4888 - 1.4441 = 3.0671 GiB = 1570.35 blocks of 2 MiB -> 1570 -> 25,120
    plan = plan_memory(load("mistral-7b-v0.1"), gpu_memory_gib=20.0, **MISTRAL_32K)
    assert plan["gpu_blocks"] == 1570
    assert plan["kv_cache_tokens"] == 25_120
    assert plan["max_concurrency"] == 0.77
    assert plan["fits"] is False


def test_32k_context_fits_on_a_24_gib_gpu():
    # 24 x 0.9 = 21.6 - 14.9329 = 6.6671 GiB = 3413.56 blocks -> 3413 -> 54,608 tokens -> 1.67x
    plan = plan_memory(load("mistral-7b-v0.1"), gpu_memory_gib=24.0, **MISTRAL_32K)
    assert plan["gpu_blocks"] == 3413
    assert plan["kv_cache_tokens"] == 54_608
    assert plan["max_concurrency"] == 1.67
    assert plan["fits"] is True


def test_largest_fitting_max_model_len_is_the_kv_cache_in_tokens():
    got = largest_fitting_max_model_len(load("mistral-7b-v0.1"), gpu_memory_gib=20.0, **MISTRAL_32K)
    assert got == 25_120


def test_largest_fitting_max_model_len_is_capped_by_the_config():
    # 4 GiB hold 116,508 GPT-2 tokens (36,864 B each), but n_positions caps it at 1024.
    assert largest_fitting_max_model_len(load("gpt2"), kv_cache_gib=4.0, max_model_len=1024) == 1024


def test_largest_fitting_max_model_len_is_zero_without_kv():
    got = largest_fitting_max_model_len(load("mistral-7b-v0.1"), gpu_memory_gib=16.0, **MISTRAL_32K)
    assert got == 0


def test_largest_max_model_len_for_a_target_concurrency():
    # 54,608 tokens on 24 GiB shared by 2 full requests: floor(54,608 / 2) = 27,304
    got = largest_max_model_len_for_concurrency(
        load("mistral-7b-v0.1"), 2, gpu_memory_gib=24.0, **MISTRAL_32K
    )
    assert got == 27_304
    # and 5.73x of the seed's cache at 32K: floor(187,744 / 5.73) = 32,765
    seed_kv = 5867 * 786_432 / GIB
    assert (
        largest_max_model_len_for_concurrency(
            load("qwen3-30b-a3b"), 5.73, kv_cache_gib=seed_kv, **SEED
        )
        == 32_765
    )


def test_smallest_fitting_gpu_memory_utilization():
    # one 32,768-token request = 2048 blocks = 4 GiB: (13.4888 + 1.4441 + 4) / 20 = 0.9467 -> 0.95
    config = load("mistral-7b-v0.1")
    got = smallest_fitting_gpu_memory_utilization(config, gpu_memory_gib=20.0, **MISTRAL_32K)
    assert got == 0.95
    assert plan_memory(config, gpu_memory_gib=20.0, gpu_memory_utilization=0.95, **MISTRAL_32K)[
        "fits"
    ]
    assert not plan_memory(config, gpu_memory_gib=20.0, gpu_memory_utilization=0.94, **MISTRAL_32K)[
        "fits"
    ]


def test_smallest_fitting_gpu_memory_utilization_for_two_requests():
    # 65,536 tokens = 8 GiB: (14.9329 + 8) / 24 = 0.9555 -> 0.96
    got = smallest_fitting_gpu_memory_utilization(
        load("mistral-7b-v0.1"), min_concurrency=2, gpu_memory_gib=24.0, **MISTRAL_32K
    )
    assert got == 0.96


def test_smallest_fitting_gpu_memory_utilization_is_none_when_nothing_fits():
    # even 16 x 1.0 - 14.9329 = 1.07 GiB < 4 GiB
    got = smallest_fitting_gpu_memory_utilization(
        load("mistral-7b-v0.1"), gpu_memory_gib=16.0, **MISTRAL_32K
    )
    assert got is None


def test_smallest_fitting_gpu_memory_utilization_refuses_a_given_kv_size():
    with pytest.raises(ValueError, match="kv_cache_gib is fixed"):
        smallest_fitting_gpu_memory_utilization(load("qwen3-30b-a3b"), kv_cache_gib=4.3, **SEED)


def test_suggest_fit_for_a_deployment_that_does_not_fit():
    fit = suggest_fit(load("mistral-7b-v0.1"), gpu_memory_gib=20.0, **MISTRAL_32K)
    assert fit["fits"] is False
    assert fit["largest_fitting_max_model_len"] == 25_120
    assert fit["smallest_fitting_gpu_memory_utilization"] == 0.95
    assert fit["plan"]["kv_cache_tokens"] == 25_120
    assert fit["message"].startswith("does not fit: 25120 KV tokens per GPU")
    assert "max_model_len 25120" in fit["message"]
    assert "gpu_memory_utilization 0.95" in fit["message"]


def test_suggest_fit_without_kv_offers_only_more_gpus():
    fit = suggest_fit(load("mistral-7b-v0.1"), gpu_memory_gib=16.0, **MISTRAL_32K)
    assert fit["fits"] is False
    assert "fp8" not in fit["message"]
    assert "tensor_parallel_size" in fit["message"]


def test_suggest_fit_with_a_concurrency_target():
    # the seed holds 5.73 x 32K; asking for 8 x 32K does not fit, at any utilization
    fit = suggest_fit(
        load("qwen3-30b-a3b"),
        min_concurrency=8,
        gpu_memory_gib=21.66,
        weights_bytes=QWEN3_30B_A3B_WEIGHTS,
        **SEED,
    )
    assert fit["fits"] is False
    assert fit["smallest_fitting_gpu_memory_utilization"] is None
    assert fit["largest_fitting_max_model_len"] == math.floor(fit["plan"]["kv_cache_tokens"] / 8)


def test_suggest_fit_for_the_seed_fits():
    fit = suggest_fit(load("qwen3-30b-a3b"), kv_cache_gib=5867 * 786_432 / GIB, **SEED)
    assert fit["fits"] is True
    assert fit["smallest_fitting_gpu_memory_utilization"] is None  # KV size was given
    assert fit["message"] == (
        "fits: 187744 KV tokens per GPU (4.30 GiB, 5.73x max_model_len) for 1 x 32768 tokens"
    )


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def test_weights_bytes_from_a_real_index():
    index = json.loads((FIXTURES / "mistral-7b-v0.1.model.safetensors.index.json").read_text())
    assert weights_bytes_from_index(index) == 14_483_464_192


@pytest.mark.parametrize(
    "index",
    [{}, {"metadata": {}}, {"metadata": {"total_size": None}}, {"metadata": {"total_size": 0}}],
)
def test_weights_bytes_from_an_index_without_a_size(index):
    assert weights_bytes_from_index(index) is None


# The Git LFS pointer sizes of mistralai/Mistral-7B-v0.1 (SOURCES.md), plus files that are no
# weights at all.
MISTRAL_FILES = {
    "config.json": 571,
    "model-00001-of-00002.safetensors": 9_942_981_696,
    "model-00002-of-00002.safetensors": 4_540_516_344,
    "model.safetensors.index.json": 25_125,
    "pytorch_model-00001-of-00002.bin": 9_943_028_044,
    "pytorch_model-00002-of-00002.bin": 5_064_823_659,
    "pytorch_model.bin.index.json": 23_950,
    "tokenizer.model": 493_443,
}


def test_weights_bytes_from_files_prefers_safetensors():
    # 9,942,981,696 + 4,540,516,344; the .bin copies are not loaded when safetensors exist
    assert weights_bytes_from_files(MISTRAL_FILES) == 14_483_498_040


def test_weights_bytes_from_files_uses_bin_when_there_are_no_safetensors():
    bins = {k: v for k, v in MISTRAL_FILES.items() if not k.endswith(".safetensors")}
    # 9,943,028,044 + 5,064,823,659
    assert weights_bytes_from_files(bins) == 15_007_851_703


def test_weights_bytes_from_files_skips_training_state():
    files = {"model.bin": 100, "training_args.bin": 5, "optimizer.pt": 7, "sub/model2.pt": 11}
    assert weights_bytes_from_files(files) == 111


def test_weights_bytes_from_files_keeps_only_indexed_shards():
    index = json.loads((FIXTURES / "mistral-7b-v0.1.model.safetensors.index.json").read_text())
    files = {**MISTRAL_FILES, "consolidated.safetensors": 14_483_498_000}
    assert weights_bytes_from_files(files) == 14_483_498_040 + 14_483_498_000
    assert weights_bytes_from_files(files, index) == 14_483_498_040


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"block_size": 24}, "block_size must be one of 1, 8, 16, 32, 64, 128"),
        ({"kv_cache_dtype": "int8"}, "kv_cache_dtype must be one of auto, bfloat16"),
        ({"dtype": "fp16"}, "dtype must be one of auto, half"),
        ({"gpu_memory_utilization": 0}, r"gpu_memory_utilization must be a number in \(0, 1\]"),
        ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization must be a number in \(0, 1\]"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be an integer >= 1"),
        (
            {"tensor_parallel_size": 3},
            # Qwen3-30B-A3B: 32 heads, 4 KV heads; 8 and 16 replicate the KV heads.
            "tensor_parallel_size 3 does not divide the model's 32 attention heads: "
            "use one of 1, 2, 4, 8, 16",
        ),
        ({"tensor_parallel_size": 2.0}, "tensor_parallel_size must be an integer >= 1"),
        ({"max_model_len": -1}, "max_model_len must be a positive integer"),
        ({"gpu_memory_gib": 0}, "gpu_memory_gib must be a positive number"),
        ({"swap_space_gib": -4}, "swap_space_gib must be a number >= 0"),
        ({"gpu_memory_gib": math.inf}, "gpu_memory_gib must be a positive number, got inf"),
        ({"kv_cache_gib": math.nan}, "kv_cache_gib must be a number >= 0, got nan"),
        ({"swap_space_gib": math.inf}, "swap_space_gib must be a number >= 0, got inf"),
        ({"weights_bytes": "61GB"}, "weights_bytes must be a positive integer"),
    ],
)
def test_invalid_inputs_name_the_parameter(overrides, message):
    kwargs = {
        "gpu_memory_gib": 21.66,
        "weights_bytes": QWEN3_30B_A3B_WEIGHTS,
        "max_model_len": 32768,
        **overrides,
    }
    with pytest.raises(ValueError, match=message):
        plan_memory(load("qwen3-30b-a3b"), **kwargs)


def test_kv_heads_that_tp_cannot_split():
    # Llama-3.1-70B: 64 heads and 8 KV heads; TP 32 splits the heads but 32 is a multiple of 8,
    # TP 64 likewise; a made-up 6-KV-head config with TP 4 is refused as vLLM refuses it.
    assert kv_bytes_per_token(load("meta-llama-3.1-70b"), 32) == 2 * 80 * 1 * 128 * 2
    config = {**load("meta-llama-3.1-8b"), "num_key_value_heads": 6, "num_attention_heads": 24}
    with pytest.raises(
        ValueError, match=r"does not divide the model's 6 KV heads: use one of 1, 2, 3, 6, 12$"
    ):
        kv_bytes_per_token(config, 4)


def test_predicting_needs_gpu_memory_and_weights():
    with pytest.raises(ValueError, match="pass gpu_memory_gib and weights_bytes"):
        plan_memory(load("qwen3-30b-a3b"), gpu_memory_gib=21.66)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_attention_heads": 8, "hidden_size": 512}, "lacks the layer count"),
        ({"num_hidden_layers": 2, "hidden_size": 512}, "lacks the attention head count"),
        ({"num_hidden_layers": 2, "num_attention_heads": 8}, "neither head_dim nor hidden_size"),
        ({"num_hidden_layers": 2, "kv_lora_rank": 512}, "lacks qk_rope_head_dim"),
        ({"num_hidden_layers": "two", "num_attention_heads": 8}, "num_hidden_layers must be an"),
    ],
)
def test_missing_config_keys_are_named(config, message):
    with pytest.raises(ValueError, match=message):
        kv_bytes_per_token(config)


def test_model_config_must_be_a_dict():
    with pytest.raises(ValueError, match="model_config must be a dict"):
        text_config(["not", "a", "config"])


def test_max_model_len_is_needed_when_the_config_has_none():
    config = {"num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 512}
    with pytest.raises(ValueError, match="max_model_len is not given"):
        plan_memory(config, kv_cache_gib=1.0)


def test_max_model_len_beyond_the_config_is_noted():
    plan = plan_memory(load("gpt2"), kv_cache_gib=1.0, max_model_len=2048)
    assert any("exceeds the config's 1024" in note for note in plan["notes"])


def test_constants_match_the_documented_calibration():
    # The docstring and the filter documentation promise these; a change must be deliberate.
    assert vllm_memory.NON_TORCH_GIB == 0.20
    assert vllm_memory.FORWARD_ACTIVATION_FACTOR == 16
    assert vllm_memory.SAMPLER_FLOAT32_COPIES == 8
    assert vllm_memory.BLOCK_SIZES == (1, 8, 16, 32, 64, 128)


@pytest.mark.parametrize(
    "key", ["num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers"]
)
def test_a_zero_in_the_geometry_names_the_config_key(key):
    config = {**load("qwen3-30b-a3b"), key: 0}
    with pytest.raises(
        ValueError, match=f"model config key {key} must be a positive integer, got 0"
    ):
        plan_memory(config, gpu_memory_gib=21.66, weights_bytes=QWEN3_30B_A3B_WEIGHTS)


def test_a_zero_mla_rank_names_the_config_key():
    config = {**load("deepseek-v3"), "kv_lora_rank": 0}
    with pytest.raises(
        ValueError, match="model config key kv_lora_rank must be a positive integer"
    ):
        kv_bytes_per_token(config, 8)
