"""Preflight: the model directory, the GPUs and the fit decision (seed figures from facts/vllm.md).

The seed: Qwen3-30B-A3B (config fixture), TP 4, fp16, block 32, 0.93 of 4 x 22528 MiB cards that
vLLM sees as 21.66 GiB; vLLM reported 4.30 GiB KV cache, 5867 blocks, 5.73x for 32768 tokens.
"""

import json
from pathlib import Path

import pytest
from seed_deployment import (
    QWEN3_30B_A3B_CONFIG,
    QWEN3_30B_A3B_WEIGHTS,
    SEED_ENGINE,
    SEED_GPU_MEMORY_GIB,
    SEED_GPUS,
    SEED_SWAP_SPACE_GIB,
)

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import parse_query_csv
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import compare_plan
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_preflight import (
    PreflightError,
    compatibility_problems,
    derived_max_model_len,
    gpus_per_node,
    read_model_dir,
    run_preflight,
    usable_gpu_memory_gib,
)

CONFIGS = Path(__file__).resolve().parents[3] / "fixtures" / "model_configs"
NVIDIA_SMI = CONFIGS.parent / "nvidia_smi"
QWEN = QWEN3_30B_A3B_CONFIG
QWEN_WEIGHTS = QWEN3_30B_A3B_WEIGHTS
SEED = {
    "weights_bytes": QWEN_WEIGHTS,
    "gpu_memory_gib": SEED_GPU_MEMORY_GIB,
    **SEED_ENGINE,
    "swap_space_gib": SEED_SWAP_SPACE_GIB,
}


def test_seed_gpus_give_vllms_total_memory():
    assert usable_gpu_memory_gib(SEED_GPUS, 4) == 21.66


def test_smallest_card_bounds_the_budget():
    gpus = [{"memory_total_mib": 81559}, {"memory_total_mib": 40960}]
    assert usable_gpu_memory_gib(gpus, 2, reserved_gib=0.0) == 40.0


@pytest.mark.parametrize(
    ("gpus", "tp", "message"),
    [
        ([], 1, "lists no GPUs"),
        (SEED_GPUS[:2], 4, "tensor_parallel_size 4 needs 4 GPUs, nvidia-smi lists 2"),
        ([{"memory_total_mib": None}], 1, "memory.total"),
    ],
)
def test_gpu_problems_are_named(gpus, tp, message):
    with pytest.raises(PreflightError, match=message):
        usable_gpu_memory_gib(gpus, tp)


def test_seed_fits_within_one_percent_of_what_vllm_reported():
    result = run_preflight(QWEN, **SEED)
    assert result["fits"] is True
    assert result["autotuned"] is None
    plan = result["plan"]
    assert plan["kv_cache_gib"] == pytest.approx(4.30, abs=0.05)
    assert plan["gpu_blocks"] == pytest.approx(5867, rel=0.01)
    assert plan["max_concurrency"] == pytest.approx(5.73, rel=0.01)
    assert plan["cpu_blocks"] == 21845
    assert result["settings"] == {"max_model_len": 32768, "gpu_memory_utilization": 0.93}
    assert result["message"].startswith("fits: ")


def test_concurrency_target_above_what_fits_fails_with_the_way_out():
    result = run_preflight(QWEN, **SEED, min_concurrency=8)
    assert result["fits"] is False
    longest = result["suggestion"]["largest_fitting_max_model_len"]
    assert 20000 < longest < 32768
    assert f"max_model_len {longest}" in result["message"]
    # 8 x 32768 tokens need 6 GiB of KV cache beside 15.9 GiB of weights and overhead: no
    # utilization of a 21.66 GiB card gives that, and the message does not pretend otherwise.
    assert result["suggestion"]["smallest_fitting_gpu_memory_utilization"] is None
    assert "gpu_memory_utilization" not in result["message"]


