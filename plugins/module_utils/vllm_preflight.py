# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight of a vLLM deployment: will it fit, before anything is pulled or started.

Private to llmops.gpu_serving (used by the vllm_preflight module); not a public API.

The arithmetic is vllm_memory's (one implementation, shared with the vllm_memory_plan filter);
this file adds what the host contributes: the model directory (config.json and the weight
files), the GPUs nvidia-smi lists, and the policy (a concurrency target, autotuning).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import (
    GIB,
    MAX_LEN_KEYS,
    pipeline_stage,
    plan_memory,
    stage_note,
    suggest_fit,
    text_config,
    weights_bytes_from_files,
    weights_bytes_from_index,
)

# What CUDA reports as a card's total is less than nvidia-smi's memory.total: the driver and
# firmware keep a reserve. Measured on the seed's cards: nvidia-smi 22528 MiB (22.00 GiB),
# vLLM's log "total_gpu_memory (21.66GiB)" -> 0.34 GiB. Cards differ by a few hundred MiB;
# vllm_server_gpu_memory_gib (the log's total_gpu_memory) makes the plan exact.
DEFAULT_RESERVED_GIB = 0.34

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class PreflightError(Exception):
    """The deployment cannot be planned (missing files, too few GPUs); the message says why."""

    def __init__(self, msg: str, **details: Any):
        super().__init__(msg)
        self.details = details


def read_model_dir(path: str) -> dict[str, Any]:
    """config.json and the weight size of a model directory as vLLM would load it.

    Returns ``config`` (dict), ``weights_bytes`` and ``weights_source`` (the index's
    metadata.total_size, or the sum of the weight files).
    """
    config_path = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise PreflightError(f"model directory {path} does not exist: sync the model first")
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError as exc:
        raise PreflightError(
            f"{config_path} is missing: {path} is not a Hugging Face model directory"
        ) from exc
    except ValueError as exc:
        raise PreflightError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, Mapping):
        raise PreflightError(f"{config_path} does not hold a JSON object")

    index = None
    for name in INDEX_FILES:
        index_path = os.path.join(path, name)
        if os.path.isfile(index_path):
            try:
                with open(index_path, encoding="utf-8") as handle:
                    index = json.load(handle)
            except ValueError as exc:
                raise PreflightError(f"{index_path} is not valid JSON: {exc}") from exc
            break

    sizes: dict[str, int] = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            sizes[os.path.relpath(full, path)] = os.path.getsize(full)
    from_files = weights_bytes_from_files(sizes, index if isinstance(index, Mapping) else None)
    from_index = weights_bytes_from_index(index) if isinstance(index, Mapping) else None
    if from_index:
        weights_bytes, source = from_index, "index metadata.total_size"
    elif from_files:
        weights_bytes, source = from_files, "weight file sizes"
    else:
        raise PreflightError(
            f"{path} holds no weight files (*.safetensors, *.bin, *.pt): the model is not "
            "synced completely"
        )
    return {"config": dict(config), "weights_bytes": weights_bytes, "weights_source": source}


def gpus_per_node(
    tensor_parallel_size: int, pipeline_parallel_size: int = 1, nnodes: int = 1
) -> int:
    """The GPUs each host of a layout runs (its ranks): TP x PP over the hosts, a whole number."""
    if tensor_parallel_size < 1 or pipeline_parallel_size < 1 or nnodes < 1:
        raise PreflightError(
            "tensor_parallel_size, pipeline_parallel_size and nnodes must be 1 or more; got "
            f"{tensor_parallel_size}, {pipeline_parallel_size} and {nnodes}"
        )
    ranks = tensor_parallel_size * pipeline_parallel_size
    if ranks % nnodes:
        raise PreflightError(
            f"tensor_parallel_size {tensor_parallel_size} x pipeline_parallel_size "
            f"{pipeline_parallel_size} = {ranks} ranks do not split evenly over {nnodes} hosts"
        )
    return ranks // nnodes


def _layout_text(tensor_parallel_size: int, pipeline_parallel_size: int, nnodes: int) -> str:
    if nnodes == 1 and pipeline_parallel_size == 1:
        return f"tensor_parallel_size {tensor_parallel_size}"
    return (
        f"tensor_parallel_size {tensor_parallel_size} x pipeline_parallel_size "
        f"{pipeline_parallel_size} over {nnodes} hosts"
    )


