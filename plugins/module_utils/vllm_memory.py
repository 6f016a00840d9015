# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Predict vLLM's per-GPU memory budget from a model's config.json.

Private module_utils of llmops.gpu_serving: the API may change between releases. It is the one
implementation behind the ``vllm_memory_plan`` filter, the vllm_server role's preflight and the
vllm_container module, so that a prediction and a check never disagree on the arithmetic.

What is exact and what is estimated
-----------------------------------
Exact for full attention (the arithmetic vLLM itself does once it knows the KV memory):

* KV bytes per token per GPU = 2 (K and V) x attention layers x max(1, kv_heads // tp)
  x head_dim x bytes per element. MLA (DeepSeek V2/V3, Kimi K2, ...) caches one latent of
  kv_lora_rank + qk_rope_head_dim per layer, the same on every rank, so the factor is 1 and
  nothing is divided by tp.
* blocks = floor(KV memory / (block_size x bytes per token)), tokens = blocks x block_size,
  concurrency = tokens / max_model_len, CPU blocks = swap space / block bytes.

Estimated (vLLM measures these by profiling; we cannot):

* budget = total GPU memory x gpu_memory_utilization, and KV = budget - weights - overhead.
* weights per GPU = checkpoint bytes / tp (vocab padding and replicated norms add ~0.2 %).
* overhead = PyTorch activation peak + non-torch memory (+ CUDA graphs when asked for), for
  rank 0, the rank with the least KV memory because the sampler runs there. The activation peak
  is modelled as two terms, calibrated on the reference deployment (Qwen3-30B-A3B, TP 4,
  max_num_batched_tokens 4096, vLLM 0.8.5 V0: rank 0 1.40 GiB, ranks 1-3 0.25 GiB):

  - forward pass: max_num_batched_tokens x 16 x hidden_size x dtype bytes (0.25 GiB there,
    exactly the figure the ranks without a sampler print);
  - sampler on rank 0: min(max_num_seqs, max_num_batched_tokens) x vocab_size x 4 bytes
    x 8 float32 copies of the logits (1.16 GiB there; the difference between rank 0 and the
    others).

  Non-torch memory (CUDA context outside the caching allocator, NCCL buffers) is a constant
  0.20 GiB, the seed's figure. Pass activation_gib / non_torch_gib measured from an earlier
  startup log of the same model and flags to replace the estimate.

Attention layer count: num_hidden_layers, except for hybrids whose config says which layers
carry attention: ``layer_types`` or ``layers_block_type`` (entries other than
linear_attention / mamba / conv ... count, so sliding_attention and full_attention both count)
and Nemotron-H's
``hybrid_override_pattern`` ('*' marks an attention layer). Non-attention layers keep a
fixed-size recurrent state in vLLM, not per-token KV, which this module does not model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

GIB = 2**30

# vLLM <= 0.11 accepts exactly these for --block-size (V1 flash attention wants a multiple of 16).
BLOCK_SIZES = (1, 8, 16, 32, 64, 128)

# Bytes per element of the serving dtype; None means "from the config".
DTYPE_BYTES: dict[str, int | None] = {
    "auto": None,
    "half": 2,
    "float16": 2,
    "bfloat16": 2,
    "float": 4,
    "float32": 4,
}

# Bytes per element of the KV cache; None means "same as the serving dtype".
KV_CACHE_DTYPE_BYTES: dict[str, int | None] = {
    "auto": None,
    "bfloat16": 2,
    "float16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}

# Config torch_dtype -> bytes under --dtype auto. vLLM serves float32 checkpoints in float16
# ("following common practice"), so auto never yields 4 bytes.
CONFIG_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 2, "float": 2}

# layer_types / layers_block_type entries that hold no per-token KV cache.
NON_ATTENTION_LAYER_TYPES = frozenset(
    {"linear_attention", "mamba", "mamba2", "conv", "short_conv", "recurrent", "rwkv", "ssm"}
)

NESTED_TEXT_CONFIG_KEYS = ("text_config", "llm_config", "language_config")
# Multimodal configs often keep these beside text_config instead of inside it.
TOP_LEVEL_FALLBACK_KEYS = ("torch_dtype", "dtype", "vocab_size")

LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")
ATTENTION_HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads", "num_heads")
KV_HEAD_KEYS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
HEAD_DIM_KEYS = ("head_dim", "attention_head_dim")
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")

# Overhead model (see the module docstring); calibrated on the seed deployment.
NON_TORCH_GIB = 0.20
FORWARD_ACTIVATION_FACTOR = 16
SAMPLER_FLOAT32_COPIES = 8
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192

WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".pt")
# Files with those suffixes that vLLM's loader skips: training state, not weights.
NON_WEIGHT_FILES = frozenset(
    {"training_args.bin", "optimizer.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"}
)