def test_a_higher_utilization_is_offered_when_one_exists():
    result = run_preflight(QWEN, **SEED, min_concurrency=6)
    assert result["fits"] is False
    utilization = result["suggestion"]["smallest_fitting_gpu_memory_utilization"]
    assert 0.93 < utilization <= 1.0
    assert f"gpu_memory_utilization {utilization:.2f}" in result["message"]


def test_autotune_raises_utilization_within_the_cap_first():
    # 6 x 32768 needs a little more than the seed's 5.76x: a higher utilization gives it.
    result = run_preflight(QWEN, **SEED, min_concurrency=6, autotune=True)
    assert result["fits"] is True
    assert set(result["autotuned"]["changed"]) == {"gpu_memory_utilization"}
    chosen = result["settings"]["gpu_memory_utilization"]
    assert 0.93 < chosen <= 0.95
    assert result["settings"]["max_model_len"] == 32768
    assert result["plan"]["max_concurrency"] >= 6
    assert result["message"].startswith("autotuned: gpu_memory_utilization 0.93 -> ")


def test_autotune_shortens_the_context_when_the_cap_is_not_enough():
    result = run_preflight(QWEN, **SEED, min_concurrency=12, autotune=True)
    assert result["fits"] is True
    assert set(result["autotuned"]["changed"]) == {"max_model_len"}
    length = result["settings"]["max_model_len"]
    assert result["plan"]["kv_cache_tokens"] >= 12 * length
    assert result["plan"]["kv_cache_tokens"] < 12 * (length + 32)
    assert result["settings"]["gpu_memory_utilization"] == 0.93
    assert "max_model_len 32768 -> " in result["autotuned"]["reason"]


def test_weights_larger_than_the_cards_cannot_be_autotuned():
    small = dict(SEED, gpu_memory_gib=15.0)
    result = run_preflight(QWEN, **small, autotune=True)
    assert result["fits"] is False
    assert result["message"].startswith("does not fit: ")
    assert result["message"].endswith("autotune found no setting that fits")


def make_model(path: Path, files: dict[str, bytes], config: dict | None = QWEN) -> Path:
    path.mkdir()
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    for name, content in files.items():
        (path / name).write_bytes(content)
    return path


def test_model_dir_prefers_the_index_total(tmp_path):
    index = {"metadata": {"total_size": 123456}, "weight_map": {"a": "model-00001.safetensors"}}
    model = make_model(
        tmp_path / "m",
        {
            "model-00001.safetensors": b"x" * 10,
            "model.safetensors.index.json": json.dumps(index).encode(),
        },
    )
    read = read_model_dir(str(model))
    assert read["weights_bytes"] == 123456
    assert read["weights_source"] == "index metadata.total_size"
    assert read["config"]["num_key_value_heads"] == 4


def test_model_dir_without_index_sums_safetensors_over_bin(tmp_path):
    model = make_model(
        tmp_path / "m",
        {"model.safetensors": b"x" * 100, "pytorch_model.bin": b"x" * 90, "README.md": b"x"},
    )
    read = read_model_dir(str(model))
    assert read["weights_bytes"] == 100
    assert read["weights_source"] == "weight file sizes"


@pytest.mark.parametrize(
    ("files", "config", "message"),
    [
        ({"model.safetensors": b"x"}, None, "config.json is missing"),
        ({}, QWEN, "holds no weight files"),
        ({"model.safetensors.index.json": b"{", "model.safetensors": b"x"}, QWEN, "not valid JSON"),
    ],
)
def test_model_dir_problems_are_named(tmp_path, files, config, message):
    model = make_model(tmp_path / "m", files, config)
    with pytest.raises(PreflightError, match=message):
        read_model_dir(str(model))


def test_missing_model_dir_says_sync_first(tmp_path):
    with pytest.raises(PreflightError, match="sync the model first"):
        read_model_dir(str(tmp_path / "absent"))


