# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the replayed V0 memory lines follow the flags the stand-in was started with.

The replayed log (the seed's, vLLM 0.8.5 V0, TP 4) was printed for one set of flags. When a test
starts the stand-in with others, the figures vLLM would print change by vLLM's own arithmetic
(vllm/worker/worker.py determine_num_available_blocks and vllm/executor/executor_base.py of
0.8.5; ../shared/facts/vllm.md, "Arithmetic"):

    budget   = total_gpu_memory x gpu_memory_utilization
    kv       = budget - (weights + activation peak + non-torch)          per rank
    weights  = the log's weights x tp_log / tp                             (sharded evenly)
    bytes per token per GPU = 2 x layers x max(1, kv_heads // tp) x head_dim x dtype_bytes
    blocks   = floor(kv / (block_size x bytes per token)), minimum over ranks
    CPU blocks = floor(swap_space GiB / block bytes)
    concurrency = blocks x block_size / max_model_len
    V0 refuses to start when blocks x block_size < max_model_len

Each figure is computed as the log's figure plus the change the flags make, so the log's own
flags reproduce the log byte for byte (its printed figures are rounded; recomputing them from
the rounded values would not). What the arithmetic cannot move (activation peak at another
max_num_batched_tokens, non-torch memory) keeps the log's value. Python standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

GIB = 1024**3
DTYPE_BYTES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4, "auto": 2}
KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}

BUDGET_RE = re.compile(
    r"total_gpu_memory \((?P<total>[\d.]+)GiB\) x gpu_memory_utilization "
    r"\((?P<util>[\d.]+)\) = (?P<budget>[\d.]+)GiB"
)
RANK_RE = re.compile(
    r"model weights take (?P<weights>[\d.]+)GiB; non_torch_memory takes (?P<nt>[\d.]+)GiB; "
    r"PyTorch activation peak memory takes (?P<act>[\d.]+)GiB; the rest of the memory reserved "
    r"for KV Cache is (?P<kv>-?[\d.]+)GiB\."
)
BLOCKS_RE = re.compile(r"# (?P<word>cuda|GPU) blocks: (?P<gpu>\d+), # CPU blocks: (?P<cpu>\d+)")
CONCURRENCY_RE = re.compile(
    r"Maximum concurrency for (?P<len>\d+) tokens per request: (?P<x>[\d.]+)x"
)


def bytes_per_token(config: Mapping[str, Any], tp: int, dtype: str, kv_cache_dtype: str) -> int:
    """KV bytes one token takes on one GPU (full attention, as facts/vllm.md "Arithmetic")."""
    cfg = config.get("text_config") or config
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    element = KV_DTYPE_BYTES.get(kv_cache_dtype) or DTYPE_BYTES.get(dtype, 2)
    return 2 * layers * max(1, kv_heads // tp) * head_dim * element


def rescale(
    lines: list[str], logged: Mapping[str, Any], flags: Mapping[str, Any], config: Mapping
) -> tuple[list[str], str | None]:
    """The log's lines with the figures the flags give, and a V0 startup error or None.

    ``logged`` are the flags the log was printed with (tensor_parallel_size, dtype,
    gpu_memory_utilization, block_size, max_model_len, swap_space, kv_cache_dtype); ``flags``
    the ones the stand-in got (None where not given: the log's value stands).
    """
    now = {
        key: (flags.get(key) if flags.get(key) is not None else value)
        for key, value in logged.items()
    }
    if now == dict(logged):
        return list(lines), None
    bpt_then = bytes_per_token(
        config, logged["tensor_parallel_size"], logged["dtype"], logged["kv_cache_dtype"]
    )
    bpt_now = bytes_per_token(
        config, now["tensor_parallel_size"], now["dtype"], now["kv_cache_dtype"]
    )
    block_then = bpt_then * logged["block_size"]
    block_now = bpt_now * now["block_size"]
    weights_scale = logged["tensor_parallel_size"] / now["tensor_parallel_size"]
    weights_scale *= DTYPE_BYTES.get(now["dtype"], 2) / DTYPE_BYTES.get(logged["dtype"], 2)

    total = None
    budget_delta = 0.0
    kv_ratio: float | None = None
    blocks = None
    error: str | None = None
    has_concurrency = any(CONCURRENCY_RE.search(line) for line in lines)
    out: list[str] = []
    for original in lines:
        line = original
        match = BUDGET_RE.search(line)
        if match:
            total = float(match["total"])
            budget_then = float(match["budget"])
            budget_delta = total * (now["gpu_memory_utilization"] - float(match["util"]))
            text = (
                f"total_gpu_memory ({match['total']}GiB) x gpu_memory_utilization "
                f"({now['gpu_memory_utilization']:.2f}) = {budget_then + budget_delta:.2f}GiB"
            )
            line = line[: match.start()] + text + line[match.end() :]
        match = RANK_RE.search(line)
        if match:
            weights_then = float(match["weights"])
            weights_now = weights_then * weights_scale
            kv_then = float(match["kv"])
            kv_now = kv_then + budget_delta - (weights_now - weights_then)
            if kv_then > 0:
                ratio = kv_now / kv_then
                kv_ratio = ratio if kv_ratio is None else min(kv_ratio, ratio)
            text = (
                f"model weights take {weights_now:.2f}GiB; non_torch_memory takes "
                f"{match['nt']}GiB; PyTorch activation peak memory takes {match['act']}GiB; "
                f"the rest of the memory reserved for KV Cache is {kv_now:.2f}GiB."
            )
            line = line[: match.start()] + text + line[match.end() :]
        match = BLOCKS_RE.search(line)
        if match:
            ratio = 1.0 if kv_ratio is None else kv_ratio
            blocks = max(0, math.floor(int(match["gpu"]) * ratio * block_then / block_now))
            swap = float(now["swap_space"] or 0)
            cpu = math.floor(swap * GIB / block_now)
            text = f"# {match['word']} blocks: {blocks}, # CPU blocks: {cpu}"
            line = line[: match.start()] + text + line[match.end() :]
            if blocks <= 0:
                error = (
                    "No available memory for the cache blocks. Try increasing "
                    "`gpu_memory_utilization` when initializing the engine."
                )
            elif blocks * now["block_size"] < now["max_model_len"]:
                error = (
                    f"The model's max seq len ({now['max_model_len']}) is larger than the "
                    "maximum number of tokens that can be stored in KV cache "
                    f"({blocks * now['block_size']}). Try increasing `gpu_memory_utilization` "
                    "or decreasing `max_model_len` when initializing the engine."
                )
        match = CONCURRENCY_RE.search(line)
        if match and blocks is not None:
            concurrency = blocks * now["block_size"] / now["max_model_len"]
            text = (
                f"Maximum concurrency for {now['max_model_len']} tokens per request: "
                f"{concurrency:.2f}x"
            )
            line = line[: match.start()] + text + line[match.end() :]
        out.append(line)
        # 0.8.5 logs blocks and concurrency (executor_base.initialize_cache), then the worker
        # checks the cache (raise_if_cache_size_invalid): the error follows both lines.
        if error and (not has_concurrency or CONCURRENCY_RE.search(line)):
            return out, error
    return out, error