def usable_gpu_memory_gib(
    gpus: Sequence[Mapping[str, Any]],
    tensor_parallel_size: int,
    reserved_gib: float = DEFAULT_RESERVED_GIB,
    *,
    pipeline_parallel_size: int = 1,
    nnodes: int = 1,
) -> float:
    """What vLLM will see as total_gpu_memory on the smallest card this host's ranks use."""
    if not gpus:
        raise PreflightError("nvidia-smi lists no GPUs")
    needed = gpus_per_node(tensor_parallel_size, pipeline_parallel_size, nnodes)
    if needed > len(gpus):
        per_host = " per host" if nnodes > 1 else ""
        raise PreflightError(
            f"{_layout_text(tensor_parallel_size, pipeline_parallel_size, nnodes)} needs "
            f"{needed} GPUs{per_host}, nvidia-smi lists {len(gpus)}"
        )
    totals = [gpu.get("memory_total_mib") for gpu in gpus]
    if any(not isinstance(total, (int, float)) for total in totals):
        raise PreflightError("nvidia-smi did not report memory.total for every GPU")
    smallest_gib = min(totals) / 1024
    return round(smallest_gib - reserved_gib, 2)


# What the GPU's compute capability allows, as vLLM checks it at startup (after the image is
# pulled and the weights loaded, minutes in):
# - bf16: vLLM's worker `_check_if_gpu_supports_dtype` raises "Bfloat16 is only supported on GPUs
#   with compute capability of at least 8.0. Your ... GPU has compute capability 7.5. You can use
#   float16 instead by explicitly setting the`dtype` flag in CLI, for example: --dtype=half."
#   (vllm/worker/worker.py, 0.8.x). With dtype auto a bf16 checkpoint (Qwen3's torch_dtype) takes
#   that path on 0.8.5; later versions fall back to float16 with a warning, so auto is refused
#   too: the dtype the operator means should be written down. A refusal.
# - fp8 KV cache: only stored in fp8 and converted for compute (vllm#3965, #4827), but the e4m3
#   format (`fp8`, `fp8_e4m3`) crashes the V1 Triton attention below SM 8.9 ("type fp8e4nv not
#   supported in this architecture", vllm#26431 on an RTX 3090 with 0.11; #35720 with 0.16;
#   "native FP8 (fp8e4nv) requires SM89+", #47549 with 0.24). Which versions and backends fail
#   differs, so it is a warning that names fp8_e5m2 and auto.
# - fp8 checkpoints: W8A8 on Ada and Hopper, weight-only through Marlin kernels below (vLLM's
#   "FP8 W8A8" docs: Ampere; newer releases also Turing). A warning.
BF16_MIN_CAPABILITY = (8, 0)
FP8_E4M3_KV_CAPABILITY = (8, 9)
FP8_W8A8_CAPABILITY = (8, 9)
BF16_NAMES = ("bfloat16",)
FP8_E4M3_KV_DTYPES = ("fp8", "fp8_e4m3")
# Rope types whose factor does not stretch the derived length (vLLM's _get_and_verify_max_len).
ROPE_TYPES_WITHOUT_STRETCH = ("su", "longrope", "llama3")


def _capability(text: Any) -> tuple[int, int] | None:
    try:
        major, minor = str(text).strip().split(".", 1)
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def _weakest_gpu(
    gpus: Sequence[Mapping[str, Any]], count: int
) -> tuple[Mapping[str, Any], tuple[int, int]] | None:
    """The GPU with the lowest compute capability among the first ``count`` (None if unknown)."""
    known = [
        (gpu, cap)
        for gpu in list(gpus)[: max(count, 1)]
        if (cap := _capability(gpu.get("compute_capability"))) is not None
    ]
    return min(known, key=lambda item: item[1]) if known else None