def test_plan_and_report_side_by_side():
    plan = run_preflight(QWEN, **SEED)["plan"]
    report = {"kv_cache_gib": 4.30, "weights_gib": 14.25, "gpu_blocks": 5867,
              "kv_cache_tokens": 187744, "max_concurrency": 5.73}  # fmt: skip
    # The module reports the comparison with vllm_container's compare_plan: one implementation.
    rows = compare_plan(plan, report)
    assert rows["gpu_blocks"]["measured"] == 5867
    assert abs(rows["gpu_blocks"]["error_pct"]) < 1.0
    assert abs(rows["kv_cache_gib"]["error_pct"]) < 1.0


# The CPU engine is given its KV space (VLLM_CPU_KVCACHE_SPACE=1) instead of deriving it: the
# real vLLM 0.32.0 CPU engine logged "CPU KV cache size: 1,048,576 tokens, Maximum concurrency
# for 2,048 tokens per request: 512.00x" for this model (real_cpu_0.32.0_tp1_success.log).
TINY = json.loads((CONFIGS / "llmops-tiny-qwen3-moe.json").read_text())
TINY_CPU = {
    "weights_bytes": 8_000_000,
    "gpu_memory_gib": 21.66,
    "tensor_parallel_size": 1,
    "dtype": "bfloat16",
    "max_model_len": 2048,
    "block_size": 128,
    "gpu_memory_utilization": 0.93,
    "kv_cache_gib": 1,
}


def test_a_given_kv_cache_size_plans_what_the_cpu_engine_logged():
    result = run_preflight(TINY, **TINY_CPU)
    assert result["fits"] is True
    plan = result["plan"]
    assert plan["kv_cache_source"] == "given"
    assert plan["kv_cache_tokens"] == 1_048_576
    assert plan["max_concurrency"] == 512.0
    # The GPUs' memory does not enter a given KV size.
    other = run_preflight(TINY, **dict(TINY_CPU, gpu_memory_gib=5.0))["plan"]
    assert (other["kv_cache_gib"], other["kv_cache_tokens"]) == (1.0, 1_048_576)


def test_a_given_kv_cache_too_small_names_a_larger_one():
    result = run_preflight(TINY, **TINY_CPU, min_concurrency=1024)
    assert result["fits"] is False
    assert "a larger kv_cache_gib" in result["message"]
    assert "gpu_memory_utilization" not in result["message"]
    assert result["suggestion"]["smallest_fitting_gpu_memory_utilization"] is None
    assert result["suggestion"]["largest_fitting_max_model_len"] == 1024


def test_autotune_with_a_given_kv_cache_only_shortens_the_context():
    result = run_preflight(TINY, **TINY_CPU, min_concurrency=1024, autotune=True)
    assert result["fits"] is True
    assert result["autotuned"]["changed"] == {"max_model_len": 1024}
    assert result["settings"]["gpu_memory_utilization"] == 0.93
    assert "in the given 1 GiB KV cache" in result["autotuned"]["reason"]
    assert result["plan"]["kv_cache_tokens"] == 1_048_576


# --- what vLLM refuses at startup, refused before the pull -------------------------------------
# GPUs parsed from a real nvidia-smi capture (triton-inference-server/server#8070): a TITAN V
# (SM 7.0) beside an RTX 5880 Ada (SM 8.9).
MIXED_GPUS = parse_query_csv(
    (NVIDIA_SMI / "query_compute_cap-compute_mode-driver_version-name-index.csv").read_text(),
    ["compute_cap", "compute_mode", "driver_version", "name", "index"],
)
SEED_TURING = [
    {"index": i, "name": "NVIDIA GeForce RTX 2080 Ti", "compute_capability": "7.5"}
    for i in range(4)
]
AMPERE = [
    {"index": i, "name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"} for i in range(4)
]


def problems_of(gpus, config=QWEN, **overrides):
    args = {"tensor_parallel_size": 4, "dtype": "half", "max_model_len": 32768, **overrides}
    return compatibility_problems(config, gpus, **args)