def text_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the language-model part of a config.json.

    Multimodal models nest it (``text_config`` in Qwen-VL, Gemma 3, Llama 3.2 Vision;
    ``llm_config`` in InternVL); dtype and vocab_size may stay at the top level and are
    carried over when the nested part lacks them. A text-only config is returned as a copy.
    """
    if not isinstance(model_config, Mapping):
        raise ValueError(
            "model_config must be a dict (the parsed config.json), "
            f"got {type(model_config).__name__}"
        )
    for key in NESTED_TEXT_CONFIG_KEYS:
        nested = model_config.get(key)
        if isinstance(nested, Mapping):
            merged = dict(nested)
            for fallback in TOP_LEVEL_FALLBACK_KEYS:
                if merged.get(fallback) is None and model_config.get(fallback) is not None:
                    merged[fallback] = model_config[fallback]
            return merged
    return dict(model_config)


def kv_bytes_per_token(
    model_config: Mapping[str, Any],
    tensor_parallel_size: int = 1,
    kv_cache_dtype: str = "auto",
    dtype: str = "auto",
) -> int:
    """KV-cache bytes one token occupies on one GPU (see the module docstring for the formula)."""
    return _kv_geometry(model_config, tensor_parallel_size, kv_cache_dtype, dtype)[
        "bytes_per_token"
    ]


def plan_memory(
    model_config: Mapping[str, Any],
    *,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    max_model_len: int | None = None,
    block_size: int = 16,
    gpu_memory_utilization: float = 0.9,
    gpu_memory_gib: float | None = None,
    weights_bytes: int | None = None,
    kv_cache_gib: float | None = None,
    kv_cache_dtype: str = "auto",
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    swap_space_gib: float | None = None,
    activation_gib: float | None = None,
    non_torch_gib: float | None = None,
    cuda_graph_gib: float = 0.0,
) -> dict[str, Any]:
    """Predict what vLLM will report for one GPU (rank 0) of a deployment.

    Either ``kv_cache_gib`` (for instance read from a startup log) or both ``gpu_memory_gib``
    and ``weights_bytes`` are needed. Returns a dict of the figures vLLM logs plus ``fits``,
    ``notes`` (what this arithmetic cannot know) and ``inputs`` (every input, resolved).
    """
    cfg = text_config(model_config)
    geometry = _kv_geometry(cfg, tensor_parallel_size, kv_cache_dtype, dtype)
    _check_block_size(block_size)
    _check_fraction("gpu_memory_utilization", gpu_memory_utilization)
    _check_positive_number("gpu_memory_gib", gpu_memory_gib, allow_none=True)
    _check_non_negative_number("kv_cache_gib", kv_cache_gib, allow_none=True)
    _check_non_negative_number("swap_space_gib", swap_space_gib, allow_none=True)
    _check_non_negative_number("activation_gib", activation_gib, allow_none=True)
    _check_non_negative_number("non_torch_gib", non_torch_gib, allow_none=True)
    _check_non_negative_number("cuda_graph_gib", cuda_graph_gib, allow_none=False)
    if weights_bytes is not None:
        _check_positive_int("weights_bytes", weights_bytes)
    if max_num_seqs is not None:
        _check_positive_int("max_num_seqs", max_num_seqs)

    notes: list[str] = list(geometry["notes"])
    config_max_len = _first_int(cfg, MAX_LEN_KEYS)
    if max_model_len is None:
        if config_max_len is None:
            raise ValueError(
                "max_model_len is not given and the model config has none of "
                f"{', '.join(MAX_LEN_KEYS)}; pass max_model_len"
            )
        max_model_len = config_max_len
    _check_positive_int("max_model_len", max_model_len)
    if config_max_len is not None and max_model_len > config_max_len:
        notes.append(
            f"max_model_len {max_model_len} exceeds the config's {config_max_len}: vLLM refuses "
            "it unless rope scaling in the config allows it or "
            "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 is set"
        )

    if max_num_batched_tokens is None:
        batched_tokens = min(max_model_len, DEFAULT_MAX_NUM_BATCHED_TOKENS)
        batched_tokens_note = (
            f"max_num_batched_tokens not given: assumed {batched_tokens} for the activation "
            "estimate (vLLM's default depends on version, engine and GPU)"
        )
    else:
        _check_positive_int("max_num_batched_tokens", max_num_batched_tokens)
        batched_tokens = max_num_batched_tokens
        batched_tokens_note = ""
    num_seqs = DEFAULT_MAX_NUM_SEQS if max_num_seqs is None else max_num_seqs

    tp = tensor_parallel_size
    bytes_per_token = geometry["bytes_per_token"]
    block_bytes = bytes_per_token * block_size
    weights_gib = None if weights_bytes is None else weights_bytes / tp / GIB
    budget_gib = None if gpu_memory_gib is None else gpu_memory_gib * gpu_memory_utilization

    if activation_gib is None:
        activation_gib = _estimate_activation_gib(
            cfg, geometry["dtype_bytes"], batched_tokens, num_seqs
        )
        estimated_activation = True
    else:
        estimated_activation = False
    if non_torch_gib is None:
        non_torch_gib = NON_TORCH_GIB
        estimated_non_torch = True
    else:
        estimated_non_torch = False
    overhead_gib = activation_gib + non_torch_gib + cuda_graph_gib

    if kv_cache_gib is not None:
        kv_source = "given"
        kv_gib = float(kv_cache_gib)
    else:
        if budget_gib is None or weights_gib is None:
            raise ValueError(
                "to predict the KV cache pass gpu_memory_gib and weights_bytes "
                "(or pass kv_cache_gib to plan from a known KV cache size)"
            )
        kv_source = "predicted"
        kv_gib = budget_gib - weights_gib - overhead_gib
        if batched_tokens_note:
            notes.append(batched_tokens_note)
        if estimated_activation or estimated_non_torch:
            notes.append(
                "activation peak and non-torch memory are estimates calibrated on "
                "Qwen3-30B-A3B TP 4 (vLLM 0.8.5 V0); pass activation_gib and non_torch_gib "
                "from an earlier startup log for exact figures"
            )
        if cuda_graph_gib == 0:
            notes.append(
                "CUDA graph memory not counted (V0 leaves it outside the budget; V1 >= 0.21 "
                "profiles it): pass cuda_graph_gib when planning for V1"
            )
        if kv_gib <= 0:
            notes.append(
                f"weights ({weights_gib:.2f} GiB) and overhead ({overhead_gib:.2f} GiB) leave "
                f"no KV cache in a {budget_gib:.2f} GiB budget"
            )

    gpu_blocks = max(0, math.floor(kv_gib * GIB / block_bytes)) if kv_gib > 0 else 0
    kv_cache_tokens = gpu_blocks * block_size
    cpu_blocks = None if swap_space_gib is None else math.floor(swap_space_gib * GIB / block_bytes)
    fits = kv_gib > 0 and kv_cache_tokens >= max_model_len
    if geometry["moe"] and kv_source == "predicted":
        notes.append("MoE model: the fused-MoE workspace in the activation peak is approximate")

    return {
        "kv_bytes_per_token": bytes_per_token,
        "block_bytes": block_bytes,
        "weights_gib": _round_gib(weights_gib),
        "budget_gib": _round_gib(budget_gib),
        "activation_gib": _round_gib(activation_gib),
        "non_torch_gib": _round_gib(non_torch_gib),
        "cuda_graph_gib": _round_gib(cuda_graph_gib),
        "overhead_gib": _round_gib(overhead_gib),
        "kv_cache_gib": _round_gib(kv_gib),
        "kv_cache_source": kv_source,
        "gpu_blocks": gpu_blocks,
        "cpu_blocks": cpu_blocks,
        "kv_cache_tokens": kv_cache_tokens,
        "max_concurrency": round(kv_cache_tokens / max_model_len, 2),
        "fits": fits,
        "attention_layers": geometry["attention_layers"],
        "kv_heads_per_gpu": geometry["kv_heads_per_gpu"],
        "head_dim": geometry["head_dim"],
        "mla": geometry["mla"],
        "dtype_bytes": geometry["dtype_bytes"],
        "kv_cache_dtype_bytes": geometry["kv_cache_dtype_bytes"],
        "notes": notes,
        "inputs": {
            "tensor_parallel_size": tp,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "block_size": block_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "gpu_memory_gib": gpu_memory_gib,
            "weights_bytes": weights_bytes,
            "kv_cache_gib": kv_cache_gib,
            "kv_cache_dtype": kv_cache_dtype,
            "max_num_batched_tokens": batched_tokens,
            "max_num_seqs": num_seqs,
            "swap_space_gib": swap_space_gib,
        },
    }


def largest_fitting_max_model_len(model_config: Mapping[str, Any], **plan_kwargs: Any) -> int:
    """Largest max_model_len whose one request fits the KV cache planned with ``plan_kwargs``.

    Capped at the config's max_position_embeddings; 0 when not even one block is left. The
    plan's activation estimate is kept as planned (a shorter max_model_len can only lower it),
    so the answer is on the safe side.
    """
    return largest_max_model_len_for_concurrency(model_config, 1.0, **plan_kwargs)


def largest_max_model_len_for_concurrency(
    model_config: Mapping[str, Any], min_concurrency: float, **plan_kwargs: Any
) -> int:
    """Largest max_model_len at which the KV cache holds ``min_concurrency`` full requests."""
    _check_positive_number("min_concurrency", min_concurrency, allow_none=False)
    plan = plan_memory(model_config, **plan_kwargs)
    longest = math.floor(plan["kv_cache_tokens"] / min_concurrency)
    config_max_len = _first_int(text_config(model_config), MAX_LEN_KEYS)
    if config_max_len is not None:
        longest = min(longest, config_max_len)
    return max(0, longest)


def smallest_fitting_gpu_memory_utilization(
    model_config: Mapping[str, Any], *, min_concurrency: float = 1.0, **plan_kwargs: Any
) -> float | None:
    """Smallest gpu_memory_utilization (2 decimals) giving ``min_concurrency`` x max_model_len.

    Needs gpu_memory_gib and weights_bytes; None when even 1.0 is not enough.
    """
    _check_positive_number("min_concurrency", min_concurrency, allow_none=False)
    if plan_kwargs.get("kv_cache_gib") is not None:
        raise ValueError("kv_cache_gib is fixed, so no gpu_memory_utilization can change it")
    plan = plan_memory(model_config, **plan_kwargs)
    max_model_len = plan["inputs"]["max_model_len"]
    block_size = plan["inputs"]["block_size"]
    needed_tokens = math.ceil(min_concurrency * max_model_len)
    needed_kv_bytes = math.ceil(needed_tokens / block_size) * plan["block_bytes"]
    fixed_gib = plan["weights_gib"] + plan["overhead_gib"]
    needed = (fixed_gib + needed_kv_bytes / GIB) / plan["inputs"]["gpu_memory_gib"]
    # Start one step below the arithmetic answer (the plan's figures are rounded) and step up
    # until the plan itself, with its floor() on blocks, agrees.
    candidate = max(0.01, math.ceil(needed * 100) / 100 - 0.01)
    while candidate <= 1.0:
        trial = plan_memory(model_config, **{**plan_kwargs, "gpu_memory_utilization": candidate})
        if trial["kv_cache_tokens"] >= needed_tokens:
            return candidate
        candidate = round(candidate + 0.01, 2)
    return None


def suggest_fit(
    model_config: Mapping[str, Any], *, min_concurrency: float = 1.0, **plan_kwargs: Any
) -> dict[str, Any]:
    """Plan, and say what would fit: the preflight's message when a deployment does not fit.

    Returns ``plan``, ``fits`` (at least ``min_concurrency`` full-length requests),
    ``largest_fitting_max_model_len`` (for ``min_concurrency``),
    ``smallest_fitting_gpu_memory_utilization`` (None when the KV size was given or nothing
    up to 1.0 fits) and ``message``.
    """
    plan = plan_memory(model_config, **plan_kwargs)
    max_model_len = plan["inputs"]["max_model_len"]
    fits = plan["fits"] and plan["kv_cache_tokens"] >= min_concurrency * max_model_len
    longest = largest_max_model_len_for_concurrency(model_config, min_concurrency, **plan_kwargs)
    utilization = None
    if plan["kv_cache_source"] == "predicted":
        utilization = smallest_fitting_gpu_memory_utilization(
            model_config, min_concurrency=min_concurrency, **plan_kwargs
        )
    wanted = f"{min_concurrency:g} x {max_model_len} tokens"
    have = (
        f"{plan['kv_cache_tokens']} KV tokens per GPU ({plan['kv_cache_gib']:.2f} GiB, "
        f"{plan['max_concurrency']:.2f}x max_model_len)"
    )
    if fits:
        message = f"fits: {have} for {wanted}"
    else:
        options = []
        if longest > 0:
            options.append(f"max_model_len {longest}")
        if utilization is not None:
            options.append(f"gpu_memory_utilization {utilization:.2f}")
        if plan["kv_cache_source"] == "given":
            options.append("a larger kv_cache_gib")
        if plan["kv_cache_gib"] > 0:
            options.append("an fp8 kv_cache_dtype")
        options.append("more GPUs (a larger tensor_parallel_size)")
        message = f"does not fit: {have}, {wanted} wanted; would fit with " + ", or ".join(options)
    return {
        "fits": fits,
        "plan": plan,
        "largest_fitting_max_model_len": longest,
        "smallest_fitting_gpu_memory_utilization": utilization,
        "message": message,
    }


def weights_bytes_from_index(index_json: Mapping[str, Any]) -> int | None:
    """``metadata.total_size`` of a model.safetensors.index.json (None when it has none)."""
    if not isinstance(index_json, Mapping):
        raise ValueError(
            f"index_json must be a dict (the parsed index file), got {type(index_json).__name__}"
        )
    metadata = index_json.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    total = metadata.get("total_size")
    if isinstance(total, bool) or total is None:
        return None
    try:
        total_int = int(total)
    except (TypeError, ValueError):
        return None
    return total_int if total_int > 0 else None


def weights_bytes_from_files(
    sizes: Mapping[str, int], index_json: Mapping[str, Any] | None = None
) -> int:
    """Sum the sizes of the weight files vLLM would load from a model directory.

    ``sizes`` maps file names (or paths) to bytes. Like vLLM's loader, safetensors win when a
    directory holds both safetensors and .bin/.pt copies (HF repos often ship both), training
    state files are skipped, and with ``index_json`` only the shards its weight_map names count
    (a consolidated.safetensors beside the sharded ones is then left out).
    """
    if not isinstance(sizes, Mapping):
        raise ValueError(f"sizes must be a dict of file name -> bytes, got {type(sizes).__name__}")
    weight_files: dict[str, int] = {}
    for name, size in sizes.items():
        base = str(name).rsplit("/", 1)[-1]
        if not base.endswith(WEIGHT_FILE_SUFFIXES) or base in NON_WEIGHT_FILES:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size of {name} must be a non-negative integer, got {size!r}")
        weight_files[base] = weight_files.get(base, 0) + size
    safetensors = {n: s for n, s in weight_files.items() if n.endswith(".safetensors")}
    chosen = safetensors or weight_files
    if index_json is not None:
        weight_map = index_json.get("weight_map") if isinstance(index_json, Mapping) else None
        if isinstance(weight_map, Mapping):
            indexed = {str(shard).rsplit("/", 1)[-1] for shard in weight_map.values()}
            chosen = {n: s for n, s in chosen.items() if n in indexed}
    return sum(chosen.values())


def _kv_geometry(
    model_config: Mapping[str, Any], tensor_parallel_size: int, kv_cache_dtype: str, dtype: str
) -> dict[str, Any]:
    cfg = text_config(model_config)
    _check_tensor_parallel_size(tensor_parallel_size)
    notes: list[str] = []
    dtype_bytes = _serving_dtype_bytes(cfg, dtype, notes)
    if kv_cache_dtype not in KV_CACHE_DTYPE_BYTES:
        raise ValueError(
            f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPE_BYTES)}, "
            f"got {kv_cache_dtype!r}"
        )
    kv_dtype_bytes = KV_CACHE_DTYPE_BYTES[kv_cache_dtype] or dtype_bytes

    attention_layers = _attention_layer_count(cfg, notes)
    num_heads = _first_int(cfg, ATTENTION_HEAD_KEYS, positive=True)
    mla = cfg.get("kv_lora_rank") is not None
    if mla:
        rope_dim = _first_int(cfg, ("qk_rope_head_dim",), positive=True)
        if rope_dim is None:
            raise ValueError("MLA config (kv_lora_rank set) lacks qk_rope_head_dim")
        head_dim = (_first_int(cfg, ("kv_lora_rank",), positive=True) or 0) + rope_dim
        kv_heads_per_gpu = 1
        factor = 1
        if kv_dtype_bytes == 1:
            notes.append(
                "MLA with an fp8 KV cache: some vLLM backends add per-token scales "
                "(fp8_ds_mla uses 656 bytes per layer), so the real figure may be higher"
            )
    else:
        if num_heads is None:
            raise ValueError(
                "model config lacks the attention head count (one of "
                f"{', '.join(ATTENTION_HEAD_KEYS)})"
            )
        kv_heads = _first_int(cfg, KV_HEAD_KEYS, positive=True)
        if kv_heads is None:
            # No GQA key: multi-query models say so with a flag, the rest are plain MHA.
            kv_heads = 1 if cfg.get("multi_query") else num_heads
        head_dim = _first_int(cfg, HEAD_DIM_KEYS, positive=True)
        if head_dim is None:
            hidden = _first_int(cfg, HIDDEN_SIZE_KEYS, positive=True)
            if hidden is None:
                raise ValueError(
                    "model config has neither head_dim nor hidden_size (one of "
                    f"{', '.join(HIDDEN_SIZE_KEYS)}) to derive it"
                )
            head_dim = hidden // num_heads
        _check_tensor_parallel_split(num_heads, kv_heads, tensor_parallel_size)
        # vLLM replicates KV heads when tp exceeds them: each rank keeps at least one.
        kv_heads_per_gpu = max(1, kv_heads // tensor_parallel_size)
        factor = 2
    if cfg.get("sliding_window") and cfg.get("use_sliding_window", True) is not False:
        notes.append(
            f"sliding window of {cfg['sliding_window']} tokens: requests longer than the window "
            "need fewer pages than computed here (vLLM V1's hybrid allocator frees them), so "
            "real capacity can be higher"
        )
    moe = any(cfg.get(key) for key in ("num_experts", "num_local_experts", "n_routed_experts"))
    bytes_per_token = factor * attention_layers * kv_heads_per_gpu * head_dim * kv_dtype_bytes
    return {
        "bytes_per_token": bytes_per_token,
        "attention_layers": attention_layers,
        "kv_heads_per_gpu": kv_heads_per_gpu,
        "head_dim": head_dim,
        "mla": mla,
        "moe": moe,
        "dtype_bytes": dtype_bytes,
        "kv_cache_dtype_bytes": kv_dtype_bytes,
        "notes": notes,
    }


def _attention_layer_count(cfg: Mapping[str, Any], notes: list[str]) -> int:
    layers = _first_int(cfg, LAYER_COUNT_KEYS, positive=True)
    if layers is None:
        raise ValueError(
            f"model config lacks the layer count (one of {', '.join(LAYER_COUNT_KEYS)})"
        )
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        attention = pattern[:layers].count("*")
        notes.append(
            f"hybrid model: {attention} of {layers} layers hold a KV cache; the others keep "
            "a fixed recurrent state per sequence that is not modelled here"
        )
        return attention
    for key in ("layer_types", "layers_block_type"):
        kinds = cfg.get(key)
        if isinstance(kinds, list) and kinds:
            kinds = kinds[:layers]
            attention = sum(1 for kind in kinds if str(kind) not in NON_ATTENTION_LAYER_TYPES)
            if attention < len(kinds):
                notes.append(
                    f"hybrid model: {attention} of {len(kinds)} layers hold a KV cache; the "
                    "others keep a fixed recurrent state per sequence that is not modelled here"
                )
            return attention
    return layers


def _serving_dtype_bytes(cfg: Mapping[str, Any], dtype: str, notes: list[str]) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    explicit = DTYPE_BYTES[dtype]
    if explicit is not None:
        return explicit
    config_dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    name = str(config_dtype).removeprefix("torch.") if config_dtype else ""
    if name in CONFIG_DTYPE_BYTES:
        return CONFIG_DTYPE_BYTES[name]
    notes.append(
        f"dtype auto: config dtype {config_dtype!r} not recognised, assumed 2 bytes "
        "(vLLM's float16 fallback)"
    )
    return 2


def _estimate_activation_gib(
    cfg: Mapping[str, Any], dtype_bytes: int, batched_tokens: int, num_seqs: int
) -> float:
    hidden = _first_int(cfg, HIDDEN_SIZE_KEYS) or 0
    forward = batched_tokens * FORWARD_ACTIVATION_FACTOR * hidden * dtype_bytes
    vocab = _first_int(cfg, ("vocab_size",)) or 0
    sampler = min(num_seqs, batched_tokens) * vocab * 4 * SAMPLER_FLOAT32_COPIES
    return (forward + sampler) / GIB


def _first_int(
    cfg: Mapping[str, Any], keys: tuple[str, ...], *, positive: bool = False
) -> int | None:
    """The first of ``keys`` the config has, as an int; ``positive``: 0 or less is refused."""
    for key in keys:
        value = cfg.get(key)
        if value is None or isinstance(value, bool):
            continue
        integral_float = isinstance(value, float) and value.is_integer()
        digits = isinstance(value, str) and value.strip().isdigit()
        if isinstance(value, int) or integral_float or digits:
            number = int(value)
        else:
            raise ValueError(f"model config key {key} must be an integer, got {value!r}")
        if positive and number <= 0:
            raise ValueError(
                f"model config key {key} must be a positive integer, got {value!r}: "
                "config.json is damaged or not a model's"
            )
        return number
    return None


def _round_gib(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _check_tensor_parallel_size(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"tensor_parallel_size must be an integer >= 1, got {value!r}")


def _tensor_parallel_sizes(num_heads: int, kv_heads: int, largest: int = 16) -> list[int]:
    """The sizes up to ``largest`` that split the heads as vLLM requires."""
    return [
        tp
        for tp in range(1, largest + 1)
        if num_heads % tp == 0 and (kv_heads % tp == 0 if kv_heads >= tp else tp % kv_heads == 0)
    ]


def _check_tensor_parallel_split(num_heads: int, kv_heads: int, tp: int) -> None:
    # The same checks vLLM makes before loading anything: heads are split across ranks.
    if num_heads % tp:
        reason = f"does not divide the model's {num_heads} attention heads"
    elif kv_heads >= tp and kv_heads % tp:
        reason = f"does not divide the model's {kv_heads} KV heads"
    elif kv_heads < tp and tp % kv_heads:
        reason = f"is not a multiple of the model's {kv_heads} KV heads"
    else:
        return
    sizes = ", ".join(str(size) for size in _tensor_parallel_sizes(num_heads, kv_heads))
    raise ValueError(f"tensor_parallel_size {tp} {reason}: use one of {sizes}")


def _check_block_size(value: Any) -> None:
    if isinstance(value, bool) or value not in BLOCK_SIZES:
        raise ValueError(
            f"block_size must be one of {', '.join(map(str, BLOCK_SIZES))}, got {value!r}"
        )


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_positive_number(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not _is_finite_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_non_negative_number(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not _is_finite_number(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _is_finite_number(value: Any) -> bool:
    """A real number, not a bool, and neither infinite nor NaN (absurd memory sizes)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def pipeline_stage_layers(
    num_layers: int, pipeline_parallel_size: int, partition: str | None = None
) -> list[int]:
    """Layers per pipeline stage, as vLLM splits them (vllm/distributed/utils.py,
    get_pp_indices): evenly, the remainder one each to the stages before the last, counted
    from the end (the last stage also holds the final norm and the LM head). ``partition`` is
    VLLM_PP_LAYER_PARTITION (such as "12,12,13,11"), which replaces the split."""
    _check_positive_int("num_layers", num_layers)
    _check_positive_int("pipeline_parallel_size", pipeline_parallel_size)
    if partition:
        try:
            stages = [int(part) for part in str(partition).split(",")]
        except ValueError:
            raise ValueError(
                f"VLLM_PP_LAYER_PARTITION must be integers, got {partition!r}"
            ) from None
        if len(stages) != pipeline_parallel_size or sum(stages) != num_layers:
            raise ValueError(
                f"VLLM_PP_LAYER_PARTITION {partition!r} must give {pipeline_parallel_size} "
                f"stages that add up to the model's {num_layers} layers"
            )
        return stages
    if pipeline_parallel_size > num_layers:
        raise ValueError(
            f"pipeline_parallel_size {pipeline_parallel_size} exceeds the model's "
            f"{num_layers} layers"
        )
    stages = [num_layers // pipeline_parallel_size] * pipeline_parallel_size
    for index in range(2, num_layers % pipeline_parallel_size + 2):
        stages[-index] += 1
    return stages


def pipeline_stage(
    model_config: Mapping[str, Any],
    *,
    pipeline_parallel_size: int = 1,
    layer_partition: str | None = None,
    weights_bytes: int | None = None,
) -> dict[str, Any]:
    """The part of a model that the busiest rank of a pipeline-parallel layout holds.

    Returns ``config`` (the text config cut to the stage with the most layers: vLLM sizes the
    engine's KV cache by its smallest rank, which is that one), ``weights_bytes`` (the stage's
    rough share of the weights, or None), ``stages`` (layers per stage) and ``busiest``. For a
    model whose layers are not all attention layers (hybrid models) the stage's share is
    scaled, which a model that mixes the kinds unevenly over its depth does not follow exactly.
    With one stage and no partition the config and weights are returned as they are.
    """
    cfg = text_config(model_config)
    layers = _first_int(cfg, LAYER_COUNT_KEYS)
    if layers is None:
        raise ValueError(
            f"model config lacks the layer count (one of {', '.join(LAYER_COUNT_KEYS)})"
        )
    stages = pipeline_stage_layers(layers, pipeline_parallel_size, layer_partition)
    if pipeline_parallel_size == 1 and not layer_partition:
        return {
            "config": dict(model_config),
            "weights_bytes": weights_bytes,
            "stages": stages,
            "busiest": layers,
        }
    busiest = max(stages)
    stage_cfg = dict(cfg)
    for key in LAYER_COUNT_KEYS:
        if key in stage_cfg:
            stage_cfg[key] = busiest
    for key in ("layer_types", "layers_block_type"):
        if isinstance(stage_cfg.get(key), list):
            stage_cfg[key] = stage_cfg[key][:busiest]
    if isinstance(stage_cfg.get("hybrid_override_pattern"), str):
        stage_cfg["hybrid_override_pattern"] = stage_cfg["hybrid_override_pattern"][:busiest]
    if weights_bytes is not None:
        # The weights split with the layers (embeddings and the LM head are not: a rough share).
        weights_bytes = max(1, math.ceil(weights_bytes * busiest / layers))
    return {
        "config": stage_cfg,
        "weights_bytes": weights_bytes,
        "stages": stages,
        "busiest": busiest,
    }


def stage_note(pipeline_parallel_size: int, stages: list[int]) -> str:
    return (
        f"pipeline parallel {pipeline_parallel_size}: stages of {stages} layers; planned for "
        f"the stage of {max(stages)} layers, whose KV cache per token is the largest"
    )


def plan_memory_for_layout(
    model_config: Mapping[str, Any],
    *,
    pipeline_parallel_size: int = 1,
    layer_partition: str | None = None,
    **plan_kwargs: Any,
) -> dict[str, Any]:
    """plan_memory() for the rank that holds the most layers of a pipeline-parallel layout.

    Each rank holds its share of the KV heads (``tensor_parallel_size``, as plan_memory()) and
    the KV cache of its stage's layers only (pipeline_stage()). The result adds
    ``pipeline_stages`` (layers per stage) and ``pipeline_parallel_size`` to plan_memory()'s.
    """
    stage = pipeline_stage(
        model_config,
        pipeline_parallel_size=pipeline_parallel_size,
        layer_partition=layer_partition,
        weights_bytes=plan_kwargs.pop("weights_bytes", None),
    )
    if stage["weights_bytes"] is not None:
        plan_kwargs["weights_bytes"] = stage["weights_bytes"]
    plan = plan_memory(stage["config"], **plan_kwargs)
    if pipeline_parallel_size > 1 or layer_partition:
        plan["notes"] = [
            *plan.get("notes", []),
            stage_note(pipeline_parallel_size, stage["stages"]),
        ]
    plan["pipeline_parallel_size"] = pipeline_parallel_size
    plan["pipeline_stages"] = stage["stages"]
    return plan