def derived_max_model_len(
    model_config: Mapping[str, Any], rope_scaling: Mapping[str, Any] | None = None
) -> int | None:
    """The longest max_model_len vLLM accepts for this config, as its _get_and_verify_max_len.

    The smallest of the config's length keys, stretched by rope scaling (the config's, or the one
    given on the command line, which replaces it): a yarn factor multiplies
    original_max_position_embeddings, other types the derived length; su, longrope and llama3
    do not stretch it. None when the config names no length.
    """
    cfg = text_config(model_config)
    lengths = [
        cfg[key]
        for key in MAX_LEN_KEYS
        if isinstance(cfg.get(key), (int, float)) and not isinstance(cfg.get(key), bool)
    ]
    if not lengths:
        return None
    derived = float(min(lengths))
    scaling = rope_scaling if rope_scaling else cfg.get("rope_scaling")
    if isinstance(scaling, Mapping):
        rope_type = scaling.get("rope_type") or scaling.get("type")
        if rope_type not in ROPE_TYPES_WITHOUT_STRETCH:
            factor = scaling.get("factor")
            factor = float(factor) if isinstance(factor, (int, float)) else 1.0
            original = scaling.get("original_max_position_embeddings")
            if rope_type == "yarn" and isinstance(original, (int, float)):
                derived = float(original)
            derived *= factor
    return int(derived)


def compatibility_problems(
    model_config: Mapping[str, Any],
    gpus: Sequence[Mapping[str, Any]] | None,
    *,
    tensor_parallel_size: int,
    dtype: str,
    kv_cache_dtype: str = "auto",
    max_model_len: int | None = None,
    rope_scaling: Mapping[str, Any] | None = None,
    allow_long_max_model_len: bool = False,
    prefix: str = "",
    gpus_used: int | None = None,
) -> tuple[list[str], list[str]]:
    """What vLLM would refuse at startup that the config and nvidia-smi already show.

    Returns (problems, notes). Each problem names the setting (``prefix`` + its name, so a role
    can show its own variable names), the value, why, and the way out. Notes say what could not
    be checked (a GPU list without compute capabilities). ``gpus_used`` is how many of this
    host's GPUs the layout runs (a serving cluster's ranks per host); tensor_parallel_size
    when not given.
    """
    cfg = text_config(model_config)
    problems: list[str] = []
    notes: list[str] = []

    if max_model_len is not None and not allow_long_max_model_len:
        limit = derived_max_model_len(cfg, rope_scaling)
        if limit is not None and max_model_len > limit:
            problems.append(
                f"{prefix}max_model_len {max_model_len} is above the model's {limit} tokens "
                f"({'rope-scaled ' if rope_scaling or cfg.get('rope_scaling') else ''}"
                "config.json): vLLM refuses it at startup; lower it, or set "
                f"{prefix}rope_scaling (for example yarn with a factor) to stretch the context"
            )

    weakest = _weakest_gpu(gpus or [], gpus_used or tensor_parallel_size)
    if weakest is None:
        if gpus:
            notes.append("nvidia-smi gave no compute capability: dtype and fp8 support not checked")
        return problems, notes
    gpu, cap = weakest
    card = f"GPU {gpu.get('index', '?')} ({gpu.get('name') or 'unnamed'}) is SM {cap[0]}.{cap[1]}"

    config_dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "").removeprefix("torch.")
    serving = config_dtype if dtype == "auto" else dtype
    if serving in BF16_NAMES and cap < BF16_MIN_CAPABILITY:
        given = f"auto (the checkpoint's {config_dtype})" if dtype == "auto" else dtype
        problems.append(
            f"{prefix}dtype {given} needs bf16, SM 8.0 or newer; {card}: set {prefix}dtype to half"
        )
    if kv_cache_dtype in FP8_E4M3_KV_DTYPES and cap < FP8_E4M3_KV_CAPABILITY:
        notes.append(
            f"{prefix}kv_cache_dtype {kv_cache_dtype} (e4m3) on SM {cap[0]}.{cap[1]}: vLLM's V1 "
            "Triton attention needs SM 8.9 for it and fails at startup on some versions; "
            f"{prefix}kv_cache_dtype fp8_e5m2 or auto if it does"
        )
    quant = cfg.get("quantization_config") or model_config.get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, Mapping) else None
    if method == "fp8" and cap < FP8_W8A8_CAPABILITY:
        notes.append(
            f"fp8 checkpoint on SM {cap[0]}.{cap[1]}: vLLM runs it weight-only (Marlin) where "
            "the version has that path (Ampere; Turing in newer releases), fp8 compute needs "
            "SM 8.9"
        )
    return problems, notes