def test_the_capture_gives_each_gpu_its_capability():
    assert [gpu["compute_capability"] for gpu in MIXED_GPUS] == ["7.0", "8.9"]


def test_the_seed_on_its_turing_cards_passes():
    assert problems_of(SEED_TURING) == ([], [])


@pytest.mark.parametrize("dtype", ["bfloat16", "auto"])
def test_bf16_on_turing_is_refused_with_half_as_the_way_out(dtype):
    problems, _ = problems_of(SEED_TURING, dtype=dtype, prefix="vllm_server_")
    assert len(problems) == 1
    assert problems[0].startswith(f"vllm_server_dtype {dtype}")
    assert "SM 8.0 or newer" in problems[0]
    assert "GPU 0 (NVIDIA GeForce RTX 2080 Ti) is SM 7.5" in problems[0]
    assert problems[0].endswith("set vllm_server_dtype to half")


def test_bf16_on_ampere_passes():
    assert problems_of(AMPERE, dtype="bfloat16") == ([], [])


def test_the_weakest_card_the_deployment_uses_decides():
    # TP 1 uses GPU 0 only, the TITAN V; TP 2 uses both, and the TITAN V is still the weakest.
    for tp in (1, 2):
        problems, _ = problems_of(MIXED_GPUS, dtype="bfloat16", tensor_parallel_size=tp)
        assert "GPU 0 (NVIDIA TITAN V) is SM 7.0" in problems[0]
    reordered = list(reversed(MIXED_GPUS))
    assert problems_of(reordered, dtype="bfloat16", tensor_parallel_size=1) == ([], [])


def test_e4m3_kv_cache_below_ada_is_a_warning_naming_e5m2():
    # vllm#26431 (RTX 3090, SM 8.6), #35720, #47549: e4m3 KV fails in the V1 Triton attention.
    for kv_dtype in ("fp8", "fp8_e4m3"):
        problems, notes = problems_of(AMPERE, kv_cache_dtype=kv_dtype, prefix="vllm_server_")
        assert problems == []
        assert notes == [
            f"vllm_server_kv_cache_dtype {kv_dtype} (e4m3) on SM 8.0: vLLM's V1 Triton attention "
            "needs SM 8.9 for it and fails at startup on some versions; vllm_server_kv_cache_dtype "
            "fp8_e5m2 or auto if it does"
        ]
    assert problems_of(SEED_TURING, kv_cache_dtype="fp8_e5m2") == ([], [])
    assert problems_of(MIXED_GPUS[1:], kv_cache_dtype="fp8", tensor_parallel_size=1) == ([], [])


def test_an_fp8_checkpoint_below_ada_is_a_warning():
    fp8 = dict(QWEN, quantization_config={"quant_method": "fp8", "fmt": "e4m3"})
    for gpus in (SEED_TURING, AMPERE):
        problems, notes = problems_of(gpus, config=fp8)
        assert problems == []
        assert "weight-only (Marlin)" in notes[0]


def test_without_compute_capability_the_dtype_is_not_checked_and_says_so():
    problems, notes = problems_of(SEED_GPUS, dtype="bfloat16")
    assert problems == []
    assert notes == ["nvidia-smi gave no compute capability: dtype and fp8 support not checked"]


def test_max_model_len_above_the_models_limit_is_refused():
    # Qwen3-30B-A3B's config: max_position_embeddings 40960, no rope_scaling.
    problems, _ = problems_of(SEED_TURING, max_model_len=131072, prefix="vllm_server_")
    assert problems == [
        "vllm_server_max_model_len 131072 is above the model's 40960 tokens (config.json): vLLM "
        "refuses it at startup; lower it, or set vllm_server_rope_scaling (for example yarn with "
        "a factor) to stretch the context"
    ]


def test_the_seeds_yarn_scaling_stretches_the_limit():
    # The seed's long-context variant: yarn factor 4 on 32768 original positions = 131072.
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert derived_max_model_len(QWEN, yarn) == 131072
    assert problems_of(SEED_TURING, max_model_len=131072, rope_scaling=yarn) == ([], [])
    assert problems_of(SEED_TURING, max_model_len=131073, rope_scaling=yarn)[0]


def test_llama3_rope_does_not_stretch_and_the_env_override_allows_longer():
    llama = json.loads((CONFIGS / "meta-llama-3.1-8b.json").read_text())
    limit = derived_max_model_len(llama)
    assert limit == llama["max_position_embeddings"]
    args = {"tensor_parallel_size": 1, "dtype": "bfloat16", "max_model_len": limit + 1}
    assert compatibility_problems(llama, AMPERE, **args)[0]
    assert compatibility_problems(llama, AMPERE, allow_long_max_model_len=True, **args) == ([], [])


# A serving cluster's member (vllm_server_cluster_group): this host runs TP x PP / nnodes ranks.


def test_a_cluster_member_plans_its_own_ranks():
    # The seed's 4 cards on each of two hosts, TP 8 across them: each host runs 4 ranks.
    assert gpus_per_node(8, 1, 2) == 4
    assert usable_gpu_memory_gib(SEED_GPUS, 8, pipeline_parallel_size=1, nnodes=2) == 21.66
    # TP 4 x PP 2 over two hosts: 4 ranks each too.
    assert gpus_per_node(4, 2, 2) == 4


@pytest.mark.parametrize(
    ("tp", "pp", "nnodes", "message"),
    [
        (8, 2, 2, "tensor_parallel_size 8 x pipeline_parallel_size 2 over 2 hosts needs 8 GPUs "
                  "per host, nvidia-smi lists 4"),
        (3, 1, 2, "3 ranks do not split evenly over 2 hosts"),
        (4, 0, 2, "must be 1 or more"),
    ],
)  # fmt: skip
def test_a_layout_the_hosts_cannot_hold_is_named(tp, pp, nnodes, message):
    with pytest.raises(PreflightError, match=message):
        usable_gpu_memory_gib(SEED_GPUS, tp, pipeline_parallel_size=pp, nnodes=nnodes)


def test_pipeline_stages_plan_the_busiest_stage_with_its_share_of_the_weights():
    whole = run_preflight(QWEN, **SEED)
    # Qwen3-30B-A3B has 48 layers: PP 2 gives two stages of 24 on TP 4 each.
    staged = run_preflight(QWEN, **SEED, pipeline_parallel_size=2)
    plan = staged["plan"]
    assert plan["pipeline_stages"] == [24, 24]
    assert plan["pipeline_parallel_size"] == 2
    assert any("stages of [24, 24] layers" in note for note in plan["notes"])
    # Half the layers: half the KV bytes per token, and about half the weights per GPU.
    assert plan["kv_bytes_per_token"] * 2 == whole["plan"]["kv_bytes_per_token"]
    assert plan["weights_gib"] == pytest.approx(whole["plan"]["weights_gib"] / 2, rel=0.01)
    assert plan["kv_cache_tokens"] > 2 * whole["plan"]["kv_cache_tokens"]


def test_the_weakest_of_this_hosts_ranks_decides_the_dtype():
    # Two ranks per host on cards [Volta, Ada]: the Volta card runs one of them.
    problems, _ = compatibility_problems(
        QWEN, MIXED_GPUS, tensor_parallel_size=4, dtype="bfloat16", gpus_used=2
    )
    assert len(problems) == 1
    assert "SM 7.0" in problems[0]
    # One rank per host on cards [Ada, Volta]: only the Ada card runs one, bf16 is fine.
    problems, _ = compatibility_problems(
        QWEN, MIXED_GPUS[::-1], tensor_parallel_size=4, dtype="bfloat16", gpus_used=1
    )
    assert problems == []