def run_preflight(
    model_config: Mapping[str, Any],
    *,
    weights_bytes: int,
    gpu_memory_gib: float,
    tensor_parallel_size: int,
    dtype: str,
    max_model_len: int | None,
    block_size: int,
    gpu_memory_utilization: float,
    kv_cache_dtype: str = "auto",
    max_num_batched_tokens: int | None = None,
    swap_space_gib: float | None = None,
    kv_cache_gib: float | None = None,
    min_concurrency: float = 0.0,
    autotune: bool = False,
    autotune_max_gpu_memory_utilization: float = 0.95,
    pipeline_parallel_size: int = 1,
) -> dict[str, Any]:
    """Plan the deployment and decide: fits, autotuned, or does not fit (with the way out).

    With ``pipeline_parallel_size`` above 1 (a serving cluster's stages) the plan is the busiest
    stage's rank's (vllm_memory.pipeline_stage: its layers, its share of the weights).

    ``min_concurrency`` 0 means "one request of max_model_len", vLLM's own startup gate.
    ``kv_cache_gib`` fixes the KV cache instead of deriving it from GPU memory: the CPU engine
    is given its KV space (``VLLM_CPU_KVCACHE_SPACE``, GiB), whatever the memory and the
    weights; no gpu_memory_utilization can change it, so autotuning can only shorten
    max_model_len. Autotuning first raises gpu_memory_utilization up to the cap (the context
    length the operator asked for is kept), then lowers max_model_len. Returns ``fits``,
    ``message``, ``plan`` (of the settings to use), ``settings`` (max_model_len,
    gpu_memory_utilization), ``autotuned`` (what changed, or None) and ``suggestion``.
    """
    stage = pipeline_stage(
        model_config, pipeline_parallel_size=pipeline_parallel_size, weights_bytes=weights_bytes
    )
    model_config, weights_bytes = stage["config"], stage["weights_bytes"]

    def staged(result: dict[str, Any]) -> dict[str, Any]:
        if pipeline_parallel_size > 1:
            plan = result["plan"]
            plan["notes"] = [
                *plan.get("notes", []),
                stage_note(pipeline_parallel_size, stage["stages"]),
            ]
            plan["pipeline_parallel_size"] = pipeline_parallel_size
            plan["pipeline_stages"] = stage["stages"]
        return result

    target = max(float(min_concurrency), 1.0)
    common = {
        "tensor_parallel_size": tensor_parallel_size,
        "dtype": dtype,
        "block_size": block_size,
        "gpu_memory_gib": gpu_memory_gib,
        "weights_bytes": weights_bytes,
        "kv_cache_dtype": kv_cache_dtype,
        "max_num_batched_tokens": max_num_batched_tokens,
        "swap_space_gib": swap_space_gib,
        "kv_cache_gib": kv_cache_gib,
    }
    requested = {"max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization}
    fit = suggest_fit(model_config, min_concurrency=target, **common, **requested)
    plan = fit["plan"]
    settings = {
        "max_model_len": plan["inputs"]["max_model_len"],
        "gpu_memory_utilization": gpu_memory_utilization,
    }
    suggestion = {
        "largest_fitting_max_model_len": fit["largest_fitting_max_model_len"],
        "smallest_fitting_gpu_memory_utilization": fit["smallest_fitting_gpu_memory_utilization"],
    }
    result: dict[str, Any] = {
        "fits": fit["fits"],
        "message": fit["message"],
        "plan": plan,
        "requested": dict(settings),
        "settings": settings,
        "autotuned": None,
        "suggestion": suggestion,
        "min_concurrency": target,
    }
    if fit["fits"] or not autotune:
        return staged(result)

    # suggest_fit found it already (None when the KV size is given: no utilization changes it).
    utilization = fit["smallest_fitting_gpu_memory_utilization"]
    if utilization is not None and utilization <= autotune_max_gpu_memory_utilization:
        chosen = {"gpu_memory_utilization": utilization}
        reason = (
            f"gpu_memory_utilization {gpu_memory_utilization:g} -> {utilization:g} (cap "
            f"{autotune_max_gpu_memory_utilization:g}) keeps max_model_len "
            f"{settings['max_model_len']} at {target:g}x concurrency"
        )
    elif fit["largest_fitting_max_model_len"] >= block_size:
        longest = fit["largest_fitting_max_model_len"]
        chosen = {"max_model_len": longest}
        held_in = (
            f"at gpu_memory_utilization {gpu_memory_utilization:g} (raising it to fit would "
            f"exceed the cap {autotune_max_gpu_memory_utilization:g})"
            if kv_cache_gib is None
            else f"in the given {kv_cache_gib:g} GiB KV cache"
        )
        reason = (
            f"max_model_len {settings['max_model_len']} -> {longest}: the largest that holds "
            f"{target:g} requests {held_in}"
        )
    else:
        result["message"] += "; autotune found no setting that fits"
        return staged(result)

    settings.update(chosen)
    tuned = plan_memory(model_config, **common, **settings)
    result.update(
        fits=tuned["fits"] and tuned["kv_cache_tokens"] >= target * settings["max_model_len"],
        plan=tuned,
        autotuned={"changed": chosen, "reason": reason},
        message=(
            f"autotuned: {reason}; {tuned['kv_cache_tokens']} KV tokens per GPU "
            f"({tuned['kv_cache_gib']:.2f} GiB, {tuned['max_concurrency']:.2f}x)"
        ),
    )
    return staged(result)


# The vllm_preflight module's options that run_preflight takes under the same name.
_PLAN_OPTIONS = (
    "tensor_parallel_size",
    "dtype",
    "max_model_len",
    "block_size",
    "gpu_memory_utilization",
    "kv_cache_dtype",
    "max_num_batched_tokens",
    "swap_space_gib",
    "kv_cache_gib",
    "min_concurrency",
    "autotune",
    "autotune_max_gpu_memory_utilization",
    "pipeline_parallel_size",
)


def preflight_of_options(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One run of the vllm_preflight module: its options in, (the result, the warnings) out.

    Raises PreflightError with the message to fail with (and ``details`` to return beside it)
    for options out of range, a layout the GPUs cannot hold, a configuration vLLM would refuse
    on these GPUs, or, with ``fail_on_misfit``, one that does not fit.
    """
    p = params
    if p["min_concurrency"] < 0:
        raise PreflightError(f"min_concurrency must be 0 or more, got {p['min_concurrency']:g}")
    cap = p["autotune_max_gpu_memory_utilization"]
    if not 0 < cap <= 1:
        raise PreflightError(f"autotune_max_gpu_memory_utilization must be in (0, 1], got {cap:g}")
    layout = {"pipeline_parallel_size": p["pipeline_parallel_size"], "nnodes": p["nnodes"]}
    try:
        per_node = gpus_per_node(p["tensor_parallel_size"], **layout)
        model = read_model_dir(p["model_path"])
        problems, notes = [], []
        if p["check_compatibility"]:
            problems, notes = compatibility_problems(
                model["config"],
                p["gpus"],
                tensor_parallel_size=p["tensor_parallel_size"],
                dtype=p["dtype"],
                kv_cache_dtype=p["kv_cache_dtype"],
                max_model_len=p["max_model_len"],
                rope_scaling=p["rope_scaling"],
                allow_long_max_model_len=p["allow_long_max_model_len"],
                prefix=p["variable_prefix"],
                gpus_used=per_node,
            )
        if problems:
            raise PreflightError(
                "vLLM preflight: " + "; ".join(problems), compatibility_notes=notes
            )
        if p["gpu_memory_gib"] is not None:
            gpu_memory_gib = p["gpu_memory_gib"]
        else:
            gpu_memory_gib = usable_gpu_memory_gib(
                p["gpus"], p["tensor_parallel_size"], p["gpu_reserved_gib"], **layout
            )
        result = run_preflight(
            model["config"],
            weights_bytes=model["weights_bytes"],
            gpu_memory_gib=gpu_memory_gib,
            **{name: p[name] for name in _PLAN_OPTIONS},
        )
    except PreflightError as exc:
        if str(exc).startswith("vLLM preflight: "):
            raise
        raise PreflightError(f"vLLM preflight: {exc}", **exc.details) from None
    except (ValueError, TypeError) as exc:
        raise PreflightError(f"vLLM preflight: {exc}") from None
    result.update(
        changed=False,
        gpu_memory_gib=gpu_memory_gib,
        compatibility_notes=notes,
        model={"weights_bytes": model["weights_bytes"], "weights_source": model["weights_source"]},
    )
    if not result["fits"] and p["fail_on_misfit"]:
        raise PreflightError(f"vLLM preflight: the configuration {result['message']}", **result)
    return result, [f"vLLM preflight: {note}" for note in notes]


__all__ = [
    "DEFAULT_RESERVED_GIB",
    "GIB",
    "PreflightError",
    "compatibility_problems",
    "derived_max_model_len",
    "gpus_per_node",
    "preflight_of_options",
    "read_model_dir",
    "run_preflight",
    "usable_gpu_memory_gib",
]
